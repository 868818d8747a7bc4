package testutil

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// WALGate wraps a filesystem so that, while it is closed, every sync of a Pebble WAL file
// (*.log) is held: a test can look at a store (and what is built on it) while a group's fsync
// is in progress. Free lets every held and later sync through; Release lets one through.
// A test defers Free, so that a failure does not leave the store's Close stuck behind a
// held sync.
type WALGate struct {
	vfs.FS
	mu      sync.Mutex
	closed  bool
	release chan struct{}
	entered atomic.Int32
}

// NewWALGate wraps fs, open.
func NewWALGate(fs vfs.FS) *WALGate {
	g := &WALGate{}
	g.FS = errorfs.Wrap(fs, errorfs.InjectorFunc(g.inject))
	return g
}

// Entered counts the WAL syncs that reached the gate while it was closed.
func (g *WALGate) Entered() int { return int(g.entered.Load()) }

// Hold holds every WAL sync from now on.
func (g *WALGate) Hold() {
	g.mu.Lock()
	if !g.closed {
		g.closed, g.release = true, make(chan struct{}, 64)
	}
	g.mu.Unlock()
}

// Free lets every held and later sync through.
func (g *WALGate) Free() {
	g.mu.Lock()
	if g.closed {
		g.closed = false
		close(g.release)
	}
	g.mu.Unlock()
}

// Release lets one held (or the next) sync through while the gate stays closed.
func (g *WALGate) Release() {
	g.mu.Lock()
	if g.closed {
		g.release <- struct{}{}
	}
	g.mu.Unlock()
}

func (g *WALGate) pass() {
	g.mu.Lock()
	closed, release := g.closed, g.release
	g.mu.Unlock()
	if closed {
		g.entered.Add(1)
		<-release
	}
}

// inject holds the syncs of WAL files (errorfs calls it before every operation of the
// wrapped filesystem).
func (g *WALGate) inject(op errorfs.Op) error {
	if !strings.HasSuffix(op.Path, ".log") {
		return nil
	}
	switch op.Kind {
	case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
		g.pass()
	}
	return nil
}
