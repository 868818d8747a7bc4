package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"math/rand/v2"
)

// TestOnlineBackupRestore: a running node is backed up over the API while writes go on; the
// backup is restored into a new node's data dir, which joins the cluster and converges with
// the writes made after the backup. Restoring as the live node's own site is refused.
func TestOnlineBackupRestore(t *testing.T) {
	bin := buildPatina(t)
	ports := &clPorts{t: t}
	n0 := newClNode(t, bin, 0, "backup", ports)
	n1 := newClNode(t, bin, 1, "backup", ports)
	ports.release()
	n1.bootstrap = []string{n0.gossip}
	c := &clCluster{t: t, bin: bin, nodes: []*clNode{n0, n1}}
	n0.start()
	w := newClWriter()
	c.writeAll(w, []*clNode{n0}, 100)

	// Writes go on during the backup.
	var stop atomic.Bool
	var wg sync.WaitGroup
	var werr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
		for !stop.Load() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := w.write(ctx, n0, rng)
			cancel()
			if err != nil {
				werr = err
				return
			}
		}
	}()
	file := filepath.Join(t.TempDir(), "online.backup")
	out, err := exec.Command(bin, "backup", "--api-addr", n0.api, "--out", file, "-q").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "backed up") {
		t.Fatalf("online backup: %v\n%s", err, out)
	}
	if st, err := os.Stat(file); err != nil || st.Size() == 0 {
		t.Fatalf("backup file: %v", err)
	}

	// Identity safety: the backed-up site is alive, so restoring as it is refused.
	same := exec.Command(bin, "restore", "--data-dir", filepath.Join(t.TempDir(), "x"), "--in", file, "--site-id", n0.site.String(), "--api-addr", n0.api)
	if out, err := same.CombinedOutput(); exitStatus(err) != 2 || !strings.Contains(string(out), "alive in the cluster") {
		t.Fatalf("restore as the live site: %v\n%s", err, out)
	}
	// As a new site (n1's, unknown to the cluster), the check passes.
	run(t, bin, "restore", "--data-dir", filepath.Join(n1.dir, "data"), "--in", file, "--site-id", n1.site.String(), "--api-addr", n0.api, "--cluster-id", "backup", "-q")

	stop.Store(true)
	wg.Wait()
	if werr != nil {
		t.Fatal(werr)
	}
	// The restored node starts with the backup's data, joins, and catches up the writes made
	// after the backup by sync.
	n1.start()
	c.waitMembers(c.nodes)
	c.writeAll(w, []*clNode{n0, n1}, 20)
	c.waitConverged(w, c.nodes, 60*time.Second)
	c.compareDumps(c.nodes)
}

func exitStatus(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
