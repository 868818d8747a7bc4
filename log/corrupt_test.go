package log

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/patinadb/patina/internal/testutil"
	"github.com/prometheus/client_golang/prometheus"
)

// corruptSSTs overwrites bytes in the middle of every SST of dir (a stopped store) with
// garbage: what a failing disk does to a block.
func corruptSSTs(tb testing.TB, dir string) int { return corruptSSTsAt(tb, dir, 0.25) }

// corruptSSTsAt is corruptSSTs at a fraction of each file's length.
func corruptSSTsAt(tb testing.TB, dir string, at float64) int {
	return testutil.DamageTables(tb, dir, at)
}

// Damage inside a Pebble block is an error of the reads that meet it, never a panic (Pebble's
// default listener calls Fatalf): Scan and Read fail with ErrCorrupt, Corruption reports it,
// and the store still answers what it can (its vector, its stats).
func TestCorruptBlockIsAnError(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{SiteID: siteA})
	for v := Version(1); v <= 300; v++ {
		mustAppend(t, s, makeCS(siteB, v, 20))
	}
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if n := corruptSSTs(t, dir); n == 0 {
		t.Fatal("no sst to corrupt")
	}
	s = openStore(t, dir, Options{NoRepair: true})
	var scanErr error
	for _, err := range s.Scan(siteB, 1, 1000) {
		if err != nil {
			scanErr = err
		}
	}
	if !errors.Is(scanErr, ErrCorrupt) {
		t.Fatalf("scan over a damaged block: %v, want ErrCorrupt", scanErr)
	}
	if _, err := s.Read(0, 1000); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read over a damaged block: %v, want ErrCorrupt", err)
	}
	if err := s.Corruption(); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), ".sst") {
		t.Fatalf("Corruption() = %v, want the damaged file", err)
	}
	_ = s.Stats()
}

// Writes are refused with ErrDiskFull while the disk has less than MinFreeBytes free, and
// resume by themselves once it has more; reads go on meanwhile.
func TestDiskFullRefusesWrites(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{SiteID: siteA, MinFreeBytes: 1 << 62})
	if _, err := s.Append(context.Background(), makeCS(siteB, 1, 2)); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("append on a full disk: %v, want ErrDiskFull", err)
	}
	if _, _, err := s.AppendLocal(context.Background(), makeCS(siteA, 1, 2)); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("local append on a full disk: %v, want ErrDiskFull", err)
	}
	if !s.DiskFull() {
		t.Fatal("DiskFull() = false")
	}
	if _, err := s.Read(0, 10); err != nil {
		t.Fatalf("read on a full disk: %v", err)
	}
	s.faults.freeMu.Lock()
	s.faults.minFree.Store(1) // space freed
	s.faults.freeMu.Unlock()
	testutil.WaitFor(t, 5*time.Second, "writes to resume", func() bool {
		_, err := s.Append(context.Background(), makeCS(siteB, 1, 2))
		return err == nil
	})
	if s.DiskFull() {
		t.Fatal("DiskFull() still true")
	}
}

// Near MinFreeBytes every append asks the file system: the appended bytes do not measure
// what a write takes on disk (the log compresses, the view stores values as they are), so
// a budget of them let the view fill the disk between two checks (TestDiskFullOnTmpfs). On
// a real tmpfs: another file takes the headroom right after an append, and the very next
// append is refused; CheckFree reports the full disk without an append.
func TestDiskFullNearTheThreshold(t *testing.T) {
	mnt := testutil.MountTmpfs(t, 64<<20)
	const minFree = 16 << 20
	s := openStore(t, filepath.Join(mnt, "log"), Options{SiteID: siteA, MinFreeBytes: minFree})
	mustAppend(t, s, makeCS(siteB, 1, 2))
	if s.DiskFull() {
		t.Fatal("DiskFull() on an empty tmpfs")
	}
	if err := os.WriteFile(filepath.Join(mnt, "other"), make([]byte, testutil.FreeBytes(t, mnt)-minFree+1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(context.Background(), makeCS(siteB, 2, 2)); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("append with %d bytes free: %v, want ErrDiskFull", testutil.FreeBytes(t, mnt), err)
	}
	if err := os.Remove(filepath.Join(mnt, "other")); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckFree(); err != nil || s.DiskFull() {
		t.Fatalf("CheckFree after space was freed: %v (DiskFull %v)", err, s.DiskFull())
	}
	mustAppend(t, s, makeCS(siteB, 2, 2))
	if err := os.WriteFile(filepath.Join(mnt, "other"), make([]byte, testutil.FreeBytes(t, mnt)-minFree+1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckFree(); !errors.Is(err, ErrDiskFull) || !s.DiskFull() {
		t.Fatalf("CheckFree with %d bytes free: %v (DiskFull %v), want ErrDiskFull", testutil.FreeBytes(t, mnt), err, s.DiskFull())
	}
}

// Issue 12, item 2: the offline check of a log with a damaged file is an error wrapping
// ErrCorrupt (never a panic) that names the damaged file and the keys it held in the log's
// terms, and the store's metrics count the damage.
func TestCheckReportsDamagedKeys(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{SiteID: siteA})
	for v := Version(1); v <= 300; v++ {
		mustAppend(t, s, makeCS(siteB, v, 20))
	}
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if n := corruptSSTs(t, dir); n == 0 {
		t.Fatal("no sst to corrupt")
	}
	var out strings.Builder
	err := Inspect(dir, &out, InspectOptions{Check: true})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Inspect --check of a damaged log: %v, want ErrCorrupt\n%s", err, out.String())
	}
	for _, want := range []string{"check: FAILED", "damaged file", ".sst", "versions [1-300] of " + siteB.String()} {
		if !strings.Contains(out.String()+err.Error(), want) {
			t.Errorf("the report does not say %q:\n%s", want, out.String())
		}
	}

	s = openStore(t, dir, Options{NoRepair: true})
	for range s.Scan(siteB, 1, 1000) {
	}
	if len(s.Damage()) == 0 {
		t.Fatal("Damage() is empty after a read met the damage")
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			got[mf.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	if got["patina_log_corruptions_total"] < 1 || got["patina_log_damaged_files"] < 1 {
		t.Fatalf("corruption metrics: %v", got)
	}
}
