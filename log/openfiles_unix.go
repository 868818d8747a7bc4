//go:build unix

package log

import "syscall"

// OpenFileLimit is the process's limit on open files (the soft RLIMIT_NOFILE).
func OpenFileLimit() (uint64, bool) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur <= 0 {
		return 0, false
	}
	return uint64(lim.Cur), true // int64 on some systems
}
