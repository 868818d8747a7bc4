package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/patinadb/patina/api"
	"github.com/patinadb/patina/api/client"
	"github.com/patinadb/patina/log"
)

func withSocket(path string) nodeOpt {
	return func(c *api.Config, _ *log.Options) { c.Socket = path }
}

// socketClient is a client of n's Unix socket.
func socketClient(tb testing.TB, n *node, opts ...client.Option) *client.Client {
	tb.Helper()
	cl, err := client.New("unix://"+n.srv.SocketPath(), opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return cl
}

// TestSocketServesTheAPI: over the Unix socket a client writes, reads and subscribes as over
// TCP, both see the same node, and the socket file has the documented mode.
func TestSocketServesTheAPI(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api.sock")
	n := newNode(t, withSocket(path))
	if got := n.srv.SocketPath(); got != path {
		t.Fatalf("SocketPath %q, want %q", got, path)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket file mode %v, want a socket with 0660", fi.Mode())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sc := socketClient(t, n)
	if sc.String() != "unix://"+path {
		t.Fatalf("String %q", sc.String())
	}
	sub, err := sc.Subscribe(ctx, client.Statement{SQL: "SELECT id, name FROM t"}, false)
	if err != nil {
		t.Fatalf("subscribe over the socket: %v", err)
	}
	defer sub.Close()
	if _, err := sc.Exec(ctx, client.Options{}, client.Statement{SQL: "INSERT INTO t (id, name) VALUES (1, 'over the socket')"}); err != nil {
		t.Fatalf("write over the socket: %v", err)
	}
	// Many requests on the client's kept-alive socket connections.
	for i := 2; i <= 50; i++ {
		if _, err := sc.Exec(ctx, client.Options{}, client.Statement{SQL: "INSERT INTO t (id, name) VALUES (?, 'again')", Params: []log.Value{log.Integer(int64(i))}}); err != nil {
			t.Fatalf("write %d over the socket: %v", i, err)
		}
	}
	// TCP sees the socket's writes: one node behind both.
	_, rows, err := n.cl.QueryAll(ctx, client.Options{}, client.Statement{SQL: "SELECT count(*) FROM t"})
	if err != nil || len(rows) != 1 || !rows[0][0].Equal(log.Integer(50)) {
		t.Fatalf("count over TCP: %v %v", rows, err)
	}
	_, rows, err = sc.QueryAll(ctx, client.Options{}, client.Statement{SQL: "SELECT name FROM t WHERE id = 1"})
	if err != nil || len(rows) != 1 || !rows[0][0].Equal(log.Text("over the socket")) {
		t.Fatalf("read over the socket: %v %v", rows, err)
	}
	// The subscription over the socket sees its first write as a change.
	for sub.Next() {
		if ev := sub.Event(); len(ev.Change) > 0 {
			if change, _ := json.Marshal(ev.Change); !strings.Contains(string(change), "over the socket") {
				t.Fatalf("first change %s", change)
			}
			return
		}
	}
	t.Fatalf("subscription ended before a change: %v", sub.Err())
}

// TestSocketKeepsTokens: the socket is no way around the API's tokens.
func TestSocketKeepsTokens(t *testing.T) {
	n := newNode(t, withSocket(filepath.Join(t.TempDir(), "api.sock")), withToken("s3cret"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := socketClient(t, n).Exec(ctx, client.Options{}, client.Statement{SQL: "INSERT INTO t (id) VALUES (1)"})
	if client.StatusOf(err) != 401 {
		t.Fatalf("write without a token over the socket: %v, want 401", err)
	}
	if _, err := socketClient(t, n, client.WithToken("s3cret")).Exec(ctx, client.Options{}, client.Statement{SQL: "INSERT INTO t (id) VALUES (1)"}); err != nil {
		t.Fatalf("write with the token over the socket: %v", err)
	}
}

// TestSocketFile: a stale socket is replaced, a live one or another file is refused (and
// kept), a path too long for a socket is a config error, and Close removes the socket.
func TestSocketFile(t *testing.T) {
	dir := t.TempDir()
	open := func(path string) (*api.Server, error) {
		n := newNode(t) // the view and log; its own server listens on TCP only
		cfg := api.DefaultConfig()
		cfg.Addr, cfg.Socket = "127.0.0.1:0", path
		cfg.View, cfg.Log = n.mat, n.store
		srv := api.New(cfg)
		if err := srv.Open(context.Background()); err != nil {
			return nil, err
		}
		t.Cleanup(func() { srv.Close() })
		return srv, nil
	}

	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // the file stays, nobody answers: what a crashed agent leaves
	srv, err := open(stale)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	if _, err := open(stale); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("a second server on a live socket: %v, want in use", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket after Close: %v, want removed", err)
	}

	plain := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(plain, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := open(plain); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("over a regular file: %v, want not a socket", err)
	}
	if b, err := os.ReadFile(plain); err != nil || string(b) != "keep me" {
		t.Fatalf("the regular file after the refusal: %q %v", b, err)
	}

	long := filepath.Join(dir, strings.Repeat("x", 120)+".sock")
	if _, err := open(long); err == nil || !strings.Contains(err.Error(), "more than a Unix socket's") {
		t.Fatalf("a path of %d bytes: %v", len(long), err)
	}
}

// TestSocketAddress: client addresses of sockets must be absolute.
func TestSocketAddress(t *testing.T) {
	for _, addr := range []string{"unix://", "unix://relative/api.sock"} {
		if _, err := client.New(addr); err == nil {
			t.Errorf("client.New(%q): no error", addr)
		}
	}
}
