package main

import (
	"bufio"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/log"
)

func init() { register("", newQueryCmd) }

func newQueryCmd(m *Main) *cobra.Command {
	var (
		params  []string
		timeout time.Duration
		output  string
	)
	c := &cobra.Command{
		Use:   "query SQL",
		Short: "Run a read-only query (POST /v1/queries)",
		Long: `Run one read-only statement on an agent and print its rows as they stream in.

--output table (default) aligns columns; text is shown as is, NULL as NULL and blobs as
X'..'. --output json prints one JSON object per row (column name to value), with values in
the API's typed JSON form (a real always has a fraction: 1.0).`,
		Example: `  patina query "SELECT * FROM t"
  patina query "SELECT name FROM t WHERE id = ?" --param 1 --output json`,
		Args: exactArgs(1),
	}
	f := addClientFlags(c)
	c.Flags().StringArrayVarP(&params, "param", "p", nil, "positional parameter (JSON value or text); repeatable")
	c.Flags().DurationVar(&timeout, "timeout", 0, "stop the query after this long (0: no limit)")
	c.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	c.RunE = func(c *cobra.Command, args []string) error {
		if err := checkOutput(output, "table", "json"); err != nil {
			return err
		}
		cl, err := m.client(c, f)
		if err != nil {
			return err
		}
		st, err := parseStatementArg(args[0])
		if err != nil {
			return err
		}
		for _, p := range params {
			st.Params = append(st.Params, parseParam(p))
		}
		rows, err := cl.Query(c.Context(), client.Options{Timeout: timeout}, st)
		if err != nil {
			return err
		}
		defer rows.Close()
		bw := bufio.NewWriter(m.Stdout)
		defer bw.Flush()
		if output == "json" {
			return printJSONRows(bw, rows)
		}
		return printTable(bw, rows)
	}
	return c
}

func printJSONRows(w *bufio.Writer, rows *client.Rows) error {
	cols := rows.Columns()
	var b []byte
	for rows.Next() {
		b = append(b[:0], '{')
		for i, v := range rows.Values() {
			if i > 0 {
				b = append(b, ',')
			}
			name := fmt.Sprint(i)
			if i < len(cols) {
				name = cols[i]
			}
			b = log.Text(name).AppendJSON(b)
			b = append(b, ':')
			b = v.AppendJSON(b)
		}
		b = append(b, '}', '\n')
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return rows.Err()
}

// printTable prints rows aligned. The widths of a stream are not known in advance: rows are
// written in blocks of 1,000, each block aligned on its own, so memory stays bounded.
func printTable(w *bufio.Writer, rows *client.Rows) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(rows.Columns(), "\t"))
	n := 0
	cells := make([]string, 0, len(rows.Columns()))
	for rows.Next() {
		cells = cells[:0]
		for _, v := range rows.Values() {
			cells = append(cells, cellText(v))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
		if n++; n%1000 == 0 {
			tw.Flush()
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := rows.Err(); err != nil {
		return err
	}
	fmt.Fprintf(w, "(%d row(s))\n", n)
	return nil
}

// cellText shows a value for people: text unquoted (tabs and newlines escaped so that the
// table stays aligned), NULL, numbers as SQLite prints them, blobs as X'..'.
func cellText(v log.Value) string {
	switch v.Type {
	case log.TypeText:
		return strings.NewReplacer("\t", `\t`, "\n", `\n`, "\r", `\r`).Replace(v.Text)
	case log.TypeNull:
		return "NULL"
	}
	return v.Quote()
}
