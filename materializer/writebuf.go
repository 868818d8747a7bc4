package materializer

import (
	"context"
	"fmt"
	"hash/maphash"
	"strconv"
	"strings"
)

// writeBuf holds the row and clock writes of the changeset being folded (or of the local
// transaction being captured) until it ends, then writes them with one multi-row statement
// per run of rows of one table and column set, and one per run of clocks of one table.
// Issue 14's profiles put each statement's fixed cost (database/sql, the driver's bind and
// reset, the VDBE's start) at about half of the fold's CPU per row; a 100-row changeset
// now costs a few statements for its rows and clocks instead of 200.
//
// Invariants, which keep the fold's results exactly those of one statement per row:
//   - rows are written in the order they were folded (runs of consecutive rows of one mask
//     share a statement), so that a user UNIQUE or CHECK constraint sees the same sequence;
//     any write that is not buffered (a delete, a bare insert) flushes first.
//   - a row's clock or values are never read while a write of that row is buffered:
//     loadClock flushes first when the key is pending (pendingKey).
//   - the buffer is empty between folded changesets: foldChangeset flushes it when it
//     succeeds and drops it when it fails, so a savepoint or a rollback never sees it.
//   - the clocks of a group's local transactions are written once, when the last of them has
//     run (runLocals), not one statement per transaction: a transaction that fails drops its
//     own (truncate), and one that runs in a savepoint flushes the others' first, so that
//     rolling its savepoint back cannot undo them (runLocal). runLocals drops the buffer when
//     the group fails.
type writeBuf struct {
	rows   []pendRow
	clocks []pendClock
	args   []any  // the rows' arguments, back to back
	arena  []byte // the clocks' encodings, back to back
	keys   map[uint64]struct{}
	seed   maphash.Seed
	scr    []any // statement arguments of a flush
}

type pendRow struct {
	t          *table
	mask       string // which non-pk columns the row writes: 1 or 0 per clock ordinal (maskKey)
	args, narg int    // the row's arguments: args[args : args+narg]
}

type pendClock struct {
	t          *table
	pk         []byte
	cl         int64
	start, end int // the encoding: arena[start:end]
}

// maxStmtRows bounds the rows of one multi-row statement; maxStmtArgs keeps it under
// SQLite's limit on parameters (32766 since 3.32).
const (
	maxStmtRows = 64
	maxStmtArgs = 32000
)

func (b *writeBuf) empty() bool { return len(b.rows) == 0 && len(b.clocks) == 0 }

func (b *writeBuf) key(t *table, pk []byte) uint64 {
	if b.keys == nil {
		b.keys = map[uint64]struct{}{}
		b.seed = maphash.MakeSeed()
	}
	// A collision only costs an early flush.
	return maphash.Bytes(b.seed, pk) ^ maphash.String(b.seed, t.Name)
}

// pendingKey reports whether a write of t's row pk is buffered.
func (b *writeBuf) pendingKey(t *table, pk []byte) bool {
	if len(b.keys) == 0 {
		return false
	}
	_, ok := b.keys[b.key(t, pk)]
	return ok
}

func (b *writeBuf) addRow(t *table, pk []byte, mask string, args ...any) {
	b.keys[b.key(t, pk)] = struct{}{}
	b.rows = append(b.rows, pendRow{t: t, mask: mask, args: len(b.args), narg: len(args)})
	b.args = append(b.args, args...)
}

func (b *writeBuf) addClock(t *table, pk []byte, cl int64, enc []byte) {
	b.keys[b.key(t, pk)] = struct{}{}
	start := len(b.arena)
	b.arena = append(b.arena, enc...)
	b.clocks = append(b.clocks, pendClock{t: t, pk: pk, cl: cl, start: start, end: len(b.arena)})
}

// bufMark is how much a writeBuf held at some point (mark), to drop what was added since
// (truncate).
type bufMark struct{ rows, clocks, args, arena int }

func (b *writeBuf) mark() bufMark {
	return bufMark{len(b.rows), len(b.clocks), len(b.args), len(b.arena)}
}

// truncate drops what was buffered since mk (a local transaction that failed after earlier
// ones of its group buffered their clocks). Their keys stay in keys: a key too many only
// costs an early flush.
func (b *writeBuf) truncate(mk bufMark) {
	clear(b.rows[mk.rows:])
	clear(b.clocks[mk.clocks:])
	clear(b.args[mk.args:])
	b.rows, b.clocks, b.args, b.arena = b.rows[:mk.rows], b.clocks[:mk.clocks], b.args[:mk.args], b.arena[:mk.arena]
}

// reset drops what is buffered (the changeset failed, or it was written).
func (b *writeBuf) reset() {
	clear(b.args)
	clear(b.rows)
	clear(b.clocks)
	b.rows, b.clocks, b.args, b.arena = b.rows[:0], b.clocks[:0], b.args[:0], b.arena[:0]
	clear(b.keys)
}

// flush writes what is buffered, rows first, in order, and empties the buffer (also when a
// statement fails: the caller's changeset fails with it).
func (m *Materializer) flush(ctx context.Context) error {
	b := &m.wb
	if b.empty() {
		return nil
	}
	defer b.reset()
	for i := 0; i < len(b.rows); {
		first := b.rows[i]
		limit := min(maxStmtRows, max(1, maxStmtArgs/max(first.narg, 1)))
		j := i + 1
		for j < len(b.rows) && j-i < limit && b.rows[j].t == first.t && b.rows[j].mask == first.mask {
			j++
		}
		// Rows of one table and mask have as many arguments each, back to back. Statements
		// for 64, 16, 4 and 1 rows: a few prepared statements cover any run.
		for _, size := range []int{64, 16, 4, 1} {
			for size <= limit && j-i >= size {
				r := b.rows[i]
				q := r.t.upsertRows(r.mask, size)
				b.scr = append(b.scr[:0], b.args[r.args:r.args+size*r.narg]...)
				if err := m.w.execRaw(ctx, q, b.scr); err != nil {
					clear(b.scr)
					return fmt.Errorf("write rows of %s: %w", r.t.Name, err)
				}
				i += size
			}
		}
	}
	for i := 0; i < len(b.clocks); {
		c := b.clocks[i]
		j := i + 1
		for j < len(b.clocks) && j-i < maxStmtRows && b.clocks[j].t == c.t {
			j++
		}
		n := j - i
		// The clocks of a group of single-row local transactions are a run of about ten:
		// sizes 8 and 2 write one of 11 in three statements instead of five.
		for _, size := range []int{64, 16, 8, 4, 2, 1} {
			for n >= size {
				b.scr = b.scr[:0]
				for _, p := range b.clocks[i : i+size] {
					p.t.filter.wrote(p.pk) // now, not at addClock: see clockFilter
					b.scr = append(b.scr, p.pk, p.cl, b.arena[p.start:p.end])
				}
				if err := m.w.execRaw(ctx, c.t.clockPutRows(size), b.scr); err != nil {
					clear(b.scr)
					return fmt.Errorf("write clock of %s: %w", c.t.Name, err)
				}
				i += size
				n -= size
			}
		}
	}
	clear(b.scr)
	return nil
}

// upsertRows is the statement that writes n rows of the column set mask:
// INSERT ... VALUES (...), (...) ON CONFLICT (pk) DO UPDATE SET c = excluded.c, which writes
// only those columns of an existing row and gives a new row its DEFAULTs for the others
// (docs/DESIGN.md rule R9).
func (t *table) upsertRows(mask string, n int) string {
	key := mask + "/" + strconv.Itoa(n)
	if q, ok := t.upserts[key]; ok {
		return q
	}
	cols := []string{t.pkList()}
	var set []string
	for i := 0; i < len(mask); i++ {
		if mask[i] == 1 {
			c := quoteIdent(t.Cols[t.NonPK[i]].Name)
			cols = append(cols, c)
			set = append(set, c+" = excluded."+c)
		}
	}
	one := "(" + placeholders(len(t.PK)+len(set)) + ")"
	q := "INSERT INTO " + t.quoted + " (" + strings.Join(cols, ", ") + ") VALUES " +
		strings.TrimSuffix(strings.Repeat(one+", ", n), ", ") +
		" ON CONFLICT (" + t.pkList() + ") DO UPDATE SET " + strings.Join(set, ", ")
	t.upserts[key] = q
	return q
}

// clockPutRows is the statement that writes n clock rows of t.
func (t *table) clockPutRows(n int) string {
	if n == 1 {
		return t.sqlClockPut
	}
	key := "clock/" + strconv.Itoa(n)
	if q, ok := t.upserts[key]; ok {
		return q
	}
	q := "INSERT OR REPLACE INTO " + t.clock + " (pk, cl, clock) VALUES " +
		strings.TrimSuffix(strings.Repeat("(?, ?, ?), ", n), ", ")
	t.upserts[key] = q
	return q
}

// maskKey is the key of the written columns (1 or 0 per clock ordinal), interned: no
// allocation once the table has seen the column set.
func (t *table) maskKey(written []bool, scratch []byte) string {
	scratch = scratch[:0]
	for _, w := range written {
		if w {
			scratch = append(scratch, 1)
		} else {
			scratch = append(scratch, 0)
		}
	}
	if k, ok := t.masks[string(scratch)]; ok {
		return k
	}
	k := string(scratch)
	t.masks[k] = k
	return k
}
