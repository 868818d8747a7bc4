package pg

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
)

// FuzzSplitQuery: the lexer never panics, and splitting loses no token: the statements'
// texts, joined by ";", lex to the same non-space tokens as the input minus its separators.
func FuzzSplitQuery(f *testing.F) {
	for _, s := range []string{
		"SELECT 1; SELECT 2", "SELECT 'a;b'; SELECT \"x;y\"", "SELECT $1, $2::int", "/* a /* nested */ ; */ SELECT 1",
		"SELECT $$a;b$$, $t$x$t$", "INSERT INTO t VALUES (E'it\\'s')", "-- c\nSELECT 1", "SELECT '\\x00ff'::bytea",
		"SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		stmts, err := splitQuery(q)
		if err != nil {
			return
		}
		want := 0
		toks, _ := lex(q)
		for _, tk := range toks {
			if tk.kind != tokSpace && tk.kind != tokSemi {
				want++
			}
		}
		got := 0
		for _, st := range stmts {
			got += len(st.words())
			st.verb()
			if _, _, err := st.sqliteText(); err != nil && !strings.Contains(err.Error(), "out of range") {
				t.Fatalf("sqliteText(%q): %v", st.text(), err)
			}
			catalogSQL(st.text())
			classify(st)
			oids := make([]uint32, 4)
			st.inferParams(oids, []string{"t"}, func(string, string) (uint32, bool) { return oidInt8, true })
		}
		if got != want {
			t.Fatalf("split %q: %d tokens in statements, %d in the input", q, got, want)
		}
	})
}

// FuzzDecodeParam: no parameter bytes make the decoder panic, in any format and type.
func FuzzDecodeParam(f *testing.F) {
	f.Add(uint32(oidInt8), int16(1), []byte{0, 0, 0, 0, 0, 0, 0, 1})
	f.Add(uint32(oidBytea), int16(0), []byte(`\x00ff`))
	f.Add(uint32(oidBool), int16(0), []byte("true"))
	f.Add(uint32(oidNumeric), int16(1), []byte{0, 1, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add(uint32(1114), int16(1), []byte{0, 0, 0, 0, 0, 0, 0, 1})
	m := pgtype.NewMap()
	f.Fuzz(func(t *testing.T, oid uint32, format int16, src []byte) {
		v, err := decodeParam(m, oid, format&1, src)
		if err == nil {
			if err := v.Validate(); err != nil {
				t.Fatalf("decoded an invalid value %v: %v", v, err)
			}
		}
	})
}
