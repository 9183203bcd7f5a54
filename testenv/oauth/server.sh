#!/usr/bin/env bash
# The shared OAuth2 token server instance for Outbound's tests (and Dovecot's oauth2 passdb):
# testenv/oauth/token-server.js on 127.0.0.1:${OUTBOUND_OAUTH_PORT:-8089}.
#
#   testenv/oauth/server.sh start|stop|restart|status|env
#
# State lives in ${OUTBOUND_TESTENV_DIR:-/tmp/outbound-testenv}/oauth:
#   keys/default/RS256/<kid>  public key as PEM (Dovecot: local_validation_key_dict = fs:posix:prefix=<that>/keys/)
#   issuer, port, jwks.json   written by the server
#   env                       OUTBOUND_OAUTH_URL=..., OUTBOUND_OAUTH_ISSUER=..., OUTBOUND_OAUTH_KEYDIR=...
#   token-server.pid, token-server.log
# Token lifetime: ${OUTBOUND_OAUTH_LIFETIME:-3600} s (change at run time with POST /config).
# Tests that count token requests or inject faults should spawn their own instance on port 0.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TESTENV_DIR="${OUTBOUND_TESTENV_DIR:-/tmp/outbound-testenv}"
STATE_DIR="$TESTENV_DIR/oauth"
PORT="${OUTBOUND_OAUTH_PORT:-8089}"
LIFETIME="${OUTBOUND_OAUTH_LIFETIME:-3600}"
PIDFILE="$STATE_DIR/token-server.pid"
LOGFILE="$STATE_DIR/token-server.log"
ENVFILE="$STATE_DIR/env"

log() { printf '[oauth-server] %s\n' "$*" >&2; }
die() { printf '[oauth-server] ERROR: %s\n' "$*" >&2; exit 1; }

case "$TESTENV_DIR" in
  /*) ;;
  *) die "OUTBOUND_TESTENV_DIR must be an absolute path (got '$TESTENV_DIR')" ;;
esac

running() {
  [[ -f $PIDFILE ]] || return 1
  local pid
  pid=$(cat "$PIDFILE")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}

start() {
  if running; then
    log "already running (pid $(cat "$PIDFILE"), port $PORT)"
    return 0
  fi
  "$SCRIPT_DIR/install.sh"
  mkdir -p "$STATE_DIR"
  chmod 755 "$TESTENV_DIR" "$STATE_DIR" 2>/dev/null || true  # Dovecot's auth process reads the keys
  rm -rf "$STATE_DIR/keys" "$STATE_DIR/port" "$STATE_DIR/issuer"
  : >"$LOGFILE"
  nohup node "$SCRIPT_DIR/token-server.js" --port "$PORT" --lifetime "$LIFETIME" \
    --state-dir "$STATE_DIR" >>"$LOGFILE" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$PIDFILE"
  local i
  for ((i = 0; i < 150; i++)); do
    if grep -q '^READY ' "$LOGFILE" 2>/dev/null; then
      cat >"$ENVFILE" <<EOF
OUTBOUND_OAUTH_URL=http://127.0.0.1:$PORT
OUTBOUND_OAUTH_TOKEN_URL=http://127.0.0.1:$PORT/token
OUTBOUND_OAUTH_ISSUER=$(cat "$STATE_DIR/issuer")
OUTBOUND_OAUTH_KEYDIR=$STATE_DIR/keys
OUTBOUND_OAUTH_LIFETIME=$LIFETIME
EOF
      log "listening on 127.0.0.1:$PORT (pid $pid, issuer $(cat "$STATE_DIR/issuer"), keys in $STATE_DIR/keys)"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$LOGFILE" >&2 || true
      rm -f "$PIDFILE"
      die "token server exited during start (log: $LOGFILE)"
    fi
    sleep 0.1
  done
  tail -n 20 "$LOGFILE" >&2 || true
  die "token server did not print READY within 15 s (log: $LOGFILE)"
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
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) status ;;
  env) [[ -f $ENVFILE ]] && cat "$ENVFILE" || die "not started (no $ENVFILE)" ;;
  *) echo "usage: $0 start|stop|restart|status|env" >&2; exit 64 ;;
esac
