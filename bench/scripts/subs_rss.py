# Usage: go build -o /tmp/patina-base ./cmd/patina (at the baseline commit) and -o /tmp/patina-i12a (at this one),
# then python3 bench/scripts/subs_rss.py SIZE_MB SUBSCRIBERS. Issue 12, item 6.
# RSS of one agent before, during and after N subscribers of a row holding a big value.
import http.client, json, os, socket, subprocess, sys, tempfile, threading, time

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return -1

def run(binary, size_mb, n, extra):
    d = tempfile.mkdtemp(prefix="i12a-rss-")
    schema = os.path.join(d, "s.sql")
    open(schema, "w").write("CREATE TABLE big (id INTEGER PRIMARY KEY NOT NULL, v TEXT);\n")
    port = free_port()
    p = subprocess.Popen([binary, "agent", "--data-dir", os.path.join(d, "data"), "--schema", schema,
        "--api-addr", f"127.0.0.1:{port}", "--gossip-addr", f"127.0.0.1:{free_port()}", "--quic-addr", f"127.0.0.1:{free_port()}", "--log-level", "warn"] + extra,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5); c.request("GET", "/v1/health"); c.getresponse().read(); break
            except Exception: time.sleep(0.1)
        body = json.dumps([["INSERT INTO big (id, v) VALUES (?, ?)", [1, "x" * (size_mb << 20)]]])
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120); c.request("POST", "/v1/transactions", body, {"Content-Type": "application/json"})
        r = c.getresponse(); r.read(); assert r.status == 200, r.status
        time.sleep(2)
        before = rss(p.pid)
        conns, errs, peak = [], [], [0]
        def sub():
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            c.request("POST", "/v1/subscriptions", json.dumps("SELECT id, v FROM big"), {"Content-Type": "application/json"})
            r = c.getresponse()
            while True:
                line = r.readline()
                if not line: errs.append("eof"); break
                if line.startswith(b'{"eoq"'): break
                if line.startswith(b'{"error"'): errs.append(line[:160].decode()); break
            conns.append((c, r))
        ts = [threading.Thread(target=sub) for _ in range(n)]
        for t in ts: t.start()
        while any(t.is_alive() for t in ts):
            peak[0] = max(peak[0], rss(p.pid)); time.sleep(0.05)
        during = max(peak[0], rss(p.pid))
        for c, r in conns: c.close()
        time.sleep(20)
        after = rss(p.pid)
        return before, during, after, errs[:1], len(errs)
    finally:
        p.kill(); p.wait()

size, n = int(sys.argv[1]), int(sys.argv[2])
for name, binary, extra in [("main (baseline)", "/tmp/patina-base", []),
                            ("i12a, max_event_bytes 64 MiB", "/tmp/patina-i12a", ["--subscriptions-max-event-bytes", str(64 << 20)]),
                            ("i12a, default (16 MiB)", "/tmp/patina-i12a", [])]:
    b, d, a, err, nerr = run(binary, size, n, extra)
    print(f"{name}: RSS before {b} MB, peak with {n} subscribers {d} MB, 20 s after they left {a} MB; errors {nerr} {err}", flush=True)
