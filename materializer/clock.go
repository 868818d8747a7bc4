package materializer

import (
	"encoding/binary"
	"errors"

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
