package log

import (
	"io"
	"log/slog"
	"os"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/patinadb/patina/internal/fsmode"
)

// privateFS is the operating system's file system as Pebble sees it, except that every file
// Pebble creates is made fsmode.FileMode (0600) and every directory fsmode.DirMode (0700).
// Pebble's own default creates files 0666 minus the umask: world-readable on most systems.
type privateFS struct{ vfs.FS }

func (p privateFS) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := p.FS.Create(name, cat)
	if err != nil {
		return nil, err
	}
	return f, p.private(f, name)
}

func (p privateFS) OpenReadWrite(name string, cat vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := p.FS.OpenReadWrite(name, cat, opts...)
	if err != nil {
		return nil, err
	}
	return f, p.private(f, name)
}

func (p privateFS) ReuseForWrite(oldname, newname string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := p.FS.ReuseForWrite(oldname, newname, cat)
	if err != nil {
		return nil, err
	}
	return f, p.private(f, newname)
}

func (p privateFS) Lock(name string) (io.Closer, error) {
	c, err := p.FS.Lock(name)
	if err != nil {
		return nil, err
	}
	if err := fsmode.Chmod(name); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (p privateFS) MkdirAll(dir string, _ os.FileMode) error {
	_, err := fsmode.Dir(dir)
	return err
}

// private sets the mode of the file just opened at name; on failure it closes f, so the
// caller returns the error alone.
func (p privateFS) private(f vfs.File, name string) error {
	if err := fsmode.Chmod(name); err != nil {
		f.Close()
		return err
	}
	return nil
}

// Unwrap returns the file system privateFS wraps.
func (p privateFS) Unwrap() vfs.FS { return p.FS }

// openPrivate creates dir for a writable store. On the operating system's file system it
// also tightens what an older version left readable by others (directories 0755, files
// 0644), and says so once.
func openPrivate(fs vfs.FS, dir string, logger *slog.Logger) error {
	if _, ok := fs.(privateFS); !ok {
		return fs.MkdirAll(dir, 0o700)
	}
	tightened, err := fsmode.Dir(dir)
	if err != nil {
		return err
	}
	n, err := fsmode.Tighten(dir)
	if err != nil {
		return err
	}
	// A new, empty directory made by someone else's mkdir (0755) is no news.
	if ents, _ := os.ReadDir(dir); (tightened || n > 0) && len(ents) > 0 {
		logger.Warn("log files were readable by other users; made them private (0700 directories, 0600 files)", "dir", dir, "changed", n+btoi(tightened))
	}
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
