package sim

import (
	"context"
	"testing"
	"time"
)

// TestMeasureMembership runs the calibration of the membership model on three real nodes
// (memberlist and QUIC on loopback): a node cut off is seen dead by both others, seen alive
// again after the cut ends, and a joiner is seen by all; the figures are ordered.
func TestMeasureMembership(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := MeasureMembership(ctx, MembershipConfig{Nodes: 3, Rounds: 1, Timeout: 45 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", *res)
	for name, d := range map[string]Delays{"detect": res.Detect, "heal": res.Heal, "join": res.Join} {
		if !(d.FirstMs > 0 && d.FirstMs <= d.LastMs && d.P50Ms <= d.P90Ms && d.P90Ms <= d.MaxMs && d.LastMs <= d.MaxMs) {
			t.Errorf("%s: %+v", name, d)
		}
	}
	if _, err := MeasureMembership(ctx, MembershipConfig{Nodes: 2, Rounds: 1}); err == nil {
		t.Error("2 nodes accepted")
	}
}
