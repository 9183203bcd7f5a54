#!/usr/bin/env bash
# Installs the real SMTP clients the relay's live tests drive
# (crates/outbound-live-tests/tests/relay_clients.rs): swaks and msmtp (Debian packages, with
# the Perl TLS modules swaks needs for STARTTLS) and nodemailer (npm, from the committed
# package-lock.json into testenv/relay-clients/node_modules). Python's smtplib comes with
# python3. Idempotent.
#
#   testenv/relay-clients/install.sh [--force]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

log() { printf '[relay-clients] %s\n' "$*" >&2; }
die() { printf '[relay-clients] ERROR: %s\n' "$*" >&2; exit 1; }

missing=()
command -v swaks >/dev/null || missing+=(swaks)
command -v msmtp >/dev/null || missing+=(msmtp)
perl -MNet::SSLeay -e1 2>/dev/null || missing+=(libnet-ssleay-perl)
perl -MIO::Socket::SSL -e1 2>/dev/null || missing+=(libio-socket-ssl-perl)
if ((${#missing[@]})); then
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/relay-clients-apt.log 2>&1; then
    apt-get update -q >>/tmp/relay-clients-apt.log 2>&1 || true
    apt-get install -y -q --no-install-recommends "${missing[@]}" >>/tmp/relay-clients-apt.log 2>&1 \
      || { tail -n 30 /tmp/relay-clients-apt.log >&2; die "apt-get install ${missing[*]} failed"; }
  fi
fi
swaks --support 2>&1 | grep -q '=== TLS supported' || die "swaks has no TLS support (Net::SSLeay)"

command -v node >/dev/null || die "node not found: install Node.js >= 20 with npm"
command -v npm >/dev/null || die "npm not found"
stamp=node_modules/.outbound-lock-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ ${1:-} != --force && -f $stamp && $(cat "$stamp") == "$want" && -d node_modules/nodemailer ]]; then
  exit 0
fi
log "npm ci (nodemailer) in $(pwd)"
npm ci --no-audit --no-fund --loglevel=error >&2 || die "npm ci failed (is the npm registry reachable?)"
printf '%s\n' "$want" >"$stamp"
