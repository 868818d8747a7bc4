package api_test

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/patinadb/patina/log"
)

// TestBadInput sends every kind of bad request of issue 5 and checks the documented status,
// a JSON {"error": ...} that says what is wrong, and that the node stays up and loses
// nothing.
func TestBadInput(t *testing.T) {
	n := newNode(t, withLimits(16, 4, 4096))
	n.exec(t, stmtf("INSERT INTO t (id, name) VALUES (1, 'keep')"))

	site := log.MustParseSiteID("00000000-0000-0000-0000-0000000000aa")
	validCS, _ := (&log.Changeset{Site: site, Version: 1, Span: log.OrdRange{First: 0, Last: 0}, LastOrd: 0,
		Changes: []log.Change{{Table: "kv", PK: log.MustPackPK(log.Text("x")), CID: "v", Val: log.Integer(1), ColVersion: 1, CL: 1}}}).MarshalJSON()
	frame := func(b []byte) string {
		return string(binary.BigEndian.AppendUint32(nil, uint32(len(b)))) + string(b)
	}

	type req struct {
		method, path, body string
		hdr                []string
	}
	tests := []struct {
		name   string
		req    req
		status int
		errHas string // a piece of the error message (case-insensitive)
	}{
		// Malformed JSON and wrong statement forms.
		{"tx malformed JSON", req{"POST", "/v1/transactions", `["INSERT INTO t (id) VALUES (2)"`, nil}, 400, "json"},
		{"tx body not an array", req{"POST", "/v1/transactions", `{"query": "INSERT INTO t (id) VALUES (2)"}`, nil}, 400, "array"},
		{"tx empty array", req{"POST", "/v1/transactions", `[]`, nil}, 400, "no statements"},
		{"tx empty body", req{"POST", "/v1/transactions", ``, nil}, 400, "array"},
		{"tx statement is a number", req{"POST", "/v1/transactions", `[42]`, nil}, 400, "statement 0"},
		{"tx three-element form", req{"POST", "/v1/transactions", `[["INSERT INTO t (id) VALUES (?)", [2], 3]]`, nil}, 400, "elements"},
		{"tx SQL not a string", req{"POST", "/v1/transactions", `[[1, [2]]]`, nil}, 400, "SQL string"},
		{"tx params not array or object", req{"POST", "/v1/transactions", `[["INSERT INTO t (id) VALUES (?)", 2]]`, nil}, 400, "params"},
		{"tx object without query", req{"POST", "/v1/transactions", `[{"params": [1]}]`, nil}, 400, "query"},
		{"tx object unknown field", req{"POST", "/v1/transactions", `[{"sql": "SELECT 1"}]`, nil}, 400, "unknown key"},
		{"tx object key case", req{"POST", "/v1/transactions", `[{"quErY": "SELECT 1"}]`, nil}, 400, "unknown key"},
		{"query trailing bytes", req{"POST", "/v1/queries", `{"query": "SELECT 1"}0`, nil}, 400, "malformed JSON"},
		{"tx bad param value", req{"POST", "/v1/transactions", `[["INSERT INTO t (id) VALUES (?)", 5]]`, nil}, 400, "params"},
		{"tx empty SQL", req{"POST", "/v1/transactions", `["  "]`, nil}, 400, "empty"},
		{"tx bad timeout", req{"POST", "/v1/transactions?timeout=soon", `["SELECT 1"]`, nil}, 400, "timeout"},
		{"query malformed JSON", req{"POST", "/v1/queries", `{"query": `, nil}, 400, ""},
		{"query array of statements", req{"POST", "/v1/queries", `["SELECT 1", "SELECT 2"]`, nil}, 400, ""},
		// SQL errors.
		{"tx SQL syntax", req{"POST", "/v1/transactions", `["INSERT INTO t VALUS (1)"]`, nil}, 400, "syntax"},
		{"tx SQL incomplete", req{"POST", "/v1/transactions", `["INSERT INTO t VALUES ("]`, nil}, 400, "incomplete"},
		{"query SQL syntax", req{"POST", "/v1/queries", `"SELECT FROM WHERE"`, nil}, 400, "syntax"},
		{"query unknown keyword", req{"POST", "/v1/queries", `"SELEC 1"`, nil}, 400, "syntax error"},
		{"tx unknown table", req{"POST", "/v1/transactions", `["INSERT INTO nope (id) VALUES (1)"]`, nil}, 400, "nope"},
		{"query unknown table", req{"POST", "/v1/queries", `"SELECT * FROM nope"`, nil}, 400, "nope"},
		{"tx unknown column", req{"POST", "/v1/transactions", `["UPDATE t SET nope = 1"]`, nil}, 400, "nope"},
		{"tx wrong parameter count", req{"POST", "/v1/transactions", `[["INSERT INTO t (id) VALUES (?)", [1, 2, 3]]]`, nil}, 400, ""},
		{"tx primary key conflict", req{"POST", "/v1/transactions", `["INSERT INTO t (id) VALUES (1)"]`, nil}, 400, ""},
		// Writes where only reads are allowed, and to internal tables.
		{"write to queries", req{"POST", "/v1/queries", `"INSERT INTO t (id) VALUES (9)"`, nil}, 400, ""},
		{"delete to queries", req{"POST", "/v1/queries", `"DELETE FROM t"`, nil}, 400, ""},
		{"write to a __patina table", req{"POST", "/v1/transactions", `["DELETE FROM __patina_clock_t"]`, nil}, 400, ""},
		{"create a __patina table", req{"POST", "/v1/migrations", `["CREATE TABLE __patina_x (id INTEGER PRIMARY KEY)"]`, nil}, 400, ""},
		// Schema docs/DESIGN.md section 5 refuses.
		{"schema UNIQUE", req{"POST", "/v1/migrations", `["CREATE TABLE u (id INTEGER PRIMARY KEY NOT NULL, e TEXT UNIQUE)"]`, nil}, 400, "unique"},
		{"schema AUTOINCREMENT", req{"POST", "/v1/migrations", `["CREATE TABLE a (id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL)"]`, nil}, 400, "autoincrement"},
		{"schema without primary key", req{"POST", "/v1/migrations", `["CREATE TABLE np (x TEXT)"]`, nil}, 400, "primary key"},
		{"schema drop table", req{"POST", "/v1/migrations", `["DROP TABLE t"]`, nil}, 409, ""},
		{"schema drop column", req{"POST", "/v1/migrations", `["CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, name TEXT, score REAL)"]`, nil}, 409, ""},
		{"schema NOT NULL column without default", req{"POST", "/v1/migrations", `["CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, name TEXT, score REAL, data BLOB, must TEXT NOT NULL)"]`, nil}, 400, "default"},
		{"schema with params", req{"POST", "/v1/migrations", `[["CREATE TABLE p (id INTEGER PRIMARY KEY)", [1]]]`, nil}, 400, "parameters"},
		// Size limit.
		{"body too large", req{"POST", "/v1/transactions", `["SELECT '` + strings.Repeat("x", 5000) + `'"]`, nil}, 413, "too large"},
		{"changes body too large", req{"POST", "/v1/changes", strings.Repeat(" ", 5000), nil}, 413, "too large"},
		// Changeset ingest.
		{"changes malformed JSON", req{"POST", "/v1/changes", `{"site":`, nil}, 400, "changeset 0"},
		{"changes zero version", req{"POST", "/v1/changes", strings.Replace(string(validCS), `"version":1`, `"version":0`, 1), nil}, 400, "version 0"},
		{"changes seq mismatch", req{"POST", "/v1/changes", strings.Replace(string(validCS), `"seqs":[0,0]`, `"seqs":[0,1]`, 1), nil}, 400, ""},
		{"changes bad site", req{"POST", "/v1/changes", strings.Replace(string(validCS), "00000000-0000-0000-0000-0000000000aa", "zz", 1), nil}, 400, "site"},
		{"changes second line bad", req{"POST", "/v1/changes", string(validCS) + "\n{}\n", nil}, 400, "changeset 1"},
		{"changes msgpack garbage", req{"POST", "/v1/changes", frame([]byte{1, 2, 3}), []string{"Content-Type", "application/msgpack"}}, 400, "frame 0"},
		{"changes msgpack truncated", req{"POST", "/v1/changes", "\x00\x00\x01\x00abc", []string{"Content-Type", "application/msgpack"}}, 400, "frame 0"},
		// The changeset stream.
		{"since beyond the log", req{"GET", "/v1/changes?since=99", "", nil}, 400, "beyond"},
		{"since not a number", req{"GET", "/v1/changes?since=-1", "", nil}, 400, "since"},
		{"follow not a bool", req{"GET", "/v1/changes?follow=maybe", "", nil}, 400, "follow"},
		// Routing.
		{"unknown endpoint", req{"GET", "/v1/nope", "", nil}, 404, "no endpoint"},
		{"wrong method", req{"GET", "/v1/transactions", "", nil}, 405, "not allowed"},
		{"table stats malformed", req{"POST", "/v1/table_stats", `{"tables": "t"}`, nil}, 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := n.do(t, tt.req.method, tt.req.path, tt.req.body, tt.req.hdr...)
			if a.status != tt.status {
				t.Fatalf("status %d, want %d: %s", a.status, tt.status, a.body)
			}
			if ct := a.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			msg := a.errMsg()
			if msg == "" {
				t.Fatalf("no \"error\" in %s", a.body)
			}
			if !strings.Contains(strings.ToLower(msg), strings.ToLower(tt.errHas)) {
				t.Errorf("error %q does not mention %q", msg, tt.errHas)
			}
		})
	}
	// Nothing was lost or half written, and the node still serves.
	if got := n.query(t, "SELECT id, name FROM t"); len(got) != 1 || got[0][1] != "'keep'" {
		t.Errorf("t after the bad requests = %v, want the one row", got)
	}
	if got := n.store.LastSeq(); got != 2 { // the schema changeset of the start and the row
		t.Errorf("log last seq = %d after bad requests, want 2", got)
	}
	n.healthy(t)
}
