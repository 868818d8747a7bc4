package subs

import (
	"math"
	"strconv"
	"strings"

	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
	"github.com/patinadb/patina/materializer/internal/sqltok"
)

// The lexer is the materializer's (materializer/internal/sqltok); these names keep the
// planner's spelling short.
type token = sqltok.Token

const (
	tkIdent  = sqltok.Word
	tkQIdent = sqltok.Quoted
	tkString = sqltok.String
	tkNumber = sqltok.Number
	tkBlob   = sqltok.Blob
	tkParam  = sqltok.Param
	tkPunct  = sqltok.Punct
)

// tokenize is sqltok.Tokenize.
func tokenize(sql string) ([]token, error) { return sqltok.Tokenize(sql) }

// foldParams returns st with its parameters written into the SQL as literals, the way
// Corrosion expands a subscription's statement (sqlite3_expanded_sql) before looking it up,
// so that ["SELECT ... > ?", [0]] and "SELECT ... > 0" are one subscription. Literals keep
// the value's storage class exactly (1, 1.0, '1', X'31', NULL). st is returned unchanged
// when folding could change its meaning: SQL that does not tokenize, a parameter without a
// value, a text with a NUL byte or a non-finite real (no SQL literal spells them).
func foldParams(st materializer.Statement) materializer.Statement {
	if len(st.Params) == 0 && len(st.Named) == 0 {
		return st
	}
	toks, err := tokenize(st.SQL)
	if err != nil {
		return st
	}
	var b strings.Builder
	last := 0
	for _, t := range toks {
		if t.Kind != tkParam {
			continue
		}
		var v log.Value
		var ok bool
		if len(st.Named) > 0 {
			if t.Text[0] != '?' {
				v, ok = st.Named[t.Text[1:]]
			}
		} else if t.Param >= 1 && t.Param <= len(st.Params) {
			v, ok = st.Params[t.Param-1], true
		}
		lit, litOK := sqlLiteral(v)
		if !ok || !litOK {
			return st
		}
		b.WriteString(st.SQL[last:t.Start])
		b.WriteString(lit)
		last = t.End
	}
	b.WriteString(st.SQL[last:])
	return materializer.Statement{SQL: b.String()}
}

// sqlLiteral spells v as a SQL literal that SQLite reads back as exactly v. Negative
// numbers are parenthesised, so that "x-?" cannot become the comment "x--1".
func sqlLiteral(v log.Value) (string, bool) {
	switch v.Type {
	case log.TypeText:
		if strings.IndexByte(v.Text, 0) >= 0 {
			return "", false
		}
	case log.TypeReal:
		if !exactDecimal(v.Real) {
			return "", false
		}
		if v.Real < 0 || math.Signbit(v.Real) {
			return "(" + v.Quote() + ")", true
		}
	case log.TypeInteger:
		if v.Int < 0 {
			return "(" + v.Quote() + ")", true
		}
	}
	return v.Quote(), true
}

// exactDecimal reports whether f's shortest decimal form is one that any correct-enough
// decimal-to-binary conversion reads back as f: finite, at most 15 significant digits and a
// small exponent (both exact in float64 arithmetic). Other reals are left as parameters.
func exactDecimal(f float64) bool {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return false
	}
	m := strconv.FormatFloat(math.Abs(f), 'e', -1, 64) // d.ddddde±XX
	mant, exp, _ := strings.Cut(m, "e")
	e, err := strconv.Atoi(exp)
	return err == nil && len(strings.Replace(mant, ".", "", 1)) <= 15 && e >= -22 && e <= 22
}
