package bench

import (
	"testing"
	"time"
)

// TestSchemaStormSmall: on a real 3-agent cluster, adding a nullable column and an index to
// a table whose rows every node holds sends a few KB cluster-wide (the schema changesets),
// never the rows again (issue 16, "no storms"). Replicating the rows is the yardstick: a
// migration that set off a re-sync or re-broadcast of the table would cost as much.
func TestSchemaStormSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns agents")
	}
	cfg := DefaultSchemaStormConfig()
	cfg.Binary = buildPatinaForCluster(t)
	cfg.Rows, cfg.Batch, cfg.Window = 10000, 10000, time.Second
	cfg.Logf = t.Logf
	res, err := RunSchemaStorm(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	const few = 4 << 10
	if res.LoadBytes < 20*few {
		t.Fatalf("replicating %d rows sent %.0f B: the yardstick is too small to tell a storm", cfg.Rows, res.LoadBytes)
	}
	if res.ColumnBytes > few || res.IndexBytes > few {
		t.Fatalf("a migration sent %.0f B (column) and %.0f B (index) cluster-wide, want at most %d B each; replicating the rows sent %.0f B",
			res.ColumnBytes, res.IndexBytes, few, res.LoadBytes)
	}
}
