package api

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/patinadb/patina/materializer/subs"
)

// Admin endpoints: what Corrosion's admin socket commands do (subscription listing and
// inspection, the log level at run time), over HTTP behind the admin scope. Sync gaps are
// GET /v1/sync/state (need and partial_need per site).

// SubscriptionLister is implemented by a Subscriber that can describe its subscriptions
// (*subs.Engine does); the admin endpoints answer 501 without one.
type SubscriptionLister interface {
	List() []subs.Info
}

var _ SubscriptionLister = (*subs.Engine)(nil)

// adminSub is one subscription as the admin endpoints show it.
type adminSub struct {
	ID       string `json:"id"`
	Hash     string `json:"hash"`
	SQL      string `json:"sql"`
	Mode     string `json:"mode"`
	Clients  int    `json:"clients"`
	ChangeID uint64 `json:"change_id"`
	Rows     int    `json:"rows"`
}

func (sr *subscriptions) routeAdmin(mux *http.ServeMux) {
	sr.s.route(mux, "GET /v1/admin/subscriptions", kindCheap, ScopeAdmin, sr.handleAdminList)
	sr.s.route(mux, "GET /v1/admin/subscriptions/{id}", kindCheap, ScopeAdmin, sr.handleAdminInfo)
	sr.s.route(mux, "GET /v1/admin/log_level", kindCheap, ScopeAdmin, sr.s.handleLogLevel)
	sr.s.route(mux, "PUT /v1/admin/log_level", kindCheap, ScopeAdmin, sr.s.handleLogLevel)
}

func (sr *subscriptions) list() ([]adminSub, error) {
	eng, err := sr.engine()
	if err != nil {
		return nil, err
	}
	l, ok := eng.(SubscriptionLister)
	if !ok {
		return nil, fmt.Errorf("%w: this node's subscription engine cannot list its subscriptions", errNotImplemented)
	}
	infos := l.List()
	out := make([]adminSub, len(infos))
	for i, in := range infos {
		out[i] = adminSub{ID: in.ID, Hash: in.Hash, SQL: in.SQL, Mode: in.Mode, Clients: in.Clients, ChangeID: in.ChangeID, Rows: in.Rows}
	}
	return out, nil
}

// handleAdminList answers {"subscriptions": [...]}, ordered by id.
func (sr *subscriptions) handleAdminList(w http.ResponseWriter, r *http.Request) error {
	out, err := sr.list()
	if err != nil {
		return err
	}
	sortSubs(out)
	writeJSON(w, http.StatusOK, struct {
		Subscriptions []adminSub `json:"subscriptions"`
	}{out})
	return nil
}

func (sr *subscriptions) handleAdminInfo(w http.ResponseWriter, r *http.Request) error {
	out, err := sr.list()
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	for _, s := range out {
		if s.ID == id {
			writeJSON(w, http.StatusOK, s)
			return nil
		}
	}
	return fmt.Errorf("%w: no subscription %q", errNotFound, id)
}

func sortSubs(s []adminSub) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j].ID < s[j-1].ID; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// handleLogLevel reads (GET) or sets (PUT {"level": "debug"|"info"|"warn"|"error"}) the
// process's log level, as Corrosion's `log set`/`log reset` admin commands do. It answers
// {"level": ...} with the level in force.
func (s *Server) handleLogLevel(w http.ResponseWriter, r *http.Request) error {
	lv := s.cfg.LogLevel
	if lv == nil {
		return fmt.Errorf("%w: this server was given no log level to control", errNotImplemented)
	}
	if r.Method == http.MethodPut {
		body, err := s.readBody(w, r)
		if err != nil {
			return err
		}
		obj, err := strictObject(body, "level")
		var name string
		if err == nil {
			if err = json.Unmarshal(obj["level"], &name); err == nil && obj["level"] == nil {
				err = fmt.Errorf(`"level" is required`)
			}
		}
		if err != nil {
			return badRequestf(`%v (want {"level": "debug"|"info"|"warn"|"error"})`, err)
		}
		var level slog.Level
		if err := level.UnmarshalText([]byte(strings.ToUpper(name))); err != nil {
			return badRequestf("level %q: want debug, info, warn or error", name)
		}
		old := lv.Level()
		lv.Set(level)
		s.logger.Info("log level changed", "from", old.String(), "to", level.String())
	}
	writeJSON(w, http.StatusOK, struct {
		Level string `json:"level"`
	}{strings.ToLower(lv.Level().String())})
	return nil
}
