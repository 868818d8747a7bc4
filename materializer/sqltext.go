package materializer

import "strings"

// quoteIdent quotes an identifier for SQL text.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// isInternalName reports whether a table name belongs to Patina (or SQLite) itself.
func isInternalName(name string) bool {
	l := strings.ToLower(name)
	return strings.HasPrefix(l, "__patina") || strings.HasPrefix(l, "sqlite_")
}
