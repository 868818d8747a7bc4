package api

import (
	"fmt"
	"strings"
	"testing"

	"github.com/patinadb/patina/materializer"
)

// BenchmarkDecodeStatements: the cost of parsing a transaction body (go test ./api -run '^$'
// -bench DecodeStatements).
func BenchmarkDecodeStatements(b *testing.B) {
	for _, rows := range []int{1, 100} {
		var sql strings.Builder
		var params []string
		sql.WriteString("INSERT INTO bench_http (id, a, b) VALUES ")
		for i := range rows {
			if i > 0 {
				sql.WriteString(", ")
			}
			sql.WriteString("(?, ?, ?)")
			params = append(params, fmt.Sprint(i), `"value of some length"`, fmt.Sprint(i%1000))
		}
		body := []byte(`[{"query":"` + sql.String() + `","params":[` + strings.Join(params, ",") + `]}]`)
		// general: the strict general path alone, which the fast path spares such bodies.
		for _, path := range []struct {
			name   string
			decode func([]byte) ([]materializer.Statement, error)
		}{{"", decodeStatements}, {"/general", decodeStatementsJSON}} {
			b.Run(fmt.Sprintf("rows-%d%s", rows, path.name), func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := path.decode(body); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
