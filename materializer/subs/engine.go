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
	"time"

	"github.com/prometheus/client_golang/prometheus"

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

// Config configures an Engine.
type Config struct {
	// Dir holds the engine's own database (subs.db); normally <data>/subscriptions. Empty
	// keeps subscriptions in memory only (tests).
	Dir string
	// IdleTimeout: a subscription without clients for this long is dropped.
	IdleTimeout time.Duration
	// RetainChanges is how many recent changes per subscription are kept for resuming.
	RetainChanges int
	// ClientBuffer is how many events a client may fall behind before it is disconnected.
	// The queue grows only while the client is behind, so a large limit costs nothing for
	// clients that keep up; it must hold the events of the largest transaction expected,
	// which reach the queue at once.
	ClientBuffer int
	// NotifyBuffer is the engine's buffer of commit notices.
	NotifyBuffer int
	// Memory bounds (issue 12, item 6). Encoded events are shared: one encoding of a change
	// goes to every client, and a large row's encoding is kept on the row and shared by
	// every client that attaches, so memory does not grow with the number of subscribers.
	// MaxEventBytes caps one encoded event (a row or a change): a larger one is never sent;
	// the clients get ErrEventTooLarge instead. ClientBufferBytes caps the bytes of events a
	// client may fall behind by (with ClientBuffer, the count) before it is disconnected.
	// RetainBytes caps the bytes of retained changes a subscription keeps in memory for
	// resuming (with RetainChanges, the count). 0 takes the default.
	MaxEventBytes     int
	ClientBufferBytes int64
	RetainBytes       int64
	// Registerer receives the engine's metrics; nil registers none.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// DefaultConfig returns the defaults for dir.
func DefaultConfig(dir string) Config {
	return Config{
		Dir:           dir,
		IdleTimeout:   10 * time.Minute,
		RetainChanges: 10000,
		ClientBuffer:  65536,
		NotifyBuffer:  8192,

		MaxEventBytes:     DefaultMaxEventBytes,
		ClientBufferBytes: DefaultClientBufferBytes,
		RetainBytes:       DefaultRetainBytes,
	}
}

// Defaults of the memory bounds.
const (
	DefaultMaxEventBytes     = 16 << 20
	DefaultClientBufferBytes = 64 << 20
	DefaultRetainBytes       = 64 << 20
)

// Validate checks the config.
func (c *Config) Validate() error {
	switch {
	case c.IdleTimeout <= 0:
		return fmt.Errorf("subs config: idle timeout %v, want > 0", c.IdleTimeout)
	case c.RetainChanges <= 0:
		return fmt.Errorf("subs config: retain changes %d, want > 0", c.RetainChanges)
	case c.ClientBuffer <= 0:
		return fmt.Errorf("subs config: client buffer %d, want > 0", c.ClientBuffer)
	case c.NotifyBuffer <= 0:
		return fmt.Errorf("subs config: notify buffer %d, want > 0", c.NotifyBuffer)
	case c.MaxEventBytes < 0 || c.ClientBufferBytes < 0 || c.RetainBytes < 0:
		return fmt.Errorf("subs config: negative memory bound")
	}
	return nil
}

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

// loop follows the view's commit notices and brings the subscriptions they touch up to
// date, batching the notices that queue up while it works.
func (e *Engine) loop(ctx context.Context) {
	e.evalMu.Lock()
	e.refreshAll(ctx, func(s *sub) bool { return s.needFull })
	e.evalMu.Unlock()
	for {
		var batch []materializer.Notice
		select {
		case <-ctx.Done():
			return
		case n, ok := <-e.notices:
			if !ok {
				return
			}
			batch = append(batch, n)
		}
	drain:
		for len(batch) < 256 {
			select {
			case n, ok := <-e.notices:
				if !ok {
					break drain
				}
				batch = append(batch, n)
			default:
				break drain
			}
		}
		start := time.Now()
		e.evalMu.Lock()
		e.process(ctx, batch)
		e.evalMu.Unlock()
		e.metrics.batch.Observe(time.Since(start).Seconds())
		var top log.Seq
		for _, n := range batch {
			top = max(top, n.Seq)
		}
		e.advance(top)
	}
}

// process applies a batch of notices.
func (e *Engine) process(ctx context.Context, batch []materializer.Notice) {
	lagged := false
	changed := map[string]map[string]log.PK{}
	for _, n := range batch {
		lagged = lagged || n.Lagged
		for _, rc := range n.Rows {
			t := strings.ToLower(rc.Table)
			m := changed[t]
			if m == nil {
				m = map[string]log.PK{}
				changed[t] = m
			}
			m[string(rc.PK)] = rc.PK
		}
	}
	e.mu.Lock()
	for r := range e.recorders {
		r.add(changed, lagged)
	}
	e.mu.Unlock()
	if lagged {
		e.logger.Warn("subscriptions missed commit notices; re-evaluating all")
		e.refreshAll(ctx, func(*sub) bool { return true })
		return
	}
	rc := e.newRowCache(ctx, changed)
	info := rc.info
	affected := map[*sub]struct{}{}
	for t, pks := range changed {
		keys := make(map[string]struct{}, len(pks))
		for k := range pks {
			keys[k] = struct{}{}
		}
		ti := info[t]
		e.keys.candidates(t, keys, func(k string) (bool, func(int) []string, bool) {
			if ti == nil || rc.realKeys[t] {
				return false, nil, false
			}
			f := rc.fetch(ctx, e.src, ti, pks[k])
			if f.err != nil {
				return false, nil, false
			}
			return f.found, f.eqKeys, true
		}, affected)
	}
	if len(affected) == 0 {
		return
	}
	for s := range affected {
		if ctx.Err() != nil {
			return
		}
		s.update(ctx, changed, rc)
	}
}

func (e *Engine) refreshAll(ctx context.Context, which func(*sub) bool) {
	e.mu.Lock()
	subs := make([]*sub, 0, len(e.byID))
	for _, s := range e.byID {
		subs = append(subs, s)
	}
	e.mu.Unlock()
	for _, s := range subs {
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		if which(s) && !s.dropped {
			if err := s.refreshLocked(ctx); err != nil {
				e.logger.Warn("re-evaluate subscription", "id", s.id, "err", err)
			}
		}
		s.mu.Unlock()
	}
}

// janitor drops idle subscriptions and retries evaluations that failed.
func (e *Engine) janitor(ctx context.Context) {
	tick := min(e.cfg.IdleTimeout/4, time.Second)
	t := time.NewTicker(max(tick, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		e.mu.Lock()
		subs := make([]*sub, 0, len(e.byID))
		for _, s := range e.byID {
			subs = append(subs, s)
		}
		e.mu.Unlock()
		for _, s := range subs {
			s.mu.Lock()
			idle := len(s.clients) == 0 && now.Sub(s.idleSince) >= e.cfg.IdleTimeout
			retry := s.needFull && !s.dropped
			s.mu.Unlock()
			switch {
			case idle:
				e.logger.Debug("subscription idle, dropped", "id", s.id)
				e.remove(s, true)
			case retry:
				e.evalMu.Lock()
				s.mu.Lock()
				if err := s.refreshLocked(ctx); err != nil {
					e.logger.Warn("re-evaluate subscription", "id", s.id, "err", err)
				}
				s.mu.Unlock()
				e.evalMu.Unlock()
			}
		}
	}
}

// Updates streams the primary keys of changed rows of table (POST /v1/updates/{table}).
func (e *Engine) Updates(ctx context.Context, table string) (*UpdateStream, error) {
	name := ""
	for _, t := range e.src.Tables() {
		if strings.EqualFold(t, table) {
			name = t
		}
	}
	if name == "" {
		return nil, fmt.Errorf("%w: %q", ErrUnknownTable, table)
	}
	e.mu.Lock()
	closed := e.closed
	id := e.updateIDs[name]
	if id == "" {
		id = newID()
		e.updateIDs[name] = id
	}
	e.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	// Commit notices, not rows, are buffered here: a notice holds all the rows of a commit.
	ch, cancel := e.src.Notify(min(e.cfg.ClientBuffer, updatesBuffer))
	e.metrics.clients.WithLabelValues("updates").Inc()
	return &UpdateStream{ID: id, e: e, table: name, ch: ch, cancel: cancel}, nil
}

// UpdateStream is one /v1/updates client. Not safe for concurrent use.
type UpdateStream struct {
	// ID is the table's update id (see Engine.updateIDs).
	ID      string
	e       *Engine
	table   string
	ch      <-chan materializer.Notice
	cancel  func()
	pending [][]byte
	once    sync.Once
}

// Next returns the next NDJSON line: {"notify":["update"|"delete",[pk values]]}. It blocks
// until a row of the table changes or ctx ends; ErrSlowClient when the client fell behind.
func (u *UpdateStream) Next(ctx context.Context) ([]byte, error) {
	for len(u.pending) == 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case n, ok := <-u.ch:
			if !ok {
				return nil, ErrClosed
			}
			if n.Lagged {
				u.e.metrics.drops.Inc()
				return nil, ErrSlowClient
			}
			for _, rc := range n.Rows {
				if !strings.EqualFold(rc.Table, u.table) {
					continue
				}
				vals, err := log.UnpackPK(rc.PK)
				if err != nil {
					return nil, fmt.Errorf("notice pk: %w", err)
				}
				kind := "update"
				if rc.CL%2 == 0 {
					kind = "delete"
				}
				u.pending = append(u.pending, notifyLine(kind, vals))
			}
		}
	}
	line := u.pending[0]
	u.pending = u.pending[1:]
	u.e.metrics.events.Inc()
	return line, nil
}

// Buffered reports how many lines Next returns without blocking.
func (u *UpdateStream) Buffered() int { return len(u.pending) + len(u.ch) }

// Close ends the stream.
func (u *UpdateStream) Close() {
	u.once.Do(func() {
		u.cancel()
		u.e.metrics.clients.WithLabelValues("updates").Dec()
	})
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
