package testutil

import (
	"errors"
	"strings"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// ErrInjectedWAL is what FailingWAL's writes and syncs return.
var ErrInjectedWAL = errors.New("injected WAL failure")

// FailingWAL wraps fs so that, while failing is true, every write and sync of a Pebble WAL
// file (*.log) returns ErrInjectedWAL: a dying log disk, as Pebble meets it. Other files
// (tables, MANIFEST) stay healthy, so that what the failure cuts off is the commits alone.
func FailingWAL(fs vfs.FS, failing *atomic.Bool) vfs.FS {
	return errorfs.Wrap(fs, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !failing.Load() || !strings.HasSuffix(op.Path, ".log") {
			return nil
		}
		switch op.Kind {
		case errorfs.OpFileWrite, errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			return ErrInjectedWAL
		}
		return nil
	}))
}
