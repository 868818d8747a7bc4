package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
)

// startProfiles starts the profiles the environment asks for and returns the function that
// writes them: PATINA_CPUPROFILE=file records CPU samples for the whole run,
// PATINA_MEMPROFILE=file writes the allocation profile (every allocation since start) when
// the command ends, PATINA_TRACE=file records the runtime's execution trace (`go tool trace`:
// which goroutine waited for what, and how long a woken goroutine waited for a processor). They are how `patina bench write --profile-dir` profiles the agents of a
// real cluster; a profile that cannot be written is reported on stderr, never fatal.
func startProfiles(getenv func(string) string) (stop func()) {
	cpu, mem := getenv("PATINA_CPUPROFILE"), getenv("PATINA_MEMPROFILE")
	var cpuFile *os.File
	if cpu != "" {
		f, err := os.Create(cpu)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "patina: cpu profile: %v\n", err)
		} else {
			cpuFile = f
		}
	}
	if mem != "" {
		runtime.MemProfileRate = 64 << 10
	}
	var traceFile *os.File
	if tr := getenv("PATINA_TRACE"); tr != "" {
		f, err := os.Create(tr)
		if err == nil {
			err = trace.Start(f)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "patina: execution trace: %v\n", err)
		} else {
			traceFile = f
		}
	}
	return func() {
		if traceFile != nil {
			trace.Stop()
			traceFile.Close()
		}
		if cpuFile != nil {
			pprof.StopCPUProfile()
			cpuFile.Close()
		}
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
