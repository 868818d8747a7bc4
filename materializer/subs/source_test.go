package subs

import (
	"context"
	"database/sql"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

// sqlSource is a real SQLite database behind the Source contract, for testing the engine
// apart from the materializer's merge machinery: writes go through write, which commits and
// then publishes a notice with the rows it touched, as the materializer's writer loop does.
type sqlSource struct {
	db *sql.DB

	mu        sync.Mutex
	seq       log.Seq
	listeners map[chan materializer.Notice]*bool // value: lagged since the last delivery
}

var _ Source = (*sqlSource)(nil)

func newSQLSource(tb testing.TB, schema ...string) *sqlSource {
	tb.Helper()
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "busy_timeout(10000)")
	db, err := sql.Open("sqlite", "file:"+filepath.Join(tb.TempDir(), "view.db")+"?"+q.Encode())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	for _, s := range schema {
		if _, err := db.Exec(s); err != nil {
			tb.Fatalf("schema %q: %v", s, err)
		}
	}
	return &sqlSource{db: db, listeners: map[chan materializer.Notice]*bool{}}
}

func (s *sqlSource) Tables() []string {
	rows, err := s.db.Query(`SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite%'`)
	if err != nil {
		return nil
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		out = append(out, n)
	}
	return out
}

func (s *sqlSource) Notify(buf int) (<-chan materializer.Notice, func()) {
	ch := make(chan materializer.Notice, buf)
	s.mu.Lock()
	s.listeners[ch] = new(bool)
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		delete(s.listeners, ch)
		s.mu.Unlock()
	}
}

func (s *sqlSource) Query(ctx context.Context, st materializer.Statement) (materializer.Rows, error) {
	return materializer.QueryDB(ctx, s.db, st)
}

// op is one write of a test: an upsert of a row or a delete by primary key.
type op struct {
	table string
	pk    []string // pk column names
	cols  []string // all columns, pk first
	vals  []log.Value
	del   bool
}

// write runs ops in one transaction and publishes the notice of the rows they touched. It
// returns the notice's seq.
func (s *sqlSource) write(tb testing.TB, ops ...op) log.Seq {
	tb.Helper()
	tx, err := s.db.Begin()
	if err != nil {
		tb.Fatal(err)
	}
	var rcs []materializer.RowChange
	for _, o := range ops {
		npk := len(o.pk)
		args := make([]any, len(o.vals))
		for i, v := range o.vals {
			args[i] = v.SQL()
		}
		var q string
		if o.del {
			conds := make([]string, npk)
			for i, c := range o.pk {
				conds[i] = quoteIdent(c) + " = ?"
			}
			q = "DELETE FROM " + quoteIdent(o.table) + " WHERE " + strings.Join(conds, " AND ")
			args = args[:npk]
		} else {
			qs := strings.TrimSuffix(strings.Repeat("?,", len(o.cols)), ",")
			quoted := make([]string, len(o.cols))
			for i, c := range o.cols {
				quoted[i] = quoteIdent(c)
			}
			q = "INSERT OR REPLACE INTO " + quoteIdent(o.table) + " (" + strings.Join(quoted, ",") + ") VALUES (" + qs + ")"
		}
		if _, err := tx.Exec(q, args...); err != nil {
			tx.Rollback()
			tb.Fatalf("%s: %v", q, err)
		}
		cl := uint64(1)
		if o.del {
			cl = 2
		}
		rcs = append(rcs, materializer.RowChange{Table: o.table, PK: log.MustPackPK(o.vals[:npk]...), CL: cl})
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
	return s.publish(rcs)
}

// publish sends a notice to every listener without blocking, as the materializer does: a
// listener whose buffer is full misses it and gets Lagged on its next notice.
func (s *sqlSource) publish(rcs []materializer.RowChange) log.Seq {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	for ch, lagged := range s.listeners {
		select {
		case ch <- materializer.Notice{Seq: s.seq, Rows: rcs, Lagged: *lagged}:
			*lagged = false
		default:
			*lagged = true
		}
	}
	return s.seq
}

func stmt(sql string, params ...log.Value) materializer.Statement {
	return materializer.Statement{SQL: sql, Params: params}
}
