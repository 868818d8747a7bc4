package testutil

import (
	"bytes"
	"sync"
)

// LockedBuffer is a bytes.Buffer that a process, a logger or another goroutine may write
// while the test reads it (a failure message, a log line to wait for).
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
