#!/usr/bin/env python3
"""Scriptable SMTP server for Outbound's fault-injection tests (aiosmtpd 1.4.6).

    python3 testenv/fault_smtpd.py --port PORT --mode MODE --log FILE \
        [--tls-cert CERT --tls-key KEY [--implicit-tls]] [--timeout SECS]

Binds 127.0.0.1 only. Prints "READY <port>" on stdout once listening (--port 0 picks a free
port). Appends one JSON object per line to --log:

    {"ts": 1700000000.123, "conn": 1, "event": "connect", "peer": "127.0.0.1:54321"}
    {"ts": ..., "conn": 1, "event": "cmd",   "line": "AUTH PLAIN AGFsaWNlAHB3"}
    {"ts": ..., "conn": 1, "event": "reply", "line": "235 2.7.0 Authentication successful"}
    {"ts": ..., "conn": 1, "event": "data-end", "bytes": 1234}
    {"ts": ..., "conn": 1, "event": "message", "mail_from": ..., "rcpt_tos": [...],
     "mail_options": [...], "rcpt_options": [...], "data_b64": ..., "size": ..., "sha256": ...}
    {"ts": ..., "conn": 1, "event": "disconnect"}

"cmd" is every line the client sent outside DATA, verbatim minus the line ending (decoded as
UTF-8, undecodable bytes as \\xNN), including AUTH continuation lines (credentials!);
"eol" is added when the line did not end in CRLF. Lines inside DATA are not logged one by one:
"data-end" marks the final ".", "message" holds the exact bytes received (dot-unstuffed).

With --tls-cert/--tls-key, STARTTLS is offered (except in no-starttls mode); with
--implicit-tls as well, the listener speaks TLS from the first byte (like port 465).
AUTH is accepted without TLS in every mode (the point is to see what a client sends).

Modes (one small handler class each; add a mode by adding a class to MODES):
  accept            accept any AUTH PLAIN/LOGIN and any mail; messages logged as "message"
  no-starttls       like accept but never offers STARTTLS (AUTH PLAIN LOGIN still offered)
  stall             accept TCP, never send a greeting (lines received are still logged)
  stall-after-data  normal until the final ".", then never answer it
  drop-after-data   close the connection right after the final ".", no answer
  reject-rcpt       RCPT to any local part starting with "reject" -> 550 5.1.1 No such user
  auth-fail         AUTH PLAIN LOGIN XOAUTH2 OAUTHBEARER offered, every AUTH fails
  tempfail-data     the final "." gets 451 4.3.0 Try again later
  echo-auth         every AUTH PLAIN/LOGIN fails with a 535 that quotes what the client sent,
                    base64 and decoded (a server that leaks credentials into its replies)
  reject-second-data  the second message this server receives (counted over all connections)
                    gets "554 5.7.1 Message 2 refused" at its final "."; the others 250
  drop-after-second-data  the second message's final "." is not answered: the connection is
                    closed at once (whatever the client pipelined behind it is discarded)
"""
import argparse
import asyncio
import base64
import collections
import hashlib
import json
import logging
import signal
import ssl
import sys
import time

from aiosmtpd.smtp import MISSING, SMTP, AuthResult

HOSTNAME = "fault-smtpd.localhost"
COMMAND_SIZE_LIMIT = 65536  # aiosmtpd's default 512 rejects long AUTH XOAUTH2 lines
OAUTH_ERROR = json.dumps(
    {"status": "401", "schemes": "bearer", "scope": "https://outlook.office365.com/.default"},
    separators=(",", ":"),
)


class EventLog:
    def __init__(self, path):
        self.f = open(path, "a", encoding="utf-8", buffering=1)
        self.next_conn = 0

    def new_conn(self):
        self.next_conn += 1
        return self.next_conn

    def write(self, conn, event, **fields):
        rec = {"ts": round(time.time(), 6), "conn": conn, "event": event}
        rec.update(fields)
        self.f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def line_fields(raw: bytes):
    if raw.endswith(b"\r\n"):
        body, eol = raw[:-2], None
    elif raw.endswith(b"\n"):
        body, eol = raw[:-1], "\n"
    else:
        body, eol = raw, ""
    fields = {"line": body.decode("utf-8", "backslashreplace")}
    if eol is not None:
        fields["eol"] = eol
    return fields


# --------------------------------------------------------------------------- handlers (modes)
class Accept:
    """Baseline: everything succeeds. Other modes override one hook each."""

    # PLAIN/LOGIN are aiosmtpd built-ins; others need an auth_<NAME> method. (Don't name an
    # attribute auth_*: aiosmtpd would take it for a mechanism.)
    mechanisms = ("PLAIN", "LOGIN")
    offer_starttls = True

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        return AuthResult(success=True, auth_data=auth_data)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        # aiosmtpd pipelines fine but does not say so.
        return responses[:1] + ["250-PIPELINING"] + responses[1:]

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        server.log_message(envelope)
        return await self.after_data(server)

    async def after_data(self, server):
        return "250 2.0.0 OK queued"


class NoStartTLS(Accept):
    offer_starttls = False


class StallAfterData(Accept):
    async def after_data(self, server):
        await asyncio.Event().wait()  # cancelled when the client goes away


class DropAfterData(Accept):
    async def after_data(self, server):
        server.log.write(server.conn_id, "drop")
        server.transport.close()
        await asyncio.Event().wait()


class NthData(Accept):
    """Counts messages over the whole server (every connection), numbered from 1."""

    nth = 2

    def __init__(self):
        self.seen = 0

    async def after_data(self, server):
        self.seen += 1
        if self.seen == self.nth:
            return await self.on_nth(server)
        return "250 2.0.0 OK queued"

    async def on_nth(self, server):
        raise NotImplementedError


class RejectSecondData(NthData):
    async def on_nth(self, server):
        return f"554 5.7.1 Message {self.nth} refused"


class DropAfterSecondData(NthData):
    async def on_nth(self, server):
        server.log.write(server.conn_id, "drop")
        server.transport.close()
        await asyncio.Event().wait()


class RejectRcpt(Accept):
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower().startswith("reject"):
            return "550 5.1.1 No such user"
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


class TempfailData(Accept):
    async def after_data(self, server):
        return "451 4.3.0 Try again later"


class AuthFail(Accept):
    mechanisms = ("PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER")

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        # handled=False: let aiosmtpd answer "535 5.7.8 Authentication credentials invalid".
        # (AuthResult's default handled=True means "I already replied" and nothing is sent.)
        return AuthResult(success=False, handled=False)

    async def _oauth_fail(self, server, args):
        if len(args) == 1:  # no initial response: ask for it
            if await server.challenge_auth("") is MISSING:
                return AuthResult(success=False, handled=True)
        # Like Office 365 / Gmail: a 334 carrying the error JSON, then 535 after the client's
        # (empty) reply.
        if await server.challenge_auth(OAUTH_ERROR) is MISSING:
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False,
                          message="535 5.7.8 Authentication unsuccessful")

    async def auth_XOAUTH2(self, server, args):
        return await self._oauth_fail(server, args)

    async def auth_OAUTHBEARER(self, server, args):
        return await self._oauth_fail(server, args)


class EchoAuth(Accept):
    """Refuses every login, quoting the credentials back (base64 and decoded)."""

    mechanisms = ("PLAIN", "LOGIN")

    @staticmethod
    def _decoded(b64):
        try:
            return base64.b64decode(b64).decode("utf-8", "replace").replace("\0", " ")
        except Exception:  # noqa: BLE001 - whatever the client sent, echo it
            return "?"

    async def auth_PLAIN(self, server, args):
        blob = args[1] if len(args) > 1 else ""
        if not blob:
            answer = await server.challenge_auth("", encode_to_b64=False)
            if answer is MISSING:
                return AuthResult(success=False, handled=True)
            blob = base64.b64encode(answer).decode()
        return AuthResult(success=False, handled=False,
                          message=f"535 5.7.8 bad credentials {blob} ({self._decoded(blob)})")

    async def auth_LOGIN(self, server, args):
        user = await server.challenge_auth("Username:")
        if user is MISSING:
            return AuthResult(success=False, handled=True)
        password = await server.challenge_auth("Password:")
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        b64 = base64.b64encode(password).decode()
        return AuthResult(success=False, handled=False,
                          message=f"535 5.7.8 refused {b64} ({password.decode('utf-8', 'replace')})")


MODES = {
    "echo-auth": EchoAuth,
    "accept": Accept,
    "no-starttls": NoStartTLS,
    "stall": None,  # not SMTP at all: see Staller
    "stall-after-data": StallAfterData,
    "drop-after-data": DropAfterData,
    "reject-rcpt": RejectRcpt,
    "auth-fail": AuthFail,
    "tempfail-data": TempfailData,
    "reject-second-data": RejectSecondData,
    "drop-after-second-data": DropAfterSecondData,
}

# --------------------------------------------------------------------------- protocol plumbing
class LoggingSMTP(SMTP):
    """aiosmtpd's SMTP plus a raw line log, per-instance command limits."""

    def __init__(self, handler, log, **kw):
        all_mechs = {"PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"}
        super().__init__(
            handler,
            hostname=HOSTNAME,
            decode_data=False,
            enable_SMTPUTF8=True,
            auth_require_tls=False,
            authenticator=handler.authenticate,
            auth_exclude_mechanism=sorted(all_mechs - set(handler.mechanisms)),
            **kw,
        )
        # Per instance, not on the class (the class dict is shared and cleared per instance).
        self.command_size_limit = COMMAND_SIZE_LIMIT
        self.command_size_limits = collections.defaultdict(lambda: COMMAND_SIZE_LIMIT)
        # The StreamReader's buffer limit is line_length_limit (1001): any command line longer
        # than that got "500 Command line too long" whatever the limits above say. Raise the
        # reader's limit only; DATA lines > 1000 octets are still refused as aiosmtpd does.
        self._stream_reader._limit = COMMAND_SIZE_LIMIT
        self.log = log
        self.conn_id = 0
        self._rx = b""
        self._in_data = False
        self._data_bytes = 0

    def connection_made(self, transport):
        if self.conn_id == 0:  # not again after STARTTLS
            self.conn_id = self.log.new_conn()
            peer = transport.get_extra_info("peername")
            self.log.write(self.conn_id, "connect", peer=f"{peer[0]}:{peer[1]}")
        else:
            self._rx = b""  # aiosmtpd drops unencrypted leftovers too (RFC 3207)
            self.log.write(self.conn_id, "tls")
        super().connection_made(transport)

    def connection_lost(self, exc):
        self.log.write(self.conn_id, "disconnect")
        super().connection_lost(exc)

    def data_received(self, data):
        self._rx += data
        while True:
            nl = self._rx.find(b"\n")
            if nl < 0:
                break
            raw, self._rx = self._rx[: nl + 1], self._rx[nl + 1:]
            self._log_line(raw)
        super().data_received(data)

    def _log_line(self, raw):
        if self._in_data:
            if raw in (b".\r\n", b".\n"):
                self._in_data = False
                self.log.write(self.conn_id, "data-end", bytes=self._data_bytes)
            else:
                self._data_bytes += len(raw)
        else:
            self.log.write(self.conn_id, "cmd", **line_fields(raw))

    async def push(self, status):
        text = status if isinstance(status, str) else status.decode("utf-8", "backslashreplace")
        self.log.write(self.conn_id, "reply", line=text)
        if text.startswith("354"):
            self._in_data, self._data_bytes = True, 0
        await super().push(status)

    def log_message(self, envelope):
        data = envelope.original_content or b""
        self.log.write(
            self.conn_id, "message",
            mail_from=envelope.mail_from, rcpt_tos=list(envelope.rcpt_tos),
            mail_options=list(envelope.mail_options), rcpt_options=list(envelope.rcpt_options),
            size=len(data), sha256=hashlib.sha256(data).hexdigest(),
            data_b64=base64.b64encode(data).decode("ascii"),
        )


class Staller(asyncio.Protocol):
    """Mode "stall": accept, log, never greet, never answer."""

    def __init__(self, log):
        self.log, self.conn_id, self._rx = log, 0, b""

    def connection_made(self, transport):
        self.conn_id = self.log.new_conn()
        peer = transport.get_extra_info("peername")
        self.log.write(self.conn_id, "connect", peer=f"{peer[0]}:{peer[1]}")

    def data_received(self, data):
        self._rx += data
        while b"\n" in self._rx:
            raw, self._rx = self._rx.split(b"\n", 1)
            self.log.write(self.conn_id, "cmd", **line_fields(raw + b"\n"))

    def connection_lost(self, exc):
        self.log.write(self.conn_id, "disconnect")


# --------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True, help="0 = pick a free port")
    ap.add_argument("--mode", required=True, choices=sorted(MODES))
    ap.add_argument("--log", required=True, help="JSON-lines event log (appended)")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--implicit-tls", action="store_true", help="TLS from the first byte")
    ap.add_argument("--timeout", type=float, default=300, help="idle timeout per connection")
    args = ap.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    if args.implicit_tls and not args.tls_cert:
        ap.error("--implicit-tls needs --tls-cert/--tls-key")

    tls = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)

    logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd's chatter on stderr
    log = EventLog(args.log)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    handler_cls = MODES[args.mode]
    if handler_cls is None:
        factory = lambda: Staller(log)  # noqa: E731
    else:
        handler = handler_cls()
        starttls_ctx = tls if (tls and not args.implicit_tls and handler.offer_starttls) else None
        factory = lambda: LoggingSMTP(  # noqa: E731
            handler, log, tls_context=starttls_ctx, timeout=args.timeout, loop=loop)

    server = loop.run_until_complete(loop.create_server(
        factory, host="127.0.0.1", port=args.port,
        ssl=tls if args.implicit_tls else None, reuse_address=True))
    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, loop.stop)
    try:
        loop.run_forever()
    finally:
        server.close()
        log.f.close()


if __name__ == "__main__":
    main()
