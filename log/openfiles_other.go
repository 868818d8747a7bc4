//go:build !unix

package log

// openFileLimit: no RLIMIT_NOFILE here.
func openFileLimit() (uint64, bool) { return 0, false }
