package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/patinadb/patina/api/client"
)

func init() { register("", newSubscribeCmd) }

func newSubscribeCmd(m *Main) *cobra.Command {
	var (
		params   []string
		id       string
		from     int64
		skipRows bool
	)
	c := &cobra.Command{
		Use:   "subscribe [SQL]",
		Short: "Subscribe to a query's result as it changes (POST /v1/subscriptions)",
		Long: `Subscribe to the result of one SELECT and print the events of the subscription as NDJSON
lines, as the API streams them, until interrupted: {"columns":[...]}, {"row":[rowid,[cells]]}
for the current rows, {"eoq":{"time":s,"change_id":n}}, then one
{"change":["insert"|"update"|"delete",rowid,[cells],change_id]} per change.

The subscription's id is printed on stderr; with --id (and no SQL) the command attaches to an
existing subscription instead (GET /v1/subscriptions/{id}). --from N (N > 0) resumes after
change N: only the changes after it are printed, with no gap and no duplicate; when N is
older than what the agent retained, or not reached yet, the stream is one {"error":...}
event and the command fails. --from 0 prints the current rows, as without it. --from with
SQL is refused unless a subscription of that statement exists. --skip-rows prints only the
changes from now on (no columns, rows or eoq).`,
		Example: `  patina subscribe "SELECT id, addr FROM machines WHERE app_id = ?" --param 7
  patina subscribe --id 4a1e...-... --from 1200`,
		Args: rangeArgs(0, 1),
	}
	f := addClientFlags(c)
	c.Flags().StringArrayVarP(&params, "param", "p", nil, "positional parameter (JSON value or text); repeatable")
	c.Flags().StringVar(&id, "id", "", "attach to this existing subscription instead of subscribing to SQL")
	c.Flags().Int64Var(&from, "from", -1, "resume after this change id (-1: start with the current rows)")
	c.Flags().BoolVar(&skipRows, "skip-rows", false, "print only the changes from now on: no columns, rows or eoq")
	c.RunE = func(c *cobra.Command, args []string) error {
		if (id == "") == (len(args) == 0) {
			return usagef("subscribe: give either SQL or --id (usage: %s)", c.UseLine())
		}
		if id != "" && len(params) > 0 {
			return usagef("subscribe: --param goes with SQL, not with --id")
		}
		cfg, err := f.cf.load(c, m.Getenv)
		if err != nil {
			return err
		}
		cl, err := m.client(c, f)
		if err != nil {
			return err
		}
		q := url.Values{}
		if from >= 0 {
			q.Set("from", strconv.FormatInt(from, 10))
		}
		if skipRows {
			q.Set("skip_rows", "true")
		}
		method, path, body := http.MethodGet, "/v1/subscriptions/"+url.PathEscape(id), []byte(nil)
		if id == "" {
			st, err := parseStatementArg(args[0])
			if err != nil {
				return err
			}
			for _, p := range params {
				st.Params = append(st.Params, parseParam(p))
			}
			if body, err = json.Marshal(st); err != nil {
				return usagef("statement: %v", err)
			}
			method, path = http.MethodPost, "/v1/subscriptions"
		}
		u := cl.URL() + path
		if len(q) > 0 {
			u += "?" + q.Encode()
		}
		req, err := http.NewRequestWithContext(c.Context(), method, u, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		if tok := cfg.API.Authz.BearerToken; tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := cl.HTTPClient().Do(req)
		if err != nil {
			if c.Context().Err() != nil {
				return nil
			}
			return fmt.Errorf("subscribe: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			var e struct {
				Error string `json:"error"`
			}
			if json.Unmarshal(b, &e) != nil || e.Error == "" {
				e.Error = strings.TrimSpace(string(b))
			}
			return &client.Error{Status: resp.StatusCode, Message: e.Error}
		}
		if sid := resp.Header.Get("corro-query-id"); sid != "" {
			fmt.Fprintf(m.Stderr, "subscription %s\n", sid)
		}
		return copyEvents(m, resp.Body, c.Context().Err)
	}
	return c
}

// copyEvents prints the stream's lines as they come; an error event ends the command with
// that error. The end of the stream because of an interrupt is a normal end.
func copyEvents(m *Main, r io.Reader, interrupted func() error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	bw := bufio.NewWriter(m.Stdout)
	defer bw.Flush()
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			if bytes.HasPrefix(line, []byte(`{"error":`)) {
				var e struct {
					Error string `json:"error"`
				}
				json.Unmarshal(line, &e)
				bw.Flush()
				return fmt.Errorf("subscription: %s", e.Error)
			}
			bw.Write(line)
			if br.Buffered() == 0 {
				if err := bw.Flush(); err != nil {
					return err
				}
			}
		}
		if err != nil {
			if interrupted() != nil {
				return nil
			}
			if err == io.EOF {
				return fmt.Errorf("subscription: the agent ended the stream")
			}
			return fmt.Errorf("subscription: %w", err)
		}
	}
}
