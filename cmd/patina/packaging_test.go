package main

import (
	"bufio"
	"debug/elf"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/patinadb/patina/internal/testutil"
)

const repoRoot = "../.."

// dockerBuild returns the environment and arguments of the Dockerfile's one `go build` line.
func dockerBuild(tb testing.TB) (env, args []string) {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		tb.Fatal(err)
	}
	var line string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "RUN ") && strings.Contains(l, " go build ") {
			if line != "" {
				tb.Fatal("the Dockerfile has two go build lines")
			}
			line = strings.TrimPrefix(l, "RUN ")
		}
	}
	if line == "" {
		tb.Fatal("no RUN ... go build line in the Dockerfile")
	}
	words := shellWords(line)
	for len(words) > 0 && strings.Contains(words[0], "=") {
		env, words = append(env, words[0]), words[1:]
	}
	if len(words) < 2 || words[0] != "go" || words[1] != "build" {
		tb.Fatalf("Dockerfile build line %q: want [VAR=value...] go build ...", line)
	}
	return env, words[2:]
}

// shellWords splits a command line on spaces, keeping double-quoted parts together (enough
// for the Dockerfile's build line; no escapes).
func shellWords(s string) []string {
	var out []string
	var cur strings.Builder
	inQ, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQ, have = !inQ, true
		case r == ' ' && !inQ:
			if have {
				out, have = append(out, cur.String()), false
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

// TestPackagedBinary: the binary built exactly as the Dockerfile builds it is static, and run
// as systemd runs deploy/patina.service (Type=notify, a watchdog) it reports READY=1, pings
// WATCHDOG=1 while healthy, answers patina health, and reports STOPPING=1 then exits 0 on
// SIGTERM.
func TestPackagedBinary(t *testing.T) {
	bin := buildPatina(t) // the Dockerfile's build line
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has a dynamic loader (PT_INTERP): not static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary links %v: not static", libs)
	}
	f.Close()

	// A notify socket as systemd gives one; a short path (sun_path is 108 bytes).
	sockDir, err := os.MkdirTemp("", "sd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				close(msgs)
				return
			}
			for _, l := range strings.Split(strings.TrimSpace(string(buf[:n])), "\n") {
				msgs <- l
			}
		}
	}()

	api := testutil.FreeAddr(t)
	dir := t.TempDir()
	cmd := exec.Command(bin, "agent", "--data-dir", filepath.Join(dir, "data"), "--api-addr", api,
		"--gossip-addr", "127.0.0.1:0", "--quic-addr", "127.0.0.1:0", "--log-level", "warn")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=400000")
	out := &testutil.LockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("agent output:\n%s", out.String())
		}
	})
	next := func(want string) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case m := <-msgs:
				if m == want {
					return
				}
			case <-deadline:
				t.Fatalf("no %s from the agent within 30 s", want)
			}
		}
	}
	next("READY=1")
	next("WATCHDOG=1")
	next("WATCHDOG=1")
	h := exec.Command(bin, "health", "--api-addr", api)
	if b, err := h.CombinedOutput(); err != nil || !strings.Contains(string(b), `"members"`) {
		t.Errorf("patina health: %v\n%s", err, b)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	next("STOPPING=1")
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("agent exit after SIGTERM: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("agent did not stop on SIGTERM")
	}
	if h := exec.Command(bin, "health", "--api-addr", api); h.Run() == nil || h.ProcessState.ExitCode() != 1 {
		t.Errorf("patina health of a stopped agent: exit %d, want 1", h.ProcessState.ExitCode())
	}
}

// TestDeployFiles: the systemd unit asks for notify and a watchdog, the example config is a
// valid config, and every PATINA_* variable the Dockerfile and compose file set is one the
// agent reads (a renamed key would otherwise be ignored silently in production).
func TestDeployFiles(t *testing.T) {
	unit, err := os.ReadFile(filepath.Join(repoRoot, "deploy/patina.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "WatchdogSec=", "NoNewPrivileges=yes", "ProtectSystem=strict", "User=patina", "RuntimeDirectory=patina"} {
		if !strings.Contains(string(unit), "\n"+want) {
			t.Errorf("deploy/patina.service lacks %s", want)
		}
	}

	var cfg Config = DefaultConfig()
	if err := loadFile(filepath.Join(repoRoot, "deploy/patina.toml"), &cfg); err != nil {
		t.Fatalf("deploy/patina.toml: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("deploy/patina.toml: %v", err)
	}
	if w := securityWarnings(&cfg); len(w) > 0 {
		t.Errorf("the example production config is insecure: %q", w)
	}

	known := map[string]bool{}
	for _, o := range options {
		known[o.env()] = true
	}
	// Variables of the compose file itself (interpolated, not passed to the agent).
	known["PATINA_ADMIN_TOKEN"] = true
	envRe := regexp.MustCompile(`\bPATINA_[A-Z0-9_]*[A-Z0-9]\b`)
	for _, name := range []string{"Dockerfile", "deploy/compose.yaml"} {
		b, err := os.ReadFile(filepath.Join(repoRoot, name))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for line := 1; sc.Scan(); line++ {
			for _, v := range envRe.FindAllString(sc.Text(), -1) {
				if !known[v] {
					t.Errorf("%s:%d: %s is not a variable the agent reads", name, line, v)
				}
			}
		}
	}
	compose, _ := os.ReadFile(filepath.Join(repoRoot, "deploy/compose.yaml"))
	for i := 1; i <= 3; i++ {
		if !strings.Contains(string(compose), fmt.Sprintf("node%d:\n", i)) {
			t.Errorf("compose.yaml has no node%d service", i)
		}
	}
}
