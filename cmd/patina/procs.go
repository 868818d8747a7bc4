package main

import "runtime"

// setProcs gives the Go runtime one processor (P) more than the CPUs it would use by
// default, unless GOMAXPROCS is set, and returns the count it set (0: left alone).
//
// Why: every group commit of the log blocks one goroutine in the WAL's fsync (0.2-0.5 ms on
// the bench machine, more on a busy disk), and a goroutine blocked in a system call keeps
// its processor until the runtime's monitor thread notices and hands the processor on. On
// a saturated machine that monitor often misses the whole fsync: in an execution trace of
// `patina bench http` on 2 cores, about half of the fsyncs held their processor to the end,
// 17-21% of one processor's time, during which one of the two CPUs had nothing to run. With one
// processor more, the other two keep both CPUs busy while an fsync blocks; at other times
// the kernel shares the CPUs among the three threads. Same-run A/B on the 2-core bench
// machine (bench/RESULTS.md, round 7): single-row transactions +11% at 7% less CPU per
// transaction; 100-row batches over 3 agents unchanged. Setting it disables Go's own
// tracking of a container's CPU limit (it takes the limit at start, as here).
func setProcs(getenv func(string) string) int {
	if getenv("GOMAXPROCS") != "" {
		return 0
	}
	n := runtime.GOMAXPROCS(0) + 1
	runtime.GOMAXPROCS(n)
	return n
}
