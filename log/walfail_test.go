package log

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/patinadb/patina/internal/testutil"
)

// The WAL-failure test runs its store in a child process: Pebble treats a failed WAL write
// as fatal and may panic on the next commit or WAL rotation, and a panic in the child is a
// crash the parent can survive and look behind.
const (
	walFailDirEnv   = "PATINA_LOG_WALFAIL_DIR"
	walFailDepthEnv = "PATINA_LOG_WALFAIL_DEPTH"
	walFailWriters  = 6
)

// TestWALFailureChild is the child side; it does nothing in a normal run. It appends from
// several writers at once, makes every write and sync of the WAL fail once a quarter of its
// appends were answered, and reports what was answered and how.
func TestWALFailureChild(t *testing.T) {
	dir := os.Getenv(walFailDirEnv)
	if dir == "" {
		t.Skip("only run as the child of TestWALFailureRefusesLaterGroups")
	}
	depth, _ := strconv.Atoi(os.Getenv(walFailDepthEnv))
	var armed atomic.Bool
	fs := testutil.FailingWAL(vfs.Default, &armed)
	s, err := Open(dir, Options{FS: fs, CommitDepth: depth, MaxPartChanges: crashMaxPart, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Fprintf(os.Stderr, "child open: %v\n", err)
		os.Exit(3)
	}
	var outMu sync.Mutex
	say := func(format string, args ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintf(os.Stdout, format+"\n", args...)
	}
	const perWriter = 400
	var answered atomic.Int64
	var wg sync.WaitGroup
	for w := range walFailWriters {
		wg.Go(func() {
			site := crashSite(w)
			for v := Version(1); v <= perWriter; v++ {
				if _, err := s.Append(context.Background(), crashCS(site, v)); err != nil {
					say("refused %s %d", hex.EncodeToString(site[:]), v)
					return
				}
				say("ack %s %d", hex.EncodeToString(site[:]), v)
				if answered.Add(1) == walFailWriters*perWriter/4 {
					armed.Store(true)
				}
			}
		})
	}
	wg.Wait()
	// Once failed, the store refuses at once instead of waiting on a WAL that is gone, and
	// says why (health shows it).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.Append(ctx, crashCS(crashSite(walFailWriters), 1)); err != nil && ctx.Err() == nil && s.CommitFailure() != nil {
		say("refused-after")
	} else {
		say("answered-after %v", err)
	}
	_ = s.Close()
}

// TestWALFailureRefusesLaterGroups is the pipelined commit's failure path: the WAL fails
// while groups are in flight (one syncing, the next already written behind it). No group
// from the failing one on may be answered with success; the child either refuses every
// later append promptly or dies in Pebble's own fatal-error panic; and the directory it
// leaves opens with every answered version in it and a vector that names nothing its data
// lacks.
func TestWALFailureRefusesLaterGroups(t *testing.T) {
	if os.Getenv(walFailDirEnv) != "" {
		t.Skip("child")
	}
	for _, depth := range []int{1, 2, 4} {
		t.Run(fmt.Sprintf("depth=%d", depth), func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestWALFailureChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), walFailDirEnv+"="+dir, walFailDepthEnv+"="+strconv.Itoa(depth))
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			runErr := cmd.Run()
			panicked := strings.Contains(stderr.String(), "panic:") && strings.Contains(stderr.String(), testutil.ErrInjectedWAL.Error())
			if runErr != nil && !panicked {
				t.Fatalf("child: %v\n%s", runErr, stderr.String())
			}
			acked := map[SiteID]Version{}
			refused, after := 0, ""
			sc := bufio.NewScanner(&stdout)
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				switch {
				case len(f) == 3 && (f[0] == "ack" || f[0] == "refused"):
					raw, err1 := hex.DecodeString(f[1])
					v, err2 := strconv.ParseUint(f[2], 10, 64)
					if err1 != nil || err2 != nil || len(raw) != 16 {
						t.Fatalf("bad line %q", sc.Text())
					}
					if f[0] == "refused" {
						refused++
					} else {
						acked[SiteID(raw)] = max(acked[SiteID(raw)], Version(v))
					}
				case len(f) >= 1 && (f[0] == "refused-after" || f[0] == "answered-after"):
					after = sc.Text()
				}
			}
			if len(acked) == 0 {
				t.Fatalf("the child answered nothing\n%s", stderr.String())
			}
			if !panicked {
				if refused == 0 {
					t.Fatal("the WAL failed but every append was answered with success")
				}
				if after != "refused-after" {
					t.Fatalf("after the failure: %q, want a prompt refusal", after)
				}
			}
			t.Logf("child %s; %d writers refused", map[bool]string{true: "died in Pebble's panic", false: "refused and closed"}[panicked], refused)
			r, err := Open(dir, Options{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			defer r.Close()
			if err := r.Check(); err != nil {
				t.Fatal(err)
			}
			for site, last := range acked {
				for v := Version(1); v <= last; v++ {
					got, err := r.Get(site, v)
					if err != nil {
						t.Fatalf("%v/%d was answered before the failure: %v", site, v, err)
					}
					sameChangeset(t, got, crashCS(site, v))
				}
			}
			for site, sv := range r.Vector().Sites {
				for _, rg := range sv.Versions {
					for v := rg.First; v <= rg.Last; v++ {
						if _, err := r.Get(site, Version(v)); err != nil {
							t.Fatalf("the vector holds %v/%d but it does not read back: %v", site, v, err)
						}
					}
				}
			}
		})
	}
}
