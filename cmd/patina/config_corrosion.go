package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// A Corrosion config file starts a Patina agent: before the strict decode into Config,
// loadFile reads the document as a tree, rewrites Corrosion's keys (db.path, gossip.addr,
// api.addr, api.authz.bearer-token, ...) into Patina's and removes the ones Patina has no
// use for, each with one log line saying what became of it. A file of Patina keys only is
// decoded as written (so its error messages keep their line numbers); a key neither knows
// is still an error. The table of keys is README "Coming from Corrosion"; why each
// departure is what it is, docs/DECISIONS.md.

// configNote is one line about a Corrosion key: what it became (info) or why it is ignored
// (warn). The agent logs them once its logger exists.
type configNote struct {
	Level slog.Level
	Key   string // the Corrosion key, dotted
	Msg   string
}

// logConfigNotes writes one log line per note.
func logConfigNotes(logger *slog.Logger, notes []configNote) {
	for _, n := range notes {
		logger.Log(context.Background(), n.Level, "config: Corrosion key "+n.Key+": "+n.Msg, "key", n.Key)
	}
}

// corrosionDoc translates the Corrosion keys of a TOML document. It returns the text to
// decode (text itself when there was nothing to translate), the notes, and a usage error
// when a Corrosion key cannot be honoured or clashes with the Patina key it maps to.
func corrosionDoc(path string, text []byte) ([]byte, []configNote, error) {
	var doc map[string]any
	if _, err := toml.Decode(string(text), &doc); err != nil {
		return text, nil, nil // the strict decode reports it, with its line
	}
	t := &corroTranslator{doc: doc}
	t.translate()
	if t.err != nil {
		return nil, nil, usagef("config %s: %v", path, t.err)
	}
	if !t.changed {
		return text, nil, nil
	}
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(doc); err != nil {
		return nil, nil, usagef("config %s: rewriting Corrosion keys: %v", path, err)
	}
	return buf.Bytes(), t.notes, nil
}

type corroTranslator struct {
	doc     map[string]any
	notes   []configNote
	changed bool
	err     error
}

func (t *corroTranslator) info(key, format string, args ...any) {
	t.notes = append(t.notes, configNote{slog.LevelInfo, key, fmt.Sprintf(format, args...)})
}

func (t *corroTranslator) warn(key, format string, args ...any) {
	t.notes = append(t.notes, configNote{slog.LevelWarn, key, fmt.Sprintf(format, args...)})
}

func (t *corroTranslator) fail(format string, args ...any) {
	if t.err == nil {
		t.err = fmt.Errorf(format, args...)
	}
}

// table returns the sub-table name of m, nil when absent or not a table.
func table(m map[string]any, name string) map[string]any {
	if m == nil {
		return nil
	}
	sub, _ := m[name].(map[string]any)
	return sub
}

// take removes key from m and returns its value.
func (t *corroTranslator) take(m map[string]any, key string) (any, bool) {
	if m == nil {
		return nil, false
	}
	v, ok := m[key]
	if ok {
		delete(m, key)
		t.changed = true
	}
	return v, ok
}

// set puts v at the dotted Patina key, refusing a clash with a different value already
// there (a file that says both is ambiguous).
func (t *corroTranslator) set(corroKey, patinaKey string, v any) {
	parts := strings.Split(patinaKey, ".")
	m := t.doc
	for _, p := range parts[:len(parts)-1] {
		sub, ok := m[p].(map[string]any)
		if !ok {
			if _, exists := m[p]; exists {
				t.fail("%s: %s is not a table", corroKey, p)
				return
			}
			sub = map[string]any{}
			m[p] = sub
		}
		m = sub
	}
	last := parts[len(parts)-1]
	if old, ok := m[last]; ok && !reflect.DeepEqual(old, v) {
		t.fail("Corrosion's %s and Patina's %s are both set, to different values; keep one", corroKey, patinaKey)
		return
	}
	m[last] = v
	t.changed = true
}

// dropEmpty removes name from m when it is an empty table (a section whose keys were all
// Corrosion's).
func dropEmpty(m map[string]any, name string) {
	if sub, ok := m[name].(map[string]any); ok && len(sub) == 0 {
		delete(m, name)
	}
}

// stringOrList reads a value Corrosion accepts as one string or a list of them.
func (t *corroTranslator) stringOrList(key string, v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				t.fail("%s: want a string or a list of strings", key)
				return nil
			}
			out = append(out, s)
		}
		return out
	}
	t.fail("%s: want a string or a list of strings", key)
	return nil
}

func (t *corroTranslator) str(key string, v any) string {
	s, ok := v.(string)
	if !ok {
		t.fail("%s: want a string", key)
	}
	return s
}

func (t *corroTranslator) translate() {
	t.db()
	t.api()
	t.gossip()
	t.logSection()
	// Whole sections Patina has no counterpart for: one line each.
	if v, ok := t.take(t.doc, "admin"); ok {
		where := ""
		if m, _ := v.(map[string]any); m != nil {
			for _, k := range []string{"path", "uds_path"} {
				if p, ok := m[k].(string); ok {
					where = " (" + p + ")"
				}
			}
		}
		t.warn("admin.path", "ignored%s: Patina has no admin socket; its admin commands are the /v1/admin endpoints behind an admin token (patina admin ...)", where)
	}
	if m := table(t.doc, "telemetry"); m != nil {
		t.take(t.doc, "telemetry")
		keys := sortedKeys(m)
		for _, k := range keys {
			switch k {
			case "prometheus":
				t.warn("telemetry.prometheus.addr", "ignored: Patina serves Prometheus metrics at GET /metrics on api_addr")
			case "open-telemetry", "open_telemetry":
				t.warn("telemetry."+k, "ignored: Patina does not export OpenTelemetry traces")
			default:
				t.warn("telemetry."+k, "ignored: no Patina equivalent")
			}
		}
	}
	if m := table(t.doc, "perf"); m != nil {
		t.take(t.doc, "perf")
		for _, k := range sortedKeys(m) {
			t.warn("perf."+k, "ignored: Patina's tuning keys are db.fold_batch, db.read_conns, api.max_concurrency, api.queue_* and gossip.*")
		}
	}
	if _, ok := t.take(t.doc, "consul"); ok {
		t.warn("consul", "ignored: Patina does not sync services and checks from Consul")
	}
	if _, ok := t.take(t.doc, "reaper"); ok {
		t.warn("reaper", "ignored: Patina does not reap rows; its log compaction is log.retention")
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// db: [db] path, schema_paths, subscriptions_path, cache_size_kib.
func (t *corroTranslator) db() {
	db := table(t.doc, "db")
	if db == nil {
		return
	}
	if v, ok := t.take(db, "path"); ok {
		p := t.str("db.path", v)
		dir := corrosionDataDir(p)
		t.set("db.path", "data_dir", dir)
		t.info("db.path", "Patina keeps a directory (log/ and views.db), not one SQLite file: data_dir = %q, beside %s, which is left untouched", dir, p)
	}
	if v, ok := t.take(db, "schema_paths"); ok {
		t.set("db.schema_paths", "schema", v)
		t.info("db.schema_paths", "read as schema")
	}
	if v, ok := t.take(db, "subscriptions_path"); ok {
		t.warn("db.subscriptions_path", "ignored (%v): Patina keeps subscriptions in <data_dir>/subscriptions", v)
	}
	if _, ok := t.take(db, "cache_size_kib"); ok {
		t.warn("db.cache_size_kib", "ignored: Patina sizes SQLite's page cache itself")
	}
	dropEmpty(t.doc, "db")
}

// corrosionDataDir is the data directory that stands for Corrosion's db.path: beside the
// SQLite file, named after it, and never the file itself ("/var/lib/corrosion/state.db" ->
// "/var/lib/corrosion/state-patina").
func corrosionDataDir(dbPath string) string {
	dir, base := filepath.Split(dbPath)
	stem := strings.TrimSuffix(base, filepath.Ext(base))
	if stem == "" {
		stem = base
	}
	return filepath.Join(dir, stem+"-patina")
}

// api: [api] addr/bind_addr, endpoint_name, authz/authorization, pg.
func (t *corroTranslator) api() {
	a := table(t.doc, "api")
	if a == nil {
		return
	}
	for _, k := range []string{"addr", "bind_addr"} {
		v, ok := t.take(a, k)
		if !ok {
			continue
		}
		addrs := t.stringOrList("api."+k, v)
		if len(addrs) == 0 {
			t.fail("api.%s: empty", k)
			continue
		}
		t.set("api."+k, "api_addr", addrs[0])
		t.info("api."+k, "read as api_addr = %q", addrs[0])
		for _, extra := range addrs[1:] {
			t.warn("api."+k, "ignored address %q: Patina's API listens on one address", extra)
		}
	}
	// endpoint_name is Patina's key too (api.endpoint_name): nothing to translate.
	if v, ok := t.take(a, "authorization"); ok {
		// Corrosion's long name of [api.authz].
		m, _ := v.(map[string]any)
		if m == nil {
			t.fail("api.authorization: want a table")
			return
		}
		authz := table(a, "authz")
		if authz == nil {
			authz = map[string]any{}
			a["authz"] = authz
		}
		for k, v := range m {
			if _, clash := authz[k]; clash {
				t.fail("api.authorization.%s and api.authz.%s are both set; keep one", k, k)
				return
			}
			authz[k] = v
		}
	}
	if authz := table(a, "authz"); authz != nil {
		for _, k := range []string{"bearer-token", "bearer"} {
			if v, ok := t.take(authz, k); ok {
				t.set("api.authz."+k, "api.authz.bearer_token", t.str("api.authz."+k, v))
				t.info("api.authz."+k, "read as api.authz.bearer_token (an admin token, as Corrosion's one token can do everything)")
			}
		}
	}
	if v, ok := t.take(a, "pg"); ok {
		t.pg(v)
	}
	dropEmpty(t.doc, "api")
}

// pg: Corrosion's api.pg is one listener or a list of them; Patina serves one.
func (t *corroTranslator) pg(v any) {
	var listeners []map[string]any
	switch v := v.(type) {
	case map[string]any:
		listeners = []map[string]any{v}
	case []map[string]any:
		listeners = v
	case []any:
		for _, e := range v {
			m, ok := e.(map[string]any)
			if !ok {
				t.fail("api.pg: want a table or a list of tables")
				return
			}
			listeners = append(listeners, m)
		}
	default:
		t.fail("api.pg: want a table or a list of tables")
		return
	}
	for i, l := range listeners {
		if ro, _ := l["readonly"].(bool); ro {
			// Serving it read-write would widen what the operator allowed.
			t.fail("api.pg.readonly = true: Patina has no read-only PostgreSQL listener; drop that listener (or the key) from the config")
			return
		}
		addr := ""
		for _, k := range []string{"addr", "bind_addr"} {
			if a, ok := l[k]; ok {
				addr = t.str("api.pg."+k, a)
			}
		}
		if i > 0 {
			t.warn("api.pg", "ignored listener %q: Patina serves PostgreSQL on one address", addr)
			continue
		}
		t.set("api.pg.addr", "pg.addr", addr)
		t.info("api.pg.addr", "read as pg.addr = %q", addr)
		if tlsm, _ := l["tls"].(map[string]any); tlsm != nil {
			for _, k := range sortedKeys(tlsm) {
				switch k {
				case "cert_file", "key_file":
					t.set("api.pg.tls."+k, "pg.tls."+k, t.str("api.pg.tls."+k, tlsm[k]))
				default:
					t.warn("api.pg.tls."+k, "ignored: Patina's PostgreSQL listener does not verify client certificates (clients authenticate with the API token)")
				}
			}
		}
		for _, k := range sortedKeys(l) {
			switch k {
			case "addr", "bind_addr", "tls", "readonly":
			default:
				t.warn("api.pg."+k, "ignored: no Patina equivalent")
			}
		}
	}
}

// gossip: [gossip] addr/bind_addr, external_addr, bootstrap, member_id, tls, and the QUIC
// and broadcast tuning Patina does not have.
func (t *corroTranslator) gossip() {
	g := table(t.doc, "gossip")
	if g == nil {
		return
	}
	for _, k := range []string{"addr", "bind_addr"} {
		v, ok := t.take(g, k)
		if !ok {
			continue
		}
		addr := t.str("gossip."+k, v)
		t.set("gossip."+k, "gossip_addr", addr)
		quic, err := nextPort(addr)
		if err != nil {
			t.fail("gossip.%s %q: %v", k, addr, err)
			continue
		}
		if _, set := t.doc["quic_addr"]; set {
			t.info("gossip."+k, "read as gossip_addr = %q (memberlist, UDP and TCP); quic_addr as set", addr)
			continue
		}
		t.set("gossip."+k, "quic_addr", quic)
		t.info("gossip."+k, "read as gossip_addr = %q (memberlist, UDP and TCP) and quic_addr = %q (QUIC data; Patina needs a second port, the next one)", addr, quic)
	}
	if v, ok := t.take(g, "external_addr"); ok {
		t.set("gossip.external_addr", "advertise_addr", t.str("gossip.external_addr", v))
		t.info("gossip.external_addr", "read as advertise_addr")
	}
	if v, ok := t.take(g, "bootstrap"); ok {
		list := t.stringOrList("gossip.bootstrap", v)
		out := make([]any, 0, len(list))
		for _, b := range list {
			if at := strings.Index(b, "@"); at >= 0 {
				t.warn("gossip.bootstrap", "%q: the DNS server after @ is ignored; Patina resolves %q with the system's resolver", b, b[:at])
				b = b[:at]
			}
			out = append(out, b)
		}
		t.set("gossip.bootstrap", "bootstrap", out)
		t.info("gossip.bootstrap", "read as bootstrap (%d address(es))", len(out))
	}
	if v, ok := t.take(g, "member_id"); ok {
		var id string
		switch v := v.(type) {
		case int64:
			id = strconv.FormatInt(v, 10)
		case string:
			id = v
		default:
			t.fail("gossip.member_id: want a number")
		}
		t.set("gossip.member_id", "cluster_id", id)
		t.info("gossip.member_id", "read as cluster_id = %q (nodes of another cluster id are refused)", id)
	}
	if v, ok := t.take(g, "plaintext"); ok {
		if b, _ := v.(bool); b {
			t.warn("gossip.plaintext", "ignored: Patina's QUIC is always TLS (self-signed without gossip.tls; set gossip.secret_key to encrypt memberlist)")
		} else {
			t.info("gossip.plaintext", "false is Patina's only mode")
		}
	}
	if tlsm := table(g, "tls"); tlsm != nil {
		if _, ok := t.take(tlsm, "insecure"); ok {
			t.warn("gossip.tls.insecure", "ignored: Patina verifies peers against gossip.tls.ca_file when set")
		}
		if _, ok := t.take(tlsm, "client"); ok {
			t.warn("gossip.tls.client", "ignored: Patina's nodes present gossip.tls.cert_file as their client certificate too")
		}
		dropEmpty(g, "tls")
	}
	for _, k := range []string{"client_addr", "max_mtu", "idle_timeout_secs", "disable_gso", "compression", "broadcast"} {
		if _, ok := t.take(g, k); ok {
			why := "no Patina equivalent"
			switch k {
			case "client_addr":
				why = "Patina dials from an ephemeral port"
			case "broadcast":
				why = "Patina has one broadcast (fanout with a hop budget; gossip.fanout, gossip.region)"
			case "compression":
				why = "Patina does not compress gossip frames"
			}
			t.warn("gossip."+k, "ignored: %s", why)
		}
	}
	dropEmpty(t.doc, "gossip")
}

// nextPort is host:port+1 of addr (port 0 stays 0: both ephemeral).
func nextPort(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return "", fmt.Errorf("bad port %q", port)
	}
	if n == 65535 {
		return "", fmt.Errorf("port 65535 leaves no next port for QUIC; set quic_addr")
	}
	if n > 0 {
		n++
	}
	return net.JoinHostPort(host, strconv.Itoa(n)), nil
}

// logSection: [log] format and colors (Patina's [log] has retention).
func (t *corroTranslator) logSection() {
	l := table(t.doc, "log")
	if l == nil {
		return
	}
	if v, ok := t.take(l, "format"); ok {
		f := t.str("log.format", v)
		switch f {
		case "plaintext":
			f = "text"
		case "json":
		default:
			t.fail("log.format %q: want plaintext or json", f)
		}
		t.set("log.format", "log_format", f)
		t.info("log.format", "read as log_format = %q", f)
	}
	if _, ok := t.take(l, "colors"); ok {
		t.warn("log.colors", "ignored: Patina's text logs have no colors")
	}
	dropEmpty(t.doc, "log")
}
