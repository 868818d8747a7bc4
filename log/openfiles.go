package log

import "syscall"

// DefaultMaxOpenFiles is the default Options.MaxOpenFiles: half the process's limit on open
// files (RLIMIT_NOFILE, which Go raises to its hard limit at start), at most
// maxOpenFilesCap and at least minOpenFiles. The other half is for the node's sockets, the
// view's SQLite files and Pebble's own WAL and manifest.
func DefaultMaxOpenFiles() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return minOpenFiles
	}
	return openFilesFor(lim.Cur)
}

const (
	minOpenFiles    = 100
	maxOpenFilesCap = 16384
)

// openFilesFor is the table cache DefaultMaxOpenFiles gives a process allowed limit files.
func openFilesFor(limit uint64) int {
	return int(max(min(limit/2, maxOpenFilesCap), minOpenFiles))
}
