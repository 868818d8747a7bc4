package sqltok

import (
	"slices"
	"strings"
	"testing"
)

func kinds(toks []Token) []Kind {
	out := make([]Kind, len(toks))
	for i, t := range toks {
		out[i] = t.Kind
	}
	return out
}

func TestTokenize(t *testing.T) {
	for _, tt := range []struct {
		sql   string
		texts []string
		kinds []Kind
	}{
		{`SELECT a, "b""c", [d e], 'it''s', X'0A', 1.5e+3, 0x1F FROM t -- done`,
			[]string{"SELECT", "a", ",", `"b""c"`, ",", "[d e]", ",", "'it''s'", ",", "X'0A'", ",", "1.5e+3", ",", "0x1F", "FROM", "t"},
			[]Kind{Word, Word, Punct, Quoted, Punct, Quoted, Punct, String, Punct, Blob, Punct, Number, Punct, Number, Word, Word}},
		{`a<=b/*x*/<>c->>'$.k'`,
			[]string{"a", "<=", "b", "<>", "c", "->>", "'$.k'"},
			[]Kind{Word, Punct, Word, Punct, Word, Punct, String}},
		{`x = ?2 OR y = :n OR z = @m OR w = $p`,
			[]string{"x", "=", "?2", "OR", "y", "=", ":n", "OR", "z", "=", "@m", "OR", "w", "=", "$p"},
			[]Kind{Word, Punct, Param, Word, Word, Punct, Param, Word, Word, Punct, Param, Word, Word, Punct, Param}},
		// SQLite lets a block comment run to the end of the text.
		{`SELECT 1 /* open`, []string{"SELECT", "1"}, []Kind{Word, Number}},
	} {
		toks, err := Tokenize(tt.sql)
		if err != nil {
			t.Fatalf("%q: %v", tt.sql, err)
		}
		texts := make([]string, len(toks))
		for i, tk := range toks {
			texts[i] = tk.Text
			if tt.sql[tk.Start:tk.End] != tk.Text {
				t.Errorf("%q: token %d spans %q, text %q", tt.sql, i, tt.sql[tk.Start:tk.End], tk.Text)
			}
		}
		if !slices.Equal(texts, tt.texts) || !slices.Equal(kinds(toks), tt.kinds) {
			t.Errorf("%q:\n got %q %v\nwant %q %v", tt.sql, texts, kinds(toks), tt.texts, tt.kinds)
		}
	}
	for _, bad := range []string{`'open`, `"open`, "`open", `[open`, `X'0A`} {
		if _, err := Tokenize(bad); err == nil || !strings.Contains(err.Error(), "unterminated") {
			t.Errorf("%q: err %v, want unterminated", bad, err)
		}
	}
}

func TestParams(t *testing.T) {
	toks, err := Tokenize(`SELECT ?, ?5, ?, :a, @b, :a, ?2, ?`)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, tk := range toks {
		if tk.Kind == Param {
			got = append(got, tk.Param)
		}
	}
	// As SQLite numbers them: ? takes max+1, ?N is N, a repeated name keeps its index.
	if want := []int{1, 5, 6, 7, 8, 7, 2, 9}; !slices.Equal(got, want) {
		t.Fatalf("params %v, want %v", got, want)
	}
}

func TestNames(t *testing.T) {
	toks, err := Tokenize(`Apps "My""Tab" [Odd Name] 'Lit''s' 12`)
	if err != nil {
		t.Fatal(err)
	}
	idents := []string{"Apps", `My"Tab`, "Odd Name", "Lit's", "12"}
	names := []string{"apps", `my"tab`, "odd name", "", ""}
	for i, tk := range toks {
		if tk.Ident() != idents[i] || tk.Name() != names[i] {
			t.Errorf("%q: Ident %q Name %q, want %q %q", tk.Text, tk.Ident(), tk.Name(), idents[i], names[i])
		}
	}
	if !toks[0].Is("apps") || toks[1].Is("apps") || toks[0].Upper() != "APPS" || toks[1].Upper() != "" {
		t.Error("Is/Upper treat only bare words as keywords")
	}
}

func TestSplit(t *testing.T) {
	for _, tt := range []struct {
		sql  string
		want []string
	}{
		{"", nil},
		{";; -- only a comment\n", nil},
		{"CREATE TABLE a (x); INSERT INTO a VALUES ('a;b')", []string{"CREATE TABLE a (x)", "INSERT INTO a VALUES ('a;b')"}},
		{"CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; UPDATE t SET x = 2; END; SELECT 3;",
			[]string{"CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; UPDATE t SET x = 2; END", "SELECT 3"}},
		// BEGIN outside a trigger is a transaction statement, not a body.
		{"BEGIN; SELECT 1; END", []string{"BEGIN", "SELECT 1", "END"}},
	} {
		got, err := Split(tt.sql)
		if err != nil {
			t.Fatalf("%q: %v", tt.sql, err)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%q: got %q, want %q", tt.sql, got, tt.want)
		}
	}
}

// FuzzTokenize checks that any text either fails cleanly or yields ordered, non-overlapping
// tokens whose text is the source they span.
func FuzzTokenize(f *testing.F) {
	for _, s := range []string{"SELECT 1", `'a''b'`, "[x", "/* c", "x'", "1e+", "?1 :a @b $c", "a->>b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		toks, err := Tokenize(sql)
		if err != nil {
			return
		}
		end := 0
		for _, tk := range toks {
			if tk.Start < end || tk.End <= tk.Start || tk.End > len(sql) || sql[tk.Start:tk.End] != tk.Text {
				t.Fatalf("bad token %+v after offset %d in %q", tk, end, sql)
			}
			end = tk.End
		}
		if _, err := Split(sql); err != nil {
			t.Fatalf("Split failed where Tokenize did not: %v", err)
		}
	})
}
