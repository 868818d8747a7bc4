// Package fsmode keeps a node's data private to the user that runs it: directories 0700,
// files 0600. The log, the view and the agent create their files through it, and tighten what
// an older version (or a careless copy) left readable by others.
//
// It imports nothing of Patina's, so every package may use it. Invariant: after Dir(d) and
// Tighten(d) no entry under d grants any permission to group or others (fsmode_test.go).
package fsmode

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

const (
	// DirMode is the mode of every directory a node creates.
	DirMode os.FileMode = 0o700
	// FileMode is the mode of every file a node creates.
	FileMode os.FileMode = 0o600
)

// loose reports whether m grants anything to group or others.
func loose(m os.FileMode) bool { return m.Perm()&0o077 != 0 }

// Dir creates dir (and its parents) with DirMode. An existing dir that grants anything to
// group or others is tightened to DirMode; tightened says so, for the caller to log. Only dir
// itself is tightened, not its parents: those may be shared (/var/lib, a home directory).
func Dir(dir string) (tightened bool, err error) {
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return false, err
	}
	st, err := os.Stat(dir)
	if err != nil {
		return false, err
	}
	if !loose(st.Mode()) {
		return false, nil
	}
	if err := os.Chmod(dir, DirMode); err != nil {
		return false, err
	}
	return true, nil
}

// Tighten walks dir and sets every directory under it that is looser than DirMode to DirMode
// and every regular file looser than FileMode to FileMode. It returns how many entries it
// changed. Symbolic links are neither followed nor changed.
func Tighten(dir string) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while we walked (a compaction)
			}
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !loose(info.Mode()) {
			return nil
		}
		mode := FileMode
		if d.IsDir() {
			mode = DirMode
		} else if !d.Type().IsRegular() {
			return nil
		}
		if err := os.Chmod(p, mode); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		n++
		return nil
	})
	return n, err
}

// File creates path with FileMode if it does not exist, and tightens it to FileMode if it
// does and is looser. SQLite creates its -wal and -shm files with the mode of the database
// file, so a view created through File keeps all three private.
func File(path string) (tightened bool, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, FileMode)
	if err != nil {
		return false, err
	}
	st, err := f.Stat()
	if err == nil && loose(st.Mode()) {
		err = f.Chmod(FileMode)
		tightened = err == nil
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return tightened, err
}

// Chmod sets an existing file created by a library with a looser mode (Pebble creates its
// files 0666 minus the umask) to FileMode.
func Chmod(path string) error { return os.Chmod(path, FileMode) }
