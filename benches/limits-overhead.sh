#!/usr/bin/env bash
# What the shared limits (issue 12) cost with Redis on loopback, for one process, against its
# own limits; with redis-benchmark's round trips beside them as the floor.
#
#   benches/limits-overhead.sh [COUNT] [RUNS]      (defaults: 20000 messages, 3 runs)
#
# Starts the test Redis (testenv/redis/server.sh start; it stays running), builds
# crates/outbound/examples/limits_overhead.rs with --release and runs it RUNS times, then runs
# `redis-benchmark` (PING, and an EVAL that reads TIME like the scripts do) with 1 and 8
# clients. Prints one table: scenario | sends in flight | µs per message median (min-max) |
# messages/s median.
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT="${1:-20000}"
RUNS="${2:-3}"

testenv/redis/server.sh start
# shellcheck disable=SC1091
URL=$(grep '^OUTBOUND_TEST_REDIS_URL=' "${OUTBOUND_TESTENV_DIR:-/tmp/outbound-testenv}/redis/env" | cut -d= -f2-)
PORT=$(sed -E 's#.*:([0-9]+)/?$#\1#' <<<"$URL")

cargo build --release -q -p outbound --example limits_overhead
BIN=target/release/examples/limits_overhead

RAW=$(mktemp)
trap 'rm -f "$RAW"' EXIT
for run in $(seq 1 "$RUNS"); do
  echo "run $run of $RUNS ..." >&2
  "$BIN" "$URL" "$COUNT" | grep '^RESULT' >>"$RAW"
  for c in 1 8; do
    # redis-benchmark -q prints "PING_INLINE: 41152.26 requests per second, p50=0.023 msec".
    rps=$(redis-benchmark -p "$PORT" -n "$COUNT" -c "$c" -q PING 2>/dev/null | tr '\r' '\n' | grep -m1 'requests per second' | sed -E 's/.*: ([0-9.]+) requests.*/\1/')
    echo "RESULT scenario=\"peer: redis-benchmark PING\" concurrency=$c us_per_msg=$(awk -v r="$rps" 'BEGIN{printf "%.1f", 1e6/r}') msgs_per_s=${rps%.*}" >>"$RAW"
    rps=$(redis-benchmark -p "$PORT" -n "$COUNT" -c "$c" -q eval "return redis.call('TIME')" 0 2>/dev/null | tr '\r' '\n' | grep -m1 'requests per second' | sed -E 's/.*: ([0-9.]+) requests.*/\1/')
    echo "RESULT scenario=\"peer: redis-benchmark EVAL (TIME)\" concurrency=$c us_per_msg=$(awk -v r="$rps" 'BEGIN{printf "%.1f", 1e6/r}') msgs_per_s=${rps%.*}" >>"$RAW"
  done
done

python3 - "$RAW" <<'PY'
import re, statistics, sys
rows = {}
order = []
for line in open(sys.argv[1]):
    m = re.match(r'RESULT scenario="([^"]+)" concurrency=(\d+) us_per_msg=([\d.]+) msgs_per_s=(\d+)', line)
    if not m:
        continue
    key = (m.group(1), int(m.group(2)))
    if key not in rows:
        rows[key] = []
        order.append(key)
    rows[key].append((float(m.group(3)), int(m.group(4))))
print("| scenario | in flight | µs per message, median (min-max) | messages/s, median |")
print("|---|---|---|---|")
for key in sorted(order, key=lambda k: (k[1], order.index(k))):
    us = [r[0] for r in rows[key]]
    per_s = [r[1] for r in rows[key]]
    print(f"| {key[0]} | {key[1]} | {statistics.median(us):.1f} ({min(us):.1f}-{max(us):.1f}) | {statistics.median(per_s):.0f} |")
PY
