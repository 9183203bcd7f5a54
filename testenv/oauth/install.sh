#!/usr/bin/env bash
# Installs the OAuth2 token server's npm dependencies (oauth2-mock-server 8.x, express) from the
# committed package-lock.json, into testenv/oauth/node_modules. Idempotent: does nothing when
# node_modules already matches the lock file. Needs Node.js >= 20.19 and npm.
#
#   testenv/oauth/install.sh [--force]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

log() { printf '[oauth-install] %s\n' "$*" >&2; }
die() { printf '[oauth-install] ERROR: %s\n' "$*" >&2; exit 1; }

command -v node >/dev/null || die "node not found: install Node.js >= 20.19 with npm (Debian/Ubuntu: apt-get install nodejs npm, or NodeSource's nodejs 20 package)"
command -v npm >/dev/null || die "npm not found: install npm (apt-get install npm)"
node -e '
  const [maj, min] = process.versions.node.split(".").map(Number);
  if (maj < 20 || (maj === 20 && min < 19)) { console.error(process.versions.node); process.exit(1); }
' 2>/dev/null || die "Node.js $(node --version) is too old: oauth2-mock-server 8.x needs >= 20.19"

stamp=node_modules/.outbound-lock-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ ${1:-} != --force && -f $stamp && $(cat "$stamp") == "$want" && -d node_modules/oauth2-mock-server ]]; then
  exit 0
fi

log "npm ci (oauth2-mock-server, express) in $(pwd)"
start=$(date +%s%N)
npm ci --no-audit --no-fund --loglevel=error >&2 || die "npm ci failed (is the npm registry reachable?)"
printf '%s\n' "$want" >"$stamp"
log "installed in $((($(date +%s%N) - start) / 1000000)) ms"
