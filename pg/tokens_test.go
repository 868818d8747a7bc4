package pg_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/patinadb/patina/pg"
)

// selfSigned is a throw-away server certificate for 127.0.0.1 (clients here use
// sslmode=require, which encrypts without verifying, as most PostgreSQL setups do).
func selfSigned(tb testing.TB) *tls.Config {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "patina-pg-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
}

// withTokens makes the node take "readtok" as a read token and "writetok" as a write
// token, over TLS.
func withTokens(tb testing.TB) nodeOpt {
	tc := selfSigned(tb)
	return func(c *pg.Config) {
		c.TLS = tc
		c.Authenticate = func(pw string) (pg.Access, error) {
			switch pw {
			case "readtok":
				return pg.AccessRead, nil
			case "writetok":
				return pg.AccessWrite, nil
			}
			return 0, errors.New("unknown token")
		}
	}
}

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// TestTokens: over TLS, a read token reads and cannot write (42501, in a block too), a
// write token writes, an unknown token is refused (28P01), and a client without TLS is
// refused before it sends its token.
func TestTokens(t *testing.T) {
	n := newNode(t, withTokens(t))
	n.sslmode = "require"
	ctx := context.Background()
	w := n.connect(t, "writetok")
	if _, err := w.Exec(ctx, "INSERT INTO t (id, name) VALUES (1, 'one')"); err != nil {
		t.Fatalf("write token: %v", err)
	}
	if !w.PgConn().Conn().(*tls.Conn).ConnectionState().HandshakeComplete {
		t.Fatal("the write token's connection is not TLS")
	}
	r := n.connect(t, "readtok")
	var name string
	if err := r.QueryRow(ctx, "SELECT name FROM t WHERE id = $1", 1).Scan(&name); err != nil || name != "one" {
		t.Fatalf("read token reads: %q %v", name, err)
	}
	for _, q := range []string{"INSERT INTO t (id, name) VALUES (2, 'two')", "UPDATE t SET name = 'x'", "DELETE FROM t",
		"WITH x AS (SELECT 1) INSERT INTO kv (k, v) VALUES ('a', 1)"} {
		if _, err := r.Exec(ctx, q); pgCode(err) != "42501" {
			t.Fatalf("read token %q: %v, want 42501", q, err)
		}
	}
	// In a block: refused at the statement, and the block's COMMIT writes nothing.
	tx, err := r.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO kv (k, v) VALUES ('b', 2)"); pgCode(err) != "42501" {
		t.Fatalf("read token in a block: %v, want 42501", err)
	}
	_ = tx.Rollback(ctx)
	// The simple protocol, several statements: nothing of the query is written.
	if _, err := r.Exec(ctx, "SELECT 1; INSERT INTO kv (k, v) VALUES ('c', 3)", pgx.QueryExecModeSimpleProtocol); pgCode(err) != "42501" {
		t.Fatalf("read token, simple protocol: %v, want 42501", err)
	}
	var count int
	if err := w.QueryRow(ctx, "SELECT count(*) FROM kv").Scan(&count); err != nil || count != 0 {
		t.Fatalf("kv holds %d rows (%v) after refused writes", count, err)
	}
	if _, err := pgx.Connect(ctx, n.url("nope")); pgCode(err) != "28P01" {
		t.Fatalf("unknown token: %v, want 28P01", err)
	}
	n.sslmode = "disable"
	_, err = pgx.Connect(ctx, n.url("readtok"))
	if pgCode(err) != "28000" || !strings.Contains(err.Error(), "sslmode=require") {
		t.Fatalf("without TLS: %v, want 28000 naming sslmode=require", err)
	}
}

// TestTokensPsql: real psql with sslmode=require and a token as the password.
func TestTokensPsql(t *testing.T) {
	n := newNode(t, withTokens(t))
	n.sslmode = "require"
	if out := n.psql(t, "writetok", "", "-c", "INSERT INTO kv (k, v) VALUES ('a', 1)"); !strings.Contains(out, "INSERT 0 1") {
		t.Fatalf("psql write token: %s", out)
	}
	if out := n.psql(t, "readtok", "", "-A", "-t", "-c", "SELECT k || v FROM kv"); strings.TrimSpace(out) != "a1" {
		t.Fatalf("psql read token: %q", out)
	}
	out, err := n.psqlErr(t, "readtok", "", "-c", "INSERT INTO kv (k, v) VALUES ('b', 2)")
	if err == nil || !strings.Contains(out, "permission denied") {
		t.Fatalf("psql read token writes: %v %s", err, out)
	}
	if out, err := n.psqlErr(t, "wrong", "", "-c", "SELECT 1"); err == nil || !strings.Contains(out, "password authentication failed") {
		t.Fatalf("psql wrong token: %v %s", err, out)
	}
}

// TestTokensNeedTLS: a server told to take tokens without TLS refuses to start.
func TestTokensNeedTLS(t *testing.T) {
	srv := pg.New(pg.Config{Addr: "127.0.0.1:0", View: newNode(t).mat,
		Authenticate: func(string) (pg.Access, error) { return pg.AccessWrite, nil }})
	if err := srv.Open(context.Background()); err == nil {
		srv.Close()
		t.Fatal("token authentication without TLS started")
	}
}
