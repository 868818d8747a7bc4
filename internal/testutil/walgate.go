package testutil

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
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
func NewWALGate(fs vfs.FS) *WALGate { return &WALGate{FS: fs} }

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

func (g *WALGate) wrap(f vfs.File, name string, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return gateFile{File: f, g: g}, nil
}

// Create, ReuseForWrite and OpenReadWrite wrap the WAL files they open.
func (g *WALGate) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := g.FS.Create(name, c)
	return g.wrap(f, name, err)
}

func (g *WALGate) ReuseForWrite(old, name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := g.FS.ReuseForWrite(old, name, c)
	return g.wrap(f, name, err)
}

func (g *WALGate) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := g.FS.OpenReadWrite(name, c, opts...)
	return g.wrap(f, name, err)
}

type gateFile struct {
	vfs.File
	g *WALGate
}

func (f gateFile) Sync() error     { f.g.pass(); return f.File.Sync() }
func (f gateFile) SyncData() error { f.g.pass(); return f.File.SyncData() }
func (f gateFile) SyncTo(n int64) (bool, error) {
	f.g.pass()
	return f.File.SyncTo(n)
}
