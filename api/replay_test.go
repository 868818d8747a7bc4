package api_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/internal/testutil"
)

// TestReplay: GET /v1/replay streams a SQLite file holding the view as of the point asked
// for (here the seq after the second write: one row, its first value), and removes it from
// the node; bad points are 400, a point before the compaction horizon is 410 naming the
// oldest exact point.
func TestReplay(t *testing.T) {
	n := newNode(t)
	ctx := context.Background()
	n.exec(t, stmtf("INSERT INTO kv (k, v) VALUES ('a', 1)"))
	point := n.store.LastSeq()
	n.exec(t, stmtf("UPDATE kv SET v = 2 WHERE k = 'a'"), stmtf("INSERT INTO kv (k, v) VALUES ('b', 3)"))

	r, err := n.cl.Replay(ctx, fmt.Sprint(point))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "then.db")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	size, err := io.Copy(f, r)
	r.Close()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err != nil || size != r.Size || r.Seq != point || r.Changesets != uint64(point) {
		t.Fatalf("replay: %d of %d bytes (%v), seq %d (want %d), %d changesets", size, r.Size, err, r.Seq, point, r.Changesets)
	}
	db, err := sql.Open("sqlite", "file:"+file+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var got []string
	rows, err := db.Query("SELECT k, v FROM kv ORDER BY k")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		var v int
		rows.Scan(&k, &v)
		got = append(got, fmt.Sprint(k, "=", v))
	}
	rows.Close()
	if strings.Join(got, ",") != "a=1" {
		t.Fatalf("the view at seq %d: %v, want a=1", point, got)
	}
	testutil.WaitFor(t, 10*time.Second, "the node removes its replay file", func() bool {
		left, _ := filepath.Glob(filepath.Join(n.dir, "replay-*"))
		return len(left) == 0
	})

	for _, until := range []string{"", "0", "x", "2026-13-01T00:00:00Z", "999"} {
		a := n.do(t, http.MethodGet, "/v1/replay?until="+until, "")
		if a.status != http.StatusBadRequest || a.errMsg() == "" {
			t.Fatalf("until=%q: %d %s", until, a.status, a.body)
		}
	}
	if _, err := n.mat.CompactLog(ctx, 0, 0); err != nil {
		t.Fatal(err)
	}
	_, err = n.cl.Replay(ctx, fmt.Sprint(point))
	if client.StatusOf(err) != http.StatusGone || !strings.Contains(err.Error(), "oldest exact point is seq") {
		t.Fatalf("replay before the horizon: %v", err)
	}
	// The end is always exact.
	r, err = n.cl.Replay(ctx, fmt.Sprint(n.store.LastSeq()))
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
}
