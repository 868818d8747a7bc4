package api

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/log"
)

// Wire form of the changeset stream and ingest (decisions in docs/DECISIONS.md):
//
//   - NDJSON (default): one changeset per line in docs/DESIGN.md's JSON form, "seq" being this
//     node's arrival seq; a failure after the stream started is a final {"error": "..."} line.
//   - msgpack (Accept or Content-Type application/msgpack): frames of a 4-byte big-endian
//     length and that many bytes; a frame starting with log.FormatV1 is a changeset as
//     log.EncodeChangeset writes it (its local_seq field is the arrival seq), a frame
//     starting with '{' is a JSON {"error": "..."} event.
const (
	contentMsgpack = "application/msgpack"
	// readBatch is how many changesets one read of the log returns; a batch is written
	// without a flush between its events, then flushed.
	readBatch = 256
	// applyBatch is how many ingested changesets go to one Apply call.
	applyBatch = 1024
	// maxFrame bounds one msgpack frame of an ingest body (besides MaxBodyBytes).
	maxFrame = 256 << 20
)

// Headers of GET /v1/changes once the log has been compacted: the horizon (the newest
// arrival seq compaction has touched) and whether this stream starts before it.
const (
	headerHorizon   = "Patina-Compaction-Horizon"
	headerCompacted = "Patina-Compacted"
)

func wantsMsgpack(h string) bool {
	return strings.Contains(h, contentMsgpack) || strings.Contains(h, "application/x-msgpack")
}

// handleChangesGet streams the log in arrival order from ?since=SEQ (exclusive; 0 is the
// start). Without follow it ends at the log's end as of the request; with follow=true it
// stays open and streams new changesets as they land, until the client or the server goes.
func (s *Server) handleChangesGet(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var since uint64
	if raw := q.Get("since"); raw != "" {
		var err error
		if since, err = strconv.ParseUint(raw, 10, 64); err != nil {
			return badRequestf("since=%q: want a local seq (an integer >= 0)", raw)
		}
	}
	follow := false
	if raw := q.Get("follow"); raw != "" {
		var err error
		if follow, err = strconv.ParseBool(raw); err != nil {
			return badRequestf("follow=%q: want true or false", raw)
		}
	}
	end := s.cfg.Log.LastSeq()
	if log.Seq(since) > end {
		return fmt.Errorf("%w: since=%d is beyond the end of this node's log (last seq %d)", log.ErrSeqBeyondLog, since, end)
	}
	kind := kindData
	if follow {
		kind = kindStream
	}
	release, err := s.acquire(r.Context(), kind)
	if err != nil {
		return err
	}
	defer release()
	ctx, cancel := s.streamContext(r)
	defer cancel()

	msgpack := wantsMsgpack(r.Header.Get("Accept"))
	if msgpack {
		w.Header().Set("Content-Type", contentMsgpack)
	} else {
		w.Header().Set("Content-Type", ndjson)
	}
	// Log compaction (README "Log retention and compaction"): seqs up to the horizon may
	// have been compacted, so a stream starting before it reads what survived (seq holes are
	// cleared versions, "compacted": true marks trimmed ones) rather than every intermediate
	// change; folded, it still gives the current state.
	if h := s.cfg.Log.Stats().HorizonSeq; h > 0 {
		w.Header().Set(headerHorizon, strconv.FormatUint(uint64(h), 10))
		w.Header().Set(headerCompacted, strconv.FormatBool(log.Seq(since) < h))
	}
	w.WriteHeader(http.StatusOK)
	ev := newEventWriter(w)
	if err := ev.rc.Flush(); err != nil { // a follower learns at once that the stream is open
		return nil
	}
	s.copyLog(ctx, ev, logCopy{after: log.Seq(since), end: end, follow: follow, msgpack: msgpack, counted: s.metrics.streamed})
	return nil
}

// appendEvent appends one changeset event in the stream's form.
func appendEvent(b []byte, cs *log.Changeset, msgpack bool) ([]byte, error) {
	if msgpack {
		start := len(b)
		b = append(b, 0, 0, 0, 0)
		b, err := log.AppendChangeset(b, cs)
		if err != nil {
			return nil, err
		}
		binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-4))
		return b, nil
	}
	j, err := json.Marshal(cs)
	if err != nil {
		return nil, err
	}
	b = append(b, j...)
	return append(b, '\n'), nil
}

// ingestResponse is the answer of POST /v1/changes.
type ingestResponse struct {
	Changesets int `json:"changesets"` // received
	New        int `json:"new"`        // not held before (the rest were duplicates)
	// Cleared counts the versions of cleared frames (a backup's) newly held cleared.
	Cleared uint64 `json:"cleared,omitempty"`
}

// handleChangesPost ingests changesets made elsewhere. Every changeset of the body is decoded
// and validated before any is applied, so a bad body changes nothing; the answer comes once
// they are folded into the view, so a read right after sees them. Ingest is idempotent. An
// empty body is zero changesets (a piped stream that had nothing new), not an error.
func (s *Server) handleChangesPost(w http.ResponseWriter, r *http.Request) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	var css []*log.Changeset
	var cleared map[log.SiteID]log.RangeSet
	if wantsMsgpack(r.Header.Get("Content-Type")) {
		if body, cleared, err = splitCleared(body); err != nil {
			return err
		}
		css, err = decodeFrames(body)
	} else {
		css, err = decodeNDJSON(body)
	}
	if err != nil {
		return err
	}
	if err := s.screenIngest(r, css, cleared); err != nil {
		return err
	}
	out := ingestResponse{Changesets: len(css)}
	if len(cleared) > 0 {
		ca, ok := s.cfg.Log.(ClearedAppender)
		if !ok {
			return fmt.Errorf("%w: this node cannot record cleared versions", errNotImplemented)
		}
		own := s.cfg.Log.SiteID()
		held := s.cfg.Log.Vector()
		for _, site := range client.SortedSites(cleared) {
			rs := cleared[site]
			if site == own {
				// Only this node writes its versions: never more of them from outside.
				var mine log.RangeSet
				if sv := held.Sites[own]; sv != nil {
					mine = sv.Versions
				}
				if extra := rs.Subtract(mine); len(extra) > 0 {
					return fmt.Errorf("cleared versions %d..%d of this node's own site: %w", extra[0].First, extra[0].Last, log.ErrForged)
				}
			}
			n, err := ca.AppendCleared(r.Context(), site, rs)
			if err != nil {
				return fmt.Errorf("cleared versions of %v: %w", site, err)
			}
			out.Cleared += n
		}
	}
	start := time.Now()
	for i := 0; i < len(css); i += applyBatch {
		chunk := css[i:min(i+applyBatch, len(css))]
		news, err := s.cfg.View.Apply(r.Context(), chunk)
		if err != nil {
			return fmt.Errorf("apply changesets %d..%d: %w", i, i+len(chunk)-1, err)
		}
		for _, isNew := range news {
			if isNew {
				out.New++
			}
		}
	}
	s.metrics.applyDuration.Observe(time.Since(start).Seconds())
	s.metrics.ingested.WithLabelValues("true").Add(float64(out.New))
	s.metrics.ingested.WithLabelValues("false").Add(float64(out.Changesets - out.New))
	writeJSON(w, http.StatusOK, out)
	return nil
}

// Screener is implemented by a ChangeLog that refuses forged input (*log.Store does):
// Screen says whether ingest would refuse a changeset (log.ErrForged, log.ErrCollision).
type Screener interface {
	Screen(cs *log.Changeset) error
}

// screenIngest refuses a whole ingest body before any of it is applied (issue 12, item 4)
// when one of its changesets is a version of this node's own site it did not write, collides
// with a held version of other content, or would open a gap in its site's versions: a forged
// far-future version (1000 where the cluster has 3) would leave every node waiting forever
// for versions nobody will send. ?allow_gaps=true lifts the last check for an operator who
// posts a backup whose compacted ranges were cleared (sync fills those from peers).
func (s *Server) screenIngest(r *http.Request, css []*log.Changeset, cleared map[log.SiteID]log.RangeSet) error {
	if sc, ok := s.cfg.Log.(Screener); ok {
		for i, cs := range css {
			if err := sc.Screen(cs); err != nil {
				return fmt.Errorf("changeset %d (%v/%d): %w", i, cs.Site, cs.Version, err)
			}
		}
	}
	allow := false
	if raw := r.URL.Query().Get("allow_gaps"); raw != "" {
		var err error
		if allow, err = strconv.ParseBool(raw); err != nil {
			return badRequestf("allow_gaps=%q: want true or false", raw)
		}
	}
	if allow {
		return nil
	}
	body := map[log.SiteID]*log.RangeSet{}
	for _, cs := range css {
		if body[cs.Site] == nil {
			body[cs.Site] = &log.RangeSet{}
		}
		body[cs.Site].Add(uint64(cs.Version), uint64(cs.Version))
	}
	// A backup's cleared versions are part of what it holds (client.AppendClearedFrame).
	for site, rs := range cleared {
		if body[site] == nil {
			body[site] = &log.RangeSet{}
		}
		body[site].AddSet(rs)
	}
	vec := s.cfg.Log.Vector()
	for site, set := range body {
		rs := *set
		var head uint64
		var held log.RangeSet
		if sv := vec.Sites[site]; sv != nil {
			head, _ = siteHead(sv)
			held = sv.Versions
		}
		top := rs[len(rs)-1].Last
		if top <= head {
			continue
		}
		// Every version from the one after the head to the top must be held or in the body.
		missing := log.RangeSet{{First: head + 1, Last: top}}.Subtract(rs).Subtract(held)
		if len(missing) > 0 {
			return fmt.Errorf("%w: changesets of site %v up to version %d would leave versions %d..%d missing (this node holds up to %d); post them in order, or add ?allow_gaps=true for a backup with cleared ranges", errGapRefused, site, top, missing[0].First, missing[0].Last, head)
		}
	}
	return nil
}

// decodeNDJSON reads changesets in JSON form: one per line, or a JSON array of them.
// log.Changeset's UnmarshalJSON validates each.
func decodeNDJSON(body []byte) ([]*log.Changeset, error) {
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '[' {
		var css []*log.Changeset
		if err := json.Unmarshal(body, &css); err != nil {
			return nil, badRequestf("changesets: %v", err)
		}
		for i, cs := range css {
			if cs == nil {
				return nil, badRequestf("changeset %d: null", i)
			}
		}
		return css, nil
	}
	var css []*log.Changeset
	dec := json.NewDecoder(bytes.NewReader(body))
	for i := 0; ; i++ {
		var cs log.Changeset
		err := dec.Decode(&cs)
		if errors.Is(err, io.EOF) {
			return css, nil
		}
		if err != nil {
			return nil, badRequestf("changeset %d: %v", i, err)
		}
		css = append(css, &cs)
	}
}

// decodeFrames reads length-prefixed msgpack changesets; log.DecodeChangeset validates each.
func decodeFrames(body []byte) ([]*log.Changeset, error) {
	var css []*log.Changeset
	r := bytes.NewReader(body)
	for i := 0; ; i++ {
		var hdr [4]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return css, nil
			}
			return nil, badRequestf("changeset frame %d: truncated length", i)
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > maxFrame || int64(n) > int64(r.Len()) {
			return nil, badRequestf("changeset frame %d: length %d is larger than the body", i, n)
		}
		frame := make([]byte, n)
		if _, err := io.ReadFull(r, frame); err != nil {
			return nil, badRequestf("changeset frame %d: truncated (want %d bytes)", i, n)
		}
		cs, err := log.DecodeChangeset(frame)
		if err != nil {
			return nil, badRequestf("changeset frame %d: %v", i, err)
		}
		css = append(css, cs)
	}
}

// ClearedAppender is implemented by a ChangeLog that records versions held cleared
// (*log.Store does): a backup's cleared ranges posted with its changesets.
type ClearedAppender interface {
	AppendCleared(ctx context.Context, site log.SiteID, rs log.RangeSet) (uint64, error)
}

var _ ClearedAppender = (*log.Store)(nil)

// splitCleared takes the cleared frames (client.AppendClearedFrame) out of a msgpack ingest
// body: it returns the other frames, unchanged, and the cleared versions they named.
func splitCleared(body []byte) ([]byte, map[log.SiteID]log.RangeSet, error) {
	var rest []byte
	var cleared map[log.SiteID]log.RangeSet
	for off, i := 0, 0; off < len(body); i++ {
		if len(body)-off < 4 {
			return nil, nil, badRequestf("changeset frame %d: truncated length", i)
		}
		n := int(binary.BigEndian.Uint32(body[off:]))
		if n > maxFrame || n > len(body)-off-4 {
			return nil, nil, badRequestf("changeset frame %d: length %d is larger than the body", i, n)
		}
		frame := body[off+4 : off+4+n]
		if client.IsClearedFrame(frame) {
			m, err := client.DecodeClearedFrame(frame)
			if err != nil {
				return nil, nil, badRequestf("frame %d: %v", i, err)
			}
			if cleared == nil {
				cleared = map[log.SiteID]log.RangeSet{}
			}
			for site, rs := range m {
				all := cleared[site]
				all.AddSet(rs)
				cleared[site] = all
			}
			if rest == nil {
				rest = append(make([]byte, 0, len(body)), body[:off]...)
			}
		} else if rest != nil {
			rest = append(rest, body[off:off+4+n]...)
		}
		off += 4 + n
	}
	if rest == nil {
		return body, nil, nil
	}
	return rest, cleared, nil
}
