package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/log"
)

// The chaos workload's disk faults (chaos.go).

// chaosMinFree is the agents' db.min_free_bytes (the default): the disk-full fault leaves
// half of it free.
const chaosMinFree = log.DefaultMinFreeBytes

// chaosTmpfsBytes is the size of node 0's tmpfs between disk-full faults: a cap, not memory
// taken (a tmpfs holds only what is written), large enough for the data of a long run
// (about 1.2 KB a write on each node: 300 MB in 10 minutes).
const chaosTmpfsBytes = 4 << 30

// mountChaosTmpfs mounts a tmpfs at dir for node 0's data, or says why it cannot.
func mountChaosTmpfs(dir string) (string, string) {
	if os.Geteuid() != 0 {
		return "", "a tmpfs for node 0's data (mounted, then shrunk) needs root"
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err.Error()
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", chaosTmpfsBytes), "tmpfs", dir).CombinedOutput(); err != nil {
		return "", fmt.Sprintf("mount tmpfs refused (needs CAP_SYS_ADMIN): %v: %s", err, strings.TrimSpace(string(out)))
	}
	return dir, ""
}

func unmountChaosTmpfs(dir string) {
	// The agents are stopped by now (deferred after); a lazy unmount never blocks the run.
	_ = exec.Command("umount", "-l", dir).Run()
}

// shrinkDisk fills the tmpfs at dir: it shrinks it (a remount; the agent sees the new
// size in statfs) to what it holds plus leave bytes, rather than writing a file that
// would take the memory. The agent keeps writing meanwhile, so a size below what it holds
// by then is retried.
func shrinkDisk(dir string, leave int64) error {
	var err error
	for range 5 {
		var st syscall.Statfs_t
		if err = syscall.Statfs(dir, &st); err != nil {
			return err
		}
		used := int64(st.Blocks-st.Bfree) * int64(st.Bsize)
		if err = chaosIP("mount", "-o", fmt.Sprintf("remount,size=%d", used+leave), dir); err == nil {
			return nil
		}
	}
	return err
}

// growDisk gives the tmpfs at dir its room back.
func growDisk(dir string) error {
	return chaosIP("mount", "-o", fmt.Sprintf("remount,size=%d", chaosTmpfsBytes), dir)
}

// damageLog overwrites 64 bytes of the largest table file of a stopped agent's log, at a
// place the log still opens with (damage in the vector or metadata, read at start, is not
// what a repair can fix; see README), and reports whether it damaged anything.
func damageLog(dir string, rng *rand.Rand) (bool, error) {
	var tried []string
	// Opening the log flushes its write-ahead log into a table file.
	st, err := log.Open(dir, log.Options{NoRepair: true, MinFreeBytes: -1})
	if err != nil {
		return false, err
	}
	st.Close()
	ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	size := func(p string) int64 {
		fi, err := os.Stat(p)
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	slices.SortFunc(ssts, func(a, b string) int { return int(size(b) - size(a)) })
	if len(ssts) == 0 {
		return false, nil
	}
	p := ssts[0]
	orig, err := os.ReadFile(p)
	if err != nil {
		return false, err
	}
	for range 6 {
		b := slices.Clone(orig)
		off := len(b)/10 + rng.IntN(max(len(b)/2, 1))
		for i := off; i < off+64 && i < len(b); i++ {
			b[i] ^= 0x5a
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return false, err
		}
		st, err := log.Open(dir, log.Options{NoRepair: true, MinFreeBytes: -1})
		if err == nil {
			st.Close()
			return true, nil
		}
		tried = append(tried, fmt.Sprintf("offset %d of %d: %v", off, len(b), err))
	}
	if err := os.WriteFile(p, orig, 0o600); err != nil {
		return false, err
	}
	return false, fmt.Errorf("%w: %s", errNoDamage, strings.Join(tried, "; "))
}

// errNoDamage: no place of the log could be damaged with the log still opening.
var errNoDamage = errors.New("every damaged place stops the log from opening")

// readBackup reads a node's whole log through an online backup; its error (the damage it
// meets) is the point, not a failure.
func readBackup(ctx context.Context, cl *client.Client) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	b, err := cl.Backup(ctx)
	if err != nil {
		return
	}
	defer b.Close()
	for b.Next() {
	}
}

// waitRepair waits until the node's log says it repaired itself.
func waitRepair(ctx context.Context, cl *client.Client, d time.Duration) bool {
	err := poll(ctx, d, 50*time.Millisecond, func() (bool, error) {
		repairs, err := metricSum(ctx, cl, "patina_log_repairs_total")
		return err == nil && repairs >= 1, nil
	})
	return err == nil
}

// waitDiskFull waits until the node's health reports its disk full.
func waitDiskFull(ctx context.Context, cl *client.Client, d time.Duration) bool {
	err := poll(ctx, d, 20*time.Millisecond, func() (bool, error) {
		hctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		h, _ := cl.Health(hctx, nil) // a full disk answers 503, with the figures
		return h.DiskFull, nil
	})
	return err == nil
}
