package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/patinadb/patina/materializer"
)

// Point-in-time replay: GET /v1/replay?until=SEQ|TIME|DURATION folds this node's log up to
// that point (materializer.ParseUntil reads it) into a new SQLite file beside the view and
// streams the file (application/vnd.sqlite3, with Content-Length); the file is removed when
// the answer ends. A point older than the compaction horizon is 410 with the oldest exact
// point in the message. Headers:
//
//	Patina-Replay-Seq:         the arrival seq the replay stopped at
//	Patina-Replay-Changesets:  changesets folded
//	Patina-Compaction-Horizon: the horizon when it ended (when the log is compacted)
//
// It is an admin route: it hands out all the data at once.
const (
	headerReplaySeq        = "Patina-Replay-Seq"
	headerReplayChangesets = "Patina-Replay-Changesets"
	contentSQLite          = "application/vnd.sqlite3"
)

// Replayer is implemented by a View that can fold its log up to a point into a new file
// (*materializer.Materializer does). It may take long (the log up to the point is read and
// folded); it never blocks the view's writer. The caller removes ReplayResult.Path.
type Replayer interface {
	ReplayTo(ctx context.Context, opts materializer.ReplayOptions, progress func(materializer.RebuildProgress)) (materializer.ReplayResult, error)
}

var _ Replayer = (*materializer.Materializer)(nil)

func (s *Server) handleReplay(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	for k := range q {
		if k != "until" {
			return badRequestf("GET /v1/replay: unknown parameter %q (it takes until)", k)
		}
	}
	raw := q.Get("until")
	if raw == "" {
		return badRequestf("GET /v1/replay: until is required (an arrival seq, an RFC 3339 time or a duration ago)")
	}
	opts, err := materializer.ParseUntil(raw, time.Now())
	if err != nil {
		return err
	}
	rp, ok := s.cfg.View.(Replayer)
	if !ok {
		return fmt.Errorf("%w: this node's view cannot replay", errNotImplemented)
	}
	release, err := s.acquire(r.Context(), kindData)
	if err != nil {
		return err
	}
	defer release()
	ctx, cancel := s.streamContext(r)
	defer cancel()
	res, err := rp.ReplayTo(ctx, opts, nil)
	if err != nil {
		return err
	}
	defer os.Remove(res.Path)
	f, err := os.Open(res.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", contentSQLite)
	h.Set("Content-Length", strconv.FormatInt(st.Size(), 10))
	h.Set(headerReplaySeq, strconv.FormatUint(uint64(res.Seq), 10))
	h.Set(headerReplayChangesets, strconv.FormatUint(res.Changesets, 10))
	if res.HorizonSeq > 0 {
		h.Set(headerHorizon, strconv.FormatUint(uint64(res.HorizonSeq), 10))
	}
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, f); err != nil {
		// The status is sent: a client sees a body shorter than Content-Length.
		s.logger.Warn("replay answer cut", attrErr, err)
	}
	return nil
}
