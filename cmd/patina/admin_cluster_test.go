package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/internal/testutil"
	"github.com/patinadb/patina/log"
)

// startGossipAgent opens an in-process agent with gossip on loopback ports, sync rounds an
// hour apart (so only broadcast, or an operator, moves data), closed when the test ends.
func startGossipAgent(t *testing.T, token string, bootstrap ...string) *Agent {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.APIAddr, cfg.GossipAddr, cfg.QUICAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Bootstrap = bootstrap
	cfg.ClusterID = "admin-test"
	cfg.Gossip.SyncInterval = time.Hour
	cfg.API.Authz.BearerToken = token
	// Debug logs, shown when the test fails: a reconcile session failed once in a full run on
	// a loaded machine ("failed": 1 with the gaps filled anyway, most likely by a pending join
	// round; see the wait below), never alone in 74 runs; the sync lines say why.
	out := &testutil.LockedBuffer{}
	a := NewAgent(cfg, slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of the agent on %s:\n%s", a.APIAddr(), out)
		}
	})
	if err := a.Open(context.Background()); err != nil {
		t.Fatalf("open agent: %v", err)
	}
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Errorf("close agent: %v", err)
		}
	})
	return a
}

// TestAdminClusterCommands drives `patina admin gaps`, `reconcile-gaps` and `rejoin` against
// two in-process agents with real gossip, and checks that a node without gossip says 501.
func TestAdminClusterCommands(t *testing.T) {
	const token = "admin-secret"
	a := startGossipAgent(t, token)
	aGossip := a.cluster.(gossipNode).g.GossipAddr()
	b := startGossipAgent(t, token, aGossip)
	testutil.WaitFor(t, 30*time.Second, "b to join a", func() bool { return len(b.cluster.Members()) == 2 })
	// A member coming up starts a sync round on each side (and one asked for while another
	// ran follows it); after those, nothing syncs for an hour. Waiting for the first rounds
	// alone once let a pending one run beside the reconcile below.
	testutil.WaitFor(t, 30*time.Second, "the sync rounds of the join", func() bool {
		ga, gb := a.cluster.(gossipNode).g, b.cluster.(gossipNode).g
		return ga.Stats().SyncRounds >= 1 && gb.Stats().SyncRounds >= 1 && ga.SyncIdle() && gb.SyncIdle()
	})

	ctx := context.Background()
	clB, _ := client.New(b.APIAddr(), client.WithToken(token))
	// Versions 1-3 of a foreign site reach a's log directly, as versions whose broadcast was
	// lost (the fold of what the log holds broadcasts nothing); b holds only version 3, so it
	// knows of 2 missing versions that only sync can bring.
	foreign := log.MustParseSiteID("00000000-0000-0000-0000-0000000000f0")
	cs := func(v log.Version) *log.Changeset {
		return &log.Changeset{Site: foreign, Version: v, Kind: log.KindData, Span: log.OrdRange{First: 0, Last: 0}, LastOrd: 0,
			TS: log.Timestamp(time.Now().UnixNano()), Changes: []log.Change{{Table: "kv",
				PK: log.MustPackPK(log.Integer(int64(v))), CID: "v", Val: log.Integer(int64(v)), ColVersion: 1, CL: 1}}}
	}
	if _, err := a.store.Append(ctx, cs(1), cs(2), cs(3)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.Append(ctx, cs(3)); err != nil {
		t.Fatal(err)
	}
	bAddr := b.APIAddr()

	var gaps client.Gaps
	if err := json.Unmarshal([]byte(cli(t, "admin", "gaps", "--api-addr", bAddr, "--token", token)), &gaps); err != nil {
		t.Fatal(err)
	}
	if gaps.Total != 2 || gaps.Sites[foreign] != 2 {
		t.Fatalf("gaps before: %+v, want 2 of the foreign site", gaps)
	}
	// The admin scope is required.
	if _, err := cliErr(t, "admin", "gaps", "--api-addr", bAddr); exitCode(err) != 2 {
		t.Errorf("gaps without a token: exit %d (%v), want 2", exitCode(err), err)
	}

	var rep client.ReconcileReport
	out := cli(t, "admin", "reconcile-gaps", "--api-addr", bAddr, "--token", token)
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.Complete || rep.Before[foreign] != 2 || len(rep.After) != 0 || rep.Sessions < 1 || rep.Peers != 1 {
		t.Errorf("reconcile-gaps: %s", out)
	}
	st, err := clB.SyncState(ctx)
	if err != nil || st.Heads[foreign] != 3 || len(st.Need[foreign]) != 0 {
		t.Errorf("b's sync state after reconcile: %+v %v", st, err)
	}

	var rj client.RejoinReport
	out = cli(t, "admin", "rejoin", "--api-addr", bAddr, "--token", token)
	if err := json.Unmarshal([]byte(out), &rj); err != nil {
		t.Fatal(err)
	}
	if rj.Contacted < 1 || !slices.Contains(rj.Addresses, aGossip) || rj.Alive != 1 {
		t.Errorf("rejoin: %s; want %s contacted", out, aGossip)
	}

	// Without gossip there is no cluster to rejoin or reconcile with: 501, exit 1; gaps are
	// the node's own.
	lone := startTestAgent(t, nil)
	for _, cmd := range []string{"rejoin", "reconcile-gaps"} {
		_, err := cliErr(t, "admin", cmd, "--api-addr", lone.APIAddr())
		if exitCode(err) != 1 || !strings.Contains(err.Error(), "without gossip") {
			t.Errorf("%s on a node without gossip: exit %d, %v", cmd, exitCode(err), err)
		}
	}
	if out := cli(t, "admin", "gaps", "--api-addr", lone.APIAddr()); !strings.Contains(out, `"total": 0`) {
		t.Errorf("gaps on a lone node: %s", out)
	}
}
