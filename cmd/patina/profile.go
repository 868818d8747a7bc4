package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
)

// startProfiles starts the profiles the environment asks for and returns the function that
// writes them: PATINA_CPUPROFILE=file records CPU samples for the whole run,
// PATINA_MEMPROFILE=file writes the allocation profile (every allocation since start) when
// the command ends, PATINA_TRACE=file records the runtime's execution trace (`go tool trace`:
// which goroutine waited for what, and how long a woken goroutine waited for a processor).
// They are how `patina bench write --profile-dir` profiles the agents of a real cluster; a
// profile that cannot be written is reported on stderr, never fatal.
func startProfiles(getenv func(string) string) (stop func()) {
	mem := getenv("PATINA_MEMPROFILE")
	stopCPU := record(getenv("PATINA_CPUPROFILE"), "cpu profile", pprof.StartCPUProfile, pprof.StopCPUProfile)
	if mem != "" {
		runtime.MemProfileRate = 64 << 10
	}
	stopTrace := record(getenv("PATINA_TRACE"), "execution trace", trace.Start, trace.Stop)
	return func() {
		stopTrace()
		stopCPU()
		if mem != "" {
			f, err := os.Create(mem)
			if err == nil {
				err = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "patina: allocation profile: %v\n", err)
			}
		}
	}
}

// record starts a recording (the CPU profile, the execution trace) into the file path when
// it is set, and returns what stops it and closes the file; a recording that cannot start is
// reported on stderr as what, and its file closed.
func record(path, what string, start func(io.Writer) error, stop func()) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		if err = start(f); err != nil {
			f.Close()
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "patina: %s: %v\n", what, err)
		return func() {}
	}
	return func() {
		stop()
		f.Close()
	}
}
