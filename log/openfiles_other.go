//go:build !unix

package log

// OpenFileLimit: no RLIMIT_NOFILE here.
func OpenFileLimit() (uint64, bool) { return 0, false }
