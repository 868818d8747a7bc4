package log

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
	"time"
)

// TestOpenFilesFor: the default table cache is half the process's file limit, within bounds.
func TestOpenFilesFor(t *testing.T) {
	for _, c := range []struct {
		limit uint64
		want  int
	}{{0, MinOpenFiles}, {150, MinOpenFiles}, {1024, 512}, {20000, 10000}, {65536, maxOpenFilesCap}, {1 << 40, maxOpenFilesCap}} {
		if got := openFilesFor(c.limit); got != c.want {
			t.Errorf("openFilesFor(%d) = %d, want %d", c.limit, got, c.want)
		}
	}
	if got := DefaultMaxOpenFiles(); got < MinOpenFiles || got > maxOpenFilesCap {
		t.Errorf("DefaultMaxOpenFiles() = %d, out of bounds", got)
	}
}

// TestMaxOpenFiles: Options.MaxOpenFiles reaches Pebble's table cache. A log of a few hundred
// tiny tables read at random through a cache of 100 keeps at most that many open and opens
// tables again on every pass; a cache bigger than the log opens each table once.
func TestMaxOpenFiles(t *testing.T) {
	const versions = 3000
	run := func(maxOpen int) (tables, open, secondPassMisses float64) {
		s := openStore(t, "", Options{SiteID: siteA, NoSync: true, MaxOpenFiles: maxOpen, tableBytes: 2 << 10})
		for v := Version(1); v <= versions; v += 100 {
			css := make([]*Changeset, 100)
			for i := range css {
				css[i] = benchCS(siteB, v+Version(i))
			}
			mustAppend(t, s, css...)
		}
		// Settle the tables: one manual compaction of every key to the bottom level, after
		// which no automatic compaction has work (a Get of the second pass must find the
		// tables of the first).
		if err := s.db.Compact(context.Background(), []byte{0}, bytes.Repeat([]byte{0xff}, 64), false); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(time.Minute); s.db.Metrics().Compact.NumInProgress > 0; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("compactions still running a minute after the manual one")
			}
		}
		pass := func() {
			for _, v := range rand.Perm(versions) {
				if _, err := s.Get(siteB, Version(v+1)); err != nil {
					t.Fatal(err)
				}
			}
		}
		pass()
		before := gatherLog(t, s)["patina_log_table_cache_lookups_total{miss}"]
		pass()
		got := gatherLog(t, s)
		return got["patina_log_tables"], got["patina_log_open_tables"], got["patina_log_table_cache_lookups_total{miss}"] - before
	}
	tables, open, misses := run(MinOpenFiles)
	if tables < 3*MinOpenFiles {
		t.Fatalf("the log has %v tables: too few to test a cache of %d", tables, MinOpenFiles)
	}
	if open > MinOpenFiles || misses == 0 {
		t.Errorf("cache of %d: %v tables open, %v opened again on the second pass; want at most %d open and some opened again", MinOpenFiles, open, misses, MinOpenFiles)
	}
	tables, open, misses = run(100_000)
	if open <= MinOpenFiles || misses != 0 {
		t.Errorf("cache bigger than the log: %v of %v tables open, %v opened again on the second pass; want more than %d open (every table a Get read), none again", open, tables, misses, MinOpenFiles)
	}
}
