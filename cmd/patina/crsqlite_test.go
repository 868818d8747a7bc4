package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/log"
)

// crsqliteDir holds the scenarios recorded on the real cr-sqlite (see its README.md).
const crsqliteDir = "../../../shared/testdata/crsqlite"

type scenario struct {
	Name     string   `json:"name"`
	Schema   []string `json:"schema"`
	Replicas int      `json:"replicas"`
	SiteIDs  []string `json:"site_ids"`
	Tables   map[string]struct {
		Columns    []string `json:"columns"`
		PrimaryKey []string `json:"primary_key"`
	} `json:"tables"`
	Steps []struct {
		Replica *int   `json:"replica"`
		SQL     string `json:"sql"`
		Error   bool   `json:"error"`
		Sync    *struct {
			From int `json:"from"`
			To   int `json:"to"`
		} `json:"sync"`
		After map[string][][]string `json:"after"`
	} `json:"steps"`
	FinalSync []struct {
		From int `json:"from"`
		To   int `json:"to"`
	} `json:"final_sync"`
	Final map[string][][]string `json:"final"`
}

// TestCRSQLiteScenariosOverHTTP replays the cr-sqlite edge cases through the HTTP API of
// separate agents, one per replica with the scenario's site id: local statements through
// POST /v1/transactions, and each directed sync as GET /v1/changes on the sender and POST
// /v1/changes on the receiver. Every step's "after" and the "final" tables must match what
// the real cr-sqlite recorded, storage classes included (compared as quote() text).
func TestCRSQLiteScenariosOverHTTP(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(crsqliteDir, "edge.json"))
	if err != nil {
		t.Fatalf("the shared scenarios: %v", err)
	}
	var scenarios []scenario
	if err := json.Unmarshal(b, &scenarios); err != nil {
		t.Fatal(err)
	}
	if len(scenarios) == 0 {
		t.Fatal("no scenarios")
	}
	for _, sc := range scenarios {
		t.Run(sc.Name, func(t *testing.T) { replay(t, sc) })
	}
}

func replay(t *testing.T, sc scenario) {
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
func dumpTables(t *testing.T, cl *client.Client, sc scenario) map[string][][]string {
	t.Helper()
	out := map[string][][]string{}
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
