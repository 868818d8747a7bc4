package api

import (
	"fmt"
	"io/fs"
	"net/http"
	"syscall"
	"testing"

	"github.com/patinadb/patina/log"
)

// TestDiskFullStatus: every way the disk can be full is 507, whoever met it (the log's
// check, a SQLite file, a write's ENOSPC), never 500.
func TestDiskFullStatus(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("append: %w", log.ErrDiskFull),
		fmt.Errorf("store subscription: %w", &fs.PathError{Op: "write", Path: "subs.db", Err: syscall.ENOSPC}),
	} {
		if got := statusOf(err); got != http.StatusInsufficientStorage {
			t.Errorf("statusOf(%v) = %d, want 507", err, got)
		}
	}
}
