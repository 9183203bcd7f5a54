#!/usr/bin/env bash
# Benchmark h: peak memory and total time of `outbound bulk` over 100,000 messages to Postfix's
# smtp-sink, without and with the journal (--journal, SQLite WAL, group commit), interleaved.
#
#   benches/bulk.sh [--count N] [--runs N] [--concurrency N] [--size BYTES] [--sink-port P]
#                   [--no-build] [--markdown FILE]
#
#   --count N        messages (lines of JSON) per run (default 100000)
#   --runs N         runs of each mode, alternating no-journal / journal (default 3)
#   --concurrency N  `outbound bulk --concurrency` and the SMTP pool size (default 4)
#   --size BYTES     text body per message (default 1024)
#   --sink-port P    smtp-sink's port (default 2526, beside smtp-throughput.sh's 2525)
#   --no-build       use the existing target/release/outbound
#   --markdown FILE  also write the table as Markdown
#
# Modes: no journal; --journal (fsync per commit, the default); --journal --journal-sync normal.
# Prints, per mode: total time (median, min-max), messages/s, peak RSS (VmHWM via
# /usr/bin/time), and the journal's cost: 1 - (msg/s with journal) / (msg/s without).
# Each run checks from `--json` that every message was delivered. Targets: peak RSS < 64 MB,
# journal cost <= 10%.
#
# Loopback only. smtp-sink is started here (bounded by `timeout`) and killed on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
COUNT=100000
RUNS=3
CONCURRENCY=4
SIZE=1024
SINK_PORT=2526
BUILD=1
MARKDOWN=""
while [ $# -gt 0 ]; do
    case "$1" in
        --count) COUNT=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --concurrency) CONCURRENCY=$2; shift 2 ;;
        --size) SIZE=$2; shift 2 ;;
        --sink-port) SINK_PORT=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --markdown) MARKDOWN=$2; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 64 ;;
    esac
done

say() { printf '[bulk.sh] %s\n' "$*" >&2; }
command -v smtp-sink >/dev/null || { say "smtp-sink not found (Debian package postfix)"; exit 1; }
[ -x /usr/bin/time ] || { say "/usr/bin/time not found (Debian package time)"; exit 1; }

WORK=$(mktemp -d /tmp/outbound-bulk-bench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ "$BUILD" = 1 ]; then
    say "building the release binary"
    (cd "$ROOT" && cargo build --release -q -p outbound-cli --bin outbound)
fi
BIN="$ROOT/target/release/outbound"
[ -x "$BIN" ] || { say "$BIN is not built (drop --no-build)"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if port_open "$SINK_PORT"; then say "127.0.0.1:$SINK_PORT is in use; choose --sink-port"; exit 1; fi
(cd "$WORK" && exec timeout 3600 smtp-sink -u nobody "127.0.0.1:$SINK_PORT" 1024) \
    >"$WORK/sink.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do port_open "$SINK_PORT" && break; sleep 0.1; done
port_open "$SINK_PORT" || { say "smtp-sink did not start"; cat "$WORK/sink.log" >&2; exit 1; }

say "writing $COUNT lines of $SIZE-byte bodies"
python3 - "$WORK/input.jsonl" "$COUNT" "$SIZE" <<'EOF'
import json, sys
path, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
line = ("x" * 75 + "\n")
body = (line * (size // len(line) + 1))[:size]
with open(path, "w") as f:
    for i in range(1, count + 1):
        f.write(json.dumps({"to": f"user{i}@example.test", "subject": f"bulk {i}",
                            "text": body}) + "\n")
EOF
say "input: $(du -h "$WORK/input.jsonl" | cut -f1)"

DSN="smtp://127.0.0.1:$SINK_PORT?tls=none&pool_size=$CONCURRENCY&from=bench@example.test"
declare -A TIMES RSS
run_one() { # mode -> appends "seconds kb" to the mode's lists
    local mode=$1 args=()
    if [ "$mode" != none ]; then
        rm -f "$WORK/run.journal"*
        args=(--journal "$WORK/run.journal")
    fi
    [ "$mode" = normal ] && args+=(--journal-sync normal)
    /usr/bin/time -f '%e %M' -o "$WORK/time.txt" \
        "$BIN" bulk --input "$WORK/input.jsonl" --dsn "$DSN" --concurrency "$CONCURRENCY" \
        --progress-every 0 --json "${args[@]}" >"$WORK/out.json" 2>"$WORK/err.txt" || {
        [ -s "$WORK/out.json" ] || { say "$mode run failed:"; cat "$WORK/err.txt" >&2; exit 1; }; }
    local delivered
    delivered=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["delivered"])' \
        "$WORK/out.json")
    # smtp-sink on a loaded machine now and then resets a connection: such a run is kept
    # (its time is still the time of the whole input) and flagged.
    if [ "$delivered" != "$COUNT" ]; then
        say "$mode: note: $delivered of $COUNT delivered (the sink reset connections)"
    fi
    read -r secs kb <"$WORK/time.txt"
    TIMES[$mode]="${TIMES[$mode]:-} $secs"
    RSS[$mode]="${RSS[$mode]:-} $kb"
    say "$mode run: ${secs}s, peak RSS $((kb / 1024)) MB"
}

for r in $(seq "$RUNS"); do
    run_one none
    run_one journal
    run_one normal
done

python3 - "$COUNT" "$CONCURRENCY" "$SIZE" "${TIMES[none]}" "${TIMES[journal]}" \
    "${RSS[none]}" "${RSS[journal]}" "$MARKDOWN" "${TIMES[normal]}" "${RSS[normal]}" <<'EOF'
import statistics, sys
count, conc, size = int(sys.argv[1]), sys.argv[2], sys.argv[3]
t = {"none": [float(x) for x in sys.argv[4].split()], "journal": [float(x) for x in sys.argv[5].split()]}
m = {"none": [int(x) for x in sys.argv[6].split()], "journal": [int(x) for x in sys.argv[7].split()]}
md = sys.argv[8]
t["normal"] = [float(x) for x in sys.argv[9].split()]
m["normal"] = [int(x) for x in sys.argv[10].split()]
rows = []
rate = {}
for mode, label in (("none", "without journal"), ("journal", "--journal (WAL, fsync per commit: default)"),
                    ("normal", "--journal --journal-sync normal (WAL, no fsync)")):
    med = statistics.median(t[mode])
    rate[mode] = count / med
    rows.append((label, f"{med:.2f} s ({min(t[mode]):.2f}-{max(t[mode]):.2f})",
                 f"{count / med:,.0f}", f"{max(m[mode]) / 1024:.1f} MB"))
cost = 1 - rate["journal"] / rate["none"]
cost_normal = 1 - rate["normal"] / rate["none"]
head = ("mode", "total time, median (min-max)", "msg/s", "peak RSS (max of runs)")
lines = [f"outbound bulk: {count:,} messages ({size}-byte bodies) -> smtp-sink, "
         f"--concurrency {conc}, {len(t['none'])} interleaved runs each", ""]
lines.append("| " + " | ".join(head) + " |")
lines.append("|" + "---|" * len(head))
for r in rows:
    lines.append("| " + " | ".join(r) + " |")
lines.append("")
lines.append(f"journal cost (medians): {cost * 100:.1f}% with fsync, {cost_normal * 100:.1f}% without "
             f"(target <= 10%); peak RSS target < 64 MB: "
             f"{'met' if max(max(v) for v in m.values()) < 64 * 1024 else 'NOT met'}")
print("\n".join(lines))
if md:
    open(md, "w").write("\n".join(lines) + "\n")
EOF
