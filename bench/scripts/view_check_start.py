# Usage: go build -o /tmp/patina-i12a ./cmd/patina; python3 bench/scripts/view_check_start.py VIEW_MB. Issue 12, item 7.
# Start time of an agent on a view of ~N MB, with and without the start check (quick_check).
import http.client, json, os, socket, subprocess, sys, tempfile, time
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
def start(binary, d, schema, extra):
    port = free_port()
    t0 = time.time()
    p = subprocess.Popen([binary, "agent", "--data-dir", d, "--schema", schema, "--api-addr", f"127.0.0.1:{port}",
        "--gossip-addr", f"127.0.0.1:{free_port()}", "--quic-addr", f"127.0.0.1:{free_port()}", "--log-level", "warn"] + extra,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5); c.request("GET", "/v1/health"); c.getresponse().read(); break
        except Exception: time.sleep(0.02)
    return p, port, time.time() - t0
mb = int(sys.argv[1])
d = tempfile.mkdtemp(prefix="i12a-qc-"); schema = os.path.join(d, "s.sql")
open(schema, "w").write("CREATE TABLE t (id INTEGER PRIMARY KEY NOT NULL, v TEXT);\n")
data = os.path.join(d, "data")
p, port, _ = start("/tmp/patina-i12a", data, schema, [])
for i in range(mb * 4):
    body = json.dumps([[f"INSERT INTO t (id, v) VALUES (?, ?)", [i, "x" * (1 << 18)]] ])
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60); c.request("POST", "/v1/transactions", body, {"Content-Type": "application/json"}); c.getresponse().read()
p.terminate(); p.wait()
print("views.db", os.path.getsize(os.path.join(data, "views.db")) >> 20, "MB", flush=True)
for rnd in range(3):
    for name, extra in [("check_on_start=false", ["--db-check-on-start=false"]), ("check_on_start=true", [])]:
        p, port, t = start("/tmp/patina-i12a", data, schema, extra)
        print(f"round {rnd} {name}: ready in {t*1000:.0f} ms", flush=True)
        p.terminate(); p.wait()
