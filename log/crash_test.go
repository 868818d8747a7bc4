package log

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The crash test runs its own test binary as a child (TestCrashChild, switched on by this
// environment variable naming the log directory) that appends from several goroutines and
// prints "ack <site> <version>" after each Append returns. The parent SIGKILLs it at a random
// moment and checks the log it left behind.
const crashDirEnv = "PATINA_LOG_CRASH_DIR"

const (
	crashRemoteWriters = 6
	crashMaxPart       = 4 // small, so that the store cuts most changesets into parts
)

var crashLocalSite = MustParseSiteID("c0000000-0000-4000-8000-00000000000f")

func crashSite(w int) SiteID {
	s := SiteID{0xc0}
	s[15] = byte(w + 1)
	return s
}

// crashCS is the content of version v of site: the child writes it, the parent recomputes
// it to check what it reads back byte for byte.
func crashCS(site SiteID, v Version) *Changeset {
	n := 1 + int(v%10)
	cs := &Changeset{Site: site, Version: v, TS: Timestamp(v), Span: OrdRange{First: 0, Last: uint64(n - 1)}, LastOrd: uint64(n - 1)}
	for i := range n {
		cs.Changes = append(cs.Changes, Change{
			Table: "t", PK: MustPackPK(Integer(int64(v)), Integer(int64(i))), CID: "c",
			Val: Text(fmt.Sprintf("%x/%d/%d", site[15], v, i)), ColVersion: uint64(i + 1), CL: 1, Ord: uint64(i),
		})
	}
	return cs
}

// TestCrashChild is the child side; it does nothing in a normal run.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("only run as the child of TestCrashSafety")
	}
	s, err := Open(dir, Options{SiteID: crashLocalSite, MaxPartChanges: crashMaxPart})
	if err != nil {
		fmt.Fprintf(os.Stderr, "child open: %v\n", err)
		os.Exit(3)
	}
	// A bound in case the parent is gone: the child must never outlive the test by much.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var outMu sync.Mutex
	ack := func(site SiteID, v Version) {
		// One write(2) per line, after Append returned: once written, the line is in the
		// pipe even if the process dies the next instant.
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintf(os.Stdout, "ack %s %d\n", hex.EncodeToString(site[:]), v)
	}
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "child: "+format+"\n", args...)
		os.Exit(4)
	}
	vec := s.Vector()
	var wg sync.WaitGroup
	for w := range crashRemoteWriters {
		site := crashSite(w)
		// Resume after the last complete version; a version left partial by the last
		// crash is appended again from its first part (the held part is a duplicate).
		next := Version(1)
		if sv := vec.Sites[site]; sv != nil {
			if m, ok := sv.Versions.Max(); ok {
				next = Version(m) + 1
			}
		}
		wg.Go(func() {
			for v := next; ctx.Err() == nil; v++ {
				cs := crashCS(site, v)
				switch w % 3 {
				case 0: // one changeset per call
					if _, err := s.Append(ctx, cs); err != nil {
						fail("append %v/%d: %v", site, v, err)
					}
					ack(site, v)
				case 1: // two versions in one call
					cs2 := crashCS(site, v+1)
					if _, err := s.Append(ctx, cs, cs2); err != nil {
						fail("append %v/%d-%d: %v", site, v, v+1, err)
					}
					ack(site, v)
					ack(site, v+1)
					v++
				case 2: // a version in two calls, as parts arriving from two peers
					if cs.LastOrd == 0 {
						if _, err := s.Append(ctx, cs); err != nil {
							fail("append %v/%d: %v", site, v, err)
						}
						ack(site, v)
						continue
					}
					mid := cs.LastOrd / 2
					if _, err := s.Append(ctx, slicePart(cs, mid+1, cs.LastOrd)); err != nil {
						fail("append %v/%d second half: %v", site, v, err)
					}
					res, err := s.Append(ctx, slicePart(cs, 0, mid))
					if err != nil {
						fail("append %v/%d first half: %v", site, v, err)
					}
					if !res[0].Complete {
						fail("%v/%d not complete with both halves", site, v)
					}
					ack(site, v)
				}
			}
		})
	}
	wg.Go(func() {
		for ctx.Err() == nil {
			want := s.NextLocalVersion()
			cs := &Changeset{TS: Timestamp(want), Changes: crashCS(crashLocalSite, want).Changes}
			v, _, err := s.AppendLocal(ctx, cs)
			if err != nil {
				fail("append local: %v", err)
			}
			if v != want {
				fail("local version %d, want %d", v, want)
			}
			ack(crashLocalSite, v)
		}
	})
	wg.Wait()
	s.Close()
}

// TestCrashSafety kills an appending child 20 times at random moments, in the same data
// directory, and after each kill checks that every acknowledged changeset is present and
// intact, that the persisted vector and stats agree with the stored data, and that the
// arrival index is dense. The kill schedule comes from a seed printed at the start;
// PATINA_CRASH_SEED=<seed> replays it (the child's own timing still varies from run to run,
// so a replay repeats the schedule of kills, not every interleaving).
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process crash test")
	}
	if os.Getenv(crashDirEnv) != "" {
		t.Skip("child")
	}
	dir := t.TempDir()
	seed := uint64(time.Now().UnixNano())
	if env := os.Getenv("PATINA_CRASH_SEED"); env != "" {
		v, err := strconv.ParseUint(env, 10, 64)
		if err != nil {
			t.Fatalf("PATINA_CRASH_SEED=%q: %v", env, err)
		}
		seed = v
	}
	t.Logf("seed %d (replay with PATINA_CRASH_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 6))
	acked := map[SiteID]map[Version]bool{}
	const rounds = 20
	totalAcks := 0
	for round := range rounds {
		t0 := time.Now()
		fresh := runCrashChild(t, dir, rng)
		t1 := time.Now()
		for k, vs := range fresh {
			if acked[k] == nil {
				acked[k] = map[Version]bool{}
			}
			for v := range vs {
				acked[k][v] = true
				totalAcks++
			}
		}
		checkCrashedLog(t, dir, acked, fresh, round, round == rounds-1)
		t.Logf("round %d: child ran %v, check took %v", round, t1.Sub(t0), time.Since(t1))
	}
	t.Logf("%d rounds, %d acknowledged changesets checked", rounds, totalAcks)
	if totalAcks == 0 {
		t.Fatal("no child ever acknowledged an append")
	}
}

// runCrashChild starts the child, kills it with SIGKILL at a random moment and returns what
// it acknowledged.
func runCrashChild(t *testing.T, dir string, rng *rand.Rand) map[SiteID]map[Version]bool {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acks := map[SiteID]map[Version]bool{}
	first := make(chan struct{})
	readDone := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		seen := false
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 3 || f[0] != "ack" {
				continue // the test framework's own output
			}
			raw, err1 := hex.DecodeString(f[1])
			v, err2 := strconv.ParseUint(f[2], 10, 64)
			if err1 != nil || err2 != nil || len(raw) != 16 {
				readDone <- fmt.Errorf("bad ack line %q", sc.Text())
				return
			}
			site := SiteID(raw)
			if acks[site] == nil {
				acks[site] = map[Version]bool{}
			}
			acks[site][Version(v)] = true
			if !seen {
				seen = true
				close(first)
			}
		}
		readDone <- sc.Err()
	}()
	// Mostly kill while appends are in full swing; sometimes during start-up and recovery.
	var delay time.Duration
	if rng.IntN(8) == 0 {
		delay = time.Duration(rng.IntN(40)) * time.Millisecond
	} else {
		select {
		case <-first:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child acknowledged nothing in 20 s; stderr: %s", stderr.String())
		}
		delay = time.Duration(rng.IntN(100)) * time.Millisecond
	}
	// A timer picks the moment of the fault; nothing waits on it for synchronization.
	<-time.After(delay)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	if err := <-readDone; err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL (%v); stderr: %s", err, stderr.String())
	}
	return acks
}

// checkCrashedLog reopens the log and checks it against what was acknowledged and against
// itself. Every round: Store.Check reads every key space (parts decode under their own keys,
// the persisted vector is what the parts add up to, the arrival index is dense and names each
// complete version once, the counters match); every version ever acknowledged is still held;
// the versions acknowledged in this round and those left partial read back byte for byte.
// In the last round (full), every complete version is read in arrival order and compared.
func checkCrashedLog(t *testing.T, dir string, acked, fresh map[SiteID]map[Version]bool, round int, full bool) {
	t.Helper()
	// The site id matters when the child was killed before it created the directory.
	s, err := Open(dir, Options{SiteID: crashLocalSite, MaxPartChanges: crashMaxPart})
	if err != nil {
		t.Fatalf("round %d: reopen: %v", round, err)
	}
	defer s.Close()
	if s.SiteID() != crashLocalSite {
		t.Fatalf("round %d: site id %v", round, s.SiteID())
	}
	if err := s.Check(); err != nil {
		t.Fatalf("round %d: %v", round, err)
	}
	vec := s.Vector()
	for site, vs := range acked {
		for v := range vs {
			if !vec.Contains(site, v) {
				t.Fatalf("round %d: acknowledged %v/%d is not held complete", round, site, v)
			}
		}
	}
	for site, vs := range fresh {
		for v := range vs {
			got, err := s.Get(site, v)
			if err != nil {
				t.Fatalf("round %d: acknowledged %v/%d: %v", round, site, v, err)
			}
			sameChangeset(t, got, crashCS(site, v))
		}
	}
	// Versions left partial by the kill hold what the child wrote, too.
	for site, sv := range vec.Sites {
		for ver := range sv.Partials {
			for part, err := range s.Scan(site, ver, ver) {
				if err != nil {
					t.Fatal(err)
				}
				sameChangeset(t, part, slicePart(crashCS(site, ver), part.Span.First, part.Span.Last))
			}
		}
	}
	want := Version(1)
	if sv := vec.Sites[crashLocalSite]; sv != nil {
		want = sv.Head() + 1
	}
	if s.NextLocalVersion() != want {
		t.Fatalf("round %d: next local version %d, want %d", round, s.NextLocalVersion(), want)
	}
	if !full {
		return
	}
	complete, _ := vec.Counts()
	all, err := s.Read(0, math.MaxInt)
	if err != nil {
		t.Fatalf("round %d: read: %v", round, err)
	}
	if uint64(len(all)) != complete || s.LastSeq() != Seq(len(all)) {
		t.Fatalf("round %d: read %d changesets, %d complete versions, last seq %d", round, len(all), complete, s.LastSeq())
	}
	for i, cs := range all {
		if cs.Seq != Seq(i+1) {
			t.Fatalf("round %d: changeset %d has seq %d", round, i, cs.Seq)
		}
		sameChangeset(t, cs, crashCS(cs.Site, cs.Version))
	}
}
