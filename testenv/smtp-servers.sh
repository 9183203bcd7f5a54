#!/usr/bin/env bash
# Outbound test environment: a private Postfix (25 / 587 STARTTLS / 465 implicit TLS) with
# Dovecot SASL, all on 127.0.0.1, delivering every @example.test message into one Maildir.
#
#   testenv/smtp-servers.sh start|stop|restart|status|clear-maildir|env
#
# State lives in ${OUTBOUND_TESTENV_DIR:-/tmp/outbound-testenv}; tests read "$STATE_DIR/env".
# Must run as root (Postfix's master and Dovecot's master need it). See testenv/README.md.
set -euo pipefail

STATE_DIR="${OUTBOUND_TESTENV_DIR:-/tmp/outbound-testenv}"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

HOST=127.0.0.1
PORT_PLAIN=25
OAUTH_PORT="${OUTBOUND_OAUTH_PORT:-8089}"   # testenv/oauth/server.sh uses the same variable
PORT_SUBMISSION=587
PORT_SMTPS=465
DOMAIN=example.test
USER1=alice@example.test
PASS1=alice-secret-pw
USER2=bob@example.test
PASS2=bob-secret-pw
AIOSMTPD_VERSION=1.4.6

PF_CONF="$STATE_DIR/postfix"      # main.cf, master.cf, maps
PF_QUEUE="$STATE_DIR/spool"       # queue_directory (Dovecot's auth socket: spool/private/auth)
PF_DATA="$STATE_DIR/data"         # data_directory (owned by postfix)
DC_DIR="$STATE_DIR/dovecot"       # dovecot.conf, users, run/ (base_dir), state/
LOG_DIR="$STATE_DIR/log"
MAILLOG="$LOG_DIR/maillog"
DOVECOT_LOG="$LOG_DIR/dovecot.log"
MAILDIR="$STATE_DIR/maildir"
ENV_FILE="$STATE_DIR/env"
AUTH_SOCKET="$PF_QUEUE/private/auth"
DC_PIDFILE="$DC_DIR/run/master.pid"
PF_PIDFILE="$PF_QUEUE/pid/master.pid"

log() { printf '[smtp-servers] %s\n' "$*" >&2; }
T0=$(date +%s%N)
# OUTBOUND_TESTENV_DEBUG=1: print elapsed time per phase.
phase() { [[ -z ${OUTBOUND_TESTENV_DEBUG:-} ]] || log "+$((($(date +%s%N) - T0) / 1000000)) ms: $*"; }
die() { printf '[smtp-servers] ERROR: %s\n' "$*" >&2; exit 1; }

case "$STATE_DIR" in
  /*) ;;
  *) die "OUTBOUND_TESTENV_DIR must be an absolute path (got '$STATE_DIR')" ;;
esac
[[ "$STATE_DIR" =~ ^[A-Za-z0-9._/-]+$ ]] \
  || die "OUTBOUND_TESTENV_DIR may only contain [A-Za-z0-9._/-] (got '$STATE_DIR')"

need_root() { [[ $(id -u) -eq 0 ]] || die "must run as root (Postfix/Dovecot masters need it)"; }

# ---------------------------------------------------------------- installation (only if missing)
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

apt_install() {
  local missing=() p
  for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  log "apt-get install ${missing[*]}"
  printf '%s\n' \
    'postfix postfix/main_mailer_type select Local only' \
    'postfix postfix/mailname string localhost' | debconf-set-selections
  # Keep the packages' own init scripts from starting a system-wide Postfix/Dovecot
  # (would grab 127.0.0.1:25). Only if no policy is in place already; removed afterwards.
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; made_policy=1
  fi
  local rc=0 aptlog="$LOG_DIR/apt.log"
  mkdir -p "$LOG_DIR"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >"$aptlog" 2>&1; then
    log "install failed; running apt-get update and retrying"
    apt-get update -q >>"$aptlog" 2>&1 || true
    apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$aptlog" 2>&1 || rc=$?
  fi
  ((made_policy)) && rm -f "$policy"
  ((rc == 0)) || { tail -n 30 "$aptlog" >&2; die "apt-get install ${missing[*]} failed"; }
}

ensure_python_deps() {
  command -v python3 >/dev/null || apt_install python3
  if python3 - "$AIOSMTPD_VERSION" <<'EOF' 2>/dev/null; then return 0; fi
import sys, importlib.metadata as m
sys.exit(0 if m.version("aiosmtpd") == sys.argv[1] else 1)
EOF
  python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
  log "pip install aiosmtpd==$AIOSMTPD_VERSION"
  local pipargs=(-m pip install -q --disable-pip-version-check "aiosmtpd==$AIOSMTPD_VERSION")
  local out
  if ! out=$(PIP_ROOT_USER_ACTION=ignore python3 "${pipargs[@]}" 2>&1); then
    if grep -q externally-managed <<<"$out"; then   # Debian's system python (PEP 668)
      PIP_ROOT_USER_ACTION=ignore python3 "${pipargs[@]}" --break-system-packages \
        || die "pip install aiosmtpd failed"
    else
      printf '%s\n' "$out" >&2; die "pip install aiosmtpd failed"
    fi
  fi
}

ensure_installed() {
  local pkgs=()
  command -v openssl >/dev/null || pkgs+=(openssl)
  [[ -x /usr/sbin/postfix ]] || pkgs+=(postfix)
  [[ -x /usr/sbin/dovecot ]] || pkgs+=(dovecot-core)
  command -v python3 >/dev/null || pkgs+=(python3)
  ((${#pkgs[@]} == 0)) || apt_install "${pkgs[@]}"
  ensure_python_deps
}

# ---------------------------------------------------------------- certificates
# A tiny CA (ca.pem, what clients trust) and a leaf for localhost/127.0.0.1/::1 signed by it.
# (A single self-signed CA:TRUE cert used directly as the server cert is rejected by
# rustls/webpki as "CaUsedAsEndEntity"; CA + leaf works with rustls, OpenSSL and others.)
make_certs() {
  [[ -s $STATE_DIR/ca.pem && -s $STATE_DIR/server.pem && -s $STATE_DIR/server-key.pem ]] && return 0
  log "generating CA and server certificate"
  local tmp; tmp=$(mktemp -d)
  cat >"$tmp/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = localhost
[ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = @alt
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[leaf_no_v6]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[alt]
DNS.1 = localhost
IP.1 = 127.0.0.1
IP.2 = ::1
EOF
  (
    umask 077
    openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days 3650 \
      -config "$tmp/openssl.cnf" -extensions ca -subj "/CN=Outbound testenv CA" \
      -keyout "$STATE_DIR/ca-key.pem" -out "$STATE_DIR/ca.pem" 2>"$tmp/err" \
      || { cat "$tmp/err" >&2; exit 1; }
    openssl req -new -newkey rsa:2048 -nodes -sha256 -config "$tmp/openssl.cnf" \
      -subj "/CN=localhost" -keyout "$STATE_DIR/server-key.pem" -out "$tmp/server.csr" 2>"$tmp/err" \
      || { cat "$tmp/err" >&2; exit 1; }
    local ext=leaf
    for ext in leaf leaf_no_v6; do
      openssl x509 -req -in "$tmp/server.csr" -CA "$STATE_DIR/ca.pem" -CAkey "$STATE_DIR/ca-key.pem" \
        -set_serial "0x$(openssl rand -hex 16)" -days 3650 -sha256 \
        -extfile "$tmp/openssl.cnf" -extensions "$ext" -out "$STATE_DIR/server.pem" 2>"$tmp/err" && break
      [[ $ext == leaf ]] && log "IP:::1 SAN not accepted by openssl; retrying without it"
      [[ $ext == leaf_no_v6 ]] && { cat "$tmp/err" >&2; exit 1; }
    done
    cat "$STATE_DIR/server.pem" "$STATE_DIR/ca.pem" >"$STATE_DIR/server-chain.pem"
  ) || { rm -rf "$tmp"; die "certificate generation failed"; }
  rm -rf "$tmp"
  chmod 644 "$STATE_DIR/ca.pem" "$STATE_DIR/server.pem" "$STATE_DIR/server-chain.pem"
  chmod 600 "$STATE_DIR/ca-key.pem" "$STATE_DIR/server-key.pem"
}

# ---------------------------------------------------------------- configuration
mail_ids() {
  # Owner of delivered mail files. Postfix's virtual(8) refuses uids < 100 (so never root);
  # use the invoking sudo user if there is one, else nobody. Root can read either.
  if [[ -n ${SUDO_UID:-} && ${SUDO_UID} -ge 100 ]]; then
    MAIL_UID=$SUDO_UID; MAIL_GID=${SUDO_GID:-$SUDO_UID}
  else
    MAIL_UID=65534; MAIL_GID=65534
  fi
}

write_postfix_config() {
  mkdir -p "$PF_CONF" "$PF_QUEUE" "$PF_DATA" "$LOG_DIR"
  chown root:root "$PF_CONF" "$PF_QUEUE"
  chmod 755 "$PF_CONF" "$PF_QUEUE"
  chown postfix:postfix "$PF_DATA"; chmod 700 "$PF_DATA"
  touch "$MAILLOG"; chmod 644 "$MAILLOG"

  cat >"$PF_CONF/reject_recipients.regexp" <<'EOF'
# Any reject*@example.test is refused at RCPT time (case-insensitive).
/^reject[^@]*@example\.test$/   550 5.1.1 No such user here
EOF

  cat >"$PF_CONF/main.cf" <<EOF
# Generated by testenv/smtp-servers.sh -- rewritten on every start; edit the script instead.
compatibility_level = 3.6
queue_directory = $PF_QUEUE
data_directory = $PF_DATA
maillog_file = $MAILLOG
maillog_file_prefixes = /var, /dev/stdout, $LOG_DIR
myhostname = localhost
mydomain = localdomain
myorigin = \$myhostname
mydestination =
inet_interfaces = $HOST
inet_protocols = ipv4
# mynetworks is referenced only by smtpd_client_event_limit_exceptions (loopback is exempt
# from anvil limits); no relay permission is derived from it (see smtpd_relay_restrictions).
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
biff = no
append_dot_mydomain = no
readme_directory = no
alias_maps =
alias_database =
local_recipient_maps =
local_transport = error:local delivery disabled in the Outbound testenv
# Nothing ever leaves this host.
default_transport = error:outbound testenv delivers to example.test only
relay_transport = error:outbound testenv delivers to example.test only

# Every address @example.test lands in one Maildir (trailing slash = Maildir format).
virtual_mailbox_domains = $DOMAIN
virtual_mailbox_base = $STATE_DIR
virtual_mailbox_maps = static:maildir/
virtual_uid_maps = static:$MAIL_UID
virtual_gid_maps = static:$MAIL_GID
virtual_destination_concurrency_limit = 50

# Limits generous enough for load tests.
message_size_limit = 10485760
smtputf8_enable = yes
smtpd_recipient_limit = 1000
default_process_limit = 100
smtpd_client_connection_count_limit = 1000
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_recipient_rate_limit = 0
smtpd_client_new_tls_session_rate_limit = 0
smtpd_client_auth_rate_limit = 0
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 1000
smtpd_hard_error_limit = 1000
smtpd_junk_command_limit = 100000
in_flow_delay = 0

# TLS: offered (optional) on 25; required on 587 (master.cf); implicit on 465 (master.cf).
smtpd_tls_cert_file = $STATE_DIR/server-chain.pem
smtpd_tls_key_file = $STATE_DIR/server-key.pem
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
smtpd_tls_session_cache_database = btree:\${data_directory}/smtpd_scache

# SASL through Dovecot. On 25 AUTH PLAIN LOGIN is offered without TLS (smtpd_tls_auth_only=no)
# but not required.
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_sasl_security_options = noanonymous
smtpd_tls_auth_only = no

# Unauthenticated clients may send to example.test only; authenticated ones anywhere (which
# then bounces via the error transport).
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions = check_recipient_access regexp:$PF_CONF/reject_recipients.regexp, permit
EOF

  # master.cf written from scratch (numeric ports: minimal images may lack /etc/services).
  cat >"$PF_CONF/master.cf" <<'EOF'
# Generated by testenv/smtp-servers.sh.
# service type  private unpriv  chroot  wakeup  maxproc command + args
25        inet  n       -       n       -       -       smtpd
587       inet  n       -       n       -       -       smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_tls_auth_only=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
465       inet  n       -       n       -       -       smtpd
  -o syslog_name=postfix/smtps
  -o smtpd_tls_wrappermode=yes
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
  chmod 644 "$PF_CONF"/*
  # Postfix re-reads a "hot" file (modified within the last second) after letting it cool
  # down: 300 ms naps, ~2.5 s per fresh main.cf. Backdate the generated files instead.
  touch -d '1 minute ago' "$PF_CONF"/*
}

write_dovecot_config() {
  mkdir -p "$DC_DIR/run" "$DC_DIR/state"
  chmod 755 "$DC_DIR"
  cat >"$DC_DIR/users" <<EOF
$USER1:{PLAIN}$PASS1
$USER2:{PLAIN}$PASS2
EOF
  chown root:dovecot "$DC_DIR/users"; chmod 640 "$DC_DIR/users"

  cat >"$DC_DIR/dovecot.conf" <<EOF
# Generated by testenv/smtp-servers.sh -- SASL-only Dovecot for the private Postfix.
instance_name = outbound-testenv
base_dir = $DC_DIR/run
state_dir = $DC_DIR/state
log_path = $DOVECOT_LOG
protocols = none
ssl = no
# Postfix tells Dovecot whether the SMTP session is TLS; allow PLAIN/LOGIN without it (port 25).
disable_plaintext_auth = no
auth_verbose = yes
# No 2 s delay after a failed login, and no anvil penalty (see service anvil below).
auth_failure_delay = 0

# PLAIN/LOGIN against the users file; XOAUTH2/OAUTHBEARER against JWTs from the test token
# server (testenv/oauth), validated locally with its public key.
auth_mechanisms = plain login xoauth2 oauthbearer

# auth_failure_delay = 0 still leaves each failure queued for Dovecot's 500 ms flush timer;
# only a "nodelay" field answers at once. Failed passdbs roll their fields back, so set it
# from a first passdb that authenticates nothing ("noauthenticate") and continues.
passdb {
  driver = static
  args = noauthenticate nodelay=yes
  result_success = continue
}
passdb {
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN $DC_DIR/users
}
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = $DC_DIR/oauth2.conf.ext
}

userdb {
  driver = static
  args = uid=65534 gid=65534 home=/nonexistent
}

service auth {
  unix_listener $AUTH_SOCKET {
    mode = 0660
    user = postfix
    group = postfix
  }
}
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
EOF
  chmod 644 "$DC_DIR/dovecot.conf"

  # The issuer must match the JWT's `iss` exactly (the token server says localhost even when
  # bound to 127.0.0.1); the trailing slash after keys/ is required by the fs dict.
  cat >"$DC_DIR/oauth2.conf.ext" <<EOF
introspection_mode = local
local_validation_key_dict = fs:posix:prefix=$STATE_DIR/oauth/keys/
username_attribute = email
issuers = http://localhost:$OAUTH_PORT
EOF
  chmod 644 "$DC_DIR/oauth2.conf.ext"
}

write_env_file() {
  local tmp="$ENV_FILE.tmp.$$"
  cat >"$tmp" <<EOF
# Outbound test environment (generated by testenv/smtp-servers.sh). KEY=value, no quoting.
OUTBOUND_TESTENV_DIR=$STATE_DIR
OUTBOUND_TEST_SMTP_HOST=$HOST
OUTBOUND_TEST_PORT_PLAIN=$PORT_PLAIN
OUTBOUND_TEST_PORT_SUBMISSION=$PORT_SUBMISSION
OUTBOUND_TEST_PORT_SMTPS=$PORT_SMTPS
OUTBOUND_TEST_TLS_SERVER_NAME=localhost
OUTBOUND_TEST_CA_FILE=$STATE_DIR/ca.pem
OUTBOUND_TEST_TLS_CERT=$STATE_DIR/server-chain.pem
OUTBOUND_TEST_TLS_KEY=$STATE_DIR/server-key.pem
OUTBOUND_TEST_MAILDIR=$MAILDIR
OUTBOUND_TEST_MAILLOG=$MAILLOG
OUTBOUND_TEST_DOMAIN=$DOMAIN
OUTBOUND_TEST_REJECT_RCPT=reject-me@$DOMAIN
OUTBOUND_TEST_USER=$USER1
OUTBOUND_TEST_PASSWORD=$PASS1
OUTBOUND_TEST_USER2=$USER2
OUTBOUND_TEST_PASSWORD2=$PASS2
OUTBOUND_TEST_MAX_MESSAGE_SIZE=10485760
OUTBOUND_TEST_PYTHON=$(command -v python3)
OUTBOUND_TEST_FAULT_SMTPD=$SCRIPT_DIR/fault_smtpd.py
OUTBOUND_TEST_OAUTH_URL=http://127.0.0.1:$OAUTH_PORT
OUTBOUND_TEST_OAUTH_ISSUER=http://localhost:$OAUTH_PORT
OUTBOUND_TEST_OAUTH_USER=$USER1
EOF
  chmod 644 "$tmp"; mv -f "$tmp" "$ENV_FILE"
}

prepare_state() {
  mkdir -p "$STATE_DIR"
  chown root:root "$STATE_DIR"; chmod 755 "$STATE_DIR"   # daemons must traverse it
  mail_ids
  mkdir -p "$MAILDIR"/{new,cur,tmp}
  chown -R "$MAIL_UID:$MAIL_GID" "$MAILDIR"; chmod 755 "$MAILDIR" "$MAILDIR"/{new,cur,tmp}
  make_certs
  write_postfix_config
  write_dovecot_config
}

# ---------------------------------------------------------------- process control
pid_alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }
# (Not "postfix status": that writes a line to the maillog on every call.)
postfix_running() { pid_alive "$(postfix_pid)"; }
dovecot_pid() { [[ -s $DC_PIDFILE ]] && tr -d ' \n' <"$DC_PIDFILE" || true; }
postfix_pid() { [[ -s $PF_PIDFILE ]] && tr -d ' \n' <"$PF_PIDFILE" || true; }
dovecot_running() { pid_alive "$(dovecot_pid)"; }
# Is something LISTENing on 127.0.0.1:PORT? Read from /proc/net/tcp rather than connecting:
# a probe connection would add connect/disconnect lines to the maillog that tests count.
port_open() {
  local hexport; hexport=$(printf '%04X' "$1")
  awk -v want="0100007F:$hexport" 'NR > 1 && $2 == want && $4 == "0A" { found = 1 } END { exit !found }' /proc/net/tcp
}

all_up() {
  [[ -f $PF_CONF/main.cf ]] && postfix_running && dovecot_running && [[ -S $AUTH_SOCKET ]] \
    && port_open "$PORT_PLAIN" && port_open "$PORT_SUBMISSION" && port_open "$PORT_SMTPS"
}

# Children (by pid) of a master process, to kill if a clean stop leaves anything behind.
# (Read from /proc: minimal images have no procps/pgrep.)
children_of() {
  [[ -n ${1:-} ]] || return 0
  local f line rest ppid kids=()
  for f in /proc/[0-9]*/stat; do
    line=$(<"$f") 2>/dev/null || continue
    rest=${line##*) }              # fields after "(comm)": state ppid ...
    read -r _ ppid _ <<<"$rest"
    [[ $ppid == "$1" ]] && kids+=("$(basename "$(dirname "$f")")")
  done
  echo "${kids[*]}"
}

wait_gone() { # wait_gone SECONDS PID...
  local deadline=$((SECONDS + $1)) p; shift
  while ((SECONDS < deadline)); do
    local alive=0
    for p in "$@"; do pid_alive "$p" && alive=1; done
    ((alive)) || return 0
    sleep 0.1
  done
  return 1
}

kill_leftovers() { # kill_leftovers NAME PID...
  local name=$1 p; shift
  for p in "$@"; do
    if pid_alive "$p"; then log "killing leftover $name process $p"; kill -9 "$p" 2>/dev/null || true; fi
  done
}

stop_all() {
  # SIGTERM to both masters (what "postfix stop" and "doveadm stop" do), in parallel, then
  # wait; anything still there after 10 s is SIGKILLed by pid. Dovecot's master takes 1-3 s
  # to exit after its children are gone.
  local pf dc pids=() p
  pf=$(postfix_pid); dc=$(dovecot_pid)
  for p in $pf $dc; do
    if pid_alive "$p"; then
      # shellcheck disable=SC2207
      pids+=("$p" $(children_of "$p"))
      kill -TERM "$p" 2>/dev/null || true
    fi
  done
  if ((${#pids[@]})); then
    wait_gone 10 "${pids[@]}" || kill_leftovers postfix/dovecot "${pids[@]}"
  fi
  rm -f "$DC_PIDFILE" "$AUTH_SOCKET"
}

# Run a self-daemonizing command with stdin/stdout/stderr on a file and every other inherited
# fd closed: Dovecot keeps its stderr (and any inherited fd) open forever, which would hang a
# caller that captures our output, e.g. $(smtp-servers.sh start) or a CI step.
run_daemon() { # run_daemon OUTFILE CMD...
  local outfile=$1; shift
  (
    for fdpath in "/proc/$BASHPID/fd/"*; do
      fd=${fdpath##*/}
      if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    exec "$@" </dev/null >"$outfile" 2>&1
  )
}

fail_start() {
  log "$1"
  log "---- tail of $MAILLOG ----"; tail -n 30 "$MAILLOG" >&2 2>/dev/null || true
  log "---- tail of $DOVECOT_LOG ----"; tail -n 15 "$DOVECOT_LOG" >&2 2>/dev/null || true
  log "stopping whatever did start"
  stop_all
  exit 1
}

# Real readiness: banner on 25, STARTTLS + AUTH PLAIN (alice) on 587 verified against ca.pem,
# implicit-TLS banner on 465. Bounded by a deadline.
wait_ready() {
  python3 - "$HOST" "$PORT_PLAIN" "$PORT_SUBMISSION" "$PORT_SMTPS" "$STATE_DIR/ca.pem" \
    "$USER1" "$PASS1" <<'EOF'
import os, smtplib, ssl, sys, time
host, p25, p587, p465, ca, user, pw = sys.argv[1:]
debug = bool(os.environ.get("OUTBOUND_TESTENV_DEBUG"))
ctx = ssl.create_default_context(cafile=ca)
deadline = time.monotonic() + 30
def check():
    with smtplib.SMTP(host, int(p25), local_hostname="readiness.check", timeout=5) as s:
        s.ehlo()
    with smtplib.SMTP(host, int(p587), local_hostname="readiness.check", timeout=5) as s:
        s.starttls(context=ctx)  # verifies the IP SAN 127.0.0.1 against ca.pem
        s.login(user, pw)        # 454 until Dovecot's auth socket is there
    with smtplib.SMTP_SSL(host, int(p465), local_hostname="readiness.check", timeout=5,
                          context=ctx) as s:
        s.ehlo()
while True:
    try:
        check()
        sys.exit(0)
    except (OSError, smtplib.SMTPException) as e:
        last = e
        if debug:
            print(f"{time.monotonic():.3f} not ready yet: {e!r}", file=sys.stderr)
    if time.monotonic() > deadline:
        print(f"not ready after 30 s: {last!r}", file=sys.stderr)
        sys.exit(1)
    time.sleep(0.1)
EOF
}

check_ports_free() {
  local p busy=()
  for p in "$PORT_PLAIN" "$PORT_SUBMISSION" "$PORT_SMTPS"; do port_open "$p" && busy+=("$p"); done
  ((${#busy[@]} == 0)) && return 0
  log "127.0.0.1 port(s) ${busy[*]} already in use by another process:"
  ss -ltnp 2>/dev/null | grep -E ":(${PORT_PLAIN}|${PORT_SUBMISSION}|${PORT_SMTPS})\b" >&2 || true
  die "ports busy (a system-wide Postfix? try: postfix stop)"
}

cmd_start() {
  need_root
  # The token server first: Dovecot validates XOAUTH2/OAUTHBEARER with its public key.
  "$SCRIPT_DIR/oauth/server.sh" start
  if all_up; then
    [[ -s $ENV_FILE ]] || write_env_file
    log "already running (state: $STATE_DIR)"
    cmd_status
    return 0
  fi
  phase "checking packages"
  ensure_installed
  phase "stopping leftovers"
  # Partially up (or stale): restart from a clean slate.
  stop_all
  check_ports_free
  local t0; t0=$(date +%s%N)
  phase "writing state"
  prepare_state
  phase "postfix start"
  local out="$LOG_DIR/start.out"
  # ("postfix start" runs "postfix check" itself; its errors land in $out and the maillog.)
  if ! run_daemon "$out" postfix -c "$PF_CONF" start; then
    cat "$out" >&2; fail_start "postfix start failed"
  fi
  # Dovecot after Postfix: its auth socket goes into Postfix's private/ dir.
  phase "dovecot start"
  if ! run_daemon "$out" dovecot -c "$DC_DIR/dovecot.conf"; then
    cat "$out" >&2; fail_start "dovecot start failed"
  fi
  phase "waiting until ready"
  if ! wait_ready; then
    fail_start "servers did not become ready"
  fi
  write_env_file
  log "up in $((($(date +%s%N) - t0) / 1000000)) ms; env file: $ENV_FILE"
}

cmd_stop() {
  need_root
  stop_all
  "$SCRIPT_DIR/oauth/server.sh" stop || true
  rm -f "$ENV_FILE"   # tests treat a missing env file as "testenv not started"
  local p
  for p in "$PORT_PLAIN" "$PORT_SUBMISSION" "$PORT_SMTPS"; do
    if port_open "$p"; then log "warning: 127.0.0.1:$p still has a listener (not ours?)"; fi
  done
  log "stopped"
}

cmd_status() {
  local ok=0 p
  if [[ -f $PF_CONF/main.cf ]] && postfix_running; then
    echo "postfix: running (master pid $(postfix_pid), config $PF_CONF)"
  else
    echo "postfix: not running"; ok=1
  fi
  if dovecot_running; then
    echo "dovecot: running (master pid $(dovecot_pid), config $DC_DIR/dovecot.conf)"
  else
    echo "dovecot: not running"; ok=1
  fi
  if [[ -S $AUTH_SOCKET ]] && dovecot_running; then
    echo "sasl socket: $AUTH_SOCKET"
  else
    echo "sasl socket: missing"; ok=1
  fi
  for p in "$PORT_PLAIN" "$PORT_SUBMISSION" "$PORT_SMTPS"; do
    if port_open "$p"; then echo "port $HOST:$p: open"; else echo "port $HOST:$p: closed"; ok=1; fi
  done
  if [[ -s $ENV_FILE ]]; then echo "env file: $ENV_FILE"; else echo "env file: missing"; ok=1; fi
  return $ok
}

cmd_clear_maildir() {
  local d
  for d in new cur tmp; do
    [[ -d $MAILDIR/$d ]] && find "$MAILDIR/$d" -mindepth 1 -maxdepth 1 -type f -delete
  done
  log "emptied $MAILDIR/{new,cur,tmp}"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  restart) cmd_stop; cmd_start ;;
  status) cmd_status ;;
  clear-maildir) cmd_clear_maildir ;;
  env) cat "$ENV_FILE" ;;
  *) echo "usage: $0 start|stop|restart|status|clear-maildir|env" >&2; exit 2 ;;
esac
