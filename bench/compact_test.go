package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/patinadb/patina/log"
)

// TestRunCompact: the workload runs end to end on a small churn (its fresh-node catch-up is
// checked against the source inside), compaction leaves fewer changes and bytes than the
// baseline, and the report holds the ratios.
func TestRunCompact(t *testing.T) {
	res, err := RunCompact(context.Background(), CompactConfig{Rows: 20, Updates: []int{100, 300}, Writers: 4, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Runs) != 4 {
		t.Fatalf("%d runs, want 4", len(res.Runs))
	}
	for i := 0; i < 4; i += 2 {
		off, on := res.Runs[i], res.Runs[i+1]
		if off.Compacted || !on.Compacted || on.LogChanges >= off.LogChanges || on.LogBytes >= off.LogBytes || on.Cleared == 0 {
			t.Fatalf("compaction saved nothing: off %+v, on %+v", off, on)
		}
	}
	if s := res.String(); !strings.Contains(s, "retention 0s / forever") || !strings.Contains(s, "300 vs 100 updates: catch-up") {
		t.Fatalf("report:\n%s", s)
	}
}

// TestRetryBusy: the final forced pass waits out a background pass (log.ErrCompactBusy)
// instead of failing the run, and gives up only on another error or a cancelled context.
func TestRetryBusy(t *testing.T) {
	calls := 0
	err := retryBusy(context.Background(), func() error {
		calls++
		if calls < 3 {
			return fmt.Errorf("pass: %w", log.ErrCompactBusy)
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("err %v after %d calls, want nil after 3", err, calls)
	}
	boom := errors.New("boom")
	if err := retryBusy(context.Background(), func() error { return boom }); err != boom {
		t.Fatalf("err %v, want boom", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := retryBusy(ctx, func() error { return log.ErrCompactBusy }); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
}
