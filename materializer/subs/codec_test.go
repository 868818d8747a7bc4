package subs

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

var update = flag.Bool("update", false, "rewrite the testdata seeds")

// seedValues are the stored-cells cases pinned in testdata/values.
var seedValues = map[string][]log.Value{
	"empty":  {},
	"scalar": {log.Integer(1), log.Real(1), log.Text("1"), log.Blob([]byte{1}), log.Null()},
	"edges":  {log.Integer(-1), log.Integer(1 << 62), log.Real(-0.5), log.Text(""), log.Blob(nil), log.Text("it's \"x\" \u00e9")},
}

func TestValuesRoundTrip(t *testing.T) {
	for name, vals := range seedValues {
		t.Run(name, func(t *testing.T) {
			b := encodeValues(vals)
			path := filepath.Join("testdata", "values", name+".bin")
			if *update {
				os.MkdirAll(filepath.Dir(path), 0o755)
				if err := os.WriteFile(path, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			pinned, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to write it)", err)
			}
			if string(pinned) != string(b) {
				t.Errorf("encoding changed: got %x, pinned %x", b, pinned)
			}
			got, err := decodeValues(b)
			if err != nil {
				t.Fatal(err)
			}
			if !equalCells(got, vals) {
				t.Errorf("round trip: got %v, want %v", got, vals)
			}
		})
	}
}

func TestDecodeValuesRefuses(t *testing.T) {
	for _, b := range []string{"", "\x01", "\x02\x01\x01", "\x01\x05\x01\x09\x01", "\x01\x02\x01\x09\x01", "\x01\x00", "\x01\x01\x00\x00"} {
		if _, err := decodeValues([]byte(b)); err == nil {
			t.Errorf("%x: decoded, want an error", b)
		}
	}
}

// FuzzDecodeValues: the decoder of the cells stored in subs.db never panics, and what it
// decodes re-encodes to something that decodes to the same values.
func FuzzDecodeValues(f *testing.F) {
	ents, _ := os.ReadDir(filepath.Join("testdata", "values"))
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("testdata", "values", e.Name()))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		vals, err := decodeValues(b)
		if err != nil {
			return
		}
		again, err := decodeValues(encodeValues(vals))
		if err != nil {
			t.Fatalf("re-encoded values do not decode: %v", err)
		}
		if !equalCells(again, vals) {
			t.Fatalf("round trip: %v != %v", again, vals)
		}
	})
}

// FuzzAnalyse: the statement analysis takes any text from the network without panicking,
// and a plan it makes renders its restricted form without panicking either.
func FuzzAnalyse(f *testing.F) {
	for _, sh := range shapes {
		f.Add(strings.NewReplacer("{p}", "p", "{c}", `"c"`).Replace(sh.sql))
	}
	f.Add(`SELECT * FROM c WHERE v = ?2 AND w = :a`)
	f.Add(`SELECT "a""b", [x], ` + "`y`" + ` FROM p -- tail`)
	f.Add(`/* unterminated`)
	f.Add(`SELECT x'0102', .5e3, 0x1F FROM p p1, p AS p2 LEFT JOIN c ON 1`)
	info := map[string]*tableInfo{
		"p": {Name: "p", Columns: []string{"pid", "n", "label"}, PK: []string{"pid"}},
		"c": {Name: "c", Columns: []string{"cid", "part", "pid", "v", "w"}, PK: []string{"cid", "part"}},
	}
	isTable := func(n string) bool { _, ok := info[n]; return ok }
	schema := func(n string) (*tableInfo, bool) { ti, ok := info[n]; return ti, ok }
	f.Fuzz(func(t *testing.T, sql string) {
		st := materializer.Statement{SQL: sql, Params: []log.Value{log.Integer(1), log.Text("x")}}
		p, err := analyse(st, isTable, schema)
		if err != nil {
			if !IsBadInput(err) {
				t.Fatalf("error %v is not bad input", err)
			}
			return
		}
		if p.mode == modePK {
			for inst, it := range p.from {
				vals := make([]log.Value, it.npk)
				p.restricted(inst, [][]log.Value{vals})
			}
		}
	})
}
