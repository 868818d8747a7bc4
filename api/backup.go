package api

import (
	"encoding/binary"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/log"
)

// Online backup: GET /v1/backup streams a running node's log, every changeset it holds up
// to the end of the log as of the request, in arrival order, as msgpack frames (the framing
// of GET /v1/changes with Accept: application/msgpack), then a trailer frame
// {"done":{"changesets":N,"cleared":{SITE:[[FIRST,LAST],...]}}} (cleared: the versions the
// log holds cleared, see client.AppendClearedFrame; omitted when none); a frame starting with '{' that is not the trailer is an
// {"error": ...} event, and a stream without its trailer was cut. The log is append-only and the stream stops at the seq read at the
// start, so the answer is a consistent snapshot however many writes land meanwhile; what the
// view shows is rebuilt from it. Headers tell a client what to expect before the first frame:
//
//	Patina-Site-Id:  the node's site id (a restore that continues as this site needs it)
//	Patina-Last-Seq: the seq the stream ends at (progress: a frame's seq / this)
//	Patina-Versions: the complete versions the log holds
//
// It is an admin route: it hands out all the data at once.
const (
	headerSiteID   = "Patina-Site-Id"
	headerLastSeq  = "Patina-Last-Seq"
	headerVersions = "Patina-Versions"
)

func (s *Server) handleBackup(w http.ResponseWriter, r *http.Request) error {
	if len(r.URL.Query()) > 0 {
		return badRequestf("GET /v1/backup takes no parameters")
	}
	release, err := s.acquire(r.Context(), kindData)
	if err != nil {
		return err
	}
	defer release()
	ctx, cancel := s.streamContext(r)
	defer cancel()

	end := s.cfg.Log.LastSeq()
	st := s.cfg.Log.Stats()
	w.Header().Set("Content-Type", contentMsgpack)
	w.Header().Set(headerSiteID, s.cfg.Log.SiteID().String())
	w.Header().Set(headerLastSeq, strconv.FormatUint(uint64(end), 10))
	w.Header().Set(headerVersions, strconv.FormatUint(st.Versions, 10))
	w.WriteHeader(http.StatusOK)
	ev := newEventWriter(w)
	sent, complete := s.copyLog(ctx, ev, logCopy{end: end, msgpack: true, counted: s.metrics.backupStreamed,
		failed: func(err error) { s.logger.Warn("backup stream failed", attrErr, err) }})
	if !complete {
		return nil // cut: no trailer, so the client knows
	}
	// The trailer: a client that does not read it knows the stream was cut. It carries the
	// cleared versions as of now (a version cleared during the stream is in neither the
	// stream nor, before, the ranges): a restore records them, so it has no gaps there.
	done := map[string]any{"changesets": sent}
	if cl := client.ClearedOf(s.cfg.Log.Vector()); len(cl) > 0 {
		pairs := map[log.SiteID][][2]uint64{}
		for site, rs := range cl {
			for _, r := range rs {
				pairs[site] = append(pairs[site], [2]uint64{r.First, r.Last})
			}
		}
		done["cleared"] = pairs
	}
	b, _ := json.Marshal(map[string]any{"done": done})
	ev.write(append(binary.BigEndian.AppendUint32(ev.buf[:0], uint32(len(b))), b...))
	return nil
}
