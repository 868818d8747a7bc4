package materializer

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/patinadb/patina/log"
)

const crashEnv = "PATINA_MATERIALIZER_CRASH_DIR"

// TestCrashChild is the child process of TestKillAndReopen: it writes until it is killed,
// printing each committed version. It does nothing in a normal run.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("child process of TestKillAndReopen")
	}
	n := openNodeSync(t, dir, log.SiteID{1}, tSchema, func(c *Config) { c.FoldBatch = 8 }, true)
	remote := remoteRows(4000)
	out := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		res, err := n.m.Transact(context.Background(), []Statement{
			{SQL: "INSERT OR REPLACE INTO t (id, x) VALUES (?, ?)", Params: []log.Value{log.Integer(int64(i % 300)), log.Integer(int64(i))}},
			{SQL: "DELETE FROM t WHERE id = ?", Params: []log.Value{log.Integer(int64((i + 150) % 300))}},
		})
		if err != nil {
			fmt.Fprintf(out, "error %v\n", err)
			out.Flush()
			os.Exit(1)
		}
		if i < len(remote) {
			if _, err := n.m.Apply(context.Background(), []*log.Changeset{remote[i]}); err != nil {
				fmt.Fprintf(out, "error %v\n", err)
				out.Flush()
				os.Exit(1)
			}
		}
		fmt.Fprintf(out, "committed %d\n", res.Version)
		out.Flush()
	}
}

// remoteRows makes single-row changesets of a remote site over table t.
func remoteRows(count int) []*log.Changeset {
	out := make([]*log.Changeset, count)
	for i := range out {
		pk := log.MustPackPK(log.Integer(int64(1000 + i%500)))
		out[i] = &log.Changeset{Site: log.SiteID{2}, Version: log.Version(i + 1), Span: log.OrdRange{First: 0, Last: 1}, LastOrd: 1,
			Changes: []log.Change{
				{Table: "t", PK: pk, CID: "x", Val: log.Integer(int64(i)), ColVersion: uint64(1 + i/500), CL: 1, Ord: 0},
				{Table: "t", PK: pk, CID: "y", Val: log.Text("r"), ColVersion: uint64(1 + i/500), CL: 1, Ord: 1},
			}}
	}
	return out
}

// TestKillAndReopen kills a writing process with SIGKILL, reopens its data directory and
// checks that every acknowledged version is in the view, the fold position reached the end
// of the log, and the view equals a rebuild from the log.
func TestKillAndReopen(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	for round := range 3 {
		t.Run(strconv.Itoa(round), func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run", "^TestCrashChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), crashEnv+"="+dir)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			sc := bufio.NewScanner(stdout)
			var acked log.Version
			target := log.Version(50 + 100*round)
			for acked < target && sc.Scan() {
				line := sc.Text()
				if v, ok := strings.CutPrefix(line, "committed "); ok {
					n, _ := strconv.ParseUint(v, 10, 64)
					acked = log.Version(n)
				} else if strings.HasPrefix(line, "error") {
					t.Fatalf("child: %s", line)
				}
			}
			if acked < target {
				t.Fatalf("child stopped after version %d: %v", acked, sc.Err())
			}
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			n := openNode(t, dir, log.SiteID{1}, tSchema, nil)
			if n.m.FoldPosition() != n.store.LastSeq() {
				t.Fatalf("fold position %d, log at %d", n.m.FoldPosition(), n.store.LastSeq())
			}
			for v := log.Version(1); v <= acked; v++ {
				if !n.store.Contains(n.store.SiteID(), v) {
					t.Fatalf("acknowledged version %d is not in the log", v)
				}
			}
			before := snapshot(t, n)
			if err := n.m.Rebuild(context.Background(), nil); err != nil {
				t.Fatal(err)
			}
			if after := snapshot(t, n); after != before {
				t.Fatalf("view after crash differs from a rebuild:\n%s\nvs\n%s", before, after)
			}
			// And it keeps working.
			if res := n.exec(t, "INSERT OR REPLACE INTO t (id, x) VALUES (9999, 1)"); res.Version <= acked {
				t.Fatalf("new version %d after acknowledged %d", res.Version, acked)
			}
		})
	}
}
