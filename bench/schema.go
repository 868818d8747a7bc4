package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/patinadb/patina/api/client"
)

// SchemaStormConfig configures the migration-storm workload: a cluster of Nodes agents
// holds Rows rows; a nullable column and then an index are added on one node; the bytes
// every node's gossip sends (broadcast and sync frames) are summed over a window after each
// migration and over an idle window of the same length just before (the baseline: sync
// rounds that find nothing to send).
type SchemaStormConfig struct {
	// Binary is the patina executable to spawn.
	Binary string
	Nodes  int
	// Rows are loaded on the first node in transactions of Batch rows, and replicated to
	// every node before the measurement.
	Rows, Batch int
	// Window is how long each measurement sums bytes.
	Window time.Duration
	// Dir holds the agents' data; empty means a temp dir, removed after.
	Dir  string
	Logf func(format string, args ...any)
}

// DefaultSchemaStormConfig is 3 nodes, 1M rows, 5 s windows.
func DefaultSchemaStormConfig() SchemaStormConfig {
	return SchemaStormConfig{Nodes: 3, Rows: 1_000_000, Batch: 50_000, Window: 5 * time.Second}
}

// Validate reports the first problem of c.
func (c *SchemaStormConfig) Validate() error {
	switch {
	case c.Binary == "":
		return errors.New("bench schema: no patina binary")
	case c.Nodes < 2:
		return fmt.Errorf("bench schema: %d nodes; want at least 2", c.Nodes)
	case c.Rows <= 0 || c.Batch <= 0:
		return errors.New("bench schema: rows and batch must be positive")
	case c.Window <= 0:
		return errors.New("bench schema: window must be positive")
	}
	return nil
}

// SchemaStormResult is what the workload measured. Bytes are summed over every node.
type SchemaStormResult struct {
	Nodes, Rows int
	// LoadBytes is what replicating the rows sent: what a re-sync of every row would cost.
	LoadBytes float64
	LoadTime  time.Duration
	// IdleBytes is the baseline window; ColumnBytes and IndexBytes the windows that start
	// with each migration; *Visible is when the last node showed the change.
	Window                  time.Duration
	IdleBytes               float64
	ColumnBytes, IndexBytes float64
	ColumnVisible           time.Duration
	IndexVisible            time.Duration
	// Changesets sent cluster-wide in each window.
	IdleChangesets, ColumnChangesets, IndexChangesets float64
}

func (r SchemaStormResult) String() string {
	return fmt.Sprintf(`rows: %d on %d nodes, loaded and replicated in %v (%.1f MB sent)
window %v: idle %.0f B (%.0f changesets); add nullable column %.0f B (%.0f changesets, on every node after %v); add index %.0f B (%.0f changesets, on every node after %v)
above the idle baseline: column %+.0f B, index %+.0f B`,
		r.Rows, r.Nodes, r.LoadTime.Round(time.Millisecond), r.LoadBytes/1e6,
		r.Window, r.IdleBytes, r.IdleChangesets, r.ColumnBytes, r.ColumnChangesets, r.ColumnVisible.Round(time.Millisecond),
		r.IndexBytes, r.IndexChangesets, r.IndexVisible.Round(time.Millisecond),
		r.ColumnBytes-r.IdleBytes, r.IndexBytes-r.IdleBytes)
}

const stormSchema = "CREATE TABLE storm (id INTEGER NOT NULL PRIMARY KEY, v TEXT, n INTEGER);\n"

// RunSchemaStorm runs the workload. It starts and stops its own agents.
func RunSchemaStorm(ctx context.Context, cfg SchemaStormConfig) (res SchemaStormResult, err error) {
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	logf := quiet(cfg.Logf)
	res.Nodes, res.Rows, res.Window = cfg.Nodes, cfg.Rows, cfg.Window
	dir, schema, cleanup, err := workdir(cfg.Dir, "patina-bench-schema-", stormSchema)
	if err != nil {
		return res, err
	}
	defer cleanup()
	agents, kill, err := startAgents(ctx, cfg.Binary, dir, schema, cfg.Nodes, 4, nil)
	defer kill()
	if err != nil {
		return res, err
	}
	sent := func(name string) (float64, error) {
		var sum float64
		for _, a := range agents {
			v, err := metricSum(ctx, a.cl, name)
			if err != nil {
				return 0, err
			}
			sum += v
		}
		return sum, nil
	}
	bytesNow := func() (float64, float64, error) {
		b, err := sent("patina_gossip_bytes_sent_total")
		if err != nil {
			return 0, 0, err
		}
		c, err := sent("patina_gossip_changesets_sent_total")
		return b, c, err
	}

	// Load.
	start := time.Now()
	b0, _, err := bytesNow()
	if err != nil {
		return res, err
	}
	for lo := 1; lo <= cfg.Rows; lo += cfg.Batch {
		hi := min(lo+cfg.Batch-1, cfg.Rows)
		q := fmt.Sprintf("WITH RECURSIVE s(i) AS (SELECT %d UNION ALL SELECT i + 1 FROM s WHERE i < %d) "+
			"INSERT INTO storm (id, v, n) SELECT i, 'row ' || i, i %% 1000 FROM s", lo, hi)
		if _, err := agents[0].cl.Exec(ctx, client.Options{Timeout: 5 * time.Minute}, client.Stmt(q)); err != nil {
			return res, fmt.Errorf("load rows %d..%d: %w", lo, hi, err)
		}
	}
	logf("bench schema: %d rows written on node 0 in %v; waiting for every node", cfg.Rows, time.Since(start).Round(time.Millisecond))
	err = poll(ctx, 30*time.Minute, 250*time.Millisecond, func() (bool, error) {
		for _, a := range agents {
			if n, err := countRows(ctx, a, "SELECT count(*) FROM storm"); err != nil || n != int64(cfg.Rows) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return res, fmt.Errorf("replicate the rows: %w", err)
	}
	res.LoadTime = time.Since(start)
	b1, _, err := bytesNow()
	if err != nil {
		return res, err
	}
	res.LoadBytes = b1 - b0
	logf("bench schema: every node holds %d rows after %v", cfg.Rows, res.LoadTime.Round(time.Millisecond))

	// window sums the bytes sent from now for cfg.Window, running migrate (if any) first
	// and noting when every node shows the change.
	window := func(migrate string, visible func(*client.Schema) bool) (bytes, css float64, seen time.Duration, err error) {
		bStart, cStart, err := bytesNow()
		if err != nil {
			return 0, 0, 0, err
		}
		t0 := time.Now()
		if migrate != "" {
			if _, err := agents[0].cl.Migrate(ctx, migrate); err != nil {
				return 0, 0, 0, fmt.Errorf("migrate: %w", err)
			}
			err = poll(ctx, time.Minute, 5*time.Millisecond, func() (bool, error) {
				for _, a := range agents {
					s, err := a.cl.Schema(ctx)
					if err != nil || !visible(s) {
						return false, nil
					}
				}
				return true, nil
			})
			if err != nil {
				return 0, 0, 0, fmt.Errorf("wait for the migration on every node: %w", err)
			}
			seen = time.Since(t0)
		}
		// The rest of the window: a measurement period, not synchronization.
		if rest := cfg.Window - time.Since(t0); rest > 0 {
			select {
			case <-time.After(rest):
			case <-ctx.Done():
				return 0, 0, 0, ctx.Err()
			}
		}
		bEnd, cEnd, err := bytesNow()
		return bEnd - bStart, cEnd - cStart, seen, err
	}
	if res.IdleBytes, res.IdleChangesets, _, err = window("", nil); err != nil {
		return res, err
	}
	logf("bench schema: idle window %.0f B", res.IdleBytes)
	res.ColumnBytes, res.ColumnChangesets, res.ColumnVisible, err = window(
		"CREATE TABLE storm (id INTEGER NOT NULL PRIMARY KEY, v TEXT, n INTEGER, note TEXT)",
		func(s *client.Schema) bool {
			return len(s.Tables) == 1 && strings.Join(s.Tables[0].Columns, ",") == "id,v,n,note"
		})
	if err != nil {
		return res, err
	}
	res.IndexBytes, res.IndexChangesets, res.IndexVisible, err = window(
		"CREATE INDEX storm_n ON storm (n)",
		func(s *client.Schema) bool { return len(s.Tables) == 1 && len(s.Tables[0].Indexes) == 1 })
	if err != nil {
		return res, err
	}
	for i, a := range agents {
		if n, err := countRows(ctx, a, "SELECT count(*) FROM storm WHERE note IS NULL"); err != nil || n != int64(cfg.Rows) {
			return res, fmt.Errorf("node %d after the migrations: %d rows with the new column, %v", i, n, err)
		}
	}
	return res, nil
}

func countRows(ctx context.Context, a *benchAgent, q string) (int64, error) {
	_, rows, err := a.cl.QueryAll(ctx, client.Options{}, client.Stmt(q))
	if err != nil {
		return 0, err
	}
	if len(rows) != 1 || len(rows[0]) != 1 {
		return 0, fmt.Errorf("%q: %d rows", q, len(rows))
	}
	return rows[0][0].Int, nil
}

// metricSum sums every sample of one metric on an agent's /metrics page. A name with a
// brace (`name{label="x"`) sums the samples whose first labels are those.
func metricSum(ctx context.Context, cl *client.Client, name string) (float64, error) {
	text, err := cl.Metrics(ctx)
	if err != nil {
		return 0, err
	}
	sum, _, err := metricSamples(text, name)
	return sum, err
}

// metricSamples sums the samples of one metric in a /metrics page (a name with a brace as
// in metricSum) and counts them, so that a caller can tell a metric at 0 from one the page
// does not have.
func metricSamples(text, name string) (sum float64, n int, err error) {
	prefix := strings.Contains(name, "{")
	for _, line := range strings.Split(text, "\n") {
		if (prefix && strings.HasPrefix(line, name)) || strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{") {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				return 0, 0, fmt.Errorf("metric %s: %w", name, err)
			}
			sum += v
			n++
		}
	}
	return sum, n, nil
}
