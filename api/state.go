package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/patinadb/patina/log"
)

// healthResponse is Corrosion's health answer.
type healthResponse struct {
	Response healthFigures `json:"response"`
	Error    string        `json:"error,omitempty"`
}

type healthFigures struct {
	Gaps      uint64  `json:"gaps"`
	Members   int     `json:"members"`
	P99Lag    float64 `json:"p99_lag"`
	QueueSize uint64  `json:"queue_size"`
}

// handleHealth answers 200 as long as the API serves, or 503 when a figure passes one of the
// thresholds given: ?gaps=N (versions missing), ?p99_lag=S (seconds), ?max_queue=N
// (changesets not yet folded).
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	maxGaps, err := uintParam(q.Get("gaps"), "gaps")
	if err != nil {
		return err
	}
	maxQueue, err := uintParam(q.Get("max_queue"), "max_queue")
	if err != nil {
		return err
	}
	var maxLag float64 = -1
	if raw := q.Get("p99_lag"); raw != "" {
		if maxLag, err = strconv.ParseFloat(raw, 64); err != nil || maxLag < 0 {
			return badRequestf("p99_lag=%q: want a number of seconds >= 0", raw)
		}
	}
	fig := healthFigures{
		Gaps:      vectorGaps(s.cfg.Log.Vector()),
		Members:   1,
		QueueSize: foldQueue(s.cfg.Log.LastSeq(), s.cfg.View.FoldPosition()),
	}
	if s.cfg.Cluster != nil {
		fig.Members = 0
		for _, m := range s.cfg.Cluster.Members() {
			if m.State == "alive" || m.Self {
				fig.Members++
			}
		}
		if lr, ok := s.cfg.Cluster.(LagReporter); ok {
			fig.P99Lag = lr.P99Lag().Seconds()
		}
	}
	var bad []string
	if maxGaps >= 0 && fig.Gaps > uint64(maxGaps) {
		bad = append(bad, fmt.Sprintf("gaps %d > %d", fig.Gaps, maxGaps))
	}
	if maxQueue >= 0 && fig.QueueSize > uint64(maxQueue) {
		bad = append(bad, fmt.Sprintf("queue_size %d > %d", fig.QueueSize, maxQueue))
	}
	if maxLag >= 0 && fig.P99Lag > maxLag {
		bad = append(bad, fmt.Sprintf("p99_lag %gs > %gs", fig.P99Lag, maxLag))
	}
	if len(bad) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, healthResponse{Response: fig, Error: "unhealthy: " + strings.Join(bad, ", ")})
		return nil
	}
	writeJSON(w, http.StatusOK, healthResponse{Response: fig})
	return nil
}

// uintParam parses an optional non-negative integer parameter; -1 when absent.
func uintParam(raw, name string) (int64, error) {
	if raw == "" {
		return -1, nil
	}
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || n < 0 {
		return 0, badRequestf("%s=%q: want an integer >= 0", name, raw)
	}
	return n, nil
}

func foldQueue(last, fold log.Seq) uint64 {
	if fold >= last {
		return 0
	}
	return uint64(last - fold)
}

// vectorGaps counts, over all sites, the versions below the newest one known that are not
// held in full (missing or held in part).
func vectorGaps(v *log.Vector) uint64 {
	var gaps uint64
	for _, sv := range v.Sites {
		head, held := siteHead(sv)
		gaps += head - held
	}
	return gaps
}

// siteHead returns the newest version known of a site (complete or partial) and how many
// versions are held in full.
func siteHead(sv *log.SiteVector) (head, held uint64) {
	for _, r := range sv.Versions {
		held += r.Last - r.First + 1
		head = max(head, r.Last)
	}
	for v := range sv.Partials {
		head = max(head, uint64(v))
	}
	return head, held
}

// syncState is GET /v1/sync/state, after Corrosion's SyncStateV1: per site the newest version
// known (heads), the version ranges below it not held (need), and for versions held in part,
// the seq ranges missing (partial_need). Ranges are [first, last], inclusive.
type syncState struct {
	ActorID     log.SiteID                                 `json:"actor_id"`
	LastSeq     log.Seq                                    `json:"last_seq"`
	Heads       map[log.SiteID]uint64                      `json:"heads"`
	Need        map[log.SiteID][][2]uint64                 `json:"need"`
	PartialNeed map[log.SiteID]map[log.Version][][2]uint64 `json:"partial_need"`
}

func (s *Server) handleSyncState(w http.ResponseWriter, r *http.Request) error {
	v := s.cfg.Log.Vector()
	out := syncState{
		ActorID:     s.cfg.Log.SiteID(),
		LastSeq:     s.cfg.Log.LastSeq(),
		Heads:       map[log.SiteID]uint64{},
		Need:        map[log.SiteID][][2]uint64{},
		PartialNeed: map[log.SiteID]map[log.Version][][2]uint64{},
	}
	for site, sv := range v.Sites {
		head, _ := siteHead(sv)
		out.Heads[site] = head
		if need := complement(sv.Versions, 1, head); len(need) > 0 {
			out.Need[site] = need
		}
		for ver, p := range sv.Partials {
			if out.PartialNeed[site] == nil {
				out.PartialNeed[site] = map[log.Version][][2]uint64{}
			}
			out.PartialNeed[site][ver] = complement(p.Seqs, 0, p.LastSeq)
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// complement returns the ranges of [lo, hi] not covered by the sorted, disjoint set rs.
func complement(rs log.RangeSet, lo, hi uint64) [][2]uint64 {
	var out [][2]uint64
	next := lo
	for _, r := range rs {
		if r.First > next {
			out = append(out, [2]uint64{next, min(r.First-1, hi)})
		}
		if r.Last >= next {
			next = r.Last + 1
		}
		if next > hi {
			return out
		}
	}
	if next <= hi {
		out = append(out, [2]uint64{next, hi})
	}
	return out
}

type memberJSON struct {
	Name       string     `json:"name"`
	SiteID     log.SiteID `json:"site_id"`
	State      string     `json:"state"`
	GossipAddr string     `json:"gossip_addr,omitempty"`
	QUICAddr   string     `json:"quic_addr,omitempty"`
	APIAddr    string     `json:"api_addr,omitempty"`
	RTT        *float64   `json:"rtt"` // seconds; null when unknown
	Self       bool       `json:"self"`
}

// handleMembers lists the cluster's members; a node without gossip lists itself.
func (s *Server) handleMembers(w http.ResponseWriter, r *http.Request) error {
	var members []Member
	if s.cfg.Cluster != nil {
		members = s.cfg.Cluster.Members()
	} else {
		self := Member{SiteID: s.cfg.Log.SiteID(), State: "alive", Self: true}
		if a := s.Addr(); a != nil {
			self.APIAddr = a.String()
		}
		self.Name = self.SiteID.String()
		members = []Member{self}
	}
	out := struct {
		Members []memberJSON `json:"members"`
	}{Members: make([]memberJSON, len(members))}
	for i, m := range members {
		out.Members[i] = memberJSON{Name: m.Name, SiteID: m.SiteID, State: m.State, GossipAddr: m.GossipAddr, QUICAddr: m.QUICAddr, APIAddr: m.APIAddr, Self: m.Self}
		if m.RTT > 0 {
			rtt := m.RTT.Seconds()
			out.Members[i].RTT = &rtt
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// handleTableStats counts rows of the named tables; no names means every user table.
func (s *Server) handleTableStats(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	var req struct {
		Tables []string `json:"tables"`
	}
	if len(bytes.TrimSpace(body)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return badRequestf(`malformed JSON: %v (want {"tables": ["name", ...]})`, err)
		}
	}
	if len(req.Tables) == 0 {
		req.Tables = s.cfg.View.Tables()
	}
	stats, invalid, err := s.cfg.View.TableStats(r.Context(), req.Tables)
	if err != nil {
		return err
	}
	out := struct {
		TotalRowCount int64    `json:"total_row_count"`
		InvalidTables []string `json:"invalid_tables"`
	}{InvalidTables: invalid}
	if out.InvalidTables == nil {
		out.InvalidTables = []string{}
	}
	for _, st := range stats {
		out.TotalRowCount += st.Rows
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// handleMigrations applies schema statements: a JSON array of SQL strings (or statements
// without parameters).
func (s *Server) handleMigrations(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	stmts, err := decodeStatements(body)
	if err != nil {
		return err
	}
	sqls := make([]string, len(stmts))
	for i, st := range stmts {
		if len(st.Params) > 0 || len(st.Named) > 0 {
			return badRequestf("statement %d: schema statements take no parameters", i)
		}
		sqls[i] = st.SQL
	}
	start := time.Now()
	res, err := s.cfg.View.Migrate(r.Context(), sqls)
	if err != nil {
		return err
	}
	applied := slices.Clone(res.Applied)
	if applied == nil {
		applied = []string{}
	}
	writeJSON(w, http.StatusOK, struct {
		Applied []string `json:"applied"`
		Time    float64  `json:"time"`
	}{applied, time.Since(start).Seconds()})
	return nil
}
