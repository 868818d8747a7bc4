package api

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/log"
)

// FuzzFastStatements: whatever the fast path takes, alone or as a transaction, the general
// path takes too and decodes to the same statements (nil and empty parameter lists
// included); whatever it gives up, decodeStatements and parseStatement still answer (the
// general path's statement or 400). The seeds are the statement corpus plus the number and
// string edges the fast path decides itself.
func FuzzFastStatements(f *testing.F) {
	seeds(f, "testdata/statements/*.json")
	for _, s := range []string{
		`"SELECT 1"`, `["SELECT ?", [1, -0, 0.5, 1e400, -1E-400, 9223372036854775807, 9223372036854775808, "x", null, true, false]]`,
		`{"query": "INSERT INTO t VALUES (?)", "params": ["h\u00e9", "\u2028"]}`, `{"params": null, "query": "x"}`,
		`{"query": "x", "query": "y"}`, `{"query": "x", "named_params": {"a": 1}}`, `["x", []]`, `["x"]`,
		`[" \u00a0"]`, `"\u0085"`, `["x", [01]]`, `["x", [1.]]`, `["x", [-]]`, `["x", [1e]]`, `"a\"b"`,
		"\"bad \xff utf8\"", "\"ctl \x01\"", `[ "x" , [ 1 , 2 ] ] `, `{"Query": "x"}`, `{"query": "x",}`,
		`["x", [1,]]`, `["x", [[1, 2]]]`, `["x", [{"a": 1}]]`, "\v\"x\"", `"x" "y"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if st, ok := fastStatement(b); ok {
			want, err := parseStatementJSON(b)
			if err != nil {
				t.Fatalf("%q: the fast path took %+v, the general path refuses: %v", b, st, err)
			}
			if !reflect.DeepEqual(st, want) {
				t.Fatalf("%q: fast %#v, general %#v", b, st, want)
			}
		}
		tx := append(append([]byte{'['}, b...), ']')
		if stmts, ok := fastStatements(tx); ok {
			want, err := decodeStatementsJSON(tx)
			if err != nil {
				t.Fatalf("%q: the fast path took %d statements, the general path refuses: %v", tx, len(stmts), err)
			}
			if !reflect.DeepEqual(stmts, want) {
				t.Fatalf("%q: fast %#v, general %#v", tx, stmts, want)
			}
		}
		if stmts, ok := fastStatements(b); ok {
			want, err := decodeStatementsJSON(b)
			if err != nil || !reflect.DeepEqual(stmts, want) {
				t.Fatalf("%q: fast %#v, general %#v (%v)", b, stmts, want, err)
			}
		}
		if _, err := decodeStatements(tx); err != nil && statusOf(err) != 400 {
			t.Fatalf("%q: %v has status %d, want 400", tx, err, statusOf(err))
		}
	})
}

// TestFastStatementsTake: the bodies clients send go the fast way (else the decoder's gain
// is silently gone): the Go client's object form with the parameter kinds of a row, the
// array forms, and a 100-row INSERT as bench write posts it.
func TestFastStatementsTake(t *testing.T) {
	row := client.Statement{SQL: "INSERT INTO t (id, a, b, c) VALUES (?, ?, ?, ?)",
		Params: []log.Value{log.Integer(7), log.Text("value"), log.Real(2.5), log.Null()}}
	fromClient, err := json.Marshal([]client.Statement{row, {SQL: "DELETE FROM t WHERE id = ?", Params: []log.Value{log.Integer(-1)}}})
	if err != nil {
		t.Fatal(err)
	}
	big := `[{"query":"INSERT INTO t (id, a) VALUES ` + strings.TrimSuffix(strings.Repeat("(?, ?), ", 100), ", ") + `","params":[` +
		strings.TrimSuffix(strings.Repeat(`12345,"some text é",`, 100), ",") + `]}]`
	for _, body := range []string{string(fromClient), `["SELECT 1"]`, `[["INSERT INTO t VALUES (?, ?)", [1, true]]]`, big} {
		stmts, ok := fastStatements([]byte(body))
		if !ok {
			t.Fatalf("%.80s...: the fast path gave up", body)
		}
		want, err := decodeStatementsJSON([]byte(body))
		if err != nil || !reflect.DeepEqual(stmts, want) {
			t.Fatalf("%.80s...: fast %+v, general %+v (%v)", body, stmts, want, err)
		}
	}
	stmts, _ := fastStatements(fromClient)
	if got := stmts[0].Params; len(got) != 4 || !got[0].Equal(log.Integer(7)) || !got[1].Equal(log.Text("value")) || !got[2].Equal(log.Real(2.5)) || !got[3].IsNull() {
		t.Fatalf("params %v", got)
	}
	// What the fast path leaves to the general one still decodes there.
	for _, body := range []string{`[["x", [[1, 2]]]]`, `[{"query": "x", "named_params": {"a": 1}}]`, `["a\"b"]`} {
		if _, ok := fastStatements([]byte(body)); ok {
			t.Fatalf("%s: the fast path took it", body)
		}
		if _, err := decodeStatements([]byte(body)); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
	}
}
