package format

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// Version is a site's local transaction counter: 1, 2, 3, ... with no gaps.
type Version uint64

// Seq is a node's own arrival counter over its log (the "local seq"): the position a tail of
// the changeset stream resumes from. It is assigned when a version becomes complete.
type Seq uint64

// SentinelCID is the cid of a row's sentinel change (row created, deleted or resurrected).
const SentinelCID = "-1"

// Kind says what a changeset carries. Wire enums are append-only.
type Kind uint8

const (
	// KindData is an ordinary transaction's changes.
	KindData Kind = 0
	// KindEmpty is a version whose changes were all superseded (compacted, as Corrosion
	// "clears" versions): it keeps its place in the vector but carries no changes.
	KindEmpty Kind = 1
	// KindSchema is a replicated schema change: one change per schema element (see
	// SchemaTable), in the data form, so that parts, gossip and sync carry it like data.
	// Compaction must never drop or clear it: every node needs every schema changeset to
	// compute the schema (materializer's merge is over the set of all of them).
	KindSchema Kind = 2
)

// The elements of a schema changeset. Each change of a KindSchema changeset is one element:
// Table is the user table it concerns, PK is PackPK(Text(name)) of the element (the table,
// column or index name), CID is one of the constants below, Val is the SQL text (the CREATE
// TABLE statement, the column definition as in ALTER TABLE ADD COLUMN, the CREATE INDEX
// statement; empty for a dropped index), ColVersion is 0 and CL is 1. What the elements
// mean and how concurrent ones merge is the materializer's business.
const (
	SchemaTable     = "table"
	SchemaColumn    = "column"
	SchemaIndex     = "index"
	SchemaDropIndex = "drop_index"
)

func (k Kind) String() string {
	switch k {
	case KindData:
		return "data"
	case KindEmpty:
		return "empty"
	case KindSchema:
		return "schema"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ParseKind is the inverse of Kind.String.
func ParseKind(s string) (Kind, error) {
	switch s {
	case "", "data":
		return KindData, nil
	case "empty":
		return KindEmpty, nil
	case "schema":
		return KindSchema, nil
	}
	return 0, invalidf("unknown changeset kind %q", s)
}

// Change is one cell write. The origin site and version come from the changeset holding it.
type Change struct {
	Table      string
	PK         PK
	CID        string // a column name, or SentinelCID
	Val        Value  // NULL for the sentinel
	ColVersion uint64
	CL         uint64 // causal length of the row: odd live, even deleted
	Ord        uint64 // ordinal within its version, 0..LastOrd (cr-sqlite's and the wire's "seq")
}

// IsSentinel reports whether c is a row sentinel change.
func (c *Change) IsSentinel() bool { return c.CID == SentinelCID }

// OrdRange is an inclusive range of change ordinals within one version.
type OrdRange struct {
	First, Last uint64
}

// Changeset is all changes of one transaction of one site, or a part of them (a slice by
// ordinal range) when the transaction is large. It is the unit of storage, gossip and sync.
type Changeset struct {
	Site    SiteID
	Version Version
	TS      Timestamp // HLC of the origin's commit; diagnostics only, never merged on
	Span    OrdRange  // the ordinals this changeset (or part) holds
	LastOrd uint64    // the last ordinal of the whole version
	Kind    Kind
	Changes []Change
	// Compacted says that compaction dropped some changes of this version (or part): Changes
	// holds the survivors, in ordinal order, and the ordinals of Span that no change carries were
	// superseded (their winners are elsewhere in the log). A compacted version is complete
	// all the same; a CDC consumer seeing it knows it is reading outside the retention window.
	Compacted bool
	// Seq is this node's local arrival seq of the version; 0 when not read from a log.
	// It is not part of the changeset's identity.
	Seq Seq
	// Digest is the content digest of the whole version (see ComputeDigest), computed by its
	// origin and carried by every copy, parts and compacted copies included, so that two
	// different contents under one (site, version) are told apart. Zero when unknown.
	Digest Digest
}

// IsPart reports whether cs holds only some of its version's ordinals.
func (cs *Changeset) IsPart() bool { return cs.Span.First != 0 || cs.Span.Last != cs.LastOrd }

// NumChanges counts the changes (cells) in cs.
func (cs *Changeset) NumChanges() int { return len(cs.Changes) }

// Validate checks the shape of a changeset and returns an error wrapping ErrInvalid that
// names the problem. A data changeset holds exactly the ordinals Span.First..Span.Last, in order.
func (cs *Changeset) Validate() error {
	if cs.Site.IsZero() {
		return invalidf("changeset: zero site id")
	}
	if cs.Version == 0 {
		return invalidf("changeset %v: version 0 (versions start at 1)", cs.Site)
	}
	if cs.Span.First > cs.Span.Last {
		return invalidf("changeset %v/%d: seq range [%d, %d] is reversed", cs.Site, cs.Version, cs.Span.First, cs.Span.Last)
	}
	if cs.Span.Last > cs.LastOrd {
		return invalidf("changeset %v/%d: seq range [%d, %d] outside last_seq %d", cs.Site, cs.Version, cs.Span.First, cs.Span.Last, cs.LastOrd)
	}
	switch cs.Kind {
	case KindData:
	case KindSchema:
		if err := cs.validateSchema(); err != nil {
			return err
		}
	case KindEmpty:
		if cs.Compacted {
			return invalidf("changeset %v/%d: kind %v cannot be compacted", cs.Site, cs.Version, cs.Kind)
		}
		if len(cs.Changes) != 0 {
			return invalidf("changeset %v/%d: kind %v carries %d changes", cs.Site, cs.Version, cs.Kind, len(cs.Changes))
		}
		return nil
	default:
		return invalidf("changeset %v/%d: unknown kind %d", cs.Site, cs.Version, uint8(cs.Kind))
	}
	if cs.Compacted {
		if cs.Kind != KindData {
			return invalidf("changeset %v/%d: kind %v cannot be compacted", cs.Site, cs.Version, cs.Kind)
		}
		return cs.validateCompacted()
	}
	if want := cs.Span.Last - cs.Span.First + 1; uint64(len(cs.Changes)) != want {
		return invalidf("changeset %v/%d: %d changes for seq range [%d, %d]", cs.Site, cs.Version, len(cs.Changes), cs.Span.First, cs.Span.Last)
	}
	for i := range cs.Changes {
		c := &cs.Changes[i]
		if want := cs.Span.First + uint64(i); c.Ord != want {
			return invalidf("changeset %v/%d: change %d has seq %d, want %d", cs.Site, cs.Version, i, c.Ord, want)
		}
		if err := c.Validate(); err != nil {
			return fmt.Errorf("changeset %v/%d: change seq %d: %w", cs.Site, cs.Version, c.Ord, err)
		}
	}
	return nil
}

// validateSchema checks what a schema changeset's changes must be beyond a data change's shape.
func (cs *Changeset) validateSchema() error {
	for i := range cs.Changes {
		c := &cs.Changes[i]
		switch c.CID {
		case SchemaTable, SchemaColumn, SchemaIndex, SchemaDropIndex:
		default:
			return invalidf("changeset %v/%d: schema element %d: unknown kind %q", cs.Site, cs.Version, c.Ord, c.CID)
		}
		if c.Val.Type != TypeText || c.CL != 1 || c.ColVersion != 0 {
			return invalidf("changeset %v/%d: schema element %d: want text SQL, cl 1, col_version 0", cs.Site, cs.Version, c.Ord)
		}
		name, err := UnpackPK(c.PK)
		if err != nil || len(name) != 1 || name[0].Type != TypeText || name[0].Text == "" || !utf8.ValidString(name[0].Text) {
			return invalidf("changeset %v/%d: schema element %d: the key must be one non-empty UTF-8 text name", cs.Site, cs.Version, c.Ord)
		}
	}
	return nil
}

// validateCompacted checks a compacted data changeset: its changes lie in Span in strictly
// increasing ordinal order (the missing ordinals were superseded).
func (cs *Changeset) validateCompacted() error {
	if want := cs.Span.Last - cs.Span.First + 1; uint64(len(cs.Changes)) > want {
		return invalidf("changeset %v/%d: %d changes for seq range [%d, %d]", cs.Site, cs.Version, len(cs.Changes), cs.Span.First, cs.Span.Last)
	}
	for i := range cs.Changes {
		c := &cs.Changes[i]
		if c.Ord < cs.Span.First || c.Ord > cs.Span.Last || (i > 0 && c.Ord <= cs.Changes[i-1].Ord) {
			return invalidf("changeset %v/%d: compacted change %d has seq %d, out of order or outside [%d, %d]", cs.Site, cs.Version, i, c.Ord, cs.Span.First, cs.Span.Last)
		}
		if err := c.Validate(); err != nil {
			return fmt.Errorf("changeset %v/%d: change seq %d: %w", cs.Site, cs.Version, c.Ord, err)
		}
	}
	return nil
}

// Validate checks one change's shape.
func (c *Change) Validate() error {
	if c.Table == "" {
		return invalidf("empty table name")
	}
	// Names are SQL identifiers: bytes that are not UTF-8 could not be shown, quoted or
	// carried through the JSON form unchanged.
	if !utf8.ValidString(c.Table) {
		return invalidf("table name %q is not UTF-8", c.Table)
	}
	if c.CID == "" {
		return invalidf("table %q: empty cid", c.Table)
	}
	if !utf8.ValidString(c.CID) {
		return invalidf("table %q: cid %q is not UTF-8", c.Table, c.CID)
	}
	if err := validatePK(c.PK); err != nil {
		return invalidf("table %q: pk: %v", c.Table, err)
	}
	if err := c.Val.Validate(); err != nil {
		return fmt.Errorf("table %q: %w", c.Table, err)
	}
	if c.CL == 0 {
		return invalidf("table %q: cl 0", c.Table)
	}
	if c.IsSentinel() && !c.Val.IsNull() {
		return invalidf("table %q: sentinel with a value", c.Table)
	}
	return nil
}

// changesetJSON is the JSON form of docs/DESIGN.md section 7. Its names are the wire's, not
// Go's: "seqs" and "last_seq" are the ordinals (Span, LastOrd), cr-sqlite's and Corrosion's
// names, kept for compatibility; "seq" is the arrival Seq.
type changesetJSON struct {
	Seq     Seq       `json:"seq"`
	Site    SiteID    `json:"site"`
	Version Version   `json:"version"`
	TS      Timestamp `json:"ts"`
	Seqs    []uint64  `json:"seqs"`
	LastSeq uint64    `json:"last_seq"`
	Kind    string    `json:"kind,omitempty"`
	// Compacted marks a version compaction trimmed (outside the retention window).
	Compacted bool `json:"compacted,omitempty"`
	// Digest is the hex content digest; absent when unknown.
	Digest  string       `json:"digest,omitempty"`
	Changes []changeJSON `json:"changes"`
}

type changeJSON struct {
	Table      string  `json:"table"`
	PK         []Value `json:"pk"`
	CID        string  `json:"cid"`
	Val        Value   `json:"val"`
	ColVersion uint64  `json:"col_version"`
	CL         uint64  `json:"cl"`
	Seq        uint64  `json:"seq"`
}

// MarshalJSON writes the docs/DESIGN.md section 7 form, with the pk as an array of values.
func (cs *Changeset) MarshalJSON() ([]byte, error) {
	j := changesetJSON{
		Seq: cs.Seq, Site: cs.Site, Version: cs.Version, TS: cs.TS,
		Seqs: []uint64{cs.Span.First, cs.Span.Last}, LastSeq: cs.LastOrd,
		Changes: make([]changeJSON, len(cs.Changes)), Compacted: cs.Compacted,
	}
	if cs.Kind != KindData {
		j.Kind = cs.Kind.String()
	}
	if !cs.Digest.IsZero() {
		j.Digest = cs.Digest.String()
	}
	for i := range cs.Changes {
		c := &cs.Changes[i]
		pk, err := UnpackPK(c.PK)
		if err != nil {
			return nil, fmt.Errorf("changeset %v/%d: %w", cs.Site, cs.Version, err)
		}
		j.Changes[i] = changeJSON{Table: c.Table, PK: pk, CID: c.CID, Val: c.Val, ColVersion: c.ColVersion, CL: c.CL, Seq: c.Ord}
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the JSON form and validates the result.
func (cs *Changeset) UnmarshalJSON(b []byte) error {
	var j changesetJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return invalidf("changeset json: %v", err)
	}
	// A fixed [2]uint64 would silently drop a third element and zero a missing one.
	if len(j.Seqs) != 2 {
		return invalidf("changeset json: seqs has %d elements, want [first, last]", len(j.Seqs))
	}
	kind, err := ParseKind(j.Kind)
	if err != nil {
		return err
	}
	out := Changeset{
		Seq: j.Seq, Site: j.Site, Version: j.Version, TS: j.TS,
		Span: OrdRange{First: j.Seqs[0], Last: j.Seqs[1]}, LastOrd: j.LastSeq, Kind: kind, Compacted: j.Compacted,
		Changes: make([]Change, len(j.Changes)),
	}
	if j.Digest != "" {
		d, err := hex.DecodeString(j.Digest)
		if err != nil || len(d) != len(out.Digest) {
			return invalidf("changeset json: digest %q: want %d hex bytes", truncate(j.Digest, 40), len(out.Digest))
		}
		out.Digest = Digest(d)
	}
	for i, c := range j.Changes {
		pk, err := PackPK(c.PK...)
		if err != nil {
			return fmt.Errorf("changeset json: change %d: %w", i, err)
		}
		out.Changes[i] = Change{Table: c.Table, PK: pk, CID: c.CID, Val: c.Val, ColVersion: c.ColVersion, CL: c.CL, Ord: c.Seq}
	}
	if err := out.Validate(); err != nil {
		return err
	}
	*cs = out
	return nil
}
