#!/usr/bin/env bash
# SMTP throughput: Outbound (crates/outbound/examples/smtp_blast.rs) side by side with
# Postfix's smtp-source, lettre 0.11 (benches/lettre-peer, async tokio, pooled) and Python
# smtplib used the way Dify uses it (benches/smtplib_peer.py), in one run, interleaved, with a
# table of ratios against the targets of issue 11 at the end.
#
#   benches/smtp-throughput.sh [options]        # the one command; see BENCHMARKS.md
#
# Outbound runs on one thread (tokio's current-thread runtime, as the `outbound` binary does;
# smtp-source is one event loop too); the rows marked "2 threads" show the multi-thread runtime.
#
# Scenarios (5 KB message bodies; every figure is the median of --runs runs, with min-max):
#   sink   -> smtp-sink on 127.0.0.1:SINK_PORT (plain, no AUTH), started and stopped here:
#             new connection per message / reused connection, 1 and 4 sessions
#   587    -> the testenv Postfix on 587: STARTTLS + AUTH PLAIN (alice)
#   465    -> the testenv Postfix on 465: implicit TLS + AUTH PLAIN (alice)
#   delay  -> smtp-sink through benches/delay_proxy.py (DELAY_MS each way, i.e. a round trip of
#             2 x DELAY_MS plus loopback), to show what pipelining and the pool are worth
#   delay25 -> the testenv Postfix on 25, which offers CHUNKING, through the same proxy: DATA
#             pipelined across messages against BDAT with several transactions in flight
#   oauth  -> 64 concurrent OAuth2 (XOAUTH2) sends to Postfix 587 with a cold token cache and a
#             slow (300 ms) private token server: how many token requests they made (the live
#             test smtp_oauth2_lifecycle::sixty_four_concurrent_sends..., built in debug)
#
# Options:
#   --only LIST        comma-separated scenarios to run (default: sink,587,465,delay,delay25,oauth)
#   --runs N           runs per measurement (default 3)
#   --sink-runs N      runs per measurement in the smtp-sink scenarios, which are cheap and the
#                      most sensitive to other load on the machine (default 5)
#   --count-sink N     messages per run to smtp-sink (default 10000)
#   --count-tls N      messages per run to Postfix 587/465 (default 200)
#   --count-tls-new N  messages per run to Postfix 465 with a new connection each (default 60)
#   --count-delay N    messages per run through the delay proxy, reused connections (default 200)
#   --count-delay-new N  the same, new connection per message (default 30)
#   --delay-ms MS      one-way delay added by the proxy (default 20)
#   --sink-port P      smtp-sink's port (default 2525)
#   --noisy-ratio R    if (max-min)/median > R after --runs runs, run 2 more and flag it (0.5)
#   --quick            divide every count by 4 (a smoke test of the harness)
#   --no-build         do not run cargo build (use the existing release binary)
#   --blast PATH       use this smtp_blast binary (implies --no-build), e.g. one built from a
#                      clean checkout while the working tree has unrelated edits
#   --baseline PATH    also run every Outbound row with this other smtp_blast binary (e.g. one
#                      built from the commit before a change), as a row "before: ...", in the
#                      same round-robin as the rest: a before/after comparison in one session,
#                      interleaved run by run, with a before/after ratio table at the end
#   --outbound-only    run only the Outbound rows (and their --baseline twins), not the peers
#   --markdown FILE    also write the results table as Markdown to FILE
#   --raw FILE         also write every single run as TSV to FILE
#
# Postfix scenarios use the running test servers (testenv/smtp-servers.sh; env file
# ${OUTBOUND_TESTENV_DIR:-/tmp/outbound-testenv}/env); they are skipped, with a note, when those
# are not up (start them with `testenv/smtp-servers.sh start`). Messages sent to Postfix stay in
# its Maildir (Message-IDs <blast-...> and <smtplib-...>; subjects "smtp_blast ..." and
# "smtplib_peer ...").
#
# Loopback only. Everything this script starts (smtp-sink, the delay proxy) is killed on exit
# and is also bounded in time by itself.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ONLY="sink,587,465,delay,delay25,oauth"
RUNS=3
SINK_RUNS=5
COUNT_SINK=10000
COUNT_TLS=200
COUNT_TLS_NEW=60
COUNT_DELAY=200
COUNT_DELAY_NEW=30
DELAY_MS=20
SINK_PORT=2525
NOISY_RATIO=0.5
QUICK=0
BUILD=1
MARKDOWN=""
RAW_OUT=""
BLAST_GIVEN=""
BASELINE=""
OUTBOUND_ONLY=0

while [ $# -gt 0 ]; do
    case "$1" in
        --only) ONLY=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --sink-runs) SINK_RUNS=$2; shift 2 ;;
        --count-sink) COUNT_SINK=$2; shift 2 ;;
        --count-tls) COUNT_TLS=$2; shift 2 ;;
        --count-tls-new) COUNT_TLS_NEW=$2; shift 2 ;;
        --count-delay) COUNT_DELAY=$2; shift 2 ;;
        --count-delay-new) COUNT_DELAY_NEW=$2; shift 2 ;;
        --delay-ms) DELAY_MS=$2; shift 2 ;;
        --sink-port) SINK_PORT=$2; shift 2 ;;
        --noisy-ratio) NOISY_RATIO=$2; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --no-build) BUILD=0; shift ;;
        --blast) BLAST_GIVEN=$2; BUILD=0; shift 2 ;;
        --baseline) BASELINE=$2; shift 2 ;;
        --outbound-only) OUTBOUND_ONLY=1; shift ;;
        --markdown) MARKDOWN=$2; shift 2 ;;
        --raw) RAW_OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "smtp-throughput.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ "$QUICK" = 1 ]; then
    COUNT_SINK=$((COUNT_SINK / 4)); COUNT_TLS=$((COUNT_TLS / 4)); COUNT_TLS_NEW=$((COUNT_TLS_NEW / 4))
    COUNT_DELAY=$((COUNT_DELAY / 4)); COUNT_DELAY_NEW=$((COUNT_DELAY_NEW / 4))
fi

PY=${PYTHON:-python3}
BLAST=${BLAST_GIVEN:-$ROOT/target/release/examples/smtp_blast}
LETTRE=$ROOT/benches/lettre-peer/target/release/lettre-peer
PEER="$PY $ROOT/benches/smtplib_peer.py"
WORK=$(mktemp -d /tmp/smtp-throughput.XXXXXX)
RAW="$WORK/raw.tsv"      # scenario, peer, notes, run, rate, rss, extra, cpu us/msg, runs
: >"$RAW"
PIDS=()
CHILD=""

cleanup() {
    local p
    if [ -n "${CHILD:-}" ]; then # a measurement in progress, and what it started
        pkill -P "$CHILD" 2>/dev/null || true
        kill "$CHILD" 2>/dev/null || true
    fi
    for p in "${PIDS[@]:-}"; do
        if [ -n "$p" ]; then kill "$p" 2>/dev/null || true; fi
    done
    for p in "${PIDS[@]:-}"; do
        if [ -n "$p" ]; then wait "$p" 2>/dev/null || true; fi
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '%s\n' "$*" >&2; }
want() { case ",$ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

port_open() { # port -> 0 if something listens on 127.0.0.1:port
    local hex
    hex=$(printf '%04X' "$1")
    grep -q "^ *[0-9]*: 0100007F:$hex 00000000:0000 0A" /proc/net/tcp
}

wait_port() { # port seconds
    local i
    for ((i = 0; i < $2 * 20; i++)); do
        port_open "$1" && return 0
        sleep 0.05
    done
    return 1
}

# ---------------------------------------------------------------- build
if [ "$BUILD" = 1 ]; then
    say "building smtp_blast (--release)..."
    (cd "$ROOT" && cargo build --quiet --release -p outbound --example smtp_blast)
fi
[ -x "$BLAST" ] || { say "missing $BLAST (run without --no-build)"; exit 1; }
if [ "$BUILD" = 1 ] || [ ! -x "$LETTRE" ]; then
    say "building benches/lettre-peer (lettre 0.11, --release; its own Cargo project)..."
    cargo build --quiet --release --manifest-path "$ROOT/benches/lettre-peer/Cargo.toml"
fi
if ! command -v smtp-sink >/dev/null || ! command -v smtp-source >/dev/null; then
    say "smtp-sink/smtp-source not found (Debian package postfix)"
    exit 1
fi

# ---------------------------------------------------------------- smtp-sink
start_sink() {
    if port_open "$SINK_PORT"; then
        say "127.0.0.1:$SINK_PORT is already in use; choose another --sink-port"
        exit 1
    fi
    # timeout: smtp-sink stops by itself even if this script is killed with SIGKILL.
    (cd "$WORK" && exec timeout 3600 smtp-sink -u nobody "127.0.0.1:$SINK_PORT" 1024) \
        >"$WORK/sink.log" 2>&1 &
    PIDS+=($!)
    wait_port "$SINK_PORT" 5 || { say "smtp-sink did not start:"; cat "$WORK/sink.log" >&2; exit 1; }
}

start_proxy() { # [target port] -> sets PROXY_PORT (default target: smtp-sink)
    local target=${1:-$SINK_PORT}
    "$PY" "$ROOT/benches/delay_proxy.py" --listen 127.0.0.1:0 --target "127.0.0.1:$target" \
        --delay-ms "$DELAY_MS" --max-seconds 3600 >"$WORK/proxy.out" 2>"$WORK/proxy.err" &
    PIDS+=($!)
    local i
    for ((i = 0; i < 100; i++)); do
        PROXY_PORT=$(sed -n 's/^READY //p' "$WORK/proxy.out")
        [ -n "$PROXY_PORT" ] && return 0
        sleep 0.05
    done
    say "delay_proxy did not start:"; cat "$WORK/proxy.err" >&2; exit 1
}

# ---------------------------------------------------------------- running one measurement
# smtp-source prints no rate: time it from outside (process start to exit, ~1 ms more than the
# sends themselves) and report its CPU time and peak RSS through /usr/bin/time.
smtp_source() { # count args... -> RESULT line
    local count=$1; shift
    local t0 t1 rss="?" cpu="" status=0
    t0=$(date +%s%N)
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f '%M %U %S' -o "$WORK/time.out" smtp-source -4 -m "$count" -l 5120 \
            -f bench@example.test -t bench@example.test "$@" >"$WORK/source.out" 2>&1 || status=$?
        read -r rss u s < <(tail -n1 "$WORK/time.out")
        cpu=$(awk -v u="$u" -v s="$s" -v c="$count" 'BEGIN { printf "%.0f", (u + s) * 1e6 / c }')
    else
        smtp-source -4 -m "$count" -l 5120 -f bench@example.test -t bench@example.test "$@" \
            >"$WORK/source.out" 2>&1 || status=$?
    fi
    t1=$(date +%s%N)
    if [ "$status" != 0 ] || grep -qi 'error\|fatal' "$WORK/source.out"; then
        cat "$WORK/source.out" >&2
        echo "RESULT peer=smtp-source messages=0 failed=$count rate=0"
        return 1
    fi
    awk -v c="$count" -v ns=$((t1 - t0)) -v rss="$rss" -v cpu="${cpu:-?}" 'BEGIN {
        printf "RESULT peer=smtp-source messages=%d failed=0 elapsed_s=%.4f rate=%.1f cpu_us_per_msg=%s peak_rss_kib=%s\n",
            c, ns / 1e9, c / (ns / 1e9), cpu, rss }'
}

field() { # key line -> value
    sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"
}

# One run: scenario peer notes run command... ; appends a line to $RAW.
run_once() {
    local scenario=$1 peer=$2 notes=$3 run=$4; shift 4
    local out line rate rss extra cpu
    # In the background + wait, so that a signal stops the script at once (see cleanup).
    "$@" >"$WORK/out" 2>"$WORK/err" &
    CHILD=$!
    if ! wait "$CHILD"; then
        CHILD=""
        say "FAILED: $scenario | $peer (run $run): $*"
        cat "$WORK/err" "$WORK/out" >&2
        exit 1
    fi
    CHILD=""
    out=$(cat "$WORK/out")
    line=$(grep '^RESULT ' <<<"$out" | tail -n1)
    rate=$(field rate "$line")
    rss=$(field peak_rss_kib "$line")
    cpu=$(field cpu_us_per_msg "$line")
    extra=""
    if [ "$(field peer "$line")" = outbound ]; then
        extra="conns=$(field connections "$line") cmds/write=$(field cmds_per_write "$line") round trips/msg=$(field round_trips_per_msg "$line")"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$peer" "$notes" "$run" "$rate" \
        "$rss" "$extra" "$cpu" "$GROUP_RUNS" >>"$RAW"
    say "  run $run: $(printf '%-48s' "$peer") $rate msg/s, ${cpu:-?} us CPU/msg"
}

# A group of measurements run round-robin (run 1 of each, then run 2 of each, ...), so a burst
# of load from other work on the machine hits every peer alike. Each measurement is one line
# in the array M: "scenario|peer|notes|command".
run_group() { # title [runs]
    local title=$1 runs=${2:-$RUNS} r m scenario peer notes cmd
    GROUP_RUNS=$runs
    # --outbound-only keeps the Outbound rows; --baseline adds a "before: " twin of each, run
    # with the baseline binary, right after it in the round-robin.
    local kept=()
    for m in "${M[@]}"; do
        IFS='|' read -r scenario peer notes cmd <<<"$m"
        case "$peer" in
            Outbound*) ;;
            *) [ "$OUTBOUND_ONLY" = 1 ] && continue ;;
        esac
        kept+=("$m")
        if [ -n "$BASELINE" ] && [[ "$peer" == Outbound* ]] && [[ "$cmd" == "$B "* ]]; then
            kept+=("$scenario|before: $peer|$notes|$BASELINE ${cmd#"$B "}")
        fi
    done
    M=("${kept[@]}")
    say "== $title   (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
    for ((r = 1; r <= runs; r++)); do
        for m in "${M[@]}"; do
            IFS='|' read -r scenario peer notes cmd <<<"$m"
            run_once "$scenario" "$peer" "$notes" "$r" bash -c "$cmd"
        done
    done
    # Noisy measurements (spread over NOISY_RATIO of the median) get 2 more runs.
    for m in "${M[@]}"; do
        IFS='|' read -r scenario peer notes cmd <<<"$m"
        if awk -F'\t' -v s="$scenario" -v p="$peer" '$1 == s && $2 == p { print $5 }' "$RAW" |
            sort -g | awk -v lim="$NOISY_RATIO" '{ v[++n] = $1 }
                END { med = v[int((n + 1) / 2)]; exit !(n > 0 && med > 0 && (v[n] - v[1]) / med > lim) }'
        then
            say "  noisy: $peer: 2 more runs"
            run_once "$scenario" "$peer" "$notes" "$((runs + 1))" bash -c "$cmd"
            run_once "$scenario" "$peer" "$notes" "$((runs + 2))" bash -c "$cmd"
        fi
    done
    M=()
}

export -f smtp_source
export WORK
B="$BLAST"
M=()

# ---------------------------------------------------------------- scenarios
say "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(date -u '+%Y-%m-%d %H:%M UTC')"
if [ -n "$BLAST_GIVEN" ]; then
    say "smtp_blast: $BLAST (given with --blast: built from a source tree this script did not check)"
else
    say "smtp_blast: built from $ROOT at $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo "?")"
fi
[ -n "$BASELINE" ] && say "baseline (rows \"before: ...\"): $BASELINE"
say "counts: sink $COUNT_SINK, 587/465 $COUNT_TLS (465 new connections: $COUNT_TLS_NEW), delay $COUNT_DELAY (new connections: $COUNT_DELAY_NEW); $SINK_RUNS runs each to smtp-sink, $RUNS to the others"

NEED_SINK=0
want sink && NEED_SINK=1
want delay && NEED_SINK=1
[ "$NEED_SINK" = 1 ] && start_sink
S="--port $SINK_PORT --tls none"
SP="--port $SINK_PORT"
N=$COUNT_SINK
NL=$((COUNT_SINK / 10)) # lettre with one send per connection is ~40 ms a message here

if want sink; then
    sc="smtp-sink, new connection per message, 1 session"
    M+=("$sc|smtp-source -s 1||smtp_source $N -s 1 127.0.0.1:$SINK_PORT")
    M+=("$sc|smtplib, 1 thread (Dify's way)||$PEER $SP --mode new --threads 1 --count $N")
    M+=("$sc|Outbound, pool 1, concurrency 1||$B $S --new-connection --pool 1 --concurrency 1 --count $N")
    run_group "$sc" "$SINK_RUNS"
    sc="smtp-sink, new connection per message, 4 sessions"
    M+=("$sc|smtp-source -s 4||smtp_source $N -s 4 127.0.0.1:$SINK_PORT")
    M+=("$sc|smtplib, 4 threads||$PEER $SP --mode new --threads 4 --count $N")
    M+=("$sc|Outbound, pool 4, concurrency 4||$B $S --new-connection --pool 4 --concurrency 4 --count $N")
    M+=("$sc|Outbound, pool 4, concurrency 4, 2 threads|multi-thread runtime, 2 workers|$B $S --new-connection --pool 4 --concurrency 4 --threads 2 --count $N")
    run_group "$sc" "$SINK_RUNS"
    sc="smtp-sink, reused connection, 1 session"
    M+=("$sc|smtp-source -d -s 1|one connection for all|smtp_source $N -d -s 1 127.0.0.1:$SINK_PORT")
    M+=("$sc|smtplib, 1 thread|one connection for all|$PEER $SP --mode reuse --threads 1 --count $N")
    M+=("$sc|Outbound, pool 1, concurrency 1|100 msgs/connection|$B $S --pool 1 --concurrency 1 --count $N")
    M+=("$sc|Outbound, pool 1, concurrency 64|100 msgs/connection|$B $S --pool 1 --concurrency 64 --count $N")
    M+=("$sc|Outbound, pool 1, no pipelining|100 msgs/connection|$B $S --pool 1 --concurrency 1 --no-pipelining --count $N")
    M+=("$sc|lettre, pool 1, concurrency 1|$NL msgs/run (about 22 msg/s here: 10,000 would take 8 minutes a run)|$LETTRE --port $SINK_PORT --pool 1 --concurrency 1 --count $NL")
    M+=("$sc|lettre, pool 1, concurrency 64|a connection per concurrent send: lettre's pool caps idle connections only|$LETTRE --port $SINK_PORT --pool 1 --concurrency 64 --count $N")
    run_group "$sc" "$SINK_RUNS"
    sc="smtp-sink, reused connection, 4 sessions"
    M+=("$sc|smtp-source -d -s 4||smtp_source $N -d -s 4 127.0.0.1:$SINK_PORT")
    M+=("$sc|smtplib, 4 threads||$PEER $SP --mode reuse --threads 4 --count $N")
    M+=("$sc|Outbound, pool 4, concurrency 4||$B $S --pool 4 --concurrency 4 --count $N")
    M+=("$sc|Outbound, pool 4, concurrency 4, 2 threads|multi-thread runtime, 2 workers|$B $S --pool 4 --concurrency 4 --threads 2 --count $N")
    M+=("$sc|Outbound, pool 4, concurrency 64||$B $S --pool 4 --concurrency 64 --count $N")
    M+=("$sc|lettre, pool 4, concurrency 4|$NL msgs/run|$LETTRE --port $SINK_PORT --pool 4 --concurrency 4 --count $NL")
    M+=("$sc|lettre, pool 4, concurrency 64|a connection per concurrent send|$LETTRE --port $SINK_PORT --pool 4 --concurrency 64 --count $N")
    run_group "$sc" "$SINK_RUNS"
fi

TESTENV_ENV="${OUTBOUND_TESTENV_DIR:-/tmp/outbound-testenv}/env"
postfix_up() {
    [ -r "$TESTENV_ENV" ] && "$ROOT/testenv/smtp-servers.sh" status >/dev/null 2>&1
}
if want 587 || want 465; then
    if postfix_up; then
        # shellcheck disable=SC1090
        . "$TESTENV_ENV"
        H=$OUTBOUND_TEST_SMTP_HOST
        AUTH="--user $OUTBOUND_TEST_USER --password $OUTBOUND_TEST_PASSWORD --ca-file $OUTBOUND_TEST_CA_FILE"
        ADDR="--from $OUTBOUND_TEST_USER --to bench@$OUTBOUND_TEST_DOMAIN"
        T=$COUNT_TLS
        if want 587; then
            P="--host $H --port $OUTBOUND_TEST_PORT_SUBMISSION --tls starttls $AUTH $ADDR"
            sc="Postfix 587, STARTTLS + AUTH PLAIN"
            M+=("$sc|smtplib, new connection per message|Dify's way|$PEER $P --mode new --threads 1 --count $T")
            M+=("$sc|smtplib, one reused connection||$PEER $P --mode reuse --threads 1 --count $T")
            M+=("$sc|smtplib, 3 threads, reused connections||$PEER $P --mode reuse --threads 3 --count $T")
            M+=("$sc|Outbound, new connection per message|pool 1, 1 msg/connection|$B $P --new-connection --pool 1 --concurrency 1 --count $T")
            M+=("$sc|Outbound, pool 1, concurrency 1||$B $P --pool 1 --concurrency 1 --count $T")
            M+=("$sc|Outbound, pool 3, concurrency 64|Exchange's connection cap|$B $P --pool 3 --concurrency 64 --count $T")
            run_group "$sc"
        fi
        if want 465; then
            P="--host $H --port $OUTBOUND_TEST_PORT_SMTPS --tls implicit $AUTH $ADDR"
            sc="Postfix 465, implicit TLS + AUTH PLAIN"
            M+=("$sc|smtplib, new connection per message|Dify's way; $COUNT_TLS_NEW msgs/run|$PEER $P --mode new --threads 1 --count $COUNT_TLS_NEW")
            M+=("$sc|Outbound, new connection per message|$COUNT_TLS_NEW msgs/run|$B $P --new-connection --pool 1 --concurrency 1 --count $COUNT_TLS_NEW")
            M+=("$sc|Outbound, pool 1, concurrency 1||$B $P --pool 1 --concurrency 1 --count $T")
            M+=("$sc|Outbound, pool 3, concurrency 64||$B $P --pool 3 --concurrency 64 --count $T")
            run_group "$sc"
        fi
    else
        say "== Postfix scenarios skipped: the test servers are not up ($TESTENV_ENV);"
        say "   start them with testenv/smtp-servers.sh start"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "Postfix 587/465" "(skipped)" \
            "test servers not running" 1 0 "" "" "" 1 >>"$RAW"
    fi
fi

if want delay; then
    start_proxy
    rtt=$((2 * DELAY_MS))
    S="--port $PROXY_PORT --tls none"
    SP="--port $PROXY_PORT"
    D=$COUNT_DELAY
    DN=$COUNT_DELAY_NEW
    sc="smtp-sink via ${rtt} ms RTT proxy"
    M+=("$sc|smtplib, new connection per message|Dify's way; $DN msgs/run|$PEER $SP --mode new --threads 1 --count $DN")
    M+=("$sc|smtplib, one reused connection||$PEER $SP --mode reuse --threads 1 --count $D")
    M+=("$sc|smtplib, 3 threads, reused connections||$PEER $SP --mode reuse --threads 3 --count $D")
    M+=("$sc|Outbound, new connection per message|$DN msgs/run|$B $S --new-connection --pool 1 --concurrency 1 --count $DN")
    M+=("$sc|Outbound, pool 1, no pipelining||$B $S --pool 1 --concurrency 1 --no-pipelining --count $D")
    M+=("$sc|Outbound, pool 1, concurrency 1||$B $S --pool 1 --concurrency 1 --count $D")
    M+=("$sc|Outbound, pool 1, concurrency 64|one connection, pipelined across messages|$B $S --pool 1 --concurrency 64 --count $D")
    M+=("$sc|Outbound, pool 3, concurrency 64||$B $S --pool 3 --concurrency 64 --count $D")
    M+=("$sc|lettre, pool 1, concurrency 1|one connection|$LETTRE --port $PROXY_PORT --pool 1 --concurrency 1 --count $DN")
    M+=("$sc|lettre, pool 3, concurrency 3|three connections|$LETTRE --port $PROXY_PORT --pool 3 --concurrency 3 --count $DN")
    M+=("$sc|lettre, pool 1, concurrency 64|a connection per concurrent send (lettre's pool caps idle connections only)|$LETTRE --port $PROXY_PORT --pool 1 --concurrency 64 --count $D")
    run_group "$sc"
fi

# e against a server that offers CHUNKING: the testenv Postfix on 25 (no TLS, no AUTH,
# delivered to the Maildir) through the same proxy. DATA must wait for its 354 (RFC 2920),
# so smtp-sink allows at most one message per round trip per connection; with BDAT several
# transactions are in flight at once (smtp_blast --chunking).
if want delay25; then
    if postfix_up; then
        # shellcheck disable=SC1090
        . "$TESTENV_ENV"
        : >"$WORK/proxy.out"
        start_proxy "$OUTBOUND_TEST_PORT_PLAIN"
        rtt=$((2 * DELAY_MS))
        ADDR="--from $OUTBOUND_TEST_USER --to bench@$OUTBOUND_TEST_DOMAIN"
        S="--port $PROXY_PORT --tls none $ADDR"
        SP="--port $PROXY_PORT $ADDR"
        D=$COUNT_DELAY
        DN=$COUNT_DELAY_NEW
        sc="Postfix 25 (CHUNKING) via ${rtt} ms RTT proxy"
        M+=("$sc|smtplib, new connection per message|Dify's way; $DN msgs/run|$PEER $SP --mode new --threads 1 --count $DN")
        M+=("$sc|smtplib, one reused connection||$PEER $SP --mode reuse --threads 1 --count $D")
        M+=("$sc|Outbound, pool 1, concurrency 64|DATA, pipelined across messages|$B $S --pool 1 --concurrency 64 --count $D")
        M+=("$sc|Outbound, pool 1, concurrency 64, BDAT|--chunking: up to 16 transactions in flight|$B $S --pool 1 --concurrency 64 --chunking --count $D")
        M+=("$sc|lettre, pool 1, concurrency 1|one connection|$LETTRE --port $PROXY_PORT $ADDR --pool 1 --concurrency 1 --count $DN")
        run_group "$sc"
    else
        say "== delay25 skipped: the test servers are not up ($TESTENV_ENV)"
    fi
fi

if want oauth; then
    if postfix_up; then
        say "== oauth: 64 concurrent OAuth2 sends with a cold token cache (building the live test)..."
        "$ROOT/testenv/oauth/install.sh" >&2 # the private token server's npm packages (idempotent)
        (cd "$ROOT" && cargo build --quiet -p outbound-cli &&
            cargo test --quiet -p outbound-live-tests --test smtp_oauth2_lifecycle --no-run) >&2
        # A failure is reported in the table (0 requests, "FAILED") rather than losing the run.
        out=$(cd "$ROOT" && cargo test --quiet -p outbound-live-tests --test smtp_oauth2_lifecycle \
            sixty_four_concurrent_sends_with_a_cold_cache_make_one_token_request -- --nocapture 2>&1) || {
            printf '%s\n' "$out" >&2; say "FAILED: the 64-concurrent OAuth2 test (see above)"; }
        n=$(sed -n 's/.*cold cache: .* s, \([0-9]*\) token request.*/\1/p' <<<"$out" | tail -n1)
        say "  64 sends: ${n:-?} token request(s)"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "OAuth2, 64 concurrent sends, cold cache" \
            "Outbound, token requests (not msg/s)" "token server answers in 300 ms" 1 "${n:-0}" "" "" "" 1 >>"$RAW"
    else
        say "== oauth skipped: the test servers are not up ($TESTENV_ENV)"
    fi
fi

# ---------------------------------------------------------------- the table
say "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
[ -n "$RAW_OUT" ] && cp "$RAW" "$RAW_OUT"
"$PY" - "$RAW" "$MARKDOWN" <<'EOF'
import sys, statistics
raw, md = sys.argv[1], sys.argv[2]
rows, order = {}, []
for line in open(raw):
    s, p, notes, run, rate, rss, extra, cpu, nruns = line.rstrip("\n").split("\t")
    key = (s, p)
    if key not in rows:
        rows[key] = {"notes": notes, "rates": [], "rss": [], "extra": extra, "cpu": [],
                     "runs": int(nruns)}
        order.append(key)
    rows[key]["rates"].append(float(rate))
    if cpu not in ("", "?"):
        rows[key]["cpu"].append(float(cpu))
    if rss not in ("", "?"):
        rows[key]["rss"].append(int(rss))
    rows[key]["extra"] = extra or rows[key]["extra"]
table = []
for key in order:
    r = rows[key]
    v = r["rates"]
    med = statistics.median(v)
    fig = "%.0f (%.0f-%.0f)" % (med, min(v), max(v)) if med >= 100 else "%.1f (%.1f-%.1f)" % (med, min(v), max(v))
    notes = [n for n in [r["notes"]] if n]
    if r["cpu"]:
        notes.append("CPU %.0f us/msg" % statistics.median(r["cpu"]))
    if r["rss"]:
        notes.append("RSS %.1f MB" % (max(r["rss"]) / 1024))
    if r["extra"]:
        notes.append(r["extra"])
    if len(v) > r["runs"]:
        notes.append("noisy: %d runs" % len(v))
    table.append((key[0], key[1], fig, "; ".join(notes)))
head = ("scenario", "peer", "messages/s median (min-max)", "notes")
w = [max(len(x[i]) for x in table + [head]) for i in range(4)]
line = " | ".join(h.ljust(w[i]) for i, h in enumerate(head))
print(line)
print("-+-".join("-" * x for x in w))
prev = None
for t in table:
    cells = list(t)
    if cells[0] == prev:
        cells[0] = ""
    else:
        prev = cells[0]
    print(" | ".join(c.ljust(w[i]) for i, c in enumerate(cells)))
# Ratios against the targets of issue 11: (label, scenario prefix, numerator peer, denominator
# peer, target). Medians; "-" when a side was not measured in this run.
def med(scenario_prefix, peer):
    for (s, p), r in rows.items():
        if s.startswith(scenario_prefix) and p == peer:
            return statistics.median(r["rates"])
    return None
sink_new1, sink_new4 = "smtp-sink, new connection per message, 1", "smtp-sink, new connection per message, 4"
sink_re1, sink_re4 = "smtp-sink, reused connection, 1", "smtp-sink, reused connection, 4"
RATIOS = [
    ("a/b new conn, 1 session: Outbound / smtp-source", sink_new1, "Outbound, pool 1, concurrency 1", "smtp-source -s 1", ">= 1.0"),
    ("a/b new conn, 4 sessions: Outbound / smtp-source", sink_new4, "Outbound, pool 4, concurrency 4", "smtp-source -s 4", ">= 1.0"),
    ("a/b reused, 1 session: Outbound / smtp-source", sink_re1, "Outbound, pool 1, concurrency 1", "smtp-source -d -s 1", ">= 1.0"),
    ("a/b reused, 1 connection, 64 callers: Outbound / smtp-source", sink_re1, "Outbound, pool 1, concurrency 64", "smtp-source -d -s 1", ">= 1.0"),
    ("a/b reused, 4 sessions: Outbound / smtp-source", sink_re4, "Outbound, pool 4, concurrency 4", "smtp-source -d -s 4", ">= 1.0"),
    ("a/c reused, 1 connection: Outbound / lettre, 1 caller each", sink_re1, "Outbound, pool 1, concurrency 1", "lettre, pool 1, concurrency 1", ""),
    ("a/c reused, 4 connections: Outbound / lettre, 4 callers each", sink_re4, "Outbound, pool 4, concurrency 4", "lettre, pool 4, concurrency 4", ""),
    ("e per connection: Outbound (1 conn, 64 callers) / lettre (1 conn)", "smtp-sink via", "Outbound, pool 1, concurrency 64", "lettre, pool 1, concurrency 1", ">= 4"),
    ("e per connection: Outbound (1 conn, 64 callers) / Dify-style smtplib", "smtp-sink via", "Outbound, pool 1, concurrency 64", "smtplib, new connection per message", ">= 8"),
    ("e 3 connections: Outbound / lettre", "smtp-sink via", "Outbound, pool 3, concurrency 64", "lettre, pool 3, concurrency 3", ""),
    ("e 1 connection, 1 caller: Outbound / lettre", "smtp-sink via", "Outbound, pool 1, concurrency 1", "lettre, pool 1, concurrency 1", ""),
    ("e per connection, CHUNKING server: Outbound BDAT (1 conn, 64 callers) / Dify-style smtplib", "Postfix 25 (CHUNKING)", "Outbound, pool 1, concurrency 64, BDAT", "smtplib, new connection per message", ">= 8"),
    ("e per connection, CHUNKING server: Outbound BDAT (1 conn, 64 callers) / lettre (1 conn)", "Postfix 25 (CHUNKING)", "Outbound, pool 1, concurrency 64, BDAT", "lettre, pool 1, concurrency 1", ">= 4"),
    ("f 587: Outbound pooled / Dify-style smtplib", "Postfix 587", "Outbound, pool 3, concurrency 64", "smtplib, new connection per message", ">= 5"),
]
ratio_rows = []
for label, sc, num, den, target in RATIOS:
    a, b = med(sc, num), med(sc, den)
    ratio = "%.2fx" % (a / b) if a and b else "-"
    ratio_rows.append((label, ratio, target))
tok = med("OAuth2, 64 concurrent", "Outbound, token requests (not msg/s)")
if tok is not None:
    ratio_rows.append(("g token requests for 64 concurrent OAuth2 sends", "%d" % tok, "exactly 1"))
head2 = ("ratio", "measured", "target")
w2 = [max(len(x[i]) for x in ratio_rows + [head2]) for i in range(3)]
print()
print(" | ".join(h.ljust(w2[i]) for i, h in enumerate(head2)))
print("-+-".join("-" * x for x in w2))
for r in ratio_rows:
    print(" | ".join(c.ljust(w2[i]) for i, c in enumerate(r)))
# Before/after (--baseline): each Outbound row against its "before: " twin.
ba_rows = []
for (s, p), r in rows.items():
    if p.startswith("before: "):
        continue
    twin = rows.get((s, "before: " + p))
    if twin:
        a, b = statistics.median(r["rates"]), statistics.median(twin["rates"])
        spread = max((max(x["rates"]) - min(x["rates"])) / statistics.median(x["rates"]) for x in (r, twin))
        ba_rows.append((s, p, "%.0f" % b, "%.0f" % a, "%.2fx" % (a / b) if b else "-", "%.0f%%" % (100 * spread)))
if ba_rows:
    head3 = ("scenario", "row", "before msg/s", "after msg/s", "after/before", "spread (max-min)/median")
    w3 = [max(len(x[i]) for x in ba_rows + [head3]) for i in range(6)]
    print()
    print(" | ".join(h.ljust(w3[i]) for i, h in enumerate(head3)))
    print("-+-".join("-" * x for x in w3))
    for r in ba_rows:
        print(" | ".join(c.ljust(w3[i]) for i, c in enumerate(r)))
if md:
    with open(md, "w") as f:
        f.write("| scenario | peer | messages/s median (min-max) | notes |\n|---|---|---|---|\n")
        prev = None
        for t in table:
            cells = list(t)
            if cells[0] == prev:
                cells[0] = ""
            else:
                prev = cells[0]
            f.write("| " + " | ".join(cells) + " |\n")
        f.write("\n| ratio | measured | target |\n|---|---|---|\n")
        for r in ratio_rows:
            f.write("| " + " | ".join(r) + " |\n")
        if ba_rows:
            f.write("\n| scenario | row | before msg/s | after msg/s | after/before | spread |\n|---|---|---|---|---|---|\n")
            for r in ba_rows:
                f.write("| " + " | ".join(r) + " |\n")
EOF
