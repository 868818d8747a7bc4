package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestStartProfiles: each recording the environment names is written when the command
// ends; one whose file cannot be created is skipped without stopping the others.
func TestStartProfiles(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{
		"PATINA_CPUPROFILE": filepath.Join(dir, "cpu.prof"),
		"PATINA_TRACE":      filepath.Join(dir, "trace.out"),
		"PATINA_MEMPROFILE": filepath.Join(dir, "no-such-dir", "mem.prof"),
	}
	stop := startProfiles(func(k string) string { return env[k] })
	stop()
	for _, k := range []string{"PATINA_CPUPROFILE", "PATINA_TRACE"} {
		fi, err := os.Stat(env[k])
		if err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v, %v bytes", k, err, fi)
		}
	}
	if _, err := os.Stat(env["PATINA_MEMPROFILE"]); err == nil {
		t.Error("an allocation profile appeared in a directory that does not exist")
	}
}
