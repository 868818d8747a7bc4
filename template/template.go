// Package template renders files from a Patina node's data and re-renders them when the data
// changes, as consul-template does for Consul: a proxy's config kept in step with the cluster
// without polling.
//
// A template is a Go text/template with functions that run read-only queries against the
// node's HTTP API (query, queryRow, queryValue) and JSON helpers (toJSON, toJSONPretty,
// parseJSON). Every query a render used is subscribed to (POST /v1/subscriptions); a change
// to any of their results re-renders the template after a short debounce; the output is
// written to DEST atomically (a temp file in DEST's directory renamed over it, keeping DEST's
// mode) only when it differs, and then COMMAND runs (sh -c), e.g. to reload the proxy.
//
// It talks to the node only through package api/client, so it runs beside any agent, and the
// agent runs it in process for its [[template]] config entries. It must not import api,
// materializer, gossip, log's store or cmd.
//
// Invariants:
//   - a render that fails (a query error, a template error) never touches DEST: the last good
//     file stays, and the error is logged, counted and returned by Runner.Errors;
//   - DEST never holds a partial file: readers see the old content or the new, whole;
//   - after a change is committed on the node (or reaches it from the cluster) DEST follows
//     within the debounce plus one render, as long as the API is reachable; a lost stream is
//     re-opened and the template re-rendered, so no change is missed across a reconnect;
//   - nor between a render and the opening of its subscriptions: each subscription's first
//     result is compared with what the render read, and a difference renders again (loop).
package template

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	gotemplate "text/template"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/log"
)

// Spec is one template: its source file, its destination and the command run after DEST
// changed (empty: none).
type Spec struct {
	Source  string `toml:"source"`
	Dest    string `toml:"dest"`
	Command string `toml:"command"`
}

// ParseSpec reads "SRC:DEST[:COMMAND]" (the command may hold colons of its own).
func ParseSpec(s string) (Spec, error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
		return Spec{}, fmt.Errorf("template %q: want SRC:DEST[:COMMAND]", s)
	}
	sp := Spec{Source: parts[0], Dest: parts[1]}
	if len(parts) == 3 {
		sp.Command = parts[2]
	}
	return sp, nil
}

// Config configures a Runner.
type Config struct {
	Client    *client.Client
	Templates []Spec
	// Debounce is how long a change waits for more before the re-render (0: 100ms).
	Debounce time.Duration
	// CommandTimeout bounds COMMAND (0: 30s).
	CommandTimeout time.Duration
	Registerer     prometheus.Registerer
	Logger         *slog.Logger
}

// Runner renders templates and keeps them current.
type Runner struct {
	cfg     Config
	logger  *slog.Logger
	metrics *metrics
	mu      sync.Mutex
	errs    map[string]error // last render error by DEST (nil: the last render was good)
}

// New returns a runner; it does no I/O.
func New(cfg Config) *Runner {
	if cfg.Debounce <= 0 {
		cfg.Debounce = 100 * time.Millisecond
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = 30 * time.Second
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	return &Runner{cfg: cfg, logger: logger.With("component", "template"), metrics: newMetrics(), errs: map[string]error{}}
}

// Validate checks the specs: every source readable and a valid template.
func (r *Runner) Validate() error {
	if len(r.cfg.Templates) == 0 {
		return errors.New("no templates")
	}
	for _, sp := range r.cfg.Templates {
		if _, err := parse(sp.Source, nil); err != nil {
			return err
		}
	}
	return nil
}

// Once renders every template once and returns the first error.
func (r *Runner) Once(ctx context.Context) error {
	var errs []error
	for _, sp := range r.cfg.Templates {
		t := &tmpl{r: r, spec: sp}
		if _, err := t.render(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Run renders every template and keeps it current until ctx ends. Render errors do not end
// it (see Errors); it returns ctx's error.
func (r *Runner) Run(ctx context.Context) error {
	if r.cfg.Registerer != nil {
		if err := r.metrics.register(r.cfg.Registerer); err != nil {
			return err
		}
	}
	var wg sync.WaitGroup
	for _, sp := range r.cfg.Templates {
		t := &tmpl{r: r, spec: sp, subs: map[string]*sub{}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.loop(ctx)
		}()
	}
	wg.Wait()
	return ctx.Err()
}

// Errors returns the last render error of each template whose last render failed.
func (r *Runner) Errors() map[string]error {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]error{}
	for k, v := range r.errs {
		if v != nil {
			out[k] = v
		}
	}
	return out
}

func (r *Runner) setErr(dest string, err error) {
	r.mu.Lock()
	r.errs[dest] = err
	r.mu.Unlock()
}

// tmpl is one template being kept current.
type tmpl struct {
	r    *Runner
	spec Spec
	subs map[string]*sub // by query key
	// rendered is what the last good render read, by query key: what DEST shows.
	rendered map[string]resultDigest

	// opened holds the first result of each subscription (re)opened since the loop last
	// looked, by query key; check wakes the loop for it.
	mu     sync.Mutex
	opened map[string]resultDigest
	check  chan struct{}
}

// sub is the subscription of one query a render used.
type sub struct {
	key    string
	st     client.Statement
	cancel context.CancelFunc
	done   chan struct{}
}

// query is a query a render ran, and a digest of the rows it read.
type query struct {
	key    string
	st     client.Statement
	digest resultDigest
}

// resultDigest identifies a query's result whatever the order of its rows (a subscription
// sends them in its own order when the statement has no ORDER BY): the number of rows and
// the sum of their hashes. The zero value (no rows) is a valid digest; invalid marks a
// result that is unknown, which matches none.
type resultDigest struct {
	rows, sum uint64
	invalid   bool
}

// add counts one row, its cells in the API's JSON form (the form both a query and a
// subscription deliver them in).
func (d *resultDigest) add(row []log.Value) {
	var b []byte
	for _, v := range row {
		b = append(v.AppendJSON(b), ',') // JSON values are self-delimiting; ',' only for reading
	}
	h := sha256.Sum256(b)
	d.rows++
	d.sum += binary.LittleEndian.Uint64(h[:8])
}

func queryKey(st client.Statement) string {
	b, _ := json.Marshal(st)
	return string(b)
}

// loop renders, subscribes to the queries the render used, and re-renders on change.
//
// A subscription is opened after the render that used its query, so a change committed in
// between is in the subscription's first result and never comes as a change event. Each
// (re)opened subscription's first result is therefore compared with what the last good
// render read for its query (a digest of the rows), and a difference re-renders: after
// that, every later change comes as an event (subs attaches a client under the lock that
// orders changes, so there is neither gap nor overlap after its first result). The loop
// compares only between renders, so it always compares with the render DEST shows.
func (t *tmpl) loop(ctx context.Context) {
	dirty := make(chan struct{}, 1)
	mark := func() {
		select {
		case dirty <- struct{}{}:
		default:
		}
	}
	t.rendered, t.opened, t.check = map[string]resultDigest{}, map[string]resultDigest{}, make(chan struct{}, 1)
	defer func() {
		for _, s := range t.subs {
			s.cancel()
			<-s.done
		}
	}()
	backoff := 100 * time.Millisecond
	for {
		used, err := t.render(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			backoff = 100 * time.Millisecond
			clear(t.rendered)
			for _, q := range used {
				t.rendered[q.key] = q.digest
			}
			t.follow(ctx, used, mark)
		} else if len(t.subs) == 0 {
			// Nothing to wait on (the first render failed): retry, backing off.
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 10*time.Second)
			continue
		}
		if !t.wait(ctx, dirty) {
			return
		}
		// Debounce: changes that come together render once.
		select {
		case <-ctx.Done():
			return
		case <-time.After(t.r.cfg.Debounce):
		}
		select {
		case <-dirty:
		default:
		}
	}
}

// wait returns when the template must render again: a change (dirty), or a subscription
// whose first result is not what the last good render read. False when ctx ended.
func (t *tmpl) wait(ctx context.Context, dirty <-chan struct{}) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-dirty:
			return true
		case <-t.check:
		}
		t.mu.Lock()
		opened := t.opened
		t.opened = map[string]resultDigest{}
		t.mu.Unlock()
		stale := false
		for k, d := range opened {
			if _, ok := t.subs[k]; !ok {
				continue // dropped by a later render
			}
			t.r.metrics.opens.Inc()
			if r, ok := t.rendered[k]; !ok || r.invalid || d.invalid || r != d {
				t.r.metrics.stale.Inc()
				t.r.logger.Debug("template subscription opened on a result the render did not see; rendering again", "dest", t.spec.Dest, "sql", t.subs[k].st.SQL)
				stale = true
			}
		}
		if stale {
			return true
		}
	}
}

// noteOpened records the first result of a subscription (re)opened for key and wakes the
// loop to compare it (wait).
func (t *tmpl) noteOpened(key string, d resultDigest) {
	t.mu.Lock()
	t.opened[key] = d
	t.mu.Unlock()
	select {
	case t.check <- struct{}{}:
	default:
	}
}

// follow keeps one subscription per query of used and drops the others. A subscription's
// change, or its end (reconnected after a pause), marks the template dirty.
func (t *tmpl) follow(ctx context.Context, used []query, mark func()) {
	keep := map[string]bool{}
	for _, q := range used {
		keep[q.key] = true
		if _, ok := t.subs[q.key]; ok {
			continue
		}
		sctx, cancel := context.WithCancel(ctx)
		s := &sub{key: q.key, st: q.st, cancel: cancel, done: make(chan struct{})}
		t.subs[q.key] = s
		go t.watch(sctx, s, mark)
	}
	for k, s := range t.subs {
		if !keep[k] {
			s.cancel()
			<-s.done
			delete(t.subs, k)
		}
	}
}

// watch follows one subscription: its first result (rows, then eoq) goes to the loop to be
// compared with the render's (see loop), every change event marks the template dirty; a
// stream that ends is re-opened (and the template re-rendered, since changes may have been
// missed).
//
// The rows are not skipped (skip_rows): with them skipped a subscription sends only the
// changes after it attached, and the server sends no eoq either, so a change committed
// between the render and the attach was lost for good (DEST stayed stale until the next
// unrelated change).
func (t *tmpl) watch(ctx context.Context, s *sub, mark func()) {
	defer close(s.done)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		stream, err := t.r.cfg.Client.Subscribe(ctx, s.st, false)
		if err != nil {
			t.r.logger.Warn("template subscription", "dest", t.spec.Dest, "sql", s.st.SQL, "err", err)
		} else {
			eoq := false
			var first resultDigest
			for stream.Next() {
				ev := stream.Event()
				switch {
				case ev.Row != nil && !eoq:
					first.addEvent(ev.Row)
				case ev.EOQ != nil:
					if eoq {
						mark()
					} else {
						t.noteOpened(s.key, first)
					}
					eoq = true
				case ev.Change != nil:
					t.r.metrics.changes.Inc()
					mark()
				}
			}
			stream.Close()
			if ctx.Err() != nil {
				return
			}
			t.r.logger.Warn("template subscription ended; re-opening", "dest", t.spec.Dest, "err", stream.Err())
			mark()
			backoff = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// addEvent counts a subscription's row event, [rowid, [cells...]]; one it cannot read
// makes the digest invalid (the template is then rendered again, which is always safe).
func (d *resultDigest) addEvent(raw json.RawMessage) {
	var ev []json.RawMessage
	var cells []json.RawMessage
	if json.Unmarshal(raw, &ev) != nil || len(ev) != 2 || json.Unmarshal(ev[1], &cells) != nil {
		d.invalid = true
		return
	}
	row := make([]log.Value, len(cells))
	for i, c := range cells {
		v, err := log.ParseJSONValue(c)
		if err != nil {
			d.invalid = true
			return
		}
		row[i] = v
	}
	d.add(row)
}

// render runs the template, writes DEST when its output changed and runs COMMAND; it returns
// the queries the render used. On error DEST is left as it is.
func (t *tmpl) render(ctx context.Context) ([]query, error) {
	start := time.Now()
	var used []query
	out, err := t.execute(ctx, &used)
	if err == nil {
		var changed bool
		if changed, err = writeIfChanged(t.spec.Dest, out); err == nil && changed {
			t.r.metrics.writes.Inc()
			t.r.logger.Info("template rendered", "dest", t.spec.Dest, "bytes", len(out), "queries", len(used), "took", time.Since(start))
			t.runCommand(ctx)
		}
	}
	t.r.metrics.renders.WithLabelValues(map[bool]string{true: "ok", false: "error"}[err == nil]).Inc()
	t.r.metrics.duration.Observe(time.Since(start).Seconds())
	t.r.setErr(t.spec.Dest, err)
	if err != nil {
		t.r.logger.Error("template render failed; the last good file stays", "source", t.spec.Source, "dest", t.spec.Dest, "err", err)
		return used, err
	}
	return used, nil
}

func (t *tmpl) execute(ctx context.Context, used *[]query) ([]byte, error) {
	tp, err := parse(t.spec.Source, t.funcs(ctx, used))
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := tp.Execute(&buf, nil); err != nil {
		return nil, fmt.Errorf("render %s: %w", t.spec.Source, err)
	}
	return buf.Bytes(), nil
}

func (t *tmpl) runCommand(ctx context.Context) {
	if t.spec.Command == "" {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, t.r.cfg.CommandTimeout)
	defer cancel()
	out, err := exec.CommandContext(cctx, "/bin/sh", "-c", t.spec.Command).CombinedOutput()
	if err != nil {
		t.r.metrics.commandErrors.Inc()
		t.r.logger.Error("template command failed", "dest", t.spec.Dest, "command", t.spec.Command, "err", err, "output", strings.TrimSpace(string(out)))
		return
	}
	t.r.logger.Info("template command ran", "dest", t.spec.Dest, "command", t.spec.Command)
}

// parse reads and parses a template file with funcs (nil: placeholders, for Validate).
func parse(path string, funcs gotemplate.FuncMap) (*gotemplate.Template, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	if funcs == nil {
		funcs = (&tmpl{}).funcs(context.Background(), nil)
	}
	tp, err := gotemplate.New(filepath.Base(path)).Option("missingkey=error").Funcs(funcs).Parse(string(b))
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", path, err)
	}
	return tp, nil
}

// funcs are the template's functions; queries run on ctx and are recorded in used.
func (t *tmpl) funcs(ctx context.Context, used *[]query) gotemplate.FuncMap {
	run := func(sql string, args []any) ([]map[string]any, error) {
		if t.r == nil {
			return nil, errors.New("no node")
		}
		st := client.Statement{SQL: sql}
		for _, a := range args {
			v, err := client.ToValue(a)
			if err != nil {
				return nil, fmt.Errorf("query %q: parameter %v: %w", sql, a, err)
			}
			st.Params = append(st.Params, v)
		}
		k := queryKey(st)
		cols, rows, err := t.r.cfg.Client.QueryAll(ctx, client.Options{}, st)
		if err != nil {
			return nil, fmt.Errorf("query %q: %w", sql, err)
		}
		var d resultDigest
		for _, row := range rows {
			d.add(row)
		}
		if i := slices.IndexFunc(*used, func(q query) bool { return q.key == k }); i < 0 {
			*used = append(*used, query{key: k, st: st, digest: d})
		} else if (*used)[i].digest != d {
			(*used)[i].digest.invalid = true // read twice, changed in between: DEST is unsure
		}
		out := make([]map[string]any, len(rows))
		for i, row := range rows {
			m := make(map[string]any, len(cols))
			for j, c := range cols {
				m[c] = goValue(row[j])
			}
			out[i] = m
		}
		return out, nil
	}
	return gotemplate.FuncMap{
		// query "SQL" args...: the rows, each a map of column to value.
		"query": func(sql string, args ...any) ([]map[string]any, error) { return run(sql, args) },
		// queryRow "SQL" args...: the first row, or an empty map when there is none.
		"queryRow": func(sql string, args ...any) (map[string]any, error) {
			rows, err := run(sql, args)
			if err != nil || len(rows) == 0 {
				return map[string]any{}, err
			}
			return rows[0], nil
		},
		// queryValue "SQL" args...: the first column of the first row, or nil.
		"queryValue": func(sql string, args ...any) (any, error) {
			rows, err := run(sql, args)
			if err != nil || len(rows) == 0 {
				return nil, err
			}
			if len(rows[0]) != 1 {
				return nil, fmt.Errorf("queryValue %q: want one column, got %d", sql, len(rows[0]))
			}
			for _, v := range rows[0] {
				return v, nil
			}
			return nil, nil
		},
		"toJSON": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
		"toJSONPretty": func(v any) (string, error) {
			b, err := json.MarshalIndent(v, "", "  ")
			return string(b), err
		},
		"parseJSON": func(s any) (any, error) {
			var text string
			switch s := s.(type) {
			case string:
				text = s
			case []byte:
				text = string(s)
			case nil:
				return nil, nil
			default:
				return nil, fmt.Errorf("parseJSON: want text, got %T", s)
			}
			var v any
			if err := json.Unmarshal([]byte(text), &v); err != nil {
				return nil, fmt.Errorf("parseJSON: %w", err)
			}
			return v, nil
		},
	}
}

// goValue is a cell as a template sees it: int64, float64, string, []byte or nil.
func goValue(v log.Value) any {
	switch v.Type {
	case log.TypeInteger:
		return v.Int
	case log.TypeReal:
		return v.Real
	case log.TypeText:
		return v.Text
	case log.TypeBlob:
		return v.Blob
	}
	return nil
}

// writeIfChanged writes b to path atomically (a temp file in the same directory, synced, then
// renamed over path, with path's mode when it exists) unless path already holds b.
func writeIfChanged(path string, b []byte) (bool, error) {
	old, err := os.ReadFile(path)
	if err == nil && bytes.Equal(old, b) {
		return false, nil
	}
	mode := os.FileMode(0o644)
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	return true, nil
}

type metrics struct {
	renders       *prometheus.CounterVec
	duration      prometheus.Histogram
	writes        prometheus.Counter
	changes       prometheus.Counter
	commandErrors prometheus.Counter
	opens         prometheus.Counter
	stale         prometheus.Counter
}

func newMetrics() *metrics {
	return &metrics{
		renders: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "patina_template_renders_total", Help: "Template renders by result (ok, error).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "patina_template_render_seconds", Help: "Time to render a template (its queries included) and write it.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9),
		}),
		writes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patina_template_writes_total", Help: "Template destinations rewritten because their content changed.",
		}),
		changes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patina_template_changes_total", Help: "Change events received by template subscriptions.",
		}),
		commandErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patina_template_command_errors_total", Help: "Template commands that failed or timed out.",
		}),
		opens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patina_template_subscription_opens_total", Help: "Template subscriptions opened or re-opened (their first result received).",
		}),
		stale: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "patina_template_stale_opens_total",
			Help: "Template subscriptions whose first result differed from what the last render read (a change came in between): the template was rendered again.",
		}),
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.renders, m.duration, m.writes, m.changes, m.commandErrors, m.opens, m.stale} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}
