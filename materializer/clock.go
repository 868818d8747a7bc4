package materializer

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"hash/maphash"

	"github.com/patinadb/patina/log"
)

// cellClock is the winning write of one cell (or of the row sentinel): docs/DESIGN.md section 3.1's clock
// record without db_version, which is local and not needed by any rule.
type cellClock struct {
	Present bool
	// Synthetic marks a sentinel made by R4 from a column change rather than received as a
	// sentinel change (see tieSentinel).
	Synthetic  bool
	ColVersion uint64
	Site       log.SiteID
	Version    log.Version
	Seq        uint64
}

// rowClock is the clock of one row: the sentinel and one record per non-pk column, indexed
// by the column's clock ordinal (its position among the table's non-pk columns). One SQLite
// row per table row keeps the fold at one clock read and one clock write per row, which is
// what makes the fold rate reachable (docs/DESIGN.md section 9).
type rowClock struct {
	Sentinel cellClock
	Cols     []cellClock
}

// CL is the row's causal length (docs/DESIGN.md section 3.1).
func (c *rowClock) CL() uint64 {
	if c.Sentinel.Present {
		return c.Sentinel.ColVersion
	}
	for i := range c.Cols {
		if c.Cols[i].Present {
			return 1
		}
	}
	return 0
}

// dropCols forgets every column record (a delete, or a higher odd cl arriving: docs/DESIGN.md rule R2, R3
// and condition 3).
func (c *rowClock) dropCols() {
	for i := range c.Cols {
		c.Cols[i] = cellClock{}
	}
}

func (c *rowClock) col(ord int) *cellClock {
	for len(c.Cols) <= ord {
		c.Cols = append(c.Cols, cellClock{})
	}
	return &c.Cols[ord]
}

func (c *rowClock) clone() rowClock {
	return rowClock{Sentinel: c.Sentinel, Cols: append([]cellClock(nil), c.Cols...)}
}

const clockFormat = 1

// encode writes the clock deterministically, so that a rebuilt view is byte-identical.
// Layout: format byte; flags (bit 0 sentinel, bit 1 synthetic sentinel); [sentinel record]; uvarint count of present
// columns; per present column, in increasing order: uvarint ordinal, record. A record is uvarint col_version,
// 16-byte site, uvarint version, uvarint ordinal.
func (c *rowClock) encode(b []byte) []byte {
	b = append(b[:0], clockFormat)
	if c.Sentinel.Present {
		if c.Sentinel.Synthetic {
			b = append(b, 3)
		} else {
			b = append(b, 1)
		}
		b = appendRecord(b, &c.Sentinel)
	} else {
		b = append(b, 0)
	}
	n := 0
	for i := range c.Cols {
		if c.Cols[i].Present {
			n++
		}
	}
	b = binary.AppendUvarint(b, uint64(n))
	for i := range c.Cols {
		if c.Cols[i].Present {
			b = binary.AppendUvarint(b, uint64(i))
			b = appendRecord(b, &c.Cols[i])
		}
	}
	return b
}

func appendRecord(b []byte, r *cellClock) []byte {
	b = binary.AppendUvarint(b, r.ColVersion)
	b = append(b, r.Site[:]...)
	b = binary.AppendUvarint(b, uint64(r.Version))
	return binary.AppendUvarint(b, r.Seq)
}

var errBadClock = errors.New("materializer: corrupt clock record")

func decodeClock(b []byte, into *rowClock) error {
	*into = rowClock{Cols: into.Cols[:0]}
	if len(b) < 2 || b[0] != clockFormat {
		return errBadClock
	}
	flags := b[1]
	b = b[2:]
	var err error
	if flags&^3 != 0 || flags == 2 {
		return errBadClock
	}
	if flags&1 != 0 {
		if b, err = readRecord(b, &into.Sentinel); err != nil {
			return err
		}
		into.Sentinel.Synthetic = flags&2 != 0
	}
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return errBadClock
	}
	b = b[k:]
	for range n {
		ord, k := binary.Uvarint(b)
		if k <= 0 || ord > 1<<16 {
			return errBadClock
		}
		b = b[k:]
		if int(ord) < len(into.Cols) && into.Cols[ord].Present {
			return errBadClock
		}
		if b, err = readRecord(b, into.col(int(ord))); err != nil {
			return err
		}
	}
	if len(b) != 0 {
		return errBadClock
	}
	return nil
}

func readRecord(b []byte, r *cellClock) ([]byte, error) {
	cv, k := binary.Uvarint(b)
	if k <= 0 || len(b) < k+16 {
		return nil, errBadClock
	}
	b = b[k:]
	copy(r.Site[:], b[:16])
	b = b[16:]
	v, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, errBadClock
	}
	b = b[k:]
	s, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, errBadClock
	}
	r.Present, r.ColVersion, r.Version, r.Seq = true, cv, log.Version(v), s
	return b[k:], nil
}

// clockFilter knows, without reading the clock table, that some rows have no clock: every
// clock row of its table has a pk at most hi (none: no bound) or is in bits, a Bloom filter
// (two bits per key) of the keys above hi, loaded from the table and fed by every clock
// write since. A key above hi that the filter never saw has no clock row. Rows a batch
// creates with keys that grow (counters, time-ordered ids) are then known new without a
// B-tree seek each: the clock reads ahead of a fold or a local transaction were 5-9% of the
// agents' CPU per replicated row of 100-row batches (issue 14, bench/RESULTS.md "Round 6").
// A bit array, not a Go map: a map of 64k keys cost a cache miss per probe, as much as half
// the reads it saved.
//
// Errors only ever cost a read: a write that is rolled back leaves its key in the filter,
// and keys sharing bits make an absent row look written. What must hold is that every clock
// write on the writer connection passes through wrote (writeBuf.flush is the only writer of
// clock rows) when it is written, never before a load: a load reads the table, so a write
// made before it is in what it reads and one made after it is recorded. A filter belongs to
// one table struct (rebuilt by every schema load) and one writer connection (a rebuild
// opens a new one); either change starts it afresh.
type clockFilter struct {
	conn *dbconn // the connection the filter was loaded on; nil: not loaded
	hi   []byte  // nil: no bound (every key is above hi)
	bits []uint64
	n    int // keys recorded
	seed maphash.Seed
}

// A filter holds a key per 16 bits at most: at most 1.4% false "maybe"s, each a read of its
// own, as costly as 10 rows' reads in an IN list (with one bit per key, 3% of the keys cost
// a third of the reads the filter saved). Its array starts at 4 kbit, so that a table
// written rarely costs little memory, and grows fourfold when full, up to 1 Mbit (128 KiB);
// every load reads back the keys above hi, up to what the array holds over 4 when it grows
// and over 8 at its largest: when there are more, hi rises to the greatest key left out.
// Rows in flight whose keys fall below hi then are read; with the newest 8k keys kept, few
// are.
const (
	clockFilterMinWords = 1 << 6
	clockFilterMaxWords = 1 << 14
)

func (f *clockFilter) capacity() int { return len(f.bits) * 64 / 16 }

func (f *clockFilter) above(pk []byte) bool { return f.hi == nil || bytes.Compare(pk, f.hi) > 0 }

// bitsOf locates pk's two bits: the two halves of its hash, mod the array's bits (a power of
// two, at most 2^32).
func (f *clockFilter) bitsOf(pk []byte) (p1, p2 uint64) {
	h := maphash.Bytes(f.seed, pk)
	n := uint64(len(f.bits))*64 - 1
	return h & n, h >> 32 & n
}

func (f *clockFilter) set(pk []byte) {
	p1, p2 := f.bitsOf(pk)
	f.bits[p1>>6] |= 1 << (p1 & 63)
	f.bits[p2>>6] |= 1 << (p2 & 63)
	f.n++
}

// absent reports whether the filter knows that pk has no clock row.
func (f *clockFilter) absent(pk []byte) bool {
	if f.conn == nil || !f.above(pk) {
		return false
	}
	p1, p2 := f.bitsOf(pk)
	return f.bits[p1>>6]&(1<<(p1&63)) == 0 || f.bits[p2>>6]&(1<<(p2&63)) == 0
}

// wrote records a clock row written on the writer connection.
func (f *clockFilter) wrote(pk []byte) {
	if f.conn != nil && f.above(pk) {
		f.set(pk)
	}
}

// clockFilter returns t's filter, loaded for the writer connection, or nil when the
// filter is off (Config.noClockFilter) or cannot be loaded.
func (m *Materializer) clockFilter(ctx context.Context, t *table) *clockFilter {
	f := &t.filter
	if m.cfg.noClockFilter {
		return nil
	}
	if f.conn == m.w && f.n < f.capacity() {
		return f
	}
	minWords, maxWords := clockFilterMinWords, clockFilterMaxWords
	if w := m.cfg.clockFilterWords; w > 0 {
		minWords, maxWords = w, w
	}
	words := minWords
	if f.conn == m.w {
		words = min(4*len(f.bits), maxWords)
	} else {
		f.hi = nil
	}
	f.conn = nil
	if err := m.loadClockFilter(ctx, t, f, words); err != nil {
		m.logger.Warn("clock filter: load failed; reading every clock", "table", t.Name, "err", err)
		return nil // the caller reads the clocks
	}
	m.clockFilterLoads.Add(1)
	return f
}

// loadClockFilter fills f, with an array of words words, with the greatest keys above its
// hi, up to a quarter of its capacity when it grows (all it recorded: nothing is forgotten)
// and an eighth when it stays the size it was (a load then reads 8k keys per 56k recorded:
// at a quarter, the loads were 0.8 us of the agents' 70 us per replicated row); hi rises to
// the greatest key left out, if any.
func (m *Materializer) loadClockFilter(ctx context.Context, t *table, f *clockFilter, words int) error {
	grows := len(f.bits) != words
	if grows {
		f.bits = make([]uint64, words)
	}
	if f.seed == (maphash.Seed{}) {
		f.seed = maphash.MakeSeed()
	}
	clear(f.bits)
	f.n = 0
	keep := f.capacity() / 8
	if grows {
		keep = f.capacity() / 4
	}
	q, args := "SELECT pk FROM "+t.clock+" ORDER BY pk DESC LIMIT ?", []any{keep + 1}
	if f.hi != nil {
		q, args = "SELECT pk FROM "+t.clock+" WHERE pk > ? ORDER BY pk DESC LIMIT ?", []any{f.hi, keep + 1}
	}
	s, err := m.w.stmt(ctx, q)
	if err != nil {
		return err
	}
	rows, err := s.QueryContext(ctx, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	kept := 0
	for rows.Next() {
		var pk sql.RawBytes
		if err := rows.Scan(&pk); err != nil {
			return err
		}
		if kept == keep {
			f.hi = bytes.Clone(pk) // every key above it is kept
			break
		}
		f.set(pk)
		kept++
	}
	if err := rows.Err(); err != nil {
		return err
	}
	f.conn = m.w
	return nil
}

// mayHaveClocks returns the keys of pks the filter cannot rule out, in order: pks itself
// without a filter, else in m.scanKeys's array (valid until the next call).
func (m *Materializer) mayHaveClocks(ctx context.Context, t *table, pks [][]byte) [][]byte {
	f := m.clockFilter(ctx, t)
	if f == nil {
		return pks
	}
	out := m.scanKeys[:0]
	for _, pk := range pks {
		if !f.absent(pk) {
			out = append(out, pk)
		}
	}
	m.scanKeys = out[:0]
	m.clockSkips.Add(int64(len(pks) - len(out)))
	return out
}
