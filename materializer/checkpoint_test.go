package materializer

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
	"github.com/prometheus/client_golang/prometheus"
)

// writeMany commits n transactions of a 2 KB row each: about n WAL frames of table pages.
func writeMany(t *testing.T, n *node, from, count int) {
	t.Helper()
	pad := log.Text(strings.Repeat("p", 2000))
	for i := from; i < from+count; i++ {
		n.exec(t, "INSERT INTO t (id, x) VALUES (?, ?)", log.Integer(int64(i)), pad)
	}
}

func walAutocheckpoint(t *testing.T, m *Materializer) int {
	t.Helper()
	var pages int
	if err := m.w.c.QueryRowContext(context.Background(), "PRAGMA wal_autocheckpoint").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	return pages
}

// TestCheckpointerCheckpointsBesideTheWriter: with the checkpointer on, the writer's own
// automatic checkpoint is only a safety net, and the checkpointer copies every committed
// frame into the view file once the writes stop (nothing left behind), counted in its
// metrics. Without it, the writer keeps SQLite's threshold.
func TestCheckpointerCheckpointsBesideTheWriter(t *testing.T) {
	reg := prometheus.NewRegistry()
	n := openNode(t, t.TempDir(), log.SiteID{1}, tSchema, func(c *Config) {
		c.Registerer = reg
		c.CheckpointInterval = 5 * time.Millisecond
	})
	if got := walAutocheckpoint(t, n.m); got != checkpointSafetyPages {
		t.Fatalf("writer's wal_autocheckpoint with the checkpointer on: %d, want %d", got, checkpointSafetyPages)
	}
	dbSize := func() int64 {
		fi, err := os.Stat(n.cfg.Path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before := dbSize()
	// Fewer frames than either threshold: only the checkpointer can copy them into the file.
	writeMany(t, n, 1, 300)
	testutil.WaitFor(t, 10*time.Second, "the checkpointer to copy every frame into views.db", func() bool {
		return registryValue(t, reg, "patina_view_checkpoints_total") > 0 &&
			registryValue(t, reg, "patina_view_wal_frames_not_checkpointed") == 0 &&
			dbSize() > before+300*2000
	})
	if got := registryValue(t, reg, "patina_view_checkpoint_failures_total"); got != 0 {
		t.Fatalf("checkpoint failures: %v", got)
	}
	// A rebuild swaps the view file under the checkpointer, which must follow it.
	if err := n.m.Rebuild(context.Background(), nil); err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	if got := walAutocheckpoint(t, n.m); got != checkpointSafetyPages {
		t.Fatalf("writer's wal_autocheckpoint after a rebuild: %d", got)
	}
	runs := registryValue(t, reg, "patina_view_checkpoints_total")
	writeMany(t, n, 1000, 50)
	testutil.WaitFor(t, 10*time.Second, "a checkpoint of the rebuilt view", func() bool {
		return registryValue(t, reg, "patina_view_checkpoints_total") > runs &&
			registryValue(t, reg, "patina_view_wal_frames_not_checkpointed") == 0
	})
	if rows := n.query(t, "SELECT count(*) FROM t"); !rowsEqual(rows, [][]log.Value{{log.Integer(350)}}) {
		t.Fatalf("rows after the rebuild: %v", rows)
	}
	if got := registryValue(t, reg, "patina_view_checkpoint_failures_total"); got != 0 {
		t.Fatalf("checkpoint failures after the rebuild: %v", got)
	}

	off := openNode(t, t.TempDir(), log.SiteID{2}, tSchema, func(c *Config) { c.CheckpointInterval = 0 })
	if got := walAutocheckpoint(t, off.m); got != 1000 { // SQLite's default
		t.Fatalf("writer's wal_autocheckpoint with the checkpointer off: %d, want SQLite's 1000", got)
	}
	if off.m.ckptWake != nil {
		t.Fatal("a checkpointer runs though it is off")
	}
}
