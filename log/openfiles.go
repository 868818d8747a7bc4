package log

// DefaultMaxOpenFiles is the default Options.MaxOpenFiles: half the process's limit on open
// files (RLIMIT_NOFILE, which Go raises to its hard limit at start), at most
// maxOpenFilesCap and at least MinOpenFiles. The other half is for the node's sockets, the
// view's SQLite files and Pebble's own WAL and manifest. Where the limit cannot be read it
// is Pebble's own default, 1000.
func DefaultMaxOpenFiles() int {
	limit, ok := OpenFileLimit()
	if !ok {
		return 1000
	}
	return openFilesFor(limit)
}

const (
	// MinOpenFiles is the smallest Options.MaxOpenFiles the default gives (and the agent
	// accepts).
	MinOpenFiles    = 100
	maxOpenFilesCap = 16384
)

// openFilesFor is the table cache DefaultMaxOpenFiles gives a process allowed limit files.
func openFilesFor(limit uint64) int {
	return int(max(min(limit/2, maxOpenFilesCap), MinOpenFiles))
}
