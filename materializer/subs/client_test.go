package subs

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

// event is one parsed NDJSON line of a subscription stream.
type event struct {
	columns  []string
	row      *rowEvent
	eoq      *eoqEvent
	change   *changeEvent
	errorMsg string
}

type rowEvent struct {
	rowid int64
	cells []log.Value
}

type eoqEvent struct {
	time     float64
	changeID uint64
}

type changeEvent struct {
	kind     string
	rowid    int64
	cells    []log.Value
	changeID uint64
}

// parseEvent reads one line strictly: exactly one known key, in the shape docs/DESIGN.md section 7 gives.
func parseEvent(line []byte) (event, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(line, &m); err != nil {
		return event{}, fmt.Errorf("line %q: %w", line, err)
	}
	if len(m) != 1 {
		return event{}, fmt.Errorf("line %q: want one key", line)
	}
	var ev event
	for k, raw := range m {
		switch k {
		case "columns":
			if err := json.Unmarshal(raw, &ev.columns); err != nil {
				return ev, fmt.Errorf("columns %q: %w", raw, err)
			}
		case "error":
			if err := json.Unmarshal(raw, &ev.errorMsg); err != nil {
				return ev, err
			}
		case "eoq":
			var e struct {
				Time     *float64 `json:"time"`
				ChangeID *uint64  `json:"change_id"`
			}
			if err := json.Unmarshal(raw, &e); err != nil || e.Time == nil || e.ChangeID == nil {
				return ev, fmt.Errorf("eoq %q: %v", raw, err)
			}
			ev.eoq = &eoqEvent{*e.Time, *e.ChangeID}
		case "row":
			var parts []json.RawMessage
			if err := json.Unmarshal(raw, &parts); err != nil || len(parts) != 2 {
				return ev, fmt.Errorf("row %q: %v", raw, err)
			}
			r := &rowEvent{}
			if err := json.Unmarshal(parts[0], &r.rowid); err != nil {
				return ev, err
			}
			cells, err := parseCells(parts[1])
			if err != nil {
				return ev, err
			}
			r.cells = cells
			ev.row = r
		case "change":
			var parts []json.RawMessage
			if err := json.Unmarshal(raw, &parts); err != nil || len(parts) != 4 {
				return ev, fmt.Errorf("change %q: %v", raw, err)
			}
			c := &changeEvent{}
			if err := json.Unmarshal(parts[0], &c.kind); err != nil {
				return ev, err
			}
			if c.kind != "insert" && c.kind != "update" && c.kind != "delete" {
				return ev, fmt.Errorf("change kind %q", c.kind)
			}
			if err := json.Unmarshal(parts[1], &c.rowid); err != nil {
				return ev, err
			}
			cells, err := parseCells(parts[2])
			if err != nil {
				return ev, err
			}
			c.cells = cells
			if err := json.Unmarshal(parts[3], &c.changeID); err != nil {
				return ev, err
			}
			ev.change = c
		default:
			return ev, fmt.Errorf("line %q: unknown key %q", line, k)
		}
	}
	return ev, nil
}

func parseCells(raw json.RawMessage) ([]log.Value, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("cells %q: %w", raw, err)
	}
	out := make([]log.Value, len(items))
	for i, it := range items {
		v, err := log.ParseJSONValue(it)
		if err != nil {
			return nil, fmt.Errorf("cell %q: %w", it, err)
		}
		out[i] = v
	}
	return out, nil
}

// mirror is a client's copy of a subscription's result, rebuilt from the events alone, as a
// proxy would keep it.
type mirror struct {
	columns  []string
	rows     map[int64][]log.Value
	order    []int64 // rowids in the order of the initial rows
	changeID uint64
	gotEOQ   bool
}

func newMirror() *mirror { return &mirror{rows: map[int64][]log.Value{}} }

// apply takes in one event, checking the stream's rules: rows only before eoq, change ids
// exactly one more than the last, updates and deletes only of known rows, inserts only of
// new ones, and delete cells equal to the row's last cells.
func (m *mirror) apply(ev event) error {
	switch {
	case ev.errorMsg != "":
		return fmt.Errorf("error event: %s", ev.errorMsg)
	case ev.columns != nil:
		m.columns = ev.columns
	case ev.row != nil:
		if m.gotEOQ {
			return fmt.Errorf("row after eoq")
		}
		if _, dup := m.rows[ev.row.rowid]; dup {
			return fmt.Errorf("row %d twice", ev.row.rowid)
		}
		m.rows[ev.row.rowid] = ev.row.cells
		m.order = append(m.order, ev.row.rowid)
	case ev.eoq != nil:
		m.gotEOQ = true
		m.changeID = ev.eoq.changeID
	case ev.change != nil:
		c := ev.change
		if c.changeID != m.changeID+1 {
			return fmt.Errorf("change id %d after %d", c.changeID, m.changeID)
		}
		m.changeID = c.changeID
		old, ok := m.rows[c.rowid]
		switch c.kind {
		case "insert":
			if ok {
				return fmt.Errorf("insert of present row %d", c.rowid)
			}
			m.rows[c.rowid] = c.cells
		case "update":
			if !ok {
				return fmt.Errorf("update of absent row %d", c.rowid)
			}
			if equalCells(old, c.cells) {
				return fmt.Errorf("update of row %d that changes nothing", c.rowid)
			}
			m.rows[c.rowid] = c.cells
		case "delete":
			if !ok {
				return fmt.Errorf("delete of absent row %d", c.rowid)
			}
			if !equalCells(old, c.cells) {
				return fmt.Errorf("delete of row %d with cells %v, had %v", c.rowid, c.cells, old)
			}
			delete(m.rows, c.rowid)
		}
	}
	return nil
}

// readUntil applies events from st until the mirror has reached change id want.
func (m *mirror) readUntil(tb testing.TB, st *Stream, want uint64) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for !m.gotEOQ || m.changeID < want {
		line, err := st.Next(ctx)
		if err != nil {
			tb.Fatalf("stream %s: at change %d waiting for %d: %v", st.ID, m.changeID, want, err)
		}
		ev, err := parseEvent(line)
		if err != nil {
			tb.Fatal(err)
		}
		if err := m.apply(ev); err != nil {
			tb.Fatalf("stream %s: %v", st.ID, err)
		}
	}
	if m.changeID != want {
		tb.Fatalf("stream %s: change id %d, want %d", st.ID, m.changeID, want)
	}
}

// multiset renders rows as sorted keys, for order-insensitive comparison.
func multiset(rows [][]log.Value) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		q := make([]string, len(r))
		for j, v := range r {
			q[j] = v.Quote()
		}
		out[i] = "(" + strings.Join(q, ", ") + ")"
	}
	slices.Sort(out)
	return out
}

func (m *mirror) multiset() []string {
	rows := make([][]log.Value, 0, len(m.rows))
	for _, r := range m.rows {
		rows = append(rows, r)
	}
	return multiset(rows)
}

// queryStmt runs st directly on src.
func queryStmt(tb testing.TB, src Source, st materializer.Statement) ([]string, [][]log.Value) {
	tb.Helper()
	return queryRows2(tb, src, st)
}

// queryRows runs sql directly on src.
func queryRows(tb testing.TB, src Source, sql string, params ...log.Value) ([]string, [][]log.Value) {
	tb.Helper()
	return queryRows2(tb, src, stmt(sql, params...))
}

func queryRows2(tb testing.TB, src Source, st materializer.Statement) ([]string, [][]log.Value) {
	tb.Helper()
	sql := st.SQL
	rows, err := src.Query(context.Background(), st)
	if err != nil {
		tb.Fatalf("query %s: %v", sql, err)
	}
	defer rows.Close()
	var out [][]log.Value
	for rows.Next() {
		out = append(out, slices.Clone(rows.Values()))
	}
	if err := rows.Err(); err != nil {
		tb.Fatalf("query %s: %v", sql, err)
	}
	return rows.Columns(), out
}
