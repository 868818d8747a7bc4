package client

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/patinadb/patina/log/format"
)

func TestStatementJSON(t *testing.T) {
	tests := []struct {
		st   Statement
		want string
	}{
		{Statement{SQL: "SELECT 1"}, `{"query":"SELECT 1"}`},
		{Stmt("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)", 1, 1.0, "a\"b", []byte{1, 2}, nil, true),
			`{"query":"INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)","params":[1,1.0,"a\"b",[1,2],null,1]}`},
		{Statement{SQL: "SELECT :a", Named: map[string]format.Value{"a": format.Real(math.Inf(1))}},
			`{"query":"SELECT :a","named_params":{"a":1e999}}`},
		{Statement{SQL: "SELECT '\u2028'"}, `{"query":"SELECT '\u2028'"}`},
	}
	for _, tt := range tests {
		b, err := json.Marshal([]Statement{tt.st})
		if err != nil {
			t.Fatalf("%q: %v", tt.st.SQL, err)
		}
		if got := string(b); got != "["+tt.want+"]" {
			t.Errorf("got %s, want [%s]", got, tt.want)
		}
	}
}
