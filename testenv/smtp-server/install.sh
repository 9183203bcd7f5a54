#!/usr/bin/env bash
# Installs nodemailer's smtp-server (npm) from the committed package-lock.json into
# testenv/smtp-server/node_modules, for crates/outbound-live-tests/tests/smtp_tls_mismatch.rs.
# Idempotent: does nothing when node_modules already matches the lock file. Needs Node.js >= 20
# and npm.
#
#   testenv/smtp-server/install.sh [--force]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

log() { printf '[smtp-server-install] %s\n' "$*" >&2; }
die() { printf '[smtp-server-install] ERROR: %s\n' "$*" >&2; exit 1; }

command -v node >/dev/null || die "node not found: install Node.js >= 20 with npm (Debian/Ubuntu: apt-get install nodejs npm)"
command -v npm >/dev/null || die "npm not found: install npm (apt-get install npm)"

stamp=node_modules/.outbound-lock-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ ${1:-} != --force && -f $stamp && $(cat "$stamp") == "$want" && -d node_modules/smtp-server ]]; then
  exit 0
fi

log "npm ci (smtp-server) in $(pwd)"
start=$(date +%s%N)
npm ci --no-audit --no-fund --loglevel=error >&2 || die "npm ci failed (is the npm registry reachable?)"
printf '%s\n' "$want" >"$stamp"
log "installed in $((($(date +%s%N) - start) / 1000000)) ms"
