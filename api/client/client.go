// Package client is the Go client of Patina's HTTP API (package api; docs/DESIGN.md section 7).
// Streams are iterators that read the answer as it arrives.
//
// It imports only package log (for values and changesets), never api, so that a program that
// embeds the client does not pull in SQLite.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/patinadb/patina/log/format"
)

// Error is an error answer of the API: its status code and its "error" message.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
}

// StatusOf returns the HTTP status of an API error, 0 for other errors (network, decoding).
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// Client talks to one agent's API. It is safe for concurrent use.
type Client struct {
	base    *url.URL
	http    *http.Client
	token   string
	auth    []string // the Authorization header's value, made once from token
	maxIdle int
	tls     *tls.Config
	socket  string // the agent's Unix socket path ("unix://" addresses), or ""
	// direct is the client's own transport when New made one (no WithHTTPClient); do sends
	// through it without http.Client (see do).
	direct *directTransport
	// writeAddr is WithWriteAddr's address; writer the client of it, which Exec sends
	// through (nil without one).
	writeAddr string
	writer    *Client
}

// Option configures a Client.
type Option func(*Client)

// WithToken sends "Authorization: Bearer token" with every request.
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithHTTPClient uses hc instead of a client with its own connection pool.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.http = hc } }

// WithMaxIdleConns keeps up to n idle connections to the agent (default 128): at least as
// many as the goroutines that send requests at once, or connections are opened and closed
// per request. It has no effect with WithHTTPClient.
func WithMaxIdleConns(n int) Option { return func(c *Client) { c.maxIdle = n } }

// WithTLS uses cfg for https addresses: the CA that signed the agent's certificate (RootCAs)
// and, when the agent wants client certificates, this client's (Certificates). A "host:port"
// address without a scheme is then https. It has no effect with WithHTTPClient.
func WithTLS(cfg *tls.Config) Option { return func(c *Client) { c.tls = cfg } }

// WithWriteAddr sends Exec's transactions to the agent's write listener at addr (its
// api.write_addr: "host:port" or an http(s) URL, with the same token and TLS settings)
// and every other request to the address given to New. The write listener serves writes
// with less CPU than the API's address.
func WithWriteAddr(addr string) Option { return func(c *Client) { c.writeAddr = addr } }

// New returns a client of the agent at addr: "host:port", an http(s) URL, or
// "unix:///path/to/api.sock" for an agent's Unix socket on this host (the agent's
// api.socket). A socket's requests are made to http://localhost: with WithHTTPClient, that
// client must dial the socket itself.
func New(addr string, opts ...Option) (*Client, error) {
	return newClient(addr, false, opts)
}

// newClient is New; writer makes the client of a write address, which has none of its own.
func newClient(addr string, writer bool, opts []Option) (*Client, error) {
	c := &Client{}
	for _, o := range opts {
		o(c)
	}
	if c.writeAddr != "" && !writer {
		if strings.HasPrefix(c.writeAddr, "unix://") {
			return nil, fmt.Errorf("write address %q: the write listener is TCP (host:port), not a Unix socket", c.writeAddr)
		}
		w, err := newClient(c.writeAddr, true, opts)
		if err != nil {
			return nil, fmt.Errorf("write address: %w", err)
		}
		c.writer = w
	}
	if path, ok := strings.CutPrefix(addr, "unix://"); ok {
		if path == "" || path[0] != '/' {
			return nil, fmt.Errorf("api address %q: want unix:///absolute/path/to/socket", addr)
		}
		// Requests name a placeholder host; every connection goes to the socket.
		c.socket, addr = path, "http://"+socketHost
	}
	if !strings.Contains(addr, "://") {
		if c.tls != nil {
			addr = "https://" + addr
		} else {
			addr = "http://" + addr
		}
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("api address %q: want host:port, http://host:port or https://host:port", addr)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	c.base = u
	if c.token != "" {
		c.auth = []string{"Bearer " + c.token}
	}
	if c.http == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = max(128, c.maxIdle)
		tr.MaxIdleConns = max(tr.MaxIdleConns, c.maxIdle)
		if c.tls != nil {
			tr.TLSClientConfig = c.tls.Clone()
		}
		network, dialAddr := "tcp", u.Host
		if c.socket != "" {
			network, dialAddr = "unix", c.socket
			tr.Proxy = nil // the socket is on this host: no proxy reaches it
			tr.DialContext = func(ctx context.Context, n, a string) (net.Conn, error) {
				if a == socketHost+":80" {
					return agentDialer.DialContext(ctx, "unix", c.socket)
				}
				return agentDialer.DialContext(ctx, n, a)
			}
		}
		c.http = &http.Client{Transport: tr}
		if direct(u, tr) {
			c.direct = newDirectTransport(u.Host, network, dialAddr, tr, max(128, c.maxIdle))
			c.http.Transport = c.direct
		}
	}
	return c, nil
}

// direct reports whether the client's own requests to u may go through directTransport:
// plain HTTP, and no proxy for u in the environment.
func direct(u *url.URL, tr *http.Transport) bool {
	if u.Scheme != "http" {
		return false
	}
	if tr.Proxy != nil {
		if p, err := tr.Proxy(&http.Request{URL: u}); err != nil || p != nil {
			return false
		}
	}
	return true
}

// HTTPClient is the http.Client the client sends with (its TLS settings and pool), for
// requests the client has no method for.
func (c *Client) HTTPClient() *http.Client { return c.http }

// URL returns the agent's base URL, the one requests are made to (for a Unix socket, a
// placeholder host that the client's own transport dials as the socket).
func (c *Client) URL() string { return c.base.String() }

// String names the agent for messages: its URL, or its socket's unix:// address.
func (c *Client) String() string {
	if c.socket != "" {
		return "unix://" + c.socket
	}
	return c.URL()
}

// socketHost is the host of a socket client's requests.
const socketHost = "localhost"

func (c *Client) newRequest(ctx context.Context, method, path string, q url.Values, body io.Reader) (*http.Request, error) {
	u := new(url.URL)
	*u = *c.base
	u.Path += path
	u.RawQuery = q.Encode()
	// The URL is made here, not printed and parsed again: NewRequest is given none and
	// does the rest (the body's length, GetBody, the context).
	req, err := http.NewRequestWithContext(ctx, method, "", body)
	if err != nil {
		return nil, err
	}
	req.URL, req.Host = u, u.Host
	// Headers are assigned, not Set: the keys are canonical already, and the values are
	// made once (net/http never changes a request's header values).
	if c.auth != nil {
		req.Header["Authorization"] = c.auth
	}
	if body != nil {
		req.Header["Content-Type"] = jsonContentType
	}
	return req, nil
}

var jsonContentType = []string{"application/json"}

// do sends req and returns the response when its status is 2xx, else the API's error. A
// client with its own pool sends through its transport itself: http.Client.Do would first
// copy the request's headers, to follow redirects the API never sends (with the URL's
// print-and-parse, about a third of the bytes the client allocated for a single-row write).
// Its errors read as http.Client's: `Post "http://...": cause`.
func (c *Client) do(req *http.Request) (*http.Response, error) {
	var resp *http.Response
	var err error
	if c.direct != nil {
		if resp, err = c.direct.RoundTrip(req); err != nil {
			err = &url.Error{Op: req.Method[:1] + strings.ToLower(req.Method[1:]), URL: req.URL.Redacted(), Err: err}
		}
	} else {
		resp, err = c.http.Do(req)
	}
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, readError(resp)
}

func readError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var body struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &body) != nil || body.Error == "" {
		body.Error = strings.TrimSpace(string(b))
		if body.Error == "" {
			body.Error = http.StatusText(resp.StatusCode)
		}
	}
	return &Error{Status: resp.StatusCode, Message: body.Error}
}

// getJSON / postJSON send a request and decode a JSON answer into out.
func (c *Client) callJSON(ctx context.Context, method, path string, q url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := c.newRequest(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	defer closeBody(resp.Body)
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// closeBody reads what is left of an answer (the newline after a JSON body) before closing
// it: a body closed before its end makes net/http drop the connection instead of reusing
// it, and a new TCP connection per request costs more than the request.
func closeBody(body io.ReadCloser) {
	io.Copy(io.Discard, io.LimitReader(body, 64<<10))
	body.Close()
}

// Statement is one SQL statement with positional or named parameters (not both). Its JSON
// form is the API's object form.
type Statement struct {
	SQL    string
	Params []format.Value
	Named  map[string]format.Value
}

// MarshalJSON writes {"query": ..., "params": [...]} or {"query": ..., "named_params": {...}}.
// Values are appended by hand: through encoding/json each value's MarshalJSON output would be
// validated and copied again, which costs more than the rest of a large transaction.
func (st Statement) MarshalJSON() ([]byte, error) {
	b, ok := st.appendJSON(make([]byte, 0, len(st.SQL)+32+16*len(st.Params)))
	if !ok {
		return nil, errors.New("client: a NaN parameter has no JSON form")
	}
	return b, nil
}

// Stmt returns a statement with positional parameters converted from Go values: nil, bool,
// integers, floats, string, []byte or format.Value. It panics on other types (a programming
// error); use Statement with format.Values to build one from untrusted types.
func Stmt(sql string, params ...any) Statement {
	st := Statement{SQL: sql}
	for _, p := range params {
		v, err := ToValue(p)
		if err != nil {
			panic(err)
		}
		st.Params = append(st.Params, v)
	}
	return st
}

// ToValue converts a Go value to a format.Value.
func ToValue(x any) (format.Value, error) {
	switch v := x.(type) {
	case nil:
		return format.Null(), nil
	case format.Value:
		return v, nil
	case bool:
		if v {
			return format.Integer(1), nil
		}
		return format.Integer(0), nil
	case int:
		return format.Integer(int64(v)), nil
	case int32:
		return format.Integer(int64(v)), nil
	case int64:
		return format.Integer(v), nil
	case uint32:
		return format.Integer(int64(v)), nil
	case float64:
		return format.Real(v), nil
	case float32:
		return format.Real(float64(v)), nil
	case string:
		return format.Text(v), nil
	case []byte:
		return format.Blob(v), nil
	}
	return format.Value{}, fmt.Errorf("client: cannot use %T as a SQL value", x)
}

// ExecResult is the answer of a transaction.
type ExecResult struct {
	Results []StmtResult `json:"results"`
	Time    float64      `json:"time"`
	// Version is the transaction's version at this node's site; 0 when it changed nothing.
	Version format.Version `json:"version"`
	ActorID format.SiteID  `json:"actor_id"`
}

// StmtResult is one statement's outcome.
type StmtResult struct {
	RowsAffected int64   `json:"rows_affected"`
	Time         float64 `json:"time"`
	Error        string  `json:"error,omitempty"`
}

// Options of Exec and Query.
type Options struct {
	// Timeout is sent as ?timeout=S: the agent stops the statement after it (HTTP 408).
	Timeout time.Duration
}

func (o Options) query() url.Values {
	if o.Timeout <= 0 {
		return nil // most requests: no map to make and encode
	}
	return url.Values{"timeout": {strconv.FormatFloat(o.Timeout.Seconds(), 'f', -1, 64)}}
}

// TableStats counts the rows of tables (all user tables when none are named); unknown names
// come back in invalid.
func (c *Client) TableStats(ctx context.Context, tables ...string) (total int64, invalid []string, err error) {
	var out struct {
		TotalRowCount int64    `json:"total_row_count"`
		InvalidTables []string `json:"invalid_tables"`
	}
	var in any // no body: every table (a Patina extension; {"tables": []} counts none)
	if len(tables) > 0 {
		in = map[string][]string{"tables": tables}
	}
	err = c.callJSON(ctx, http.MethodPost, "/v1/table_stats", nil, in, &out)
	return out.TotalRowCount, out.InvalidTables, err
}

// Health figures of an agent.
type Health struct {
	Gaps      uint64  `json:"gaps"`
	Members   int     `json:"members"`
	P99Lag    float64 `json:"p99_lag"`
	QueueSize uint64  `json:"queue_size"`
	// Faults of the node's disk (issue 12): writes refused for want of space, damage found in
	// the log or in the view.
	DiskFull       bool   `json:"disk_full,omitempty"`
	Corruption     string `json:"corruption,omitempty"`
	ViewCorruption string `json:"view_corruption,omitempty"`
	// SchemaConflicts (issue 16): schema elements that lost the merge; Schema lists them.
	SchemaConflicts int `json:"schema_conflicts,omitempty"`
}

// HealthThresholds make Health fail (HTTP 503) when a figure passes one; negative: unset.
type HealthThresholds struct {
	Gaps, MaxQueue int64
	P99Lag         time.Duration
	// SchemaConflicts: unhealthy above this many schema conflicts; nil: no limit (a pointer
	// so that the zero value of HealthThresholds keeps meaning what it did before it came).
	SchemaConflicts *int64
}

// Health returns the agent's health figures. With thresholds passed, the error is an *Error
// with status 503 and the figures are still returned.
func (c *Client) Health(ctx context.Context, th *HealthThresholds) (Health, error) {
	q := url.Values{}
	if th != nil {
		if th.Gaps >= 0 {
			q.Set("gaps", strconv.FormatInt(th.Gaps, 10))
		}
		if th.MaxQueue >= 0 {
			q.Set("max_queue", strconv.FormatInt(th.MaxQueue, 10))
		}
		if th.P99Lag >= 0 {
			q.Set("p99_lag", strconv.FormatFloat(th.P99Lag.Seconds(), 'f', -1, 64))
		}
		if th.SchemaConflicts != nil {
			q.Set("schema_conflicts", strconv.FormatInt(*th.SchemaConflicts, 10))
		}
	}
	req, err := c.newRequest(ctx, http.MethodGet, "/v1/health", q, nil)
	if err != nil {
		return Health{}, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return Health{}, err
	}
	defer closeBody(resp.Body)
	var out struct {
		Response Health `json:"response"`
		Error    string `json:"error"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err := json.Unmarshal(b, &out); err != nil {
		return Health{}, &Error{Status: resp.StatusCode, Message: strings.TrimSpace(string(b))}
	}
	if resp.StatusCode != http.StatusOK {
		msg := out.Error // errors of the request itself (a bad parameter)
		if msg == "" {
			msg = "unhealthy: " + resp.Header.Get("X-Patina-Unhealthy")
		}
		return out.Response, &Error{Status: resp.StatusCode, Message: msg}
	}
	return out.Response, nil
}

// Migrate applies schema statements and returns those that changed the schema. What they
// add is replicated to the whole cluster through the log.
func (c *Client) Migrate(ctx context.Context, stmts ...string) ([]string, error) {
	var out struct {
		Applied []string `json:"applied"`
	}
	if err := c.callJSON(ctx, http.MethodPost, "/v1/migrations", nil, stmts, &out); err != nil {
		return nil, err
	}
	return out.Applied, nil
}

// Schema is the replicated schema as a node holds it (GET /v1/schema).
type Schema struct {
	Tables []struct {
		Name       string       `json:"name"`
		SQL        string       `json:"sql"`
		Columns    []string     `json:"columns"`
		Indexes    []string     `json:"indexes"`
		Version    int          `json:"version"`
		LastChange SchemaOrigin `json:"last_change"`
	} `json:"tables"`
	Conflicts []struct {
		Kind   string        `json:"kind"`
		Table  string        `json:"table"`
		Name   string        `json:"name"`
		SQL    string        `json:"sql"`
		Loser  SchemaOrigin  `json:"loser"`
		Winner *SchemaOrigin `json:"winner"`
		Reason string        `json:"reason"`
	} `json:"conflicts"`
	Waiting int `json:"waiting"`
}

// SchemaOrigin names the schema changeset an element came from.
type SchemaOrigin struct {
	Site    format.SiteID    `json:"site"`
	Version format.Version   `json:"version"`
	TS      format.Timestamp `json:"ts"`
}

// Schema returns the agent's schema: tables with their version, and conflicts.
func (c *Client) Schema(ctx context.Context) (*Schema, error) {
	var out Schema
	if err := c.callJSON(ctx, http.MethodGet, "/v1/schema", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SyncState is a node's vector as GET /v1/sync/state shows it. Ranges are inclusive.
type SyncState struct {
	ActorID     format.SiteID                                    `json:"actor_id"`
	LastSeq     format.Seq                                       `json:"last_seq"`
	Heads       map[format.SiteID]format.Version                 `json:"heads"`
	Need        map[format.SiteID][][2]uint64                    `json:"need"`
	PartialNeed map[format.SiteID]map[format.Version][][2]uint64 `json:"partial_need"`
}

// SyncState returns the agent's vector.
func (c *Client) SyncState(ctx context.Context) (*SyncState, error) {
	var out SyncState
	if err := c.callJSON(ctx, http.MethodGet, "/v1/sync/state", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Member is one cluster member.
type Member struct {
	Name       string        `json:"name"`
	SiteID     format.SiteID `json:"site_id"`
	State      string        `json:"state"`
	GossipAddr string        `json:"gossip_addr"`
	QUICAddr   string        `json:"quic_addr"`
	APIAddr    string        `json:"api_addr"`
	RTT        *float64      `json:"rtt"` // seconds; nil when unknown
	Self       bool          `json:"self"`
}

// Members lists the cluster's members as the agent sees them.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	var out struct {
		Members []Member `json:"members"`
	}
	if err := c.callJSON(ctx, http.MethodGet, "/v1/members", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Members, nil
}

// Metrics returns the agent's /metrics page (Prometheus text format).
func (c *Client) Metrics(ctx context.Context) (string, error) {
	req, err := c.newRequest(ctx, http.MethodGet, "/metrics", nil, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// AdminSubscription describes one live subscription (GET /v1/admin/subscriptions).
type AdminSubscription struct {
	ID       string `json:"id"`
	Hash     string `json:"hash"`
	SQL      string `json:"sql"`
	Mode     string `json:"mode"`
	Clients  int    `json:"clients"`
	ChangeID uint64 `json:"change_id"`
	Rows     int    `json:"rows"`
}

// AdminSubscriptions lists the agent's live subscriptions (admin scope).
func (c *Client) AdminSubscriptions(ctx context.Context) ([]AdminSubscription, error) {
	var out struct {
		Subscriptions []AdminSubscription `json:"subscriptions"`
	}
	err := c.callJSON(ctx, http.MethodGet, "/v1/admin/subscriptions", nil, nil, &out)
	return out.Subscriptions, err
}

// AdminSubscription describes one subscription by id (admin scope).
func (c *Client) AdminSubscription(ctx context.Context, id string) (AdminSubscription, error) {
	var out AdminSubscription
	err := c.callJSON(ctx, http.MethodGet, "/v1/admin/subscriptions/"+url.PathEscape(id), nil, nil, &out)
	return out, err
}

// LogLevel returns the agent's log level; with set not empty, it changes it first (admin
// scope).
func (c *Client) LogLevel(ctx context.Context, set string) (string, error) {
	var out struct {
		Level string `json:"level"`
	}
	if set == "" {
		err := c.callJSON(ctx, http.MethodGet, "/v1/admin/log_level", nil, nil, &out)
		return out.Level, err
	}
	err := c.callJSON(ctx, http.MethodPut, "/v1/admin/log_level", nil, map[string]string{"level": set}, &out)
	return out.Level, err
}
