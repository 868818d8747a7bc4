#!/bin/bash
# Usage: bench/scripts/parts.sh ROUNDS BASE NEW
#   BASE, NEW: two patina binaries (go build -o /tmp/patina-base ./cmd/patina at each commit).
# Round 8 of issue 14 (bench/RESULTS.md, "what the HTTP exchange and the database path each
# cost alone"): alternates, ROUNDS times, single-row writes from 32 clients on an in-process
# node with BASE and NEW, then NEW without HTTP (--direct) and NEW's HTTP exchange without a
# node (--floor, a 1 ms tick). Prints each run's transactions a second, latency and, where
# the binary prints it, its CPU time per transaction; ratios are NEW / BASE of the same round.
# Round 9: when NEW has `bench http --socket`, also NEW and its floor through a Unix socket.
set -euo pipefail
rounds=${1:?rounds}; base=${2:?base binary}; new=${3:?new binary}
run() { # binary, flags...
	local out
	out=$(cd /tmp && "$@" 2>&1 | grep -E '^(http|direct|floor):|^cpu ')
	echo "$out" | tr '\n' ' '
}
ops() { grep -o '[0-9]* ops/s' <<<"$1" | head -1 | cut -d' ' -f1; }
flags=(bench http --clients 32 --rows 1 --duration 5s)
socket=false
if "$new" bench http --help 2>&1 | grep -q -- '--socket'; then socket=true; fi
for r in $(seq 1 "$rounds"); do
	b=$(run "$base" "${flags[@]}")
	n=$(run "$new" "${flags[@]}")
	d=$(run "$new" "${flags[@]}" --direct)
	f=$(run "$new" "${flags[@]}" --floor --floor-wait 1ms)
	echo "round $r: NEW/BASE $(python3 -c "print(round($(ops "$n")/$(ops "$b"), 2))")x"
	echo "  base:   $b"
	echo "  new:    $n"
	echo "  direct: $d"
	echo "  floor:  $f"
	if $socket; then
		ns=$(run "$new" "${flags[@]}" --socket)
		fs=$(run "$new" "${flags[@]}" --floor --floor-wait 1ms --socket)
		echo "  socket NEW/BASE $(python3 -c "print(round($(ops "$ns")/$(ops "$b"), 2))")x"
		echo "  new, socket:   $ns"
		echo "  floor, socket: $fs"
	fi
done
