package client

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/patinadb/patina/log/format"
)

// refStatement is the API's statement object as encoding/json writes it from plain fields: the
// reference appendStatements must equal byte for byte.
type refStatement struct {
	Query  string                     `json:"query"`
	Params []json.RawMessage          `json:"params,omitempty"`
	Named  map[string]json.RawMessage `json:"named_params,omitempty"`
}

func randText(rng *rand.Rand) string {
	const alphabet = "abc ?'\"\\<>&\x00\x01\n\t\u2028\u2029é\xff\xfe"
	n := rng.IntN(12)
	var sb strings.Builder
	for range n {
		i := rng.IntN(len(alphabet))
		sb.WriteByte(alphabet[i])
	}
	return sb.String()
}

func randValue(rng *rand.Rand) format.Value {
	switch rng.IntN(5) {
	case 0:
		return format.Null()
	case 1:
		return format.Integer(rng.Int64() >> rng.IntN(64))
	case 2:
		f := []float64{0, 1, -1.5, 1e21, 1e-7, 123456.789, math.Inf(1), math.Inf(-1), math.MaxFloat64, math.SmallestNonzeroFloat64}
		return format.Real(f[rng.IntN(len(f))] * float64(1+rng.IntN(3)))
	case 3:
		return format.Text(randText(rng))
	}
	b := make([]byte, rng.IntN(5))
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
	return format.Blob(b)
}

// TestAppendStatementsEqualsMarshal: the hand-written encoding of Exec's body is byte for byte
// what encoding/json writes, on random statements (every value type, strings with escapes,
// HTML characters, U+2028, invalid UTF-8).
func TestAppendStatementsEqualsMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 6))
	raw := func(v format.Value) json.RawMessage {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for i := range 2000 {
		var stmts, ref = []Statement{}, []refStatement{}
		if i == 0 {
			stmts, ref = nil, nil
		}
		for range rng.IntN(4) {
			st := Statement{SQL: randText(rng)}
			r := refStatement{Query: st.SQL}
			for range rng.IntN(5) {
				v := randValue(rng)
				st.Params = append(st.Params, v)
				r.Params = append(r.Params, raw(v))
			}
			if len(st.Params) == 0 && rng.IntN(2) == 0 {
				// One name: with more, the map's order is random on both sides.
				v, k := randValue(rng), randText(rng)
				st.Named, r.Named = map[string]format.Value{k: v}, map[string]json.RawMessage{k: raw(v)}
			}
			stmts, ref = append(stmts, st), append(ref, r)
		}
		want, err := json.Marshal(ref)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := appendStatements(nil, stmts)
		if !ok || !bytes.Equal(got, want) {
			t.Fatalf("statements %+v:\n got %s (%v)\nwant %s", stmts, got, ok, want)
		}
		// The statements' MarshalJSON, which Query sends with, writes the same.
		if viaJSON, err := json.Marshal(stmts); err != nil || !bytes.Equal(viaJSON, want) {
			t.Fatalf("json.Marshal(stmts) = %s, %v; want %s", viaJSON, err, want)
		}
	}
	// NaN has no JSON form: Exec falls back to json.Marshal for its error.
	if _, ok := appendStatements(nil, []Statement{{SQL: "x", Params: []format.Value{{Type: format.TypeReal, Real: math.NaN()}}}}); ok {
		t.Fatal("a NaN parameter was encoded")
	}
	if _, err := json.Marshal([]Statement{{SQL: "x", Named: map[string]format.Value{"a": {Type: format.TypeReal, Real: math.NaN()}}}}); err == nil {
		t.Fatal("json.Marshal of a NaN parameter did not fail")
	}
}

// execSeeds are ExecResponses as the agent writes them, and variants the fast decoder must
// hand to encoding/json.
var execSeeds = []string{
	`{"results":[{"rows_affected":1,"time":3.1e-05}],"time":0.000187,"version":5,"actor_id":"b86df301-bfd1-40af-965d-d6d8a1cf517e"}` + "\n",
	`{"results":[],"time":0.0,"version":null,"actor_id":"00000000-0000-0000-0000-000000000001"}`,
	`{"results":[{"rows_affected":0,"time":0.0},{"rows_affected":3,"time":1.5}],"time":2,"version":18446744073709551615,"actor_id":"b86df301bfd140af965dd6d8a1cf517e"}`,
	` { "results" : [ { "error" : "boom" } ] , "time" : 1e-3 , "version" : 1 , "actor_id" : "b86df301-bfd1-40af-965d-d6d8a1cf517e" } `,
	`{"results":[{"rows_affected":1.0}]}`,
	`{"results":null}`,
	`{"Results":[]}`,
	`{"time":1,"time":2}`,
	`{"time":1e999}`,
	`{"version":-1}`,
	`{"actor_id":"nope"}`,
	`{"results":[{"error":"a\"b"}]}`,
	`{"results":[{"error":"é"}]}`,
	`{}garbage`,
	`{} {}`,
	`{"version":01}`,
	`{"time":-0.5e+2,"results":[{"time":-0}]}`,
	``,
	`[`,
	`{"extra":1}`,
}

// FuzzDecodeExecResult: whatever the fast decoder accepts, encoding/json (as the client used
// it before: a Decoder reading one value) decodes to the same result; what it does not,
// decodeExecResult decodes as encoding/json does.
func FuzzDecodeExecResult(f *testing.F) {
	for _, s := range execSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var want ExecResult
		werr := json.NewDecoder(bytes.NewReader(b)).Decode(&want)
		var fast ExecResult
		if decodeExecFast(b, &fast) {
			if werr != nil {
				t.Fatalf("%q: the fast decoder accepted what encoding/json refuses (%v): %+v", b, werr, fast)
			}
			if !reflect.DeepEqual(fast, want) {
				t.Fatalf("%q: fast %+v, encoding/json %+v", b, fast, want)
			}
		}
		got, err := decodeExecResult(b)
		if (err != nil) != (werr != nil) {
			t.Fatalf("%q: error %v, encoding/json's %v", b, err, werr)
		}
		if err == nil && !reflect.DeepEqual(*got, want) {
			t.Fatalf("%q: %+v, encoding/json %+v", b, *got, want)
		}
	})
}

// TestDecodeExecFastTakesTheAgentsAnswers: the answers the agent writes take the fast path
// (else the fast decoder would be dead code that the fuzz target cannot tell from a working
// one).
func TestDecodeExecFastTakesTheAgentsAnswers(t *testing.T) {
	for _, s := range execSeeds[:4] {
		var out ExecResult
		if !decodeExecFast([]byte(s), &out) {
			t.Errorf("%s: not decoded by the fast path", s)
		}
	}
}
