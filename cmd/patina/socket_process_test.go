package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/patinadb/patina/internal/testutil"
)

// TestAgentProcessSocket runs the real binary with api.socket: client commands write and
// read through unix:///path; after a SIGKILL (which leaves the socket file behind) the agent
// starts again on the same path; a second agent asking for the live socket exits 2 and
// names it; after SIGTERM the file is gone.
func TestAgentProcessSocket(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildPatina(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "api.sock")
	schema := filepath.Join(dir, "schema.sql")
	os.WriteFile(schema, []byte("CREATE TABLE items (id INTEGER PRIMARY KEY NOT NULL, name TEXT);\n"), 0o644)
	apiAddr := testutil.FreeAddr(t)
	args := func(data string) []string {
		return []string{"--data-dir", data, "--schema", schema, "--api-socket", sock,
			"--gossip-addr", testutil.FreeAddr(t), "--quic-addr", testutil.FreeUDPAddr(t)}
	}
	data := filepath.Join(dir, "data")
	p := startAgentProc(t, bin, apiAddr, args(data)...)
	at := "unix://" + sock
	run(t, bin, "exec", "--api-addr", at, "INSERT INTO items (id, name) VALUES (1, 'through the socket')")
	if out := run(t, bin, "query", "--api-addr", at, "SELECT name FROM items"); !strings.Contains(out, "through the socket") {
		t.Fatalf("query through the socket: %q", out)
	}

	// SIGKILL: nobody removes the socket file; the next agent replaces it.
	p.cmd.Process.Kill()
	<-p.done
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("socket file after SIGKILL: %v (the restart below would prove nothing)", err)
	}
	p = startAgentProc(t, bin, apiAddr, args(data)...)
	if out := run(t, bin, "query", "--api-addr", at, "SELECT count(*) FROM items"); !strings.Contains(out, "1") {
		t.Fatalf("query after the restart: %q", out)
	}

	// A second agent on the live socket: refused, in one line, exit 2.
	var stderr bytes.Buffer
	second := exec.Command(bin, append([]string{"agent", "--api-addr", testutil.FreeAddr(t)}, args(filepath.Join(dir, "data2"))...)...)
	second.Stderr = &stderr
	if err := second.Run(); err == nil || second.ProcessState.ExitCode() != 2 || !strings.Contains(stderr.String(), sock+" is in use") {
		t.Fatalf("second agent on the live socket: %v, exit %d\n%s", err, second.ProcessState.ExitCode(), stderr.String())
	}
	run(t, bin, "exec", "--api-addr", at, "INSERT INTO items (id, name) VALUES (2, 'still served')")

	if err := p.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("agent exit: %v\n%s", err, p.out)
	}
	if _, err := os.Lstat(sock); err == nil {
		t.Fatal("socket file left after SIGTERM")
	}
}
