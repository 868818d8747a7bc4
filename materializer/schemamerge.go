package materializer

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/patinadb/patina/log"
)

// The replicated schema. A migration (Migrate, or the schema files at Open) is appended to the
// log as a schema changeset of elements (log.SchemaTable ...); every node keeps every element
// it folded in __patina_schema and computes the schema from that set alone with mergeSchema,
// so the result does not depend on the order elements arrive in. The rules:
//
//   - Elements are totally ordered by (HLC ts, site, version, ordinal). A migration takes a
//     ts after every element its node holds (appendSchema), so a migration made after
//     another one was seen orders after it, whatever the clocks.
//   - A table is defined by its first valid table element; a later one that defines the same
//     columns is a duplicate. A later one whose columns are a prefix of the winner's (a
//     schema file that lags: a node started with an older file before it heard from the
//     others) adds nothing, and one that begins with the winner's columns (a file ahead)
//     adds its further columns as if they were column elements of its own, after it in
//     element order. Any other difference loses (a conflict, reported).
//   - A column element adds a column at the end of its table, in element order; one whose
//     name the table has already is a duplicate when its definition is the same, else it
//     loses. A column element that SQLite or the rules refuse on that table loses.
//   - An index is what its last element says (created with that definition, or dropped):
//     indexes hold no data, so a later definition simply replaces an earlier one.
//   - Elements for a table no element defines yet wait (they are not conflicts): the table's
//     element may still be on its way.
//
// A node whose view does not match the merged schema by appending (a column that another
// node added concurrently sorts before one this node already has, or a conflict was won by a
// definition this node had not applied) recreates that table alone and refolds its changes
// from the log, locally (realize, recreateTable, refoldTables).

// element is one element of a schema changeset, with its origin.
type element struct {
	Kind    string // log.SchemaTable, log.SchemaColumn, log.SchemaIndex, log.SchemaDropIndex
	Table   string
	Name    string
	SQL     string
	TS      log.Timestamp
	Site    log.SiteID
	Version log.Version
	Seq     uint64
	// Sub > 0 marks a column a table element implies (its Sub-th column beyond its table's
	// winning definition; see merger.tables): it orders right after its table element.
	Sub int
}

// compareElements is the total order of the merge.
func compareElements(a, b *element) int {
	if c := cmp.Compare(a.TS, b.TS); c != 0 {
		return c
	}
	if c := a.Site.Compare(b.Site); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Version, b.Version); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Seq, b.Seq); c != 0 {
		return c
	}
	return cmp.Compare(a.Sub, b.Sub)
}

// elementsOf reads the elements of a schema changeset (validated by package log).
func elementsOf(cs *log.Changeset) []element {
	out := make([]element, 0, len(cs.Changes))
	for i := range cs.Changes {
		c := &cs.Changes[i]
		name, err := log.UnpackPK(c.PK)
		if err != nil || len(name) != 1 {
			continue
		}
		out = append(out, element{Kind: c.CID, Table: c.Table, Name: name[0].Text, SQL: c.Val.Text,
			TS: cs.TS, Site: cs.Site, Version: cs.Version, Seq: c.Ord})
	}
	return out
}

// schemaChanges turns elements into the changes of a schema changeset.
func schemaChanges(els []element) []log.Change {
	out := make([]log.Change, len(els))
	for i, e := range els {
		out[i] = log.Change{Table: e.Table, PK: log.MustPackPK(log.Text(e.Name)), CID: e.Kind,
			Val: log.Text(e.SQL), CL: 1, Ord: uint64(i)}
	}
	return out
}

// SchemaOrigin names the schema changeset an element came from.
type SchemaOrigin struct {
	Site    log.SiteID    `json:"site"`
	Version log.Version   `json:"version"`
	TS      log.Timestamp `json:"ts"`
}

func (e *element) origin() SchemaOrigin {
	return SchemaOrigin{Site: e.Site, Version: e.Version, TS: e.TS}
}

// SchemaConflict is a schema element that lost the merge: every node that holds the same
// elements reports the same conflicts.
type SchemaConflict struct {
	Kind   string        `json:"kind"` // table, column, index
	Table  string        `json:"table"`
	Name   string        `json:"name"`
	SQL    string        `json:"sql"`
	Loser  SchemaOrigin  `json:"loser"`
	Winner *SchemaOrigin `json:"winner,omitempty"` // nil when the element was refused on its own
	Reason string        `json:"reason"`
}

// mergedTable is one table of the merged schema.
type mergedTable struct {
	Name    string
	Create  *element          // the winning table element
	Added   []*element        // accepted column elements, in order
	Cols    []column          // the resulting columns, base then added
	Version int               // accepted elements of the table (creation, columns, index changes)
	Last    *element          // the latest of them
	defs    map[string]string // lower-case column name -> definition text
}

// laggingTable is a table element with fewer columns than its merged table.
type laggingTable struct {
	Table       string
	Origin      SchemaOrigin
	Have, Merge int // columns
}

// mergedIndex is an index whose last element decides it.
type mergedIndex struct {
	Name  string
	Table string
	Last  *element // a create (SQL) or a drop
}

// mergedSchema is the schema the set of elements defines.
type mergedSchema struct {
	Tables    []*mergedTable // in the order of their winning elements
	Indexes   []*mergedIndex // by name
	Conflicts []SchemaConflict
	Waiting   int // elements for tables no element defines yet
	// Latest is the greatest ts of the elements: a migration made here orders after it.
	Latest log.Timestamp
	// Lagging are the table elements that did not win and define fewer columns than their
	// table has (a schema file that lags, appended by a node before it heard from the
	// others): not conflicts, but their node warns about its file.
	Lagging []laggingTable
	byName  map[string]*mergedTable
}

func (s *mergedSchema) table(name string) *mergedTable {
	if s == nil {
		return nil
	}
	return s.byName[strings.ToLower(name)]
}

func (s *mergedSchema) hasIndex(name string) bool {
	for _, ix := range s.Indexes {
		if strings.EqualFold(ix.Name, name) {
			return true
		}
	}
	return false
}

// mergeSchema computes the schema a set of elements defines; the result depends on the set
// only (neither on the order of els nor on duplicates). It builds the tables in a private
// in-memory database to check them the way SQLite will.
func mergeSchema(ctx context.Context, els []element) (*mergedSchema, error) {
	sorted := make([]*element, len(els))
	for i := range els {
		sorted[i] = &els[i]
	}
	slices.SortFunc(sorted, compareElements)
	sorted = slices.CompactFunc(sorted, func(a, b *element) bool { return compareElements(a, b) == 0 })

	out := &mergedSchema{byName: map[string]*mergedTable{}}
	if len(sorted) == 0 {
		return out, nil
	}
	out.Latest = sorted[len(sorted)-1].TS
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()

	m := &merger{ctx: ctx, conn: conn, out: out}
	// Tables before columns before indexes: each phase needs the tables the last one kept.
	if err := m.tables(sorted); err != nil {
		return nil, err
	}
	if err := m.columns(m.columnElements(sorted)); err != nil {
		return nil, err
	}
	m.indexes(sorted)
	for _, l := range m.subsumed {
		if t := out.table(l.Table); t != nil && l.Have < len(t.Cols) {
			l.Merge = len(t.Cols)
			out.Lagging = append(out.Lagging, l)
		}
	}
	slices.SortFunc(out.Indexes, func(a, b *mergedIndex) int { return strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)) })
	slices.SortFunc(out.Conflicts, func(a, b SchemaConflict) int {
		return cmp.Or(cmp.Compare(a.Loser.TS, b.Loser.TS), a.Loser.Site.Compare(b.Loser.Site),
			cmp.Compare(a.Loser.Version, b.Loser.Version), strings.Compare(a.Name, b.Name))
	})
	return out, nil
}

// merger holds one mergeSchema's scratch database and result while its phases run.
type merger struct {
	ctx  context.Context
	conn *sql.Conn
	out  *mergedSchema
	// implied are the columns that table elements add beyond their table's winning
	// definition (files ahead), for the columns phase.
	implied []*element
	// subsumed are the table elements that neither won nor lost, with their column counts.
	subsumed []laggingTable
}

// keyColumns counts the primary key's columns.
func keyColumns(cols []column) int {
	n := 0
	for _, c := range cols {
		if c.PK > 0 {
			n++
		}
	}
	return n
}

// columnElements is the column elements of sorted and the columns table elements imply, in
// element order.
func (m *merger) columnElements(sorted []*element) []*element {
	var out []*element
	for _, e := range sorted {
		if e.Kind == log.SchemaColumn {
			out = append(out, e)
		}
	}
	out = append(out, m.implied...)
	slices.SortFunc(out, compareElements)
	return out
}

// imply records the columns of a later table element e (parsed as s, its columns cand)
// beyond the winning definition w of its table, when the two agree on the columns they
// share by position: e lags (nothing to add) or is ahead (its further columns are added
// like column elements, in element order). It reports false when they differ.
func (m *merger) imply(e *element, s *schemaStmt, cand []column, w *mergedTable) bool {
	n := min(len(cand), len(w.Cols))
	if !sameColumns(cand[:n], w.Cols[:n]) || keyColumns(cand) != keyColumns(w.Cols) {
		return false
	}
	for i, c := range cand[n:] {
		def, ok := s.colDefs[strings.ToLower(c.Name)]
		if !ok {
			return false
		}
		m.implied = append(m.implied, &element{Kind: log.SchemaColumn, Table: w.Name, Name: c.Name, SQL: def,
			TS: e.TS, Site: e.Site, Version: e.Version, Seq: e.Seq, Sub: i + 1})
	}
	return true
}

// lose records e as a conflict's loser, with the element that won when there is one.
func (m *merger) lose(e, winner *element, reason string) {
	c := SchemaConflict{Kind: e.Kind, Table: e.Table, Name: e.Name, SQL: e.SQL, Loser: e.origin(), Reason: reason}
	if winner != nil {
		o := winner.origin()
		c.Winner = &o
	}
	m.out.Conflicts = append(m.out.Conflicts, c)
}

// touch counts e in t's version and keeps the latest element that changed t.
func touch(t *mergedTable, e *element) {
	t.Version++
	if t.Last == nil || compareElements(e, t.Last) > 0 {
		t.Last = e
	}
}

// tables keeps, for each table name, the first valid definition in element order.
func (m *merger) tables(sorted []*element) error {
	ctx, conn, out := m.ctx, m.conn, m.out
	for _, e := range sorted {
		if e.Kind != log.SchemaTable {
			continue
		}
		s, err := parseSchemaStmt(e.SQL)
		if err == nil && (s.kind != "table" || !strings.EqualFold(s.name, e.Name) || !strings.EqualFold(e.Table, e.Name)) {
			err = fmt.Errorf("%w: not a CREATE TABLE of %q", ErrSchema, e.Name)
		}
		if err == nil && isInternalName(s.name) {
			err = fmt.Errorf("%w: %q is a reserved name", ErrSchema, s.name)
		}
		if err != nil {
			m.lose(e, nil, err.Error())
			continue
		}
		if w := out.table(e.Name); w != nil {
			if normalizeSQL(w.Create.SQL) == normalizeSQL(e.SQL) {
				m.subsumed = append(m.subsumed, laggingTable{Table: w.Name, Origin: e.origin(), Have: len(w.Cols)})
				continue
			}
			cand, err := scratchTable(ctx, s)
			if err == nil && m.imply(e, s, cand.Cols, w) {
				// The same table spelled differently, or a file that lags or is ahead.
				m.subsumed = append(m.subsumed, laggingTable{Table: w.Name, Origin: e.origin(), Have: len(cand.Cols)})
				continue
			}
			m.lose(e, w.Create, fmt.Sprintf("table %q is already defined otherwise", w.Name))
			continue
		}
		if _, err := conn.ExecContext(ctx, e.SQL); err != nil {
			m.lose(e, nil, err.Error())
			continue
		}
		t, err := loadTable(ctx, conn, s.name)
		if err == nil {
			err = checkTable(ctx, conn, t, s.toks)
		}
		if err != nil {
			if _, derr := conn.ExecContext(ctx, "DROP TABLE "+quoteIdent(s.name)); derr != nil {
				return derr
			}
			m.lose(e, nil, err.Error())
			continue
		}
		mt := &mergedTable{Name: t.Name, Create: e, Cols: t.Cols, defs: s.colDefs}
		touch(mt, e)
		out.Tables = append(out.Tables, mt)
		out.byName[strings.ToLower(t.Name)] = mt
	}
	return nil
}

// columns appends added columns to their tables in element order; a second definition of
// a column loses unless it is the same definition.
func (m *merger) columns(sorted []*element) error {
	ctx, conn, out := m.ctx, m.conn, m.out
	for _, e := range sorted {
		if e.Kind != log.SchemaColumn {
			continue
		}
		t := out.table(e.Table)
		if t == nil {
			out.Waiting++
			continue
		}
		lname := strings.ToLower(e.Name)
		if def, ok := t.defs[lname]; ok {
			if normalizeSQL(def) != normalizeSQL(e.SQL) {
				winner := t.Create
				for _, a := range t.Added {
					if strings.EqualFold(a.Name, e.Name) {
						winner = a
					}
				}
				m.lose(e, winner, fmt.Sprintf("table %q already has a column %q defined otherwise", t.Name, e.Name))
			}
			continue
		}
		if _, err := conn.ExecContext(ctx, "SAVEPOINT col"); err != nil {
			return err
		}
		nt, err := addColumn(ctx, conn, t.Name, e)
		if err != nil {
			if _, rerr := conn.ExecContext(ctx, "ROLLBACK TO col"); rerr != nil {
				return rerr
			}
		}
		if _, rerr := conn.ExecContext(ctx, "RELEASE col"); rerr != nil {
			return rerr
		}
		if err != nil {
			m.lose(e, nil, err.Error())
			continue
		}
		t.Cols = nt.Cols
		t.Added = append(t.Added, e)
		t.defs[lname] = e.SQL
		touch(t, e)
	}
	return nil
}

// indexes keeps, for each index name, what its last element (create or drop) says.
func (m *merger) indexes(sorted []*element) {
	last := map[string]*element{}
	for _, e := range sorted {
		if e.Kind == log.SchemaIndex || e.Kind == log.SchemaDropIndex {
			last[strings.ToLower(e.Name)] = e
		}
	}
	for _, e := range last {
		t := m.out.table(e.Table)
		if t == nil {
			m.out.Waiting++
			continue
		}
		if e.Kind == log.SchemaIndex {
			if err := checkIndex(m.ctx, m.conn, e); err != nil {
				m.lose(e, nil, err.Error())
				continue
			}
		}
		touch(t, e)
		m.out.Indexes = append(m.out.Indexes, &mergedIndex{Name: e.Name, Table: t.Name, Last: e})
	}
}

// addColumn adds e's column to table in the scratch database and checks the result.
func addColumn(ctx context.Context, q querier, name string, e *element) (*table, error) {
	before, err := loadTable(ctx, q, name)
	if err != nil {
		return nil, err
	}
	if _, err := q.ExecContext(ctx, "ALTER TABLE "+quoteIdent(name)+" ADD COLUMN "+e.SQL); err != nil {
		return nil, fmt.Errorf("%w: table %q: add column %q: %w", ErrSchema, name, e.Name, err)
	}
	t, err := loadTable(ctx, q, name)
	if err != nil {
		return nil, err
	}
	if len(t.Cols) != len(before.Cols)+1 || !strings.EqualFold(t.Cols[len(t.Cols)-1].Name, e.Name) {
		return nil, fmt.Errorf("%w: table %q: column element %q defines another column: %q", ErrSchema, name, e.Name, e.SQL)
	}
	if err := checkTable(ctx, q, t, nil); err != nil {
		return nil, err
	}
	return t, nil
}

// checkIndex creates and drops e's index in the scratch database.
func checkIndex(ctx context.Context, q querier, e *element) error {
	s, err := parseSchemaStmt(e.SQL)
	if err != nil {
		return err
	}
	if s.kind != "index" || !strings.EqualFold(s.name, e.Name) || !strings.EqualFold(s.on, e.Table) {
		return fmt.Errorf("%w: not a CREATE INDEX %q ON %q", ErrSchema, e.Name, e.Table)
	}
	if s.unique {
		return fmt.Errorf("%w: unique index %q: UNIQUE constraints other than the primary key cannot hold under concurrent writes at several sites", ErrSchema, s.name)
	}
	if _, err := q.ExecContext(ctx, e.SQL); err != nil {
		return fmt.Errorf("%w: %w", ErrSchema, err)
	}
	_, err = q.ExecContext(ctx, "DROP INDEX "+quoteIdent(s.name))
	return err
}

// sameColumn says whether two columns have the same definition.
func sameColumn(a, b column) bool {
	return strings.EqualFold(a.Name, b.Name) && strings.EqualFold(a.Type, b.Type) && a.NotNull == b.NotNull &&
		a.Default == b.Default && a.PK == b.PK
}

func sameColumns(a, b []column) bool {
	return slices.EqualFunc(a, b, sameColumn)
}

// SchemaInfo is the schema a node holds, as GET /v1/schema shows it. Nodes that folded the
// same schema changesets show the same SchemaInfo.
type SchemaInfo struct {
	Tables    []SchemaTableInfo `json:"tables"`
	Conflicts []SchemaConflict  `json:"conflicts"`
	// Waiting counts elements for tables no element defines yet (on their way).
	Waiting int `json:"waiting"`
}

// SchemaTableInfo is one table of the schema.
type SchemaTableInfo struct {
	Name    string   `json:"name"`
	SQL     string   `json:"sql"` // CREATE TABLE with the columns added since
	Columns []string `json:"columns"`
	Indexes []string `json:"indexes"` // CREATE INDEX statements, by name
	// Version counts the schema elements that shaped the table (its creation, each added
	// column, each index change): the same on every node that has them all.
	Version    int          `json:"version"`
	LastChange SchemaOrigin `json:"last_change"`
}

// schemaSnapshot is the published merged schema.
type schemaSnapshot struct {
	info                     SchemaInfo
	tables, indexes, dropped map[string]bool    // lower-case names
	columns                  map[string]int     // lower-case table name -> columns
	creators                 map[string]element // lower-case table name -> its winning element
	latest                   log.Timestamp      // mergedSchema.Latest
	lagging                  []SchemaOrigin     // mergedSchema.Lagging's elements
}

// duplicates reports whether every element of els defines a table exactly as its winning
// element does and sorts after it: such elements change nothing the merge computes (a later
// duplicate of a table's definition neither wins nor loses), so folding them needs no merge.
// Every node that starts with the same schema file appends such a changeset.
func (s *schemaSnapshot) duplicates(els []element) bool {
	if s == nil || len(els) == 0 {
		return false
	}
	for i := range els {
		e := &els[i]
		w, ok := s.creators[strings.ToLower(e.Name)]
		if e.Kind != log.SchemaTable || !ok || !strings.EqualFold(e.Table, e.Name) ||
			compareElements(e, &w) <= 0 || normalizeSQL(e.SQL) != normalizeSQL(w.SQL) {
			return false
		}
	}
	return true
}

// Schema returns the schema as of the last schema changeset folded; it never blocks on the
// writer.
func (m *Materializer) Schema() SchemaInfo {
	s := m.schemaSnap.Load()
	if s == nil {
		return SchemaInfo{Tables: []SchemaTableInfo{}, Conflicts: []SchemaConflict{}}
	}
	return s.info
}

// loadSchema merges the elements the view holds and publishes the result.
func (m *Materializer) loadSchema(ctx context.Context) error {
	els, err := readElements(ctx, m.w.c)
	if err != nil {
		return err
	}
	ms, err := mergeSchema(ctx, els)
	if err != nil {
		return fmt.Errorf("merge schema: %w", err)
	}
	return m.publishSchema(ctx, ms)
}

// publishSchema publishes ms for Schema and reports conflicts that are new.
func (m *Materializer) publishSchema(ctx context.Context, ms *mergedSchema) error {
	snap := &schemaSnapshot{
		info:    SchemaInfo{Tables: []SchemaTableInfo{}, Conflicts: ms.Conflicts, Waiting: ms.Waiting},
		tables:  map[string]bool{},
		indexes: map[string]bool{},
		dropped: map[string]bool{},
		columns: map[string]int{},

		creators: map[string]element{},
		latest:   ms.Latest,
	}
	for _, l := range ms.Lagging {
		snap.lagging = append(snap.lagging, l.Origin)
	}
	if snap.info.Conflicts == nil {
		snap.info.Conflicts = []SchemaConflict{}
	}
	byTable := map[string][]string{}
	for _, ix := range ms.Indexes {
		snap.indexes[strings.ToLower(ix.Name)] = true
		if ix.Last.Kind == log.SchemaDropIndex {
			snap.dropped[strings.ToLower(ix.Name)] = true
			continue
		}
		byTable[strings.ToLower(ix.Table)] = append(byTable[strings.ToLower(ix.Table)], ix.Last.SQL)
	}
	for _, mt := range ms.Tables {
		snap.tables[strings.ToLower(mt.Name)] = true
		snap.columns[strings.ToLower(mt.Name)] = len(mt.Cols)
		snap.creators[strings.ToLower(mt.Name)] = *mt.Create
		text, _, err := objectSQL(ctx, m.w.c, "table", mt.Name)
		if err != nil {
			return err
		}
		ti := SchemaTableInfo{Name: mt.Name, SQL: text, Version: mt.Version, LastChange: mt.Last.origin(),
			Indexes: byTable[strings.ToLower(mt.Name)]}
		if ti.Indexes == nil {
			ti.Indexes = []string{}
		}
		for _, c := range mt.Cols {
			ti.Columns = append(ti.Columns, c.Name)
		}
		snap.info.Tables = append(snap.info.Tables, ti)
	}
	slices.SortFunc(snap.info.Tables, func(a, b SchemaTableInfo) int { return strings.Compare(a.Name, b.Name) })
	old := m.schemaSnap.Swap(snap)
	seen := map[SchemaOrigin]map[string]bool{}
	if old != nil {
		for _, c := range old.info.Conflicts {
			if seen[c.Loser] == nil {
				seen[c.Loser] = map[string]bool{}
			}
			seen[c.Loser][c.Kind+"\x00"+c.Table+"\x00"+c.Name] = true
		}
	}
	for _, c := range ms.Conflicts {
		if seen[c.Loser][c.Kind+"\x00"+c.Table+"\x00"+c.Name] {
			continue
		}
		attrs := []any{"kind", c.Kind, "table", c.Table, "name", c.Name, "loser_site", c.Loser.Site, "loser_version", c.Loser.Version, "reason", c.Reason}
		if c.Winner != nil {
			attrs = append(attrs, "winner_site", c.Winner.Site, "winner_version", c.Winner.Version)
		}
		m.logger.Warn("schema conflict: element lost the merge", attrs...)
	}
	m.warnLagging(old, ms.Lagging)
	m.met.schemaConflicts.Set(float64(len(ms.Conflicts)))
	m.met.schemaWaiting.Set(float64(ms.Waiting))
	return nil
}

// warnLagging warns, once per element, about the tables of the schema files this node
// appended at its start (fileVersion) that lag the merged schema: files read before the
// node heard from the others.
func (m *Materializer) warnLagging(old *schemaSnapshot, lagging []laggingTable) {
	for _, l := range lagging {
		if l.Origin.Site != m.site || l.Origin.Version != m.fileVersion || old != nil && slices.Contains(old.lagging, l.Origin) {
			continue
		}
		m.met.schemaLagging.Inc()
		m.logger.Warn("schema file lags the replicated schema; keeping the replicated one",
			"table", l.Table, "why", fmt.Sprintf("the file defines %d columns, the cluster's table has %d", l.Have, l.Merge),
			"version", l.Origin.Version)
	}
}
