package subs

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"

	"github.com/patinadb/patina/internal/fsmode"
	"github.com/patinadb/patina/log"
	"github.com/patinadb/patina/materializer"
)

// Source is what the engine needs of the view. *materializer.Materializer satisfies it.
// Query may be called concurrently; the Rows belong to the caller. Notify never blocks the
// writer: a listener that falls behind gets a notice with Lagged set.
type Source interface {
	Query(ctx context.Context, st materializer.Statement) (materializer.Rows, error)
	Notify(buf int) (<-chan materializer.Notice, func())
	Tables() []string
}

var _ Source = (*materializer.Materializer)(nil)

// Defaults of the memory bounds.
const (
	DefaultMaxEventBytes     = 16 << 20
	DefaultClientBufferBytes = 64 << 20
	DefaultRetainBytes       = 64 << 20
)

// Engine runs subscriptions over a view.
type Engine struct {
	src     Source
	cfg     Config
	logger  *slog.Logger
	metrics *metrics
	store   *store // nil without Dir

	mu     sync.Mutex
	byID   map[string]*sub
	byHash map[string]*sub
	// updateIDs gives each table's update streams one id (Corrosion's corro-query-id of
	// /v1/updates/{table}, shared by every client of the table), stable while e lives.
	updateIDs map[string]string
	byTable   map[string]map[*sub]struct{}
	keys      *keyIndex
	// creating: statements whose subscription is being made (closed when done), so that
	// concurrent subscribers of one statement share it. recorders: the changes processed
	// while those first evaluations run, replayed on them once they are registered.
	creating  map[string]chan struct{}
	recorders map[*recorder]struct{}
	// evalMu serialises every evaluation of registered subscriptions (batches of notices,
	// re-runs for attaching clients, retries, registration of new ones), which keeps keys'
	// holders consistent with the results (see keyIndex).
	evalMu sync.Mutex
	schema map[string]*tableInfo
	closed bool

	notices <-chan materializer.Notice
	unreg   func()

	// progress: the highest notice seq whose effects every subscription has taken in;
	// advanced is closed and replaced each time it grows.
	progMu   sync.Mutex
	progSeq  log.Seq
	advanced chan struct{}

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// New returns an engine over src; it does no I/O.
func New(src Source, cfg Config) *Engine {
	d := DefaultConfig(cfg.Dir)
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = d.IdleTimeout
	}
	if cfg.RetainChanges == 0 {
		cfg.RetainChanges = d.RetainChanges
	}
	if cfg.ClientBuffer == 0 {
		cfg.ClientBuffer = d.ClientBuffer
	}
	if cfg.NotifyBuffer == 0 {
		cfg.NotifyBuffer = d.NotifyBuffer
	}
	if cfg.MaxEventBytes == 0 {
		cfg.MaxEventBytes = d.MaxEventBytes
	}
	if cfg.ClientBufferBytes == 0 {
		cfg.ClientBufferBytes = d.ClientBufferBytes
	}
	if cfg.RetainBytes == 0 {
		cfg.RetainBytes = d.RetainBytes
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	return &Engine{
		src:       src,
		cfg:       cfg,
		logger:    logger.With("component", "subs"),
		metrics:   newMetrics(),
		byID:      map[string]*sub{},
		byHash:    map[string]*sub{},
		updateIDs: map[string]string{},
		byTable:   map[string]map[*sub]struct{}{},
		keys:      newKeyIndex(),

		creating:  map[string]chan struct{}{},
		recorders: map[*recorder]struct{}{},
		schema:    map[string]*tableInfo{},

		advanced: make(chan struct{}),
	}
}

// Processed returns the highest commit seq (materializer.Notice.Seq) whose effects every
// subscription has taken in and sent to its clients.
func (e *Engine) Processed() log.Seq {
	e.progMu.Lock()
	defer e.progMu.Unlock()
	return e.progSeq
}

// WaitProcessed blocks until Processed reaches seq or ctx ends; a writer that knows the seq
// of its commit uses it to wait for the subscriptions to have seen it (tests, benchmarks).
func (e *Engine) WaitProcessed(ctx context.Context, seq log.Seq) error {
	for {
		e.progMu.Lock()
		done, ch := e.progSeq >= seq, e.advanced
		e.progMu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (e *Engine) advance(seq log.Seq) {
	e.progMu.Lock()
	if seq > e.progSeq {
		e.progSeq = seq
		close(e.advanced)
		e.advanced = make(chan struct{})
	}
	e.progMu.Unlock()
}

// Open opens the engine's database, restores the stored subscriptions and starts following
// the view. ctx covers start-up only.
func (e *Engine) Open(ctx context.Context) error {
	if err := e.cfg.Validate(); err != nil {
		return err
	}
	if e.cfg.Registerer != nil {
		if err := e.metrics.register(e.cfg.Registerer); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	if e.cfg.Dir != "" {
		// Subscriptions hold query results: private like the view (0700, 0600).
		if _, err := fsmode.Dir(e.cfg.Dir); err != nil {
			return fmt.Errorf("open subscriptions: %w", err)
		}
		if _, err := fsmode.Tighten(e.cfg.Dir); err != nil {
			return fmt.Errorf("open subscriptions: %w", err)
		}
		if _, err := fsmode.File(filepath.Join(e.cfg.Dir, "subs.db")); err != nil {
			return fmt.Errorf("open subscriptions: %w", err)
		}
		st, err := openStore(ctx, filepath.Join(e.cfg.Dir, "subs.db"))
		if err != nil {
			return fmt.Errorf("open subscriptions: %w", err)
		}
		e.store = st
	}
	// Listen before restoring, so that no commit falls between a restored result and the
	// first notice.
	e.notices, e.unreg = e.src.Notify(e.cfg.NotifyBuffer)
	if e.store != nil {
		if err := e.restore(ctx); err != nil {
			e.unreg()
			e.store.close()
			return fmt.Errorf("restore subscriptions: %w", err)
		}
	}
	run, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.wg.Add(2)
	go func() { defer e.wg.Done(); e.loop(run) }()
	go func() { defer e.wg.Done(); e.janitor(run) }()
	return nil
}

// Close stops the engine and disconnects every client; the stored subscriptions remain for
// the next Open. Idempotent.
func (e *Engine) Close() error {
	var err error
	e.once.Do(func() {
		e.mu.Lock()
		e.closed = true
		subs := make([]*sub, 0, len(e.byID))
		for _, s := range e.byID {
			subs = append(subs, s)
		}
		e.mu.Unlock()
		if e.cancel != nil {
			e.cancel()
		}
		e.wg.Wait()
		if e.unreg != nil {
			e.unreg()
		}
		for _, s := range subs {
			s.mu.Lock()
			s.closeClients(ErrClosed)
			s.mu.Unlock()
		}
		if e.store != nil {
			err = e.store.close()
		}
	})
	return err
}

// Options are a client's choices when it attaches to a subscription.
type Options struct {
	// From, when set and not 0, resumes after this change id: only the changes after it
	// are sent. 0 (or unset) sends the current result first: columns, rows, eoq, as
	// Corrosion does (corro-client reconnects with from=0 after an eoq of change id 0).
	// Given to Subscribe for a statement that has no subscription yet, it is refused with
	// ErrFromWithoutSub.
	From *uint64
	// SkipRows sends no current result (no columns, rows or eoq), only the changes from now
	// on, as Corrosion does.
	SkipRows bool
}

// recorder collects the changes processed while a new subscription's first evaluation runs
// outside the evaluation lock.
type recorder struct {
	changed map[string]map[string]log.PK
	lagged  bool
}

func (r *recorder) add(changed map[string]map[string]log.PK, lagged bool) {
	r.lagged = r.lagged || lagged
	for t, pks := range changed {
		m := r.changed[t]
		if m == nil {
			m = map[string]log.PK{}
			r.changed[t] = m
		}
		for k, pk := range pks {
			m[k] = pk
		}
	}
}

// Subscribe attaches a client to the subscription of st, creating it when no subscription
// has the same statement. Errors wrapping materializer.ErrBadStatement are bad input.
//
// A new subscription's first evaluation runs outside the evaluation lock, so that a slow
// statement does not hold up the events of the others: the changes processed meanwhile are
// recorded and re-evaluated on it, under the lock, when it is registered.
func (e *Engine) Subscribe(ctx context.Context, st materializer.Statement, opts Options) (*Stream, error) {
	// Parameters are folded into the text as literals, as Corrosion expands them, so that
	// ["... > ?", [0]] and "... > 0" are one subscription.
	st = foldParams(st)
	hash := statementHash(st)
	for {
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			return nil, ErrClosed
		}
		if s, ok := e.byHash[hash]; ok {
			e.mu.Unlock()
			e.evalMu.Lock()
			defer e.evalMu.Unlock()
			return s.attach(ctx, opts)
		}
		wait, busy := e.creating[hash]
		if !busy {
			if opts.From != nil {
				e.mu.Unlock()
				return nil, ErrFromWithoutSub
			}
			break // with e.mu held
		}
		e.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	p, err := e.analyse(ctx, st)
	if err != nil {
		e.mu.Unlock()
		return nil, err
	}
	done := make(chan struct{})
	rec := &recorder{changed: map[string]map[string]log.PK{}}
	e.creating[hash] = done
	e.recorders[rec] = struct{}{}
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.creating, hash)
		delete(e.recorders, rec)
		e.mu.Unlock()
		close(done)
	}()

	s := newSub(e, newID(), hash, st, p)
	s.mu.Lock()
	err = s.initLocked(ctx)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}

	e.evalMu.Lock()
	defer e.evalMu.Unlock()
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, ErrClosed
	}
	delete(e.recorders, rec)
	e.addLocked(s)
	e.mu.Unlock()
	s.mu.Lock()
	s.syncHolders()
	if rec.lagged {
		s.setNeedFull(true)
	}
	s.mu.Unlock()
	if rec.lagged || len(rec.changed) > 0 {
		s.update(ctx, rec.changed, e.newRowCache(ctx, rec.changed))
	}
	e.logger.Debug("subscription created", "id", s.id, "mode", s.plan.mode.String(), "sql", st.SQL)
	return s.attach(ctx, opts)
}

// newRowCache prepares the shared state of one batch: the changed tables' schemas and
// which of them changed keys holding a REAL.
func (e *Engine) newRowCache(ctx context.Context, changed map[string]map[string]log.PK) *rowCache {
	e.mu.Lock()
	info := make(map[string]*tableInfo, len(changed))
	for t := range changed {
		info[t] = e.schema[t]
	}
	e.mu.Unlock()
	rc := &rowCache{rows: map[string]map[string]*fetched{}, info: info, realKeys: map[string]bool{}}
	for t, pks := range changed {
		for _, pk := range pks {
			if hasReal(pk) {
				rc.realKeys[t] = true
				break
			}
		}
	}
	return rc
}

// Attach attaches a client to the subscription id (ErrNotFound when there is none).
func (e *Engine) Attach(ctx context.Context, id string, opts Options) (*Stream, error) {
	e.evalMu.Lock()
	defer e.evalMu.Unlock()
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, ErrClosed
	}
	s, ok := e.byID[id]
	e.mu.Unlock()
	if !ok {
		return nil, ErrNotFound
	}
	return s.attach(ctx, opts)
}

// Info describes a subscription.
type Info struct {
	ID, Hash, SQL string
	Mode          string
	Clients       int
	ChangeID      uint64
	Rows          int
}

// List describes the live subscriptions.
func (e *Engine) List() []Info {
	e.mu.Lock()
	subs := make([]*sub, 0, len(e.byID))
	for _, s := range e.byID {
		subs = append(subs, s)
	}
	e.mu.Unlock()
	out := make([]Info, 0, len(subs))
	for _, s := range subs {
		s.mu.Lock()
		out = append(out, Info{ID: s.id, Hash: s.hash, SQL: s.st.SQL, Mode: s.plan.mode.String(),
			Clients: len(s.clients), ChangeID: s.changeID, Rows: len(s.rows)})
		s.mu.Unlock()
	}
	return out
}

func (e *Engine) addLocked(s *sub) {
	e.byID[s.id] = s
	e.byHash[s.hash] = s
	for t := range s.plan.tables {
		m := e.byTable[t]
		if m == nil {
			m = map[*sub]struct{}{}
			e.byTable[t] = m
		}
		m[s] = struct{}{}
	}
	e.keys.add(s)
	e.metrics.subscriptions.Set(float64(len(e.byID)))
}

// remove forgets s and, when forget is set, deletes it from the store.
func (e *Engine) remove(s *sub, forget bool) {
	e.mu.Lock()
	if e.byID[s.id] == s {
		delete(e.byID, s.id)
		delete(e.byHash, s.hash)
		for t := range s.plan.tables {
			delete(e.byTable[t], s)
		}
	}
	e.metrics.subscriptions.Set(float64(len(e.byID)))
	e.mu.Unlock()
	s.mu.Lock()
	s.dropped = true
	s.closeClients(ErrDropped)
	s.mu.Unlock()
	e.keys.remove(s)
	if forget && e.store != nil {
		if err := e.store.remove(context.Background(), s.id); err != nil {
			e.logger.Warn("forget subscription", "id", s.id, "err", err)
		}
	}
}

// analyse parses st against the current schema. Called with e.mu held.
func (e *Engine) analyse(ctx context.Context, st materializer.Statement) (*plan, error) {
	tables := map[string]string{}
	for _, t := range e.src.Tables() {
		tables[strings.ToLower(t)] = t
	}
	isTable := func(n string) bool { _, ok := tables[n]; return ok }
	schema := func(n string) (*tableInfo, bool) {
		if ti, ok := e.schema[n]; ok {
			return ti, true
		}
		name, ok := tables[n]
		if !ok {
			return nil, false
		}
		ti, err := loadTableInfo(ctx, e.src, name)
		if err != nil {
			e.logger.Warn("read table schema", "table", name, "err", err)
			return nil, false
		}
		e.schema[n] = ti
		return ti, true
	}
	return analyse(st, isTable, schema)
}

// loadTableInfo reads a table's columns and primary key through the read-only query path.
func loadTableInfo(ctx context.Context, src Source, table string) (*tableInfo, error) {
	rows, err := src.Query(ctx, materializer.Statement{
		SQL:    `SELECT name, pk FROM pragma_table_info(?) ORDER BY cid`,
		Params: []log.Value{log.Text(table)},
	})
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	ti := &tableInfo{Name: table}
	type pkcol struct {
		name string
		n    int64
	}
	var pks []pkcol
	for rows.Next() {
		v := rows.Values()
		if len(v) != 2 || v[0].Type != log.TypeText {
			return nil, fmt.Errorf("table_info of %s: unexpected row", table)
		}
		name := strings.ToLower(v[0].Text)
		ti.Columns = append(ti.Columns, name)
		if v[1].Type == log.TypeInteger && v[1].Int > 0 {
			pks = append(pks, pkcol{name, v[1].Int})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(ti.Columns) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrUnknownTable, table)
	}
	ti.PK = make([]string, len(pks))
	for _, p := range pks {
		if p.n < 1 || int(p.n) > len(pks) {
			return nil, fmt.Errorf("table_info of %s: pk position %d", table, p.n)
		}
		ti.PK[p.n-1] = p.name
	}
	return ti, nil
}

// restore loads the stored subscriptions; the loop refreshes them against the view first.
func (e *Engine) restore(ctx context.Context) error {
	ps, err := e.store.load(ctx)
	if err != nil {
		return err
	}
	for _, p := range ps {
		e.mu.Lock()
		pl, err := e.analyse(ctx, p.st)
		e.mu.Unlock()
		if err != nil {
			e.logger.Warn("drop stored subscription", "id", p.id, "err", err)
			if err := e.store.remove(ctx, p.id); err != nil {
				return err
			}
			continue
		}
		s := newSub(e, p.id, p.hash, p.st, pl)
		// Registered before its rows are indexed, so that the key index learns which
		// keys its result holds.
		e.mu.Lock()
		e.addLocked(s)
		e.mu.Unlock()
		s.restore(p)
	}
	if len(ps) > 0 {
		e.logger.Info("subscriptions restored", "count", len(e.byID))
	}
	return nil
}

// statementHash identifies a statement: the same text and parameters share a subscription.
func statementHash(st materializer.Statement) string {
	h := sha256.New()
	h.Write([]byte(strings.TrimSpace(st.SQL)))
	h.Write([]byte{0})
	if len(st.Params) > 0 {
		b, _ := json.Marshal(st.Params)
		h.Write(b)
	}
	h.Write([]byte{0})
	if len(st.Named) > 0 {
		b, _ := json.Marshal(st.Named) // map keys are sorted
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// newID returns a random UUID (version 4), as Corrosion's query ids are.
func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// IsBadInput reports whether err is the client's fault (HTTP 400).
func IsBadInput(err error) bool {
	return errors.Is(err, materializer.ErrBadStatement) || errors.Is(err, materializer.ErrReadOnly)
}

// updatesBuffer bounds the commit notices an update stream may fall behind by.
const updatesBuffer = 1024
