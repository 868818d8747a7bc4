package materializer

import (
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/patinadb/patina/log"
)

// TestIsDiskFull: a real SQLITE_FULL (a file held to its max_page_count), the log's refusal
// and ENOSPC are the disk's lack of space, wrapped or not; other failures are not.
func TestIsDiskFull(t *testing.T) {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "full.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, q := range []string{"CREATE TABLE t (v BLOB)", "PRAGMA max_page_count = 8"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(q, err)
		}
	}
	var full error
	for i := 0; i < 100 && full == nil; i++ {
		_, full = db.Exec("INSERT INTO t VALUES (?)", make([]byte, 4096))
	}
	if full == nil || !strings.Contains(full.Error(), "full") {
		t.Fatalf("no SQLITE_FULL after 100 rows in 8 pages: %v", full)
	}
	_, constraint := db.Exec("SELECT * FROM no_such_table")
	for _, c := range []struct {
		err  error
		want bool
	}{
		{full, true},
		{fmt.Errorf("store subscription: %w", full), true},
		{fmt.Errorf("append: %w", log.ErrDiskFull), true},
		{&fs.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}, true},
		{constraint, false},
		{errors.New("database or disk is full"), false}, // words alone are not the code
		{nil, false},
	} {
		if got := IsDiskFull(c.err); got != c.want {
			t.Errorf("IsDiskFull(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
