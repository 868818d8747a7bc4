package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/patinadb/patina/log"
)

// healthResponse is Corrosion's health answer, the same one key whether healthy or not:
// {"response": {...}}. Why a node is unhealthy goes in the X-Patina-Unhealthy header.
type healthResponse struct {
	Response healthFigures `json:"response"`
}

type healthFigures struct {
	Gaps      uint64    `json:"gaps"`
	Members   int       `json:"members"`
	P99Lag    jsonFloat `json:"p99_lag"`
	QueueSize uint64    `json:"queue_size"`
	// DiskFull: writes are refused (507) until space is freed; reads go on.
	DiskFull bool `json:"disk_full,omitempty"`
	// Corruption: the log met damaged data; the damaged range is not served.
	Corruption string `json:"corruption,omitempty"`
	// Forged and Collisions (issue 12): changesets refused since the node started, as
	// versions of its own site it did not write, and as versions held with other content.
	// They do not make the node unhealthy (it refused them); they tell an operator to look.
	Forged     uint64 `json:"forged,omitempty"`
	Collisions uint64 `json:"collisions,omitempty"`
	// ViewCorruption: SQLite found views.db damaged; it is being rebuilt from the log.
	ViewCorruption string `json:"view_corruption,omitempty"`
	// LogFailed: a write or sync of the log's disk failed; writes are refused until the
	// agent restarts and reads the truth back from disk.
	LogFailed string `json:"log_failed,omitempty"`
	// SchemaConflicts (issue 16): schema elements that lost the merge (GET /v1/schema lists
	// them). Every node that holds the same schema changesets reports the same number, so
	// they make a node unhealthy only past ?schema_conflicts=N: a conflict by default would
	// take the whole cluster out of its load balancer at once.
	SchemaConflicts int `json:"schema_conflicts,omitempty"`
}

// ViewFaultReporter is implemented by a View that watches its file (*materializer.Materializer
// does): health is unhealthy (503) while the view is damaged and not yet rebuilt.
type ViewFaultReporter interface {
	ViewCorruption() error
}

// ForgeReporter is implemented by a ChangeLog that refuses forged input (*log.Store does).
type ForgeReporter interface {
	Forgeries() log.ForgeStats
}

// FaultReporter is implemented by a ChangeLog that watches its disk (*log.Store does):
// health reports a full disk, on-disk corruption and a failed commit, and is unhealthy
// (503) with any of them.
type FaultReporter interface {
	DiskFull() bool
	Corruption() error
	CommitFailure() error
}

// jsonFloat is a float64 that always prints as a JSON real (0.0, not 0), as Corrosion's f64
// fields do.
type jsonFloat float64

func (f jsonFloat) MarshalJSON() ([]byte, error) { return log.Real(float64(f)).AppendJSON(nil), nil }

// headerUnhealthy says which thresholds an unhealthy answer passed.
const headerUnhealthy = "X-Patina-Unhealthy"

// handleHealth answers 200 as long as the API serves, or failure_status (default 503) when
// a figure passes one of the thresholds given, with Corrosion's rules: ?gaps=N (versions
// missing; may be negative), ?max_queue=N (changesets not yet folded), ?p99_lag=S (seconds;
// counts only when the queue is also above ?queue_size=N, if that is given); and Patina's
// ?schema_conflicts=N (schema elements that lost the merge).
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	maxGaps, gapsSet, err := intParam(q.Get("gaps"), "gaps", math.MinInt64)
	if err != nil {
		return err
	}
	maxQueue, queueSet, err := intParam(q.Get("max_queue"), "max_queue", 0)
	if err != nil {
		return err
	}
	lagQueue, lagQueueSet, err := intParam(q.Get("queue_size"), "queue_size", 0)
	if err != nil {
		return err
	}
	maxConflicts, conflictsSet, err := intParam(q.Get("schema_conflicts"), "schema_conflicts", 0)
	if err != nil {
		return err
	}
	failure := http.StatusServiceUnavailable
	if raw := q.Get("failure_status"); raw != "" {
		n, err := strconv.ParseUint(raw, 10, 16)
		if err != nil {
			return badRequestf("failure_status=%q: want an HTTP status code", raw)
		}
		if n >= 100 && n <= 999 { // as Corrosion: a code HTTP cannot carry falls back to 503
			failure = int(n)
		}
	}
	maxLag, lagSet := 0.0, false
	if raw := q.Get("p99_lag"); raw != "" {
		if maxLag, err = strconv.ParseFloat(raw, 64); err != nil || maxLag != maxLag {
			return badRequestf("p99_lag=%q: want a number of seconds", raw)
		}
		lagSet = true
	}
	fig := healthFigures{
		Gaps:      vectorGaps(s.cfg.Log.Vector()),
		Members:   1,
		QueueSize: foldQueue(s.cfg.Log.LastSeq(), s.cfg.View.FoldPosition()),

		SchemaConflicts: len(s.cfg.View.Schema().Conflicts),
	}
	if s.cfg.Cluster != nil {
		fig.Members = 0
		for _, m := range s.cfg.Cluster.Members() {
			if m.State == "alive" || m.Self {
				fig.Members++
			}
		}
		if lr, ok := s.cfg.Cluster.(LagReporter); ok {
			fig.P99Lag = jsonFloat(lr.P99Lag().Seconds())
		}
	}
	if fr, ok := s.cfg.Log.(ForgeReporter); ok {
		st := fr.Forgeries()
		fig.Forged, fig.Collisions = st.Forged, st.Collisions
	}
	var bad []string
	if fr, ok := s.cfg.Log.(FaultReporter); ok {
		fig.DiskFull = fr.DiskFull()
		if err := fr.Corruption(); err != nil {
			fig.Corruption = err.Error()
			bad = append(bad, "on-disk corruption in the log")
		}
		if fig.DiskFull {
			bad = append(bad, "disk full: writes refused")
		}
		if err := fr.CommitFailure(); err != nil {
			fig.LogFailed = err.Error()
			bad = append(bad, "log disk failed: writes refused until restart")
		}
	}
	if vr, ok := s.cfg.View.(ViewFaultReporter); ok {
		if err := vr.ViewCorruption(); err != nil {
			fig.ViewCorruption = err.Error()
			bad = append(bad, "views.db damaged: rebuilding from the log")
		}
	}
	if gapsSet && (maxGaps < 0 || fig.Gaps > uint64(maxGaps)) {
		bad = append(bad, fmt.Sprintf("gaps %d > %d", fig.Gaps, maxGaps))
	}
	if queueSet && fig.QueueSize > uint64(maxQueue) {
		bad = append(bad, fmt.Sprintf("queue_size %d > %d", fig.QueueSize, maxQueue))
	}
	if lagSet && float64(fig.P99Lag) > maxLag && (!lagQueueSet || fig.QueueSize > uint64(lagQueue)) {
		bad = append(bad, fmt.Sprintf("p99_lag %gs > %gs", float64(fig.P99Lag), maxLag))
	}
	if conflictsSet && int64(fig.SchemaConflicts) > maxConflicts {
		bad = append(bad, fmt.Sprintf("schema_conflicts %d > %d (GET /v1/schema lists them)", fig.SchemaConflicts, maxConflicts))
	}
	if len(bad) > 0 {
		w.Header().Set(headerUnhealthy, strings.Join(bad, ", "))
		writeJSON(w, failure, healthResponse{Response: fig})
		return nil
	}
	writeJSON(w, http.StatusOK, healthResponse{Response: fig})
	return nil
}

// intParam parses an optional integer parameter of at least min; set is false when absent.
func intParam(raw, name string, min int64) (n int64, set bool, err error) {
	if raw == "" {
		return 0, false, nil
	}
	n, err = strconv.ParseInt(raw, 10, 64)
	if err != nil || n < min {
		if min == 0 {
			return 0, false, badRequestf("%s=%q: want an integer >= 0", name, raw)
		}
		return 0, false, badRequestf("%s=%q: want an integer", name, raw)
	}
	return n, true, nil
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
			out.PartialNeed[site][ver] = complement(p.Held, 0, p.LastOrd)
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
	out := struct {
		Members []memberJSON `json:"members"`
	}{Members: s.membersJSON()}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// membersJSON is the member list of /v1/members and the dashboard.
func (s *Server) membersJSON() []memberJSON {
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
	out := make([]memberJSON, len(members))
	for i, m := range members {
		out[i] = memberJSON{Name: m.Name, SiteID: m.SiteID, State: m.State, GossipAddr: m.GossipAddr, QUICAddr: m.QUICAddr, APIAddr: m.APIAddr, Self: m.Self}
		if m.RTT > 0 {
			rtt := m.RTT.Seconds()
			out[i].RTT = &rtt
		}
	}
	return out
}

// handleTableStats counts rows of the named tables; no names means every user table.
func (s *Server) handleTableStats(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	// Corrosion's TableStatRequest: {"tables": [...]}, counting exactly the tables named (none
	// for an empty list). Patina's addition: a request without a body counts every table.
	var tables []string
	if len(bytes.TrimSpace(body)) == 0 {
		tables = s.cfg.View.Tables()
	} else {
		obj, err := strictObject(body, "tables")
		if err == nil && obj["tables"] == nil {
			err = errors.New(`"tables" is required`)
		}
		if err == nil {
			err = json.Unmarshal(obj["tables"], &tables)
		}
		if err != nil {
			return badRequestf(`%v (want {"tables": ["name", ...]})`, err)
		}
	}
	if len(tables) == 0 {
		writeJSON(w, http.StatusOK, struct {
			TotalRowCount int64    `json:"total_row_count"`
			InvalidTables []string `json:"invalid_tables"`
		}{0, []string{}})
		return nil
	}
	req := struct{ Tables []string }{tables}
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
	var version *log.Version
	if res.Version != 0 {
		version = &res.Version
	}
	writeJSON(w, http.StatusOK, struct {
		Applied []string     `json:"applied"`
		Version *log.Version `json:"version"`
		Time    float64      `json:"time"`
	}{applied, version, time.Since(start).Seconds()})
	return nil
}

// handleSchema shows the schema this node holds: every table with its columns, indexes and
// version, and the schema elements that lost the merge.
func (s *Server) handleSchema(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, s.cfg.View.Schema())
	return nil
}
