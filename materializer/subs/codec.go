package subs

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"strconv"

	"github.com/patinadb/patina/log"
)

var errCodec = errors.New("subs: corrupt encoded values")

// appendList appends items, each prefixed with its length as a uvarint. The result is
// self-delimiting, so concatenations compare equal only when the items do.
func appendList(b []byte, items ...[]byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(items)))
	for _, it := range items {
		b = binary.AppendUvarint(b, uint64(len(it)))
		b = append(b, it...)
	}
	return b
}

func splitList(b []byte) ([][]byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return nil, errCodec
	}
	b = b[k:]
	out := make([][]byte, 0, n)
	for range n {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return nil, errCodec
		}
		out = append(out, b[k:k+int(l)])
		b = b[k+int(l):]
	}
	if len(b) != 0 {
		return nil, errCodec
	}
	return out, nil
}

// encodeValues encodes cells type-exactly (each as a one-column packed pk).
func encodeValues(vals []log.Value) []byte {
	items := make([][]byte, len(vals))
	for i, v := range vals {
		pk, err := log.PackPK(v)
		if err != nil { // NaN cannot come out of SQLite; keep a distinct marker anyway
			pk = []byte{0}
		}
		items[i] = pk
	}
	return appendList(nil, items...)
}

func decodeValues(b []byte) ([]log.Value, error) {
	items, err := splitList(b)
	if err != nil {
		return nil, err
	}
	out := make([]log.Value, len(items))
	for i, it := range items {
		vs, err := log.UnpackPK(it)
		if err != nil || len(vs) != 1 {
			return nil, errCodec
		}
		out[i] = vs[0]
	}
	return out, nil
}

// appendCells appends cells as a JSON array in docs/DESIGN.md's value form.
func appendCells(b []byte, cells []log.Value) []byte {
	b = append(b, '[')
	for i, v := range cells {
		if i > 0 {
			b = append(b, ',')
		}
		b = v.AppendJSON(b)
	}
	return append(b, ']')
}

// Event lines, each one NDJSON line with its newline.

func columnsLine(cols []string) []byte {
	b, _ := json.Marshal(struct {
		Columns []string `json:"columns"`
	}{cols})
	return append(b, '\n')
}

func rowLine(rowid int64, cells []log.Value) []byte {
	b := append([]byte(nil), `{"row":[`...)
	b = strconv.AppendInt(b, rowid, 10)
	b = append(b, ',')
	b = appendCells(b, cells)
	return append(b, "]}\n"...)
}

func eoqLine(seconds float64, changeID uint64) []byte {
	b := append([]byte(nil), `{"eoq":{"time":`...)
	b = strconv.AppendFloat(b, seconds, 'g', -1, 64)
	b = append(b, `,"change_id":`...)
	b = strconv.AppendUint(b, changeID, 10)
	return append(b, "}}\n"...)
}

func changeLine(kind string, rowid int64, cells []log.Value, changeID uint64) []byte {
	b := append([]byte(nil), `{"change":["`...)
	b = append(b, kind...)
	b = append(b, `",`...)
	b = strconv.AppendInt(b, rowid, 10)
	b = append(b, ',')
	b = appendCells(b, cells)
	b = append(b, ',')
	b = strconv.AppendUint(b, changeID, 10)
	return append(b, "]}\n"...)
}

func notifyLine(kind string, pk []log.Value) []byte {
	b := append([]byte(nil), `{"notify":["`...)
	b = append(b, kind...)
	b = append(b, `",`...)
	b = appendCells(b, pk)
	return append(b, "]}\n"...)
}

// ErrorLine is the NDJSON error event for err.
func ErrorLine(err error) []byte {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{err.Error()})
	return append(b, '\n')
}
