package scenario

import (
	"path/filepath"
	"reflect"
	"testing"
)

// TestCorpora checks that every embedded corpus loads with the size its README gives, and
// that Load reads a file by path as well.
func TestCorpora(t *testing.T) {
	want := map[string]int{Edge: 32, PKEdge: 25, Random: 150, RandomTx: 100}
	for _, c := range Corpora {
		scs := Load(t, c)
		if len(scs) != want[c] {
			t.Errorf("%s: %d scenarios, want %d", c, len(scs), want[c])
		}
		for _, sc := range scs {
			if sc.Corpus != c || sc.Name == "" || sc.Replicas < 2 || len(sc.SiteIDs) != sc.Replicas || len(sc.Steps) == 0 {
				t.Fatalf("%s: malformed scenario %+v", c, sc.Name)
			}
		}
	}
	if n := len(Load(t, filepath.Join("testdata", Edge))); n != 32 {
		t.Errorf("by path: %d scenarios", n)
	}
	t.Setenv(EnvVar, filepath.Join("testdata", PKEdge))
	if n := len(All(t)); n != 32+25+150+100+25 {
		t.Errorf("All with %s: %d scenarios", EnvVar, n)
	}
}

// TestStatements checks the split of a step's SQL against the statement lists crsqlite-pk
// recorded beside it (its sql is the statements joined with "; ").
func TestStatements(t *testing.T) {
	n := 0
	for _, sc := range Load(t, PKEdge) {
		for _, st := range sc.Steps {
			if len(st.Stmts) == 0 {
				continue
			}
			n++
			if got := splitSQL(st.SQL); !reflect.DeepEqual(got, st.Stmts) {
				t.Errorf("%s: split %q = %q, want %q", sc.Name, st.SQL, got, st.Stmts)
			}
		}
	}
	if n == 0 {
		t.Fatal("no multi-statement steps in crsqlite-pk")
	}
	for in, want := range map[string][]string{
		"":                                  nil,
		"SELECT 1":                          {"SELECT 1"},
		"INSERT INTO t VALUES ('a;b'); ; X": {"INSERT INTO t VALUES ('a;b')", "X"},
		`UPDATE "we;ird" SET x = 'it''s;'`:  {`UPDATE "we;ird" SET x = 'it''s;'`},
	} {
		if got := splitSQL(in); !reflect.DeepEqual(got, want) {
			t.Errorf("split %q = %q, want %q", in, got, want)
		}
	}
}
