package log

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// buildInspectLog writes a small log and closes it: site B versions 1, 2 and 5 complete and
// 6 in part (seqs 0..3 of 9), site A (this node) local versions 1 and 2, one meta key.
func buildInspectLog(t *testing.T) (dir string, arrival []*Changeset) {
	t.Helper()
	dir = t.TempDir()
	s, err := Open(dir, Options{SiteID: siteA})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b1, b2, b5, b6 := makeCS(siteB, 1, 3), makeCS(siteB, 2, 1), makeCS(siteB, 5, 2), makeCS(siteB, 6, 10)
	mustAppend(t, s, b1, b2)
	for i := range 2 {
		cs := &Changeset{TS: Timestamp(1e18 + i), Changes: makeCS(siteA, Version(i+1), 2).Changes}
		if _, _, err := s.AppendLocal(context.Background(), cs); err != nil {
			t.Fatal(err)
		}
		arrival = append(arrival, cs)
	}
	mustAppend(t, s, b5, slicePart(b6, 0, 3))
	if err := s.SetMeta("materializer.fold", []byte{0, 0, 0, 7}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMeta("cluster_id", []byte("prod-eu")); err != nil {
		t.Fatal(err)
	}
	return dir, []*Changeset{b1, b2, arrival[0], arrival[1], b5}
}

func TestInspectSummary(t *testing.T) {
	dir, _ := buildInspectLog(t)
	var out bytes.Buffer
	if err := Inspect(dir, &out, InspectOptions{Check: true}); err != nil {
		t.Fatalf("inspect: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"site_id:   " + siteA.String() + "\n",
		"format:    1 (opened read-only)\n",
		"last_seq:  5\n",
		"versions:  5 complete, 1 partial\n",
		"changes:   14\n",
		"sites:     2\n",
		`meta:      cluster_id = "prod-eu"` + "\n",
		"meta:      materializer.fold = x00000007\n",
		"site " + siteA.String() + " (this node): head 2, 2 versions held, 0 missing [], 0 partial\n",
		"site " + siteB.String() + ": head 6, 3 versions held, 3 missing [3-4 6], 1 partial\n",
		"  partial 6: last_seq 9, holds [0-3], needs [4-9]\n",
		"check: ok\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, `{"seq"`) {
		t.Errorf("changesets printed without being asked for:\n%s", got)
	}
	// Inspecting changed nothing: the store opens and reads the same.
	s := openStore(t, dir, Options{})
	if s.LastSeq() != 5 || s.NextLocalVersion() != 3 {
		t.Fatalf("after inspect: last seq %d, next local %d", s.LastSeq(), s.NextLocalVersion())
	}
}

func TestInspectChangesets(t *testing.T) {
	dir, arrival := buildInspectLog(t)
	tests := []struct {
		name string
		opt  InspectOptions
		want []int // indexes into arrival (seq = index + 1)
	}{
		{"all", InspectOptions{}, []int{0, 1, 2, 3, 4}},
		{"site", InspectOptions{Site: siteA}, []int{2, 3}},
		{"seq range", InspectOptions{FromSeq: 2, ToSeq: 4}, []int{1, 2, 3}},
		{"from", InspectOptions{FromSeq: 5}, []int{4}},
		{"beyond", InspectOptions{FromSeq: 9}, nil},
		{"limit", InspectOptions{Limit: 2}, []int{0, 1}},
		{"site and range", InspectOptions{Site: siteB, FromSeq: 2}, []int{1, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			tt.opt.ChangesetsOnly = true
			if err := Inspect(dir, &out, tt.opt); err != nil {
				t.Fatal(err)
			}
			var got []*Changeset
			sc := bufio.NewScanner(&out)
			for sc.Scan() {
				var cs Changeset
				if err := json.Unmarshal(sc.Bytes(), &cs); err != nil {
					t.Fatalf("line %q is not a changeset: %v", sc.Text(), err)
				}
				got = append(got, &cs)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("%d changesets, want %d", len(got), len(tt.want))
			}
			for i, idx := range tt.want {
				if got[i].Seq != Seq(idx+1) {
					t.Fatalf("changeset %d has seq %d, want %d", i, got[i].Seq, idx+1)
				}
				sameChangeset(t, got[i], arrival[idx])
			}
		})
	}
	// With the summary, the JSON lines follow it.
	var out bytes.Buffer
	if err := Inspect(dir, &out, InspectOptions{Changesets: true, Site: siteA}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if !strings.HasPrefix(lines[0], "site_id:") || !strings.HasPrefix(lines[len(lines)-1], `{"seq":4,`) {
		t.Fatalf("summary then changesets expected:\n%s", out.String())
	}
}

func TestInspectRefuses(t *testing.T) {
	notLog := t.TempDir()
	if err := os.WriteFile(filepath.Join(notLog, "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	live, _ := buildInspectLog(t)
	s := openStore(t, live, Options{})
	tests := []struct {
		name, dir, want string
	}{
		{"missing dir", filepath.Join(t.TempDir(), "nope"), "no such file"},
		{"not a log", notLog, ""},
		{"in use", live, "in use by another process (a running node?)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := Inspect(tt.dir, &out, InspectOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("inspect = %v, want an error saying %q", err, tt.want)
			}
		})
	}
	if _, err := Open(live, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open of a live log: %v, want ErrLocked", err)
	}
	// A directory Inspect refused is left as it was: no log was created in it.
	if _, err := os.Stat(filepath.Join(notLog, "MANIFEST-000001")); err == nil {
		t.Fatal("inspect created a log")
	}
	s.Close()
	ro, err := Open(live, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, err := ro.Append(context.Background(), makeCS(siteB, 9, 1)); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("append read-only: %v", err)
	}
	if _, _, err := ro.AppendLocal(context.Background(), &Changeset{Changes: makeCS(siteA, 1, 1).Changes}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("append local read-only: %v", err)
	}
	if err := ro.SetMeta("k", []byte("v")); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("set meta read-only: %v", err)
	}
	if ro.NextLocalVersion() != 3 {
		t.Fatalf("a refused local append moved the version to %d", ro.NextLocalVersion())
	}
}

// TestCheckFindsCorruption damages each key space in turn and expects Check to name it.
func TestCheckFindsCorruption(t *testing.T) {
	tests := []struct {
		name    string
		corrupt func(t *testing.T, s *Store)
		want    string
	}{
		{"arrival gap", func(t *testing.T, s *Store) { must(t, s.db.Delete(arrivalKey(2), nil)) }, "4 in the arrival index"},
		{"arrival names an unheld version", func(t *testing.T, s *Store) {
			must(t, s.db.Set(arrivalKey(6), arrivalValue(siteB, 3), nil))
		}, "not held complete"},
		{"vector short", func(t *testing.T, s *Store) {
			must(t, s.db.Set(vectorKey(siteB), AppendRanges(nil, RangeSet{{First: 1, Last: 2}}), nil))
		}, "the data holds versions [1-2 5], the vector says [1-2]"},
		{"partial lost", func(t *testing.T, s *Store) { must(t, s.db.Delete(partialKey(siteB, 6), nil)) }, "version 6: the data holds seqs [0-3] of 0-9, the vector says none"},
		{"garbage part", func(t *testing.T, s *Store) {
			must(t, s.db.Set(dataKey(nil, siteB, 5, 0), []byte{1, 2, 3}, nil))
		}, "data key"},
		{"part under another key", func(t *testing.T, s *Store) {
			must(t, s.db.Set(dataKey(nil, siteB, 7, 0), makeCS(siteB, 8, 1).MustEncode(), nil))
		}, "holds " + siteB.String() + "/8"},
		{"short arrival key", func(t *testing.T, s *Store) {
			must(t, s.db.Set([]byte{pfxArrival, 0, 0, 0, 0, 0, 0, 1}, arrivalValue(siteB, 1), nil))
		}, "arrival entry"},
		{"stats", func(t *testing.T, s *Store) {
			var st [16]byte
			binary.BigEndian.PutUint64(st[:], 1)
			must(t, s.db.Set(metaKey(metaStats), st[:], nil))
		}, "stats say 1 changes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, _ := buildInspectLog(t)
			s := openStore(t, dir, Options{})
			if err := s.Check(); err != nil {
				t.Fatalf("check of a sound log: %v", err)
			}
			tt.corrupt(t, s)
			err := s.Check()
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("check = %v, want ErrCorrupt saying %q", err, tt.want)
			}
			var out bytes.Buffer
			if err := s.Inspect(&out, InspectOptions{Check: true}); !errors.Is(err, ErrCorrupt) || !strings.Contains(out.String(), "check: FAILED") {
				t.Fatalf("inspect = %v:\n%s", err, out.String())
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestStats checks the counters an operator graphs against what was appended.
func TestStats(t *testing.T) {
	s := openStore(t, "", Options{SiteID: siteA, MaxPartChanges: 4})
	var wantBytes uint64
	css := []*Changeset{makeCS(siteB, 1, 3), makeCS(siteB, 2, 10), makeCS(siteA, 1, 1)}
	for _, cs := range css {
		cs.Digest, _ = cs.ComputeDigest() // the log stores every whole version with its digest
		mustAppend(t, s, cs)
	}
	partial := makeCS(siteB, 3, 8)
	mustAppend(t, s, slicePart(partial, 0, 2))
	mustAppend(t, s, css[0]) // a duplicate counts as an append, not as data
	for _, cs := range []*Changeset{css[0], slicePart(css[1], 0, 3), slicePart(css[1], 4, 7), slicePart(css[1], 8, 9), css[2], slicePart(partial, 0, 2)} {
		wantBytes += uint64(len(cs.MustEncode()))
	}
	st := s.Stats()
	want := Stats{Versions: 3, Partials: 1, Changes: 17, Bytes: wantBytes, LastSeq: 3, Sites: 2, Appends: 5}
	got := st
	got.DiskBytes, got.Syncs = 0, 0
	if got != want {
		t.Fatalf("stats = %+v, want %+v", got, want)
	}
	if st.DiskBytes == 0 || st.Syncs == 0 || st.Syncs > st.Appends {
		t.Fatalf("disk bytes %d, syncs %d of %d appends", st.DiskBytes, st.Syncs, st.Appends)
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestCollector gathers the store's Prometheus metrics and checks them against Stats.
func TestCollector(t *testing.T) {
	s := openStore(t, "", Options{SiteID: siteA})
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(s.Collector()); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, makeCS(siteB, 1, 3), makeCS(siteB, 2, 2))
	mustAppend(t, s, slicePart(makeCS(siteB, 4, 5), 0, 1))
	if _, _, err := s.AppendLocal(context.Background(), &Changeset{Changes: makeCS(siteA, 1, 1).Changes}); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			for _, l := range m.GetLabel() {
				name += "{" + l.GetValue() + "}"
			}
			switch {
			case m.Gauge != nil:
				got[name] = m.GetGauge().GetValue()
			case m.Counter != nil:
				got[name] = m.GetCounter().GetValue()
			case m.Histogram != nil:
				got[name+"_count"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	want := map[string]float64{
		"patina_log_last_seq": 3, "patina_log_versions{complete}": 3, "patina_log_versions{partial}": 1,
		"patina_log_changes": 8, "patina_log_sites": 2, "patina_log_appends_total": 3,
		"patina_log_syncs_total": 3, "patina_log_append_seconds_count": 3,
		"patina_log_commit_seconds_count": 3, "patina_log_commit_batch_appends_count": 3,
		"patina_log_append_queue_length": 0, "patina_log_tails_waiting": 0,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	if got["patina_log_bytes"] == 0 || got["patina_log_disk_bytes"] == 0 {
		t.Errorf("bytes %v, disk bytes %v", got["patina_log_bytes"], got["patina_log_disk_bytes"])
	}
	// Every synced group fsynced the WAL at least once (Pebble's own histogram, in seconds).
	if n := got["patina_log_wal_fsync_seconds_count"]; n < 3 {
		t.Errorf("WAL fsyncs counted: %v, want at least the 3 synced groups", n)
	}
	for _, f := range fams {
		if f.GetName() != "patina_log_wal_fsync_seconds" {
			continue
		}
		h := f.GetMetric()[0].GetHistogram()
		if mean := h.GetSampleSum() / float64(h.GetSampleCount()); mean <= 0 || mean > 10 {
			t.Errorf("WAL fsync mean %v s: not in seconds?", mean)
		}
	}
}

// TestInspectDamaged: persisted state that does not decode makes Open fail with a
// DecodeError (never a panic), while Inspect still shows what it can and names the damage.
func TestInspectDamaged(t *testing.T) {
	tests := []struct {
		name    string
		corrupt func(t *testing.T, s *Store)
		want    string
	}{
		{"vector value", func(t *testing.T, s *Store) { must(t, s.db.Set(vectorKey(siteB), []byte{1, 0xc1}, nil)) }, "unreadable: vector of " + siteB.String()},
		{"partial value", func(t *testing.T, s *Store) { must(t, s.db.Set(partialKey(siteB, 6), []byte{9}, nil)) }, "unreadable: partial " + siteB.String() + "/6"},
		{"short arrival key", func(t *testing.T, s *Store) {
			must(t, s.db.Set([]byte{pfxArrival, 0, 0, 0, 1}, arrivalValue(siteB, 1), nil))
		}, "unreadable: decode arrival key"},
		{"short vector key", func(t *testing.T, s *Store) { must(t, s.db.Set([]byte{pfxVector, 1}, []byte{1, 0x90}, nil)) }, "unreadable: decode vector key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, _ := buildInspectLog(t)
			s, err := Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			tt.corrupt(t, s)
			s.Close()
			var de *DecodeError
			if _, err := Open(dir, Options{}); !errors.As(err, &de) {
				t.Fatalf("open of a damaged log = %v, want a DecodeError", err)
			}
			var out bytes.Buffer
			err = Inspect(dir, &out, InspectOptions{Check: true})
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("inspect = %v, want ErrCorrupt", err)
			}
			if !strings.Contains(out.String(), tt.want) || !strings.Contains(out.String(), "site_id:   "+siteA.String()) {
				t.Fatalf("inspect output lacks %q or the summary:\n%s", tt.want, out.String())
			}
		})
	}
}

// TestReadShortArrivalKey: a damaged arrival key inside the range Read walks is a
// DecodeError, not a panic. An 8-byte key sorts between seqs 255 and 256, so the test
// pretends the log is 300 long.
func TestReadShortArrivalKey(t *testing.T) {
	s := openStore(t, "", Options{NoSync: true})
	mustAppend(t, s, makeCS(siteB, 1, 1))
	must(t, s.db.Set([]byte{pfxArrival, 0, 0, 0, 0, 0, 0, 1}, arrivalValue(siteB, 1), nil))
	s.mu.Lock()
	s.lastSeq = 300
	s.mu.Unlock()
	var de *DecodeError
	if _, err := s.Read(0, 1000); !errors.As(err, &de) {
		t.Fatalf("read = %v, want a DecodeError", err)
	}
}
