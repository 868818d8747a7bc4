package client

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/patinadb/patina/log/format"
)

// Backup is an online backup of a running node (GET /v1/backup): every changeset of its log
// up to the end as of the request, in arrival order. Read it with Next until it returns
// false, then check Err; Close it in any case.
type Backup struct {
	SiteID   format.SiteID // the node's site id
	LastSeq  format.Seq    // the seq the stream ends at (for progress)
	Versions uint64        // complete versions the node's log holds
	// Cleared are the versions the node holds cleared (compacted away entirely), per site;
	// set once Next has returned false at the end of a whole backup.
	Cleared map[format.SiteID]format.RangeSet

	resp *http.Response
	br   *bufio.Reader
	cs   *format.Changeset
	n    uint64
	done bool
	err  error
}

// Backup starts an online backup; it needs an admin token when the node has tokens.
func (c *Client) Backup(ctx context.Context) (*Backup, error) {
	req, err := c.newRequest(ctx, http.MethodGet, "/v1/backup", nil, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/msgpack")
	resp, err := c.do(req)
	if err != nil {
		return nil, err
	}
	b := &Backup{resp: resp, br: bufio.NewReaderSize(resp.Body, 1<<20)}
	b.SiteID, _ = format.ParseSiteID(resp.Header.Get("Patina-Site-Id"))
	if n, err := strconv.ParseUint(resp.Header.Get("Patina-Last-Seq"), 10, 64); err == nil {
		b.LastSeq = format.Seq(n)
	}
	b.Versions, _ = strconv.ParseUint(resp.Header.Get("Patina-Versions"), 10, 64)
	return b, nil
}

// Next reads the next changeset; false at the end of the backup or on error (see Err).
func (b *Backup) Next() bool {
	if b.err != nil || b.done {
		return false
	}
	var hdr [4]byte
	if _, err := io.ReadFull(b.br, hdr[:]); err != nil {
		// The node ends a whole backup with a trailer; a stream that stops without one was
		// cut (the node stopped, the network failed) and is not a backup.
		b.err = fmt.Errorf("backup: the stream ended after %d changesets without its trailer: %w", b.n, err)
		return false
	}
	size := binary.BigEndian.Uint32(hdr[:])
	if size > maxLine {
		b.err = fmt.Errorf("backup: frame of %d bytes is too large", size)
		return false
	}
	frame := make([]byte, size)
	if _, err := io.ReadFull(b.br, frame); err != nil {
		b.err = fmt.Errorf("backup: truncated frame after %d changesets: %w", b.n, err)
		return false
	}
	if len(frame) > 0 && frame[0] == '{' {
		var ev struct {
			Error string `json:"error"`
			Done  *struct {
				Changesets uint64                        `json:"changesets"`
				Cleared    map[format.SiteID][][2]uint64 `json:"cleared"`
			} `json:"done"`
		}
		if err := json.Unmarshal(frame, &ev); err != nil {
			b.err = fmt.Errorf("backup: bad event frame: %w", err)
			return false
		}
		switch {
		case ev.Error != "":
			b.err = &Error{Status: http.StatusOK, Message: ev.Error}
		case ev.Done != nil && ev.Done.Changesets != b.n:
			b.err = fmt.Errorf("backup: the node sent %d changesets but counted %d", b.n, ev.Done.Changesets)
		case ev.Done != nil:
			if b.Cleared, b.err = decodeCleared(ev.Done.Cleared); b.err != nil {
				b.err = fmt.Errorf("backup: trailer: %w", b.err)
				return false
			}
			b.done = true
		default:
			b.err = fmt.Errorf("backup: unknown event %s", truncate(string(frame), 80))
		}
		return false
	}
	cs, err := format.DecodeChangeset(frame)
	if err != nil {
		b.err = fmt.Errorf("backup: changeset %d: %w", b.n+1, err)
		return false
	}
	b.cs = cs
	b.n++
	return true
}

// Changeset is the changeset Next read.
func (b *Backup) Changeset() *format.Changeset { return b.cs }

// Err is the error that ended the backup early (a failure on the node arrives as an *Error).
func (b *Backup) Err() error { return b.err }

// Close ends the stream.
func (b *Backup) Close() error { return b.resp.Body.Close() }
