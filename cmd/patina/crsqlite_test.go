package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/internal/scenario"
	"github.com/patinadb/patina/log"
)

// TestCRSQLiteScenariosOverHTTP replays the cr-sqlite edge cases through the HTTP API of
// separate agents, one per replica with the scenario's site id: local statements through
// POST /v1/transactions, and each directed sync as GET /v1/changes on the sender and POST
// /v1/changes on the receiver. Every step's "after" and the "final" tables must match what
// the real cr-sqlite recorded, storage classes included (compared as quote() text).
func TestCRSQLiteScenariosOverHTTP(t *testing.T) {
	scenarios := scenario.Load(t, scenario.Edge) // fails, never skips, when missing
	for _, sc := range scenarios {
		t.Run(sc.Name, func(t *testing.T) { replay(t, sc) })
	}
}

func replay(t *testing.T, sc scenario.Scenario) {
	ctx := context.Background()
	schema := filepath.Join(t.TempDir(), "schema.sql")
	if err := os.WriteFile(schema, []byte(strings.Join(sc.Schema, ";\n")+";\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	clients := make([]*client.Client, sc.Replicas)
	for i := range sc.Replicas {
		site, err := log.ParseSiteID(sc.SiteIDs[i])
		if err != nil {
			t.Fatal(err)
		}
		a := startTestAgent(t, func(c *Config) {
			c.SiteID = site.String()
			c.Schema = []string{schema}
		})
		clients[i] = a.client(t)
	}
	syncPair := func(from, to int) {
		t.Helper()
		var css []*log.Changeset
		for cs, err := range clients[from].Changes(ctx, client.ChangesOptions{}) {
			if err != nil {
				t.Fatalf("changes of replica %d: %v", from, err)
			}
			css = append(css, cs)
		}
		if len(css) == 0 {
			return
		}
		if _, err := clients[to].PostChanges(ctx, css...); err != nil {
			t.Fatalf("ingest %d changesets into replica %d: %v", len(css), to, err)
		}
	}
	for i, st := range sc.Steps {
		var who int
		switch {
		case st.Sync != nil:
			syncPair(st.Sync.From, st.Sync.To)
			who = st.Sync.To
		case st.Replica != nil:
			who = *st.Replica
			_, err := clients[who].Exec(ctx, client.Options{}, client.Statement{SQL: st.SQL})
			if st.Error {
				if code := client.StatusOf(err); code != 400 {
					t.Fatalf("step %d (%s): want a 400 error as cr-sqlite failed, got %v", i, st.SQL, err)
				}
			} else if err != nil {
				t.Fatalf("step %d (%s): %v", i, st.SQL, err)
			}
		default:
			t.Fatalf("step %d: neither a statement nor a sync", i)
		}
		if got := dumpTables(t, clients[who], sc); !reflect.DeepEqual(got, st.After) {
			t.Fatalf("after step %d on replica %d:\n got  %v\n want %v", i, who, got, st.After)
		}
	}
	for _, p := range sc.FinalSync {
		syncPair(p.From, p.To)
	}
	for r := range sc.Replicas {
		if got := dumpTables(t, clients[r], sc); !reflect.DeepEqual(got, sc.Final) {
			t.Errorf("final on replica %d:\n got  %v\n want %v", r, got, sc.Final)
		}
	}
}

// dumpTables reads every table of the scenario in its format: rows of quote()d values in
// declared column order, ordered by the primary key.
func dumpTables(t *testing.T, cl *client.Client, sc scenario.Scenario) scenario.Contents {
	t.Helper()
	out := scenario.Contents{}
	for name, tb := range sc.Tables {
		cols := make([]string, len(tb.Columns))
		for i, c := range tb.Columns {
			cols[i] = fmt.Sprintf(`quote("%s")`, c)
		}
		pk := make([]string, len(tb.PrimaryKey))
		for i, c := range tb.PrimaryKey {
			pk[i] = fmt.Sprintf(`"%s"`, c)
		}
		q := fmt.Sprintf(`SELECT %s FROM "%s" ORDER BY %s`, strings.Join(cols, ", "), name, strings.Join(pk, ", "))
		_, rows, err := cl.QueryAll(context.Background(), client.Options{}, client.Statement{SQL: q})
		if err != nil {
			t.Fatalf("dump %s: %v", name, err)
		}
		res := [][]string{}
		for _, r := range rows {
			line := make([]string, len(r))
			for i, v := range r {
				line[i] = v.Text
			}
			res = append(res, line)
		}
		out[name] = res
	}
	return out
}
