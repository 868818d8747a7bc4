package pg

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

// cmdKind is what a statement does, decided from its first keywords.
type cmdKind int

const (
	cmdRead     cmdKind = iota // SELECT and friends, on the read pool
	cmdCatalog                 // a read of pg_catalog / information_schema, on the catalog
	cmdWrite                   // INSERT, UPDATE, DELETE, REPLACE
	cmdBegin                   // BEGIN, START TRANSACTION
	cmdCommit                  // COMMIT, END
	cmdRollback                // ROLLBACK, ABORT
	cmdSet                     // SET, RESET
	cmdShow                    // SHOW
	cmdDiscard                 // DISCARD, DEALLOCATE, UNLISTEN: accepted, nothing to do
	cmdSchema                  // CREATE, DROP, ALTER, TRUNCATE: refused (migrations)
	cmdRefused                 // anything else: refused with its reason
	cmdEmpty                   // nothing but comments
)

var kindNames = [...]string{"read", "catalog", "write", "commit", "commit", "commit", "other", "other", "other", "other", "other", "other"}

// prepared is a parsed statement (the unnamed one of a simple query, or a named one).
type prepared struct {
	st        statement
	sql       string // SQLite text ($N as ?N)
	nparams   int
	paramOIDs []uint32
	kind      cmdKind
	verb      string
	refusal   string // the reason of a cmdRefused
	// fields is the row description sent by Describe of the statement, which the client
	// decodes Execute's rows with; nil until described.
	fields []pgproto3.FieldDescription
}

func newPrepared(st statement, paramOIDs []uint32) (*prepared, error) {
	p := &prepared{st: st, verb: st.verb()}
	sql, n, err := st.sqliteText()
	if err != nil {
		return nil, errf("42P02", err.Error())
	}
	p.sql, p.nparams = sql, max(n, len(paramOIDs))
	p.paramOIDs = make([]uint32, p.nparams)
	copy(p.paramOIDs, paramOIDs)
	p.kind, p.refusal = classify(st)
	return p, nil
}

// classify decides what a statement does.
func classify(st statement) (cmdKind, string) {
	w := st.words()
	if len(w) == 0 {
		return cmdEmpty, ""
	}
	verb := st.verb()
	second := ""
	if len(w) > 1 && w[1].kind == tokWord {
		second = strings.ToUpper(w[1].text)
	}
	switch verb {
	case "SELECT", "VALUES", "TABLE", "EXPLAIN", "PRAGMA", "WITH":
		if verb == "WITH" && (st.hasWord("INSERT") || st.hasWord("UPDATE") || st.hasWord("DELETE")) {
			return writeKind(st)
		}
		if refersToCatalog(w) {
			return cmdCatalog, ""
		}
		return cmdRead, ""
	case "INSERT", "UPDATE", "DELETE", "REPLACE":
		return writeKind(st)
	case "BEGIN", "START":
		return cmdBegin, ""
	case "COMMIT", "END":
		return cmdCommit, ""
	case "ROLLBACK", "ABORT":
		if st.hasWord("TO") {
			return cmdRefused, "savepoints are not supported: a BEGIN block is one Patina transaction"
		}
		return cmdRollback, ""
	case "SAVEPOINT", "RELEASE":
		return cmdRefused, "savepoints are not supported: a BEGIN block is one Patina transaction"
	case "SET", "RESET":
		return cmdSet, ""
	case "SHOW":
		return cmdShow, ""
	case "DISCARD", "DEALLOCATE", "UNLISTEN":
		return cmdDiscard, ""
	case "CREATE", "DROP", "ALTER", "TRUNCATE":
		return cmdSchema, ""
	case "LISTEN", "NOTIFY":
		return cmdRefused, "LISTEN and NOTIFY are not supported; subscribe to a query with POST /v1/subscriptions"
	case "COPY":
		return cmdRefused, "COPY is not supported; use INSERT (batched in a BEGIN block) or POST /v1/transactions"
	case "PREPARE", "EXECUTE":
		return cmdRefused, "SQL-level PREPARE/EXECUTE is not supported; use the extended protocol (every driver's prepared statements)"
	}
	_ = second
	// Anything else goes to SQLite's read-only pool, which says what is wrong with it (a
	// syntax error for a typo) or refuses it as a write.
	return cmdRead, ""
}

func writeKind(st statement) (cmdKind, string) {
	if st.hasWord("RETURNING") {
		return cmdRefused, "RETURNING is not supported: a write answers its row count only"
	}
	return cmdWrite, ""
}

// catalogWords are the names that make a read a catalog query: the catalog's schemas and
// tables, and the functions only the catalog database defines.
var catalogWords = map[string]bool{
	"information_schema": true, "version": true, "current_schema": true, "current_schemas": true,
	"current_database": true, "current_user": true, "session_user": true, "current_setting": true,
	"current_catalog": true, "has_table_privilege": true, "has_schema_privilege": true,
	"format_type": true, "obj_description": true, "col_description": true, "txid_current": true,
	"set_config": true, "array_to_string": true, "quote_ident": true,
}

func refersToCatalog(w []token) bool {
	for _, t := range w {
		if t.kind != tokWord {
			continue
		}
		l := strings.ToLower(t.text)
		if strings.HasPrefix(l, "pg_") || catalogWords[l] {
			return true
		}
	}
	return false
}

// commandTag is the CommandComplete tag of a statement that changed or returned n rows.
func commandTag(p *prepared, n int64) string {
	switch p.kind {
	case cmdRead, cmdCatalog:
		if p.verb == "EXPLAIN" || p.verb == "PRAGMA" {
			return p.verb
		}
		return fmt.Sprintf("SELECT %d", n)
	case cmdWrite:
		verb := p.verb
		if verb == "WITH" {
			for _, t := range p.st.words() {
				if t.is("INSERT") || t.is("UPDATE") || t.is("DELETE") {
					verb = strings.ToUpper(t.text)
				}
			}
		}
		switch verb {
		case "INSERT", "REPLACE":
			return fmt.Sprintf("INSERT 0 %d", n)
		default:
			return fmt.Sprintf("%s %d", verb, n)
		}
	}
	return p.verb
}

// simpleQuery runs a Query message: every statement in turn, until one fails. Writes outside
// a BEGIN block that follow each other are committed together as one Patina transaction (as
// PostgreSQL runs a multi-statement query as one implicit transaction); a read between them
// ends the group, so that it sees the writes before it.
func (ss *session) simpleQuery(q string) {
	ss.closePortal("")
	delete(ss.stmts, "")
	stmts, err := splitQuery(q)
	if err != nil {
		ss.sendError(errf("42601", err.Error()))
		ss.fail()
		return
	}
	if len(stmts) == 0 {
		ss.be.Send(&pgproto3.EmptyQueryResponse{})
		return
	}
	var group []*prepared
	flush := func() bool {
		if len(group) == 0 {
			return true
		}
		stmts := make([]materializer.Statement, len(group))
		for i, p := range group {
			stmts[i] = stmtOf(p.sql, nil)
		}
		counts, err := ss.write(stmts)
		if err != nil {
			ss.sendError(err)
			group = nil
			return false
		}
		for i, p := range group {
			ss.be.Send(&pgproto3.CommandComplete{CommandTag: []byte(commandTag(p, counts[i]))})
		}
		group = nil
		return true
	}
	for _, st := range stmts {
		p, err := newPrepared(st, nil)
		if err == nil && p.nparams > 0 {
			err = errf("08P01", fmt.Sprintf("the query has $%d but a simple query binds no parameters", p.nparams))
		}
		if err != nil {
			if flush() {
				ss.sendError(err)
			}
			ss.fail()
			return
		}
		if p.kind == cmdWrite {
			if err := ss.mayWrite(); err != nil {
				if flush() {
					ss.sendError(err)
				}
				ss.fail()
				return
			}
		}
		if p.kind == cmdWrite && ss.tx == 'I' {
			group = append(group, p)
			continue
		}
		if !flush() {
			ss.fail()
			return
		}
		pt := &portal{p: p}
		if _, err := ss.run(pt, 0, true); err != nil {
			pt.close()
			ss.sendError(err)
			ss.fail()
			return
		}
		pt.close()
	}
	if !flush() {
		ss.fail()
	}
}

// mayWrite refuses a write of a session whose token may only read (42501,
// insufficient_privilege), before it is queued or run.
func (ss *session) mayWrite() error {
	if ss.access >= AccessWrite {
		return nil
	}
	return errf("42501", "permission denied: this token may only read (a write token may write)")
}

// write commits statements as one Patina transaction and returns their row counts.
func (ss *session) write(stmts []materializer.Statement) ([]int64, error) {
	if err := ss.mayWrite(); err != nil { // every path checked before; this is the last door
		return nil, err
	}
	ctx, done := ss.queryContext()
	defer done()
	start := time.Now()
	res, err := ss.s.cfg.View.Transact(ctx, stmts)
	ss.s.metrics.observe("write", start, err)
	if err != nil {
		if se, ok := err.(*materializer.StmtError); ok && len(stmts) > 1 {
			pe := toPgError(err)
			return nil, &pgError{code: pe.code, msg: fmt.Sprintf("statement %d of the transaction: %s", se.Index+1, pe.msg)}
		}
		return nil, err
	}
	counts := make([]int64, len(stmts))
	for i := range counts {
		if i < len(res.Results) {
			counts[i] = res.Results[i].RowsAffected
		}
	}
	return counts, nil
}

// portal is a bound statement: its parameters, result formats and, once it ran, its open rows.
type portal struct {
	p       *prepared
	params  []log.Value
	formats []int16
	// described is set when Describe sent the row description (Execute must not send it).
	described bool

	rows    materializer.Rows
	fields  []pgproto3.FieldDescription
	pending bool // rows holds a row that was read (to type columns) but not sent
	sent    int64
	done    func()
}

func (pt *portal) close() {
	if pt.rows != nil {
		pt.rows.Close()
		pt.rows = nil
	}
	if pt.done != nil {
		pt.done()
		pt.done = nil
	}
}

func (ss *session) closePortal(name string) {
	if pt := ss.portals[name]; pt != nil {
		pt.close()
		delete(ss.portals, name)
	}
}

// open starts a read portal's query and reads its first row, which types the columns that
// have no declared type.
func (ss *session) open(pt *portal) error {
	if pt.rows != nil {
		return nil
	}
	ctx, done := ss.queryContext()
	var rows materializer.Rows
	var err error
	st := stmtOf(pt.p.sql, pt.params)
	if pt.p.kind == cmdCatalog {
		rows, err = ss.s.cat.query(ctx, st)
	} else {
		rows, err = ss.s.cfg.View.Query(ctx, st)
	}
	if err != nil {
		done()
		return err
	}
	pt.rows, pt.done = rows, done
	pt.pending = rows.Next()
	if !pt.pending {
		if err := rows.Err(); err != nil {
			return err
		}
	}
	fields := pt.p.fields
	if fields == nil {
		fields = describeRows(rows, pt.pending)
	}
	pt.fields = make([]pgproto3.FieldDescription, len(fields))
	copy(pt.fields, fields)
	for i := range pt.fields {
		pt.fields[i].Format = formatOf(pt.formats, i)
	}
	return nil
}

// describeRows builds the row description of rows (text format); withRow says whether rows
// holds a first row whose values type the expression columns.
func describeRows(rows materializer.Rows, withRow bool) []pgproto3.FieldDescription {
	cols := rows.Columns()
	var decl []string
	if dt, ok := rows.(materializer.DeclTyper); ok {
		decl = dt.DeclTypes()
	}
	var vals []log.Value
	if withRow {
		vals = rows.Values()
	}
	out := make([]pgproto3.FieldDescription, len(cols))
	for i, c := range cols {
		var oid uint32
		ok := false
		if i < len(decl) {
			oid, ok = oidOfDecl(decl[i])
		}
		if !ok {
			oid = oidText
			if i < len(vals) && !vals[i].IsNull() {
				oid = oidOfValue(vals[i])
			}
		}
		out[i] = pgproto3.FieldDescription{Name: []byte(c), DataTypeOID: oid, DataTypeSize: typeSize(oid), TypeModifier: -1}
	}
	return out
}

func formatOf(formats []int16, i int) int16 {
	switch len(formats) {
	case 0:
		return 0
	case 1:
		return formats[0]
	}
	if i < len(formats) {
		return formats[i]
	}
	return 0
}

// run executes a portal: up to maxRows rows (0: all) of a read, or the statement. sendDesc
// sends the row description first (simple queries). It reports whether the portal was
// suspended with rows left.
func (ss *session) run(pt *portal, maxRows int64, sendDesc bool) (suspended bool, err error) {
	p := pt.p
	if ss.tx == 'E' && p.kind != cmdCommit && p.kind != cmdRollback {
		return false, errf("25P02", "current transaction is aborted, commands ignored until end of transaction block")
	}
	switch p.kind {
	case cmdEmpty:
		ss.be.Send(&pgproto3.EmptyQueryResponse{})
		return false, nil
	case cmdRead, cmdCatalog:
		start := time.Now()
		first := pt.rows == nil
		if err := ss.open(pt); err != nil {
			ss.s.metrics.observe(kindNames[p.kind], start, err)
			return false, err
		}
		if sendDesc && first {
			ss.be.Send(&pgproto3.RowDescription{Fields: pt.fields})
		}
		suspended, err := ss.sendRows(pt, maxRows)
		if !suspended {
			ss.s.metrics.observe(kindNames[p.kind], start, err)
		}
		if err != nil || suspended {
			return suspended, err
		}
		ss.be.Send(&pgproto3.CommandComplete{CommandTag: []byte(commandTag(p, pt.sent))})
		pt.close()
		return false, nil
	case cmdWrite:
		if err := ss.mayWrite(); err != nil {
			return false, err
		}
		st := stmtOf(p.sql, pt.params)
		switch ss.tx {
		case 'T':
			// Counted at COMMIT, where the block becomes one Patina transaction: PostgreSQL's
			// count is not known before.
			ss.block = append(ss.block, st)
			ss.be.Send(&pgproto3.CommandComplete{CommandTag: []byte(commandTag(p, 0))})
			return false, nil
		}
		counts, err := ss.write([]materializer.Statement{st})
		if err != nil {
			return false, err
		}
		ss.be.Send(&pgproto3.CommandComplete{CommandTag: []byte(commandTag(p, counts[0]))})
		return false, nil
	case cmdBegin:
		if ss.tx != 'I' {
			ss.notice("25001", "there is already a transaction in progress")
		} else {
			ss.tx, ss.block = 'T', nil
		}
		ss.be.Send(&pgproto3.CommandComplete{CommandTag: []byte("BEGIN")})
		return false, nil
	case cmdCommit:
		switch ss.tx {
		case 'I':
			ss.notice("25P01", "there is no transaction in progress")
		case 'E':
			ss.tx, ss.block = 'I', nil
			ss.be.Send(&pgproto3.CommandComplete{CommandTag: []byte("ROLLBACK")})
			return false, nil
		case 'T':
			block := ss.block
			ss.tx, ss.block = 'I', nil
			if len(block) > 0 {
				if _, err := ss.write(block); err != nil {
					return false, err
				}
			}
		}
		ss.be.Send(&pgproto3.CommandComplete{CommandTag: []byte("COMMIT")})
		return false, nil
	case cmdRollback:
		if ss.tx == 'I' {
			ss.notice("25P01", "there is no transaction in progress")
		}
		ss.tx, ss.block = 'I', nil
		ss.be.Send(&pgproto3.CommandComplete{CommandTag: []byte("ROLLBACK")})
		return false, nil
	case cmdSet:
		tag, err := ss.set(p)
		if err != nil {
			return false, err
		}
		ss.be.Send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
		return false, nil
	case cmdShow:
		return false, ss.show(p, pt, sendDesc)
	case cmdDiscard:
		if p.verb == "DEALLOCATE" {
			w := p.st.words()
			name := ""
			if len(w) > 1 {
				name = w[len(w)-1].text
			}
			if strings.EqualFold(name, "ALL") {
				clear(ss.stmts)
			} else {
				delete(ss.stmts, strings.Trim(name, `"`))
			}
		}
		tag := p.verb
		if p.verb == "DISCARD" {
			tag = "DISCARD ALL"
		}
		ss.be.Send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
		return false, nil
	case cmdSchema:
		return false, &pgError{code: "0A000", msg: p.verb + " is not supported over the PostgreSQL protocol",
			hint: "schema changes go through migrations: patina migrate, or POST /v1/migrations"}
	}
	return false, errf("0A000", p.refusal)
}

// sendRows sends a read portal's rows, at most maxRows (0: all).
func (ss *session) sendRows(pt *portal, maxRows int64) (suspended bool, err error) {
	var sentHere int64
	buf := make([]byte, 0, 256)
	for {
		if !pt.pending {
			if !pt.rows.Next() {
				return false, pt.rows.Err()
			}
		}
		if maxRows > 0 && sentHere == maxRows {
			pt.pending = true
			ss.be.Send(&pgproto3.PortalSuspended{})
			return true, nil
		}
		pt.pending = false
		vals := pt.rows.Values()
		row := make([][]byte, len(vals))
		buf = buf[:0]
		offs := make([]int, len(vals)+1)
		for i, v := range vals {
			offs[i] = len(buf)
			if v.IsNull() {
				offs[i] = -1
				continue
			}
			f := pt.fields[i]
			if f.Format == 1 {
				if buf, err = appendBinary(ss.typeMap(), buf, f.DataTypeOID, v); err != nil {
					return false, errf("22P03", fmt.Sprintf("column %q: %v", f.Name, err))
				}
			} else {
				buf = appendText(buf, f.DataTypeOID, v)
			}
		}
		// Slices into one buffer per row: DataRow encodes at Send.
		for i, v := range vals {
			if v.IsNull() {
				continue
			}
			end := len(buf)
			for j := i + 1; j < len(vals); j++ {
				if offs[j] >= 0 {
					end = offs[j]
					break
				}
			}
			row[i] = buf[offs[i]:end:end]
		}
		ss.be.Send(&pgproto3.DataRow{Values: row})
		pt.sent++
		sentHere++
	}
}

func (ss *session) notice(code, msg string) {
	ss.be.Send(&pgproto3.NoticeResponse{Severity: "WARNING", SeverityUnlocalized: "WARNING", Code: code, Message: msg})
}

// set applies SET name TO value / SET name = value / RESET name; settings only change what
// SHOW and current_setting answer (and ParameterStatus for the reported ones).
func (ss *session) set(p *prepared) (string, error) {
	w := p.st.words()
	if p.verb == "RESET" {
		if len(w) > 1 {
			name := strings.ToLower(w[1].text)
			if name == "all" {
				clear(ss.settings)
			} else {
				delete(ss.settings, name)
			}
		}
		return "RESET", nil
	}
	i := 1
	if i < len(w) && (w[i].is("SESSION") || w[i].is("LOCAL")) {
		i++
	}
	if i >= len(w) {
		return "", errf("42601", "syntax error at end of input")
	}
	var name string
	switch {
	case w[i].is("TIME") && i+1 < len(w) && w[i+1].is("ZONE"):
		name, i = "timezone", i+2
	case w[i].is("NAMES"):
		name, i = "client_encoding", i+1
	case w[i].is("TRANSACTION") || w[i].is("CHARACTERISTICS") || w[i].is("SESSION"):
		return "SET", nil // isolation is always serializable: one writer
	default:
		name = strings.ToLower(strings.Trim(w[i].text, `"`))
		i++
		for i+1 < len(w) && w[i].text == "." { // a dotted custom name
			name += "." + strings.ToLower(w[i+1].text)
			i += 2
		}
		if i < len(w) && (w[i].is("TO") || w[i].text == "=") {
			i++
		}
	}
	var parts []string
	for _, t := range w[i:] {
		if t.text == "," {
			continue
		}
		v := t.text
		if t.kind == tokString {
			v = unquote(sqliteString(v))
		}
		parts = append(parts, v)
	}
	val := strings.Join(parts, ", ")
	if strings.EqualFold(val, "DEFAULT") {
		delete(ss.settings, name)
	} else {
		ss.settings[name] = val
	}
	for _, k := range reportedSettings {
		if strings.EqualFold(k, name) {
			ss.be.Send(&pgproto3.ParameterStatus{Name: k, Value: ss.setting(k)})
		}
	}
	return "SET", nil
}

func unquote(sqlLit string) string {
	return strings.ReplaceAll(sqlLit[1:len(sqlLit)-1], "''", "'")
}

// show answers SHOW name (and SHOW ALL) from the session's settings.
func (ss *session) show(p *prepared, pt *portal, sendDesc bool) error {
	w := p.st.words()
	if len(w) < 2 {
		return errf("42601", "syntax error at end of input")
	}
	name := strings.ToLower(strings.Trim(w[1].text, `"`))
	for i := 2; i+1 < len(w) && w[i].text == "."; i += 2 {
		name += "." + strings.ToLower(w[i+1].text)
	}
	var rows [][2]string
	col := name
	if name == "all" {
		col = "name"
		seen := map[string]bool{}
		for k := range defaults {
			seen[k] = true
		}
		for k := range ss.settings {
			seen[k] = true
		}
		for k := range seen {
			rows = append(rows, [2]string{k, ss.setting(k)})
		}
	} else {
		v, ok := ss.settings[name]
		if !ok {
			v, ok = defaults[name]
		}
		if name == "session_authorization" {
			v, ok = ss.user, true
		}
		if !ok {
			return errf("42704", fmt.Sprintf("unrecognized configuration parameter %q", name))
		}
		rows = append(rows, [2]string{"", v})
	}
	if sendDesc || !pt.described {
		fields := []pgproto3.FieldDescription{{Name: []byte(col), DataTypeOID: oidText, DataTypeSize: -1, TypeModifier: -1}}
		if name == "all" {
			fields = append(fields, pgproto3.FieldDescription{Name: []byte("setting"), DataTypeOID: oidText, DataTypeSize: -1, TypeModifier: -1})
		}
		if sendDesc {
			ss.be.Send(&pgproto3.RowDescription{Fields: fields})
		}
	}
	for _, r := range rows {
		if name == "all" {
			ss.be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte(r[0]), []byte(r[1])}})
		} else {
			ss.be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte(r[1])}})
		}
	}
	ss.be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SHOW")})
	return nil
}

// showFields is the row description of a SHOW statement (for Describe).
func showFields(p *prepared) []pgproto3.FieldDescription {
	w := p.st.words()
	name := "setting"
	if len(w) > 1 {
		name = strings.ToLower(strings.Trim(w[1].text, `"`))
	}
	if name == "all" {
		return []pgproto3.FieldDescription{
			{Name: []byte("name"), DataTypeOID: oidText, DataTypeSize: -1, TypeModifier: -1},
			{Name: []byte("setting"), DataTypeOID: oidText, DataTypeSize: -1, TypeModifier: -1},
		}
	}
	return []pgproto3.FieldDescription{{Name: []byte(name), DataTypeOID: oidText, DataTypeSize: -1, TypeModifier: -1}}
}

// The extended protocol.

func (ss *session) parse(msg *pgproto3.Parse) error {
	stmts, err := splitQuery(msg.Query)
	if err != nil {
		return errf("42601", err.Error())
	}
	if len(stmts) > 1 {
		return errf("42601", "cannot insert multiple commands into a prepared statement")
	}
	var st statement
	if len(stmts) == 1 {
		st = stmts[0]
	}
	if msg.Name != "" {
		if _, ok := ss.stmts[msg.Name]; ok {
			return errf("42P05", fmt.Sprintf("prepared statement %q already exists", msg.Name))
		}
	}
	p, err := newPrepared(st, msg.ParameterOIDs)
	if err != nil {
		return err
	}
	if p.nparams > 0 && (p.kind == cmdRead || p.kind == cmdWrite) {
		ctx, done := ss.queryContext()
		ss.s.cat.inferParams(ctx, p)
		done()
	}
	ss.stmts[msg.Name] = p
	ss.be.Send(&pgproto3.ParseComplete{})
	return nil
}

func (ss *session) bind(msg *pgproto3.Bind) error {
	p, ok := ss.stmts[msg.PreparedStatement]
	if !ok {
		return errf("26000", fmt.Sprintf("prepared statement %q does not exist", msg.PreparedStatement))
	}
	if len(msg.Parameters) != p.nparams {
		return errf("08P01", fmt.Sprintf("bind message supplies %d parameters, but prepared statement %q requires %d", len(msg.Parameters), msg.PreparedStatement, p.nparams))
	}
	if n := len(msg.ParameterFormatCodes); n > 1 && n != len(msg.Parameters) {
		return errf("08P01", fmt.Sprintf("bind message has %d parameter formats but %d parameters", n, len(msg.Parameters)))
	}
	params := make([]log.Value, len(msg.Parameters))
	for i, raw := range msg.Parameters {
		v, err := decodeParam(ss.typeMap(), p.paramOIDs[i], formatOf(msg.ParameterFormatCodes, i), raw)
		if err != nil {
			return errf("22P02", fmt.Sprintf("parameter $%d: %v", i+1, err))
		}
		params[i] = v
	}
	ss.closePortal(msg.DestinationPortal)
	ss.portals[msg.DestinationPortal] = &portal{p: p, params: params, formats: append([]int16(nil), msg.ResultFormatCodes...)}
	ss.be.Send(&pgproto3.BindComplete{})
	return nil
}

func (ss *session) describe(msg *pgproto3.Describe) error {
	if msg.ObjectType == 'P' {
		pt, ok := ss.portals[msg.Name]
		if !ok {
			return errf("34000", fmt.Sprintf("portal %q does not exist", msg.Name))
		}
		pt.described = true
		switch pt.p.kind {
		case cmdRead, cmdCatalog:
			if ss.tx == 'E' {
				return errf("25P02", "current transaction is aborted, commands ignored until end of transaction block")
			}
			if err := ss.open(pt); err != nil {
				return err
			}
			ss.be.Send(&pgproto3.RowDescription{Fields: pt.fields})
		case cmdShow:
			ss.be.Send(&pgproto3.RowDescription{Fields: showFields(pt.p)})
		default:
			ss.be.Send(&pgproto3.NoData{})
		}
		return nil
	}
	p, ok := ss.stmts[msg.Name]
	if !ok {
		return errf("26000", fmt.Sprintf("prepared statement %q does not exist", msg.Name))
	}
	oids := make([]uint32, len(p.paramOIDs))
	copy(oids, p.paramOIDs)
	ss.be.Send(&pgproto3.ParameterDescription{ParameterOIDs: oids})
	switch p.kind {
	case cmdRead, cmdCatalog:
		// The columns come from running the statement with NULL parameters, stopped at its
		// first row: SQLite types a statement only by preparing it.
		params := make([]log.Value, p.nparams)
		pt := &portal{p: &prepared{st: p.st, sql: p.sql, nparams: p.nparams, kind: p.kind, verb: p.verb}, params: params}
		err := ss.open(pt)
		if err == nil {
			p.fields = describeRows(pt.rows, pt.pending)
		}
		pt.close()
		if err != nil {
			return err
		}
		ss.be.Send(&pgproto3.RowDescription{Fields: p.fields})
	case cmdShow:
		ss.be.Send(&pgproto3.RowDescription{Fields: showFields(p)})
	default:
		ss.be.Send(&pgproto3.NoData{})
	}
	return nil
}

func (ss *session) execute(msg *pgproto3.Execute) error {
	pt, ok := ss.portals[msg.Portal]
	if !ok {
		return errf("34000", fmt.Sprintf("portal %q does not exist", msg.Portal))
	}
	suspended, err := ss.run(pt, int64(msg.MaxRows), false)
	if err != nil || !suspended {
		// A finished portal cannot run again (its rows are gone); PostgreSQL answers an empty
		// result, which a fresh portal gives too.
		pt.close()
	}
	return err
}

func (ss *session) closeMsg(msg *pgproto3.Close) error {
	if msg.ObjectType == 'P' {
		ss.closePortal(msg.Name)
	} else {
		delete(ss.stmts, msg.Name)
	}
	ss.be.Send(&pgproto3.CloseComplete{})
	return nil
}

var _ = context.Background
