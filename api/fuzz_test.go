package api

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/patinadb/patina/materializer"
)

// seeds adds every file matching pattern to the corpus.
func seeds(f *testing.F, pattern string) {
	f.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds match %s (%v)", pattern, err)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// statementJSON is the object form of a parsed statement, to parse again.
func statementJSON(st materializer.Statement) []byte {
	obj := map[string]any{"query": st.SQL}
	if st.Params != nil {
		obj["params"] = st.Params
	}
	if st.Named != nil {
		obj["named_params"] = st.Named
	}
	b, _ := json.Marshal(obj)
	return b
}

// FuzzParseStatement: any request body parses to a statement or a 400 error, never a panic;
// a parsed statement written in the object form parses to the same statement; and a body is
// accepted as a statement exactly when it is accepted as the one statement of a transaction
// (testdata/fuzz/FuzzParseStatement keeps the case that once broke this: a key spelled
// "quErY" followed by trailing bytes, accepted alone and refused in an array).
func FuzzParseStatement(f *testing.F) {
	seeds(f, "testdata/statements/*.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseStatement(b)
		// (b may itself be several elements, "a","b": only a transaction of one counts.)
		if tx, terr := decodeStatements(append(append([]byte{'['}, b...), ']')); (err == nil) != (terr == nil && len(tx) == 1) && len(bytes.TrimSpace(b)) > 0 {
			t.Fatalf("%q: alone %v, in a transaction %v (%d statements): want the same answer", b, err, terr, len(tx))
		}
		if err != nil {
			if statusOf(err) != 400 {
				t.Fatalf("error %v has status %d, want 400", err, statusOf(err))
			}
			return
		}
		again, err := parseStatement(statementJSON(st))
		if err != nil {
			t.Fatalf("round trip of %q: %v", statementJSON(st), err)
		}
		if !reflect.DeepEqual(st, again) {
			t.Fatalf("round trip: %+v became %+v", st, again)
		}
		// A body of one statement is also a valid transaction body of one statement.
		if _, err := decodeStatements(append(append([]byte{'['}, b...), ']')); err != nil {
			t.Fatalf("[%s] refused as a transaction: %v", b, err)
		}
	})
}

// FuzzDecodeFrames: any msgpack ingest body decodes or is a 400, never a panic; decoded
// changesets re-encode to frames that decode to the same changesets.
func FuzzDecodeFrames(f *testing.F) {
	files, _ := filepath.Glob("../log/testdata/changeset/*.bin")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		one := binary.BigEndian.AppendUint32(nil, uint32(len(b)))
		one = append(one, b...)
		f.Add(one)
		f.Add(append(append([]byte{}, one...), one...))
	}
	f.Add([]byte{0, 0, 0, 1, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		css, err := decodeFrames(b)
		if err != nil {
			if statusOf(err) != 400 {
				t.Fatalf("error %v has status %d, want 400", err, statusOf(err))
			}
			return
		}
		var body []byte
		for _, cs := range css {
			if body, err = appendEvent(body, cs, true); err != nil {
				t.Fatalf("re-encode: %v", err)
			}
		}
		again, err := decodeFrames(body)
		if err != nil {
			t.Fatalf("decode re-encoded: %v", err)
		}
		if len(again) != len(css) {
			t.Fatalf("%d changesets became %d", len(css), len(again))
		}
		for i := range css {
			if !bytes.Equal(css[i].MustEncode(), again[i].MustEncode()) {
				t.Fatalf("changeset %d changed in the round trip", i)
			}
		}
	})
}

// FuzzDecodeNDJSON: the same for the NDJSON ingest form.
func FuzzDecodeNDJSON(f *testing.F) {
	seeds(f, "../log/testdata/changeset_json/*.json")
	f.Add([]byte("[]"))
	f.Add([]byte("{}\n{}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		css, err := decodeNDJSON(b)
		if err != nil {
			if statusOf(err) != 400 {
				t.Fatalf("error %v has status %d, want 400", err, statusOf(err))
			}
			return
		}
		var body []byte
		for _, cs := range css {
			if body, err = appendEvent(body, cs, false); err != nil {
				t.Fatalf("re-encode: %v", err)
			}
		}
		again, err := decodeNDJSON(body)
		if err != nil {
			t.Fatalf("decode re-encoded %q: %v", body, err)
		}
		if len(again) != len(css) {
			t.Fatalf("%d changesets became %d", len(css), len(again))
		}
		for i := range css {
			if !bytes.Equal(css[i].MustEncode(), again[i].MustEncode()) {
				t.Fatalf("changeset %d changed in the round trip", i)
			}
		}
	})
}
