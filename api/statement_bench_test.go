package api

import (
	"fmt"
	"strings"
	"testing"
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
		b.Run(fmt.Sprintf("rows-%d", rows), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := decodeStatements(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
