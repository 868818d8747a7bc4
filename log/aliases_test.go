package log

import (
	"bytes"
	"os"
	"os/exec"
	"testing"
)

//go:generate sh -c "go run ./internal/aliasgen ./format > format_aliases.go"

// TestAliasesUpToDate fails when an exported name was added to, renamed in or removed from
// log/format without regenerating format_aliases.go (go generate ./log).
func TestAliasesUpToDate(t *testing.T) {
	want, err := exec.Command("go", "run", "./internal/aliasgen", "./format").Output()
	if err != nil {
		t.Fatalf("aliasgen: %v", err)
	}
	got, err := os.ReadFile("format_aliases.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("format_aliases.go is stale: run go generate ./log")
	}
}
