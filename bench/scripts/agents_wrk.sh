#!/bin/bash
# Usage: bench/scripts/agents_wrk.sh ROUNDS BASE NEW [SECONDS]
#   BASE, NEW: two patina binaries (go build -o /tmp/patina-base ./cmd/patina at each commit).
# Issue 14, round 10 (bench/RESULTS.md, "the agent alone, loaded by wrk"): the agent in its
# own process, loaded by wrk (a C load generator, 2 threads, 32 connections, one single-row
# INSERT per request, wrk_post.lua), so that the figures are the agent's alone: no Go client
# shares its CPU, and both binaries meet the same client. Alternates BASE and NEW ROUNDS
# times, each on a fresh data dir after a 1 s warm-up; prints transactions a second, wrk's
# latency p50/p99, and the agent's CPU (user + system, from /proc) per transaction.
# With NEW_WRITE_ADDR=1, NEW serves its writes on a write listener (api.write_addr,
# 127.0.0.1:18093) and wrk loads that port (issue 14, round 11).
# Needs wrk (apt-get install wrk) and curl; uses ports 18090-18093 on 127.0.0.1.
set -euo pipefail
rounds=${1:?rounds}; base=${2:?base binary}; new=${3:?new binary}; secs=${4:-5}
new_write=${NEW_WRITE_ADDR:-}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/patina-agents-wrk.XXXXXX)
trap 'pkill -f -- "--data-dir $work/" 2>/dev/null || true; rm -rf "$work"' EXIT
echo "CREATE TABLE bench_http (id INTEGER PRIMARY KEY NOT NULL, a TEXT, b INTEGER);" >"$work/schema.sql"
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; } # clock ticks
tick=$(getconf CLK_TCK)
run() { # name, binary, write listener (1 or empty)
	local dir="$work/$1.$RANDOM" pid out c0 c1 n rps target=http://127.0.0.1:18090 extra=()
	if [ -n "${3:-}" ]; then
		extra=(--api-write-addr 127.0.0.1:18093)
		target=http://127.0.0.1:18093
	fi
	"$2" agent --data-dir "$dir/" --api-addr 127.0.0.1:18090 --gossip-addr 127.0.0.1:18091 \
		--quic-addr 127.0.0.1:18092 --schema "$work/schema.sql" "${extra[@]}" >"$dir.log" 2>&1 &
	pid=$!
	local up=false
	for _ in $(seq 1 100); do
		if curl -sf 127.0.0.1:18090/v1/health >/dev/null 2>&1; then up=true; break; fi
		sleep 0.1
	done
	if ! $up; then
		echo "agents_wrk: $2 did not answer /v1/health within 10 s; its log:" >&2
		cat "$dir.log" >&2
		kill $pid 2>/dev/null || true
		exit 1
	fi
	BASE=$(($(date +%s%N) / 1000 % 100000000000 * 100)) \
		wrk -t2 -c32 -d1s -s "$here/wrk_post.lua" "$target" >/dev/null
	c0=$(cpu $pid)
	out=$(BASE=$(($(date +%s%N) / 1000 % 100000000000 * 100 + 50000000)) \
		wrk -t2 -c32 -d"${secs}s" --latency -s "$here/wrk_post.lua" "$target")
	c1=$(cpu $pid)
	kill $pid
	wait $pid 2>/dev/null || true
	rm -rf "$dir"
	n=$(awk '/requests in/{print $1}' <<<"$out")
	rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
	echo "$1 $rps tx/s p50 $(awk '/ 50%/{print $2}' <<<"$out") p99 $(awk '/ 99%/{print $2}' <<<"$out")" \
		"agent cpu $(python3 -c "print(round(($c1 - $c0) / $tick * 1e6 / $n, 1))") us/tx" \
		"refused $(grep -c '^refused' <<<"$out" || true)"
}
for r in $(seq 1 "$rounds"); do
	b=$(run base "$base")
	n=$(run new "$new" "$new_write")
	echo "round $r: NEW/BASE $(python3 -c "print(round($(awk '{print $2}' <<<"$n") / $(awk '{print $2}' <<<"$b"), 2))")x"
	echo "  $b"
	echo "  $n"
done
