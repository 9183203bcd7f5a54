#!/usr/bin/env bash
# The Resend API emulator for Outbound's tests: npm `resend-local` (a second, independent
# implementation of the Resend API; Next.js, ~400 MB installed) on 127.0.0.1:${OUTBOUND_RESEND_PORT:-8025}.
#
#   testenv/resend-local/server.sh start|stop|restart|status|env|install
#
# `start` installs the package on first use (npm ci from the lockfile beside this script), copies
# the emulator's empty SQLite database into the state directory (so every start begins empty and
# node_modules is never written to), starts the server and waits until it answers HTTP.
# State lives in ${OUTBOUND_TESTENV_DIR:-/tmp/outbound-testenv}/resend-local:
#   resend-local.sqlite   the emulator's database (emails, domains, API keys)
#   server.pid, server.log
#   env                   OUTBOUND_RESEND_LOCAL_URL=http://127.0.0.1:PORT
# The emulator accepts any API key that starts with `re_`, checks from/subject presence and
# to <= 50, ignores Idempotency-Key, and answers 500 on malformed JSON.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TESTENV_DIR="${OUTBOUND_TESTENV_DIR:-/tmp/outbound-testenv}"
STATE_DIR="$TESTENV_DIR/resend-local"
PORT="${OUTBOUND_RESEND_PORT:-8025}"
PIDFILE="$STATE_DIR/server.pid"
LOGFILE="$STATE_DIR/server.log"
ENVFILE="$STATE_DIR/env"
APP_DIR="$SCRIPT_DIR/node_modules/resend-local/dist/app"

log() { printf '[resend-local] %s\n' "$*" >&2; }
die() { printf '[resend-local] ERROR: %s\n' "$*" >&2; exit 1; }

case "$TESTENV_DIR" in
  /*) ;;
  *) die "OUTBOUND_TESTENV_DIR must be an absolute path (got '$TESTENV_DIR')" ;;
esac

now_ms() { date +%s%3N; }

install() {
  if [[ -f $APP_DIR/server.js ]]; then
    return 0
  fi
  command -v node >/dev/null || die "node not found: install Node.js 20 (Debian: apt-get install nodejs npm)"
  command -v npm >/dev/null || die "npm not found (Debian: apt-get install npm)"
  local t0
  t0=$(now_ms)
  log "installing resend-local from npm (first run; ~400 MB) ..."
  (cd "$SCRIPT_DIR" && npm ci --no-audit --no-fund --loglevel=error >&2) \
    || die "npm ci failed in $SCRIPT_DIR"
  [[ -f $APP_DIR/server.js ]] || die "npm ci finished but $APP_DIR/server.js is missing"
  log "installed in $(( ($(now_ms) - t0) )) ms"
}

running() {
  [[ -f $PIDFILE ]] || return 1
  local pid
  pid=$(cat "$PIDFILE")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}

# Any HTTP answer means the server is up (GET /emails/{unknown id} answers 404 as JSON).
answers() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
    -H 'Authorization: Bearer re_readiness_probe' \
    "http://127.0.0.1:$PORT/emails/00000000-0000-0000-0000-000000000000" 2>/dev/null) || return 1
  [[ $code =~ ^[1-5][0-9][0-9]$ ]]
}

start() {
  if running; then
    log "already running (pid $(cat "$PIDFILE"), http://127.0.0.1:$PORT)"
    return 0
  fi
  install
  command -v curl >/dev/null || die "curl not found (Debian: apt-get install curl)"
  mkdir -p "$STATE_DIR"
  if answers; then
    die "port $PORT on 127.0.0.1 is already in use by another process; set OUTBOUND_RESEND_PORT"
  fi
  # A fresh, empty database for each start, outside node_modules.
  cp "$APP_DIR/resend-local.sqlite" "$STATE_DIR/resend-local.sqlite"
  : >"$LOGFILE"
  local t0
  t0=$(now_ms)
  (
    cd "$APP_DIR"
    PORT="$PORT" HOSTNAME=127.0.0.1 NEXT_TELEMETRY_DISABLED=1 \
      DATABASE_URL="file:$STATE_DIR/resend-local.sqlite" \
      exec nohup node server.js >>"$LOGFILE" 2>&1 </dev/null
  ) &
  local pid=$!
  echo "$pid" >"$PIDFILE"
  local i
  for ((i = 0; i < 600; i++)); do
    if answers; then
      echo "OUTBOUND_RESEND_LOCAL_URL=http://127.0.0.1:$PORT" >"$ENVFILE"
      log "listening on http://127.0.0.1:$PORT (pid $pid, ready in $(( $(now_ms) - t0 )) ms, state $STATE_DIR)"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$LOGFILE" >&2 || true
      rm -f "$PIDFILE"
      die "resend-local exited during start (log: $LOGFILE)"
    fi
    sleep 0.1
  done
  tail -n 20 "$LOGFILE" >&2 || true
  die "resend-local did not answer within 60 s (log: $LOGFILE)"
}

stop() {
  if ! running; then
    rm -f "$PIDFILE"
    log "not running"
    return 0
  fi
  local pid i
  pid=$(cat "$PIDFILE")
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
  log "stopped (pid $pid)"
}

status() {
  if running; then
    echo "running: pid $(cat "$PIDFILE"), http://127.0.0.1:$PORT, state $STATE_DIR"
  else
    echo "stopped"
    return 3
  fi
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) status ;;
  env) [[ -f $ENVFILE ]] && cat "$ENVFILE" || die "not started (no $ENVFILE)" ;;
  *) echo "usage: $0 start|stop|restart|status|env|install" >&2; exit 64 ;;
esac
