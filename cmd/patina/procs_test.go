package main

import (
	"runtime"
	"testing"
)

// TestSetProcs: one processor more than the runtime's default unless GOMAXPROCS is set, in
// which case the operator's value stays.
func TestSetProcs(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(before)
	if n := setProcs(func(k string) string {
		if k == "GOMAXPROCS" {
			return "1"
		}
		return ""
	}); n != 0 || runtime.GOMAXPROCS(0) != before {
		t.Fatalf("with GOMAXPROCS set: set %d, now %d, want left at %d", n, runtime.GOMAXPROCS(0), before)
	}
	if n := setProcs(func(string) string { return "" }); n != before+1 || runtime.GOMAXPROCS(0) != before+1 {
		t.Fatalf("without GOMAXPROCS: set %d, now %d, want %d", n, runtime.GOMAXPROCS(0), before+1)
	}
}
