package scenario

import (
	"embed"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

//go:embed testdata/crsqlite/edge.json testdata/crsqlite-pk/edge.json testdata/crsqlite-random.json testdata/crsqlite-random-tx.json
var files embed.FS

// The embedded corpora, by the name Load takes.
const (
	Edge     = "crsqlite/edge.json"
	PKEdge   = "crsqlite-pk/edge.json"
	Random   = "crsqlite-random.json"
	RandomTx = "crsqlite-random-tx.json"
)

// Corpora lists every embedded corpus, in the order All loads them.
var Corpora = []string{Edge, PKEdge, Random, RandomTx}

// EnvVar names extra scenario files (a filepath.SplitList path list) that Extra loads.
const EnvVar = "PATINA_CRSQLITE_SCENARIOS"

// Scenario is one recorded case: replicas that start empty with Schema, Steps run in order,
// then FinalSync; every replica then holds Final (and cr-sqlite's metadata FinalClock).
type Scenario struct {
	// Corpus is the file the scenario came from (one of Corpora, or a path); not in the JSON.
	Corpus      string           `json:"-"`
	Name        string           `json:"name"`
	Description string           `json:"description,omitempty"`
	Schema      []string         `json:"schema"`
	Tables      map[string]Table `json:"tables"`
	Replicas    int              `json:"replicas"`
	SiteIDs     []string         `json:"site_ids"`
	Steps       []Step           `json:"steps"`
	FinalSync   []Pair           `json:"final_sync"`
	Final       Contents         `json:"final"`
	// FinalClock rows are [table, pk, cid, val, col_version, cl] (JSON numbers as float64).
	FinalClock [][]any `json:"final_clock"`
	// FinalClockIdentical is false when cr-sqlite's replicas ended with different clocks
	// (crsqlite-pk only; then FinalClockPerReplica has them). Nil when not recorded.
	FinalClockIdentical  *bool     `json:"final_clock_identical,omitempty"`
	FinalClockPerReplica [][][]any `json:"final_clock_per_replica,omitempty"`
}

// Table is a table's declared column order and primary key order.
type Table struct {
	Columns    []string `json:"columns"`
	PrimaryKey []string `json:"primary_key"`
}

// Contents maps a table to its rows, each a list of SQLite quote() literals in declared
// column order, rows ordered by primary key.
type Contents map[string][][]string

// Pair is a directed sync: every change of replica From, inserted into replica To.
type Pair struct {
	From int `json:"from"`
	To   int `json:"to"`
}

// Step is a local statement (Replica set) or a directed sync (Sync set), with the acting or
// receiving replica's contents After it.
type Step struct {
	Replica *int   `json:"replica,omitempty"`
	SQL     string `json:"sql,omitempty"`
	// Statements is SQL split into its statements when the step was a transaction of
	// several (crsqlite-pk); Statements() works for every corpus.
	Stmts        []string `json:"statements,omitempty"`
	Error        bool     `json:"error,omitempty"`
	ErrorMessage string   `json:"error_message,omitempty"`
	Sync         *Pair    `json:"sync,omitempty"`
	// Changes are the crsql_changes rows the sync moved:
	// [table, pk, cid, val, col_version, db_version, site_id, cl, seq].
	Changes [][]any  `json:"changes,omitempty"`
	After   Contents `json:"after"`
}

// Statements returns the statements of a local step, which ran as one transaction: the
// recorded list when there is one, else SQL split on ";" outside quotes (RandomTx joins its
// statements that way).
func (s Step) Statements() []string {
	if len(s.Stmts) > 0 {
		return s.Stmts
	}
	return splitSQL(s.SQL)
}

// splitSQL splits on semicolons outside '...', "..." and `...` literals and drops empty parts.
func splitSQL(sql string) []string {
	var out []string
	var quote rune
	start := 0
	for i, r := range sql {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0 // a doubled quote closes and reopens: same effect
			}
		case r == '\'' || r == '"' || r == '`':
			quote = r
		case r == ';':
			if p := strings.TrimSpace(sql[start:i]); p != "" {
				out = append(out, p)
			}
			start = i + 1
		}
	}
	if p := strings.TrimSpace(sql[start:]); p != "" {
		out = append(out, p)
	}
	return out
}

// Load returns the scenarios of one embedded corpus (Edge, PKEdge, ...) or, for any other
// name, of the file at that path. A missing, unreadable or empty corpus fails the test.
func Load(tb testing.TB, name string) []Scenario {
	tb.Helper()
	b, err := files.ReadFile("testdata/" + name)
	if err != nil {
		if b, err = os.ReadFile(name); err != nil {
			tb.Fatalf("scenario corpus %s: %v", name, err)
		}
	}
	var out []Scenario
	if err := json.Unmarshal(b, &out); err != nil {
		tb.Fatalf("scenario corpus %s: %v", name, err)
	}
	if len(out) == 0 {
		tb.Fatalf("scenario corpus %s: no scenarios", name)
	}
	for i := range out {
		out[i].Corpus = name
	}
	return out
}

// Extra loads the files named by PATINA_CRSQLITE_SCENARIOS (none when it is unset).
func Extra(tb testing.TB) []Scenario {
	tb.Helper()
	var out []Scenario
	if env := os.Getenv(EnvVar); env != "" {
		for _, f := range filepath.SplitList(env) {
			out = append(out, Load(tb, f)...)
		}
	}
	return out
}

// All returns every recorded scenario: each embedded corpus in Corpora order, then Extra.
func All(tb testing.TB) []Scenario {
	tb.Helper()
	var out []Scenario
	for _, c := range Corpora {
		out = append(out, Load(tb, c)...)
	}
	return append(out, Extra(tb)...)
}
