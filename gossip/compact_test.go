package gossip

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
)

// TestSyncSendsClearedRanges: a node whose log was compacted (most versions cleared, one
// trimmed) serves a new node by sync; the new node ends with the same vector, the cleared
// versions as cleared ranges with no payload, the trimmed version as trimmed, and a log
// that passes Check. The sender's sync counted the cleared versions as ranges.
func TestSyncSendsClearedRanges(t *testing.T) {
	ctx := context.Background()
	a := startNode(t)
	for i := range 40 {
		// No broadcast: only sync can carry these.
		cs := &log.Changeset{Kind: log.KindData}
		for j := range 2 {
			cs.Changes = append(cs.Changes, log.Change{Table: "t", PK: log.MustPackPK(log.Integer(int64(i*2 + j))), CID: "v",
				Val: log.Integer(int64(i)), ColVersion: 1, CL: 1})
		}
		if _, _, err := a.st.AppendLocal(ctx, cs); err != nil {
			t.Fatal(err)
		}
	}
	// Versions 1..30 are superseded entirely, version 31 loses its first change.
	judge := func(_ context.Context, css []*log.Changeset) ([][]log.Dominator, error) {
		out := make([][]log.Dominator, len(css))
		for i, cs := range css {
			out[i] = make([]log.Dominator, len(cs.Changes))
			for j := range cs.Changes {
				if cs.Version <= 30 || (cs.Version == 31 && j == 0) {
					out[i][j] = log.Dominator{Site: cs.Site, Version: 40}
				}
			}
		}
		return out, nil
	}
	res, err := a.st.Compact(ctx, log.CompactOptions{Through: a.st.LastSeq(), Judge: judge})
	if err != nil || res.Cleared != 30 || res.Rewritten != 1 {
		t.Fatalf("compact: %+v, %v", res, err)
	}
	b := startNode(t, withBootstrap(a))
	testutil.WaitFor(t, 30*time.Second, "the new node holds what the compacted one holds", func() bool {
		return b.st.Vector().Equal(a.st.Vector())
	})
	sa, sb := a.st.Vector().Sites[a.site], b.st.Vector().Sites[a.site]
	if !reflect.DeepEqual(sb.Cleared, log.RangeSet{{First: 1, Last: 30}}) || !reflect.DeepEqual(sa.Cleared, sb.Cleared) {
		t.Fatalf("cleared: sender %v, receiver %v", sa.Cleared, sb.Cleared)
	}
	if got, err := b.st.Get(a.site, 31); err != nil || !got.Compacted || len(got.Changes) != 1 {
		t.Fatalf("trimmed version on the receiver: %+v, %v", got, err)
	}
	if st, sa := b.st.Stats(), a.st.Stats(); st.Changes != sa.Changes || st.Bytes != sa.Bytes {
		t.Fatalf("receiver holds %d changes, %d bytes; sender %d, %d", st.Changes, st.Bytes, sa.Changes, sa.Bytes)
	}
	if err := b.st.Check(); err != nil {
		t.Fatalf("receiver's log: %v", err)
	}
}
