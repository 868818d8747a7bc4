package client

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/patinadb/patina/log/format"
)

// Replay is a point-in-time replay of a running node (GET /v1/replay): a SQLite file holding
// the view as of the point asked for. Read the file from it (it is an io.Reader of exactly
// Size bytes), then Close it.
type Replay struct {
	Seq        format.Seq // the arrival seq the replay stopped at
	Changesets uint64     // changesets folded
	Size       int64      // bytes of the file (-1 when the node did not say)
	io.ReadCloser
}

// Replay asks the node to fold its log up to until: an arrival seq ("1234"), an RFC 3339
// time or a duration ago ("15m"). A point older than the node's compaction horizon is an
// *Error with status 410 naming the oldest exact point. It needs an admin token when the
// node has tokens.
func (c *Client) Replay(ctx context.Context, until string) (*Replay, error) {
	req, err := c.newRequest(ctx, http.MethodGet, "/v1/replay", url.Values{"until": {until}}, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(req)
	if err != nil {
		return nil, err
	}
	r := &Replay{ReadCloser: resp.Body, Size: resp.ContentLength}
	if n, err := strconv.ParseUint(resp.Header.Get("Patina-Replay-Seq"), 10, 64); err == nil {
		r.Seq = format.Seq(n)
	}
	r.Changesets, _ = strconv.ParseUint(resp.Header.Get("Patina-Replay-Changesets"), 10, 64)
	return r, nil
}
