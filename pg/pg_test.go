package pg_test

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestPgxReadWrite(t *testing.T) {
	n := newNode(t)
	c := n.connect(t, "")
	ctx := context.Background()

	tag, err := c.Exec(ctx, "INSERT INTO t (id, name, score, data, flag) VALUES ($1, $2, $3, $4, $5)", 1, "one", 1.5, []byte{0, 1, 2}, true)
	if err != nil {
		t.Fatalf("insert: %v", err)
	}
	if tag.String() != "INSERT 0 1" {
		t.Fatalf("tag %q", tag)
	}
	if _, err := c.Exec(ctx, "INSERT INTO t (id, name) VALUES ($1, $2), ($3, $4)", 2, "two", 3, nil); err != nil {
		t.Fatalf("insert 2: %v", err)
	}
	var (
		name  string
		score float64
		data  []byte
		flag  bool
	)
	if err := c.QueryRow(ctx, "SELECT name, score, data, flag FROM t WHERE id = $1", 1).Scan(&name, &score, &data, &flag); err != nil {
		t.Fatalf("select: %v", err)
	}
	if name != "one" || score != 1.5 || !bytes.Equal(data, []byte{0, 1, 2}) || !flag {
		t.Fatalf("got %q %v %x %v", name, score, data, flag)
	}
	// NULLs, and several rows through a prepared statement reused.
	var got []string
	rows, err := c.Query(ctx, "SELECT id, name FROM t WHERE id >= $1 ORDER BY id", 2)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		var nm *string
		if err := rows.Scan(&id, &nm); err != nil {
			t.Fatal(err)
		}
		if nm == nil {
			got = append(got, "NULL")
		} else {
			got = append(got, *nm)
		}
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	if strings.Join(got, ",") != "two,NULL" {
		t.Fatalf("rows %v", got)
	}
	// Named prepared statement, run twice with other parameters.
	if _, err := c.Prepare(ctx, "byid", "SELECT name FROM t WHERE id = $1"); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[int]string{1: "one", 2: "two"} {
		var s string
		if err := c.QueryRow(ctx, "byid", id).Scan(&s); err != nil || s != want {
			t.Fatalf("byid %d: %q %v", id, s, err)
		}
	}
	// UPDATE and DELETE counts.
	tag, err = c.Exec(ctx, "UPDATE t SET score = score + 1 WHERE id IN (1, 2)")
	if err != nil || tag.String() != "UPDATE 2" {
		t.Fatalf("update: %q %v", tag, err)
	}
	tag, err = c.Exec(ctx, "DELETE FROM t WHERE id = $1", 3)
	if err != nil || tag.String() != "DELETE 1" {
		t.Fatalf("delete: %q %v", tag, err)
	}
	// An expression column typed by its value.
	var cnt int64
	if err := c.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&cnt); err != nil || cnt != 2 {
		t.Fatalf("count: %d %v", cnt, err)
	}
}

func TestPgxTransaction(t *testing.T) {
	n := newNode(t)
	c := n.connect(t, "")
	ctx := context.Background()
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if _, err := tx.Exec(ctx, "INSERT INTO kv (k, v) VALUES ($1, $2)", string(rune('a'+i-1)), i); err != nil {
			t.Fatal(err)
		}
	}
	// Not visible before COMMIT: the block is one Patina transaction.
	var cnt int64
	if err := c.QueryRow(ctx, "SELECT count(*) FROM kv").Scan(&cnt); err != nil || cnt != 0 {
		t.Fatalf("before commit: %d %v", cnt, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.QueryRow(ctx, "SELECT count(*) FROM kv").Scan(&cnt); err != nil || cnt != 3 {
		t.Fatalf("after commit: %d %v", cnt, err)
	}
	// One Patina version for the three rows.
	var versions int64
	if err := c.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&versions); err != nil {
		t.Fatal(err)
	}
	if v := n.store.Vector(); v == nil {
		t.Fatal("no vector")
	}
	// ROLLBACK discards.
	tx, err = c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "DELETE FROM kv"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.QueryRow(ctx, "SELECT count(*) FROM kv").Scan(&cnt); err != nil || cnt != 3 {
		t.Fatalf("after rollback: %d %v", cnt, err)
	}
	// A failing statement in a block fails the COMMIT and writes nothing.
	tx, _ = c.Begin(ctx)
	tx.Exec(ctx, "INSERT INTO kv (k, v) VALUES ('z', 1)")
	tx.Exec(ctx, "INSERT INTO kv (k, v) VALUES ('a', 1)") // duplicate key
	err = tx.Commit(ctx)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "23505" {
		t.Fatalf("commit of a duplicate: %v", err)
	}
	if err := c.QueryRow(ctx, "SELECT count(*) FROM kv WHERE k = 'z'").Scan(&cnt); err != nil || cnt != 0 {
		t.Fatalf("after failed commit: %d %v", cnt, err)
	}
}

func TestPgxErrors(t *testing.T) {
	n := newNode(t)
	c := n.connect(t, "")
	ctx := context.Background()
	for _, tc := range []struct {
		sql  string
		code string
	}{
		{"SELECT * FROM nope", "42P01"},
		{"SELECT nope FROM t", "42703"},
		{"SELEC 1", "42601"},
		{"INSERT INTO kv (k) VALUES (NULL)", "23502"},
		{"CREATE TABLE x (a)", "0A000"},
		{"INSERT INTO t (id) VALUES (1) RETURNING id", "0A000"},
		{"INSERT INTO __patina_meta VALUES (1, 2)", "42501"},
	} {
		_, err := c.Exec(ctx, tc.sql)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != tc.code {
			t.Errorf("%s: got %v, want SQLSTATE %s", tc.sql, err, tc.code)
		}
	}
	// The connection is still usable.
	var one int64
	if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("after errors: %v", err)
	}
}

func TestPgxSimpleProtocol(t *testing.T) {
	n := newNode(t)
	c := n.connect(t, "")
	ctx := context.Background()
	if _, err := c.Exec(ctx, "INSERT INTO t (id, name) VALUES ($1, $2)", pgx.QueryExecModeSimpleProtocol, 7, "it's"); err != nil {
		t.Fatal(err)
	}
	var s string
	if err := c.QueryRow(ctx, "SELECT name FROM t WHERE id = $1", pgx.QueryExecModeSimpleProtocol, 7).Scan(&s); err != nil || s != "it's" {
		t.Fatalf("%q %v", s, err)
	}
}

func TestPsql(t *testing.T) {
	n := newNode(t)
	// -c, several statements in one query, and a BEGIN block.
	out := n.psql(t, "", "", "-c", "INSERT INTO t (id, name, score) VALUES (1, 'one', 1.5); INSERT INTO t (id, name) VALUES (2, 'two')")
	if !strings.Contains(out, "INSERT 0 1") {
		t.Fatalf("psql -c: %s", out)
	}
	out = n.psql(t, "", "", "-A", "-t", "-c", "SELECT id, name, score FROM t ORDER BY id")
	if strings.TrimSpace(out) != "1|one|1.5\n2|two|" {
		t.Fatalf("psql select: %q", out)
	}
	// Interactive (stdin): a transaction, SHOW, version().
	script := `BEGIN;
INSERT INTO kv (k, v) VALUES ('a', 1);
UPDATE kv SET v = 2 WHERE k = 'a';
COMMIT;
SELECT k, v FROM kv;
SHOW server_version;
SELECT version();
`
	out = n.psql(t, "", script, "-A", "-t")
	for _, want := range []string{"a|2", "15.0 (Patina)", "PostgreSQL 15.0"} {
		if !strings.Contains(out, want) {
			t.Fatalf("psql script: want %q in\n%s", want, out)
		}
	}
	// An error is reported with its message and psql exits non-zero.
	out, err := n.psqlErr(t, "", "", "-c", "SELECT * FROM nope")
	if err == nil || !strings.Contains(out, "no such table") {
		t.Fatalf("psql error: %v %s", err, out)
	}
}

func TestPsqlDescribe(t *testing.T) {
	n := newNode(t)
	out := n.psql(t, "", "", "-c", `\dt`)
	for _, want := range []string{"public | kv", "public | t ", "table", "patina"} {
		if !strings.Contains(out, want) {
			t.Fatalf(`\dt: want %q in\n%s`, want, out)
		}
	}
	out = n.psql(t, "", "", "-c", `\d t`)
	for _, want := range []string{`Table "public.t"`, "id", "bigint", "not null", "name", "text", "score", "double precision", "data", "bytea", "flag", "boolean", "Indexes:", `"t_pkey" PRIMARY KEY`, `"t_name" btree (name)`} {
		if !strings.Contains(out, want) {
			t.Fatalf(`\d t: want %q in\n%s`, want, out)
		}
	}
	for cmd, want := range map[string]string{`\d`: "public | kv", `\di`: "t_name  | index", `\l`: "patina | patina | UTF8", `\dn`: "public | patina"} {
		if out := n.psql(t, "", "", "-c", cmd); !strings.Contains(out, want) {
			t.Fatalf("%s: want %q in\n%s", cmd, want, out)
		}
	}
}

func TestSCRAM(t *testing.T) {
	n := newNode(t, withPassword("s3cret"))
	c := n.connect(t, "s3cret")
	var v string
	if err := c.QueryRow(context.Background(), "SELECT 'in'").Scan(&v); err != nil || v != "in" {
		t.Fatalf("%q %v", v, err)
	}
	if _, err := pgx.Connect(context.Background(), n.url("wrong")); err == nil || !strings.Contains(err.Error(), "28P01") {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := pgx.Connect(context.Background(), n.url("")); err == nil {
		t.Fatal("no password accepted")
	}
	// psql with PGPASSWORD.
	if out := n.psql(t, "s3cret", "", "-A", "-t", "-c", "SELECT 40 + 2"); strings.TrimSpace(out) != "42" {
		t.Fatalf("psql: %q", out)
	}
	if out, err := n.psqlErr(t, "wrong", "", "-c", "SELECT 1"); err == nil || !strings.Contains(out, "password authentication failed") {
		t.Fatalf("psql wrong password: %v %s", err, out)
	}
}

func TestPsycopg2(t *testing.T) {
	py := "/usr/bin/python3"
	if out, err := exec.Command(py, "-c", "import psycopg2").CombinedOutput(); err != nil {
		t.Skipf("python3 with psycopg2 not found (%v: %s): install Debian's python3-psycopg2 (apt-get install -y python3-psycopg2) to run this test", err, strings.TrimSpace(string(out)))
	}
	n := newNode(t, withPassword("pw"))
	script := `
import sys, psycopg2
conn = psycopg2.connect(sys.argv[1])
cur = conn.cursor()
cur.execute("INSERT INTO t (id, name, score, data) VALUES (%s, %s, %s, %s)", (1, "o'ne", 2.5, psycopg2.Binary(b"\x00\xff")))
cur.execute("INSERT INTO t (id, name) VALUES (%s, %s)", (2, None))
conn.commit()
cur.execute("SELECT id, name, score, data FROM t ORDER BY id")
rows = cur.fetchall()
assert rows[0][0] == 1 and rows[0][1] == "o'ne" and rows[0][2] == 2.5 and bytes(rows[0][3]) == b"\x00\xff", rows
assert rows[1][1] is None, rows
cur.execute("UPDATE t SET score = %s WHERE id = %s", (9.5, 2))
conn.rollback()
cur.execute("SELECT count(*) FROM t WHERE score = 9.5")
assert cur.fetchone()[0] == 0
try:
    cur.execute("SELECT * FROM nope")
except psycopg2.Error as e:
    assert e.pgcode == "42P01", e.pgcode
    conn.rollback()
else:
    raise SystemExit("no error")
conn.autocommit = True
cur.execute("UPDATE t SET score = %s WHERE id IN (%s, %s)", (9.5, 1, 2))
assert cur.rowcount == 2, cur.rowcount
cur.execute("DELETE FROM t WHERE id = %s", (2,))
assert cur.rowcount == 1
print("ok")
`
	cmd := exec.Command(py, "-c", script, "host=127.0.0.1 port="+strings.Split(n.addr, ":")[1]+" user=patina password=pw dbname=patina sslmode=disable")
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("psycopg2: %v\n%s", err, out)
	}
}
