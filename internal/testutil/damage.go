package testutil

import (
	"os"
	"path/filepath"
	"testing"
)

// DamageFile flips 64 bytes of the file at path, starting at fraction at of its length, as
// a failing disk damages a block. The file must not be open for writing.
func DamageFile(tb testing.TB, path string, at float64) {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	off := int(float64(len(b)) * at)
	for i := off; i < off+64 && i < len(b); i++ {
		b[i] ^= 0x5a
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		tb.Fatal(err)
	}
}

// DamageTables is DamageFile on every table file (*.sst) of the Pebble directory dir, which
// must be closed; it returns how many it damaged.
func DamageTables(tb testing.TB, dir string, at float64) int {
	tb.Helper()
	ssts, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	if err != nil {
		tb.Fatal(err)
	}
	for _, p := range ssts {
		DamageFile(tb, p, at)
	}
	return len(ssts)
}
