"""The sender protocol, the factory, MailMessage as a dataclass, and logging."""

from __future__ import annotations

import dataclasses
import logging
import os
from types import SimpleNamespace

import pytest

from outbound import (
    MailAuthError,
    MailMessage,
    MailSender,
    MailSenderFactory,
    OutboundSender,
)


def submission_config(testenv, **over):
    config = {
        "server": testenv.host, "port": testenv.submission, "username": testenv.user,
        "password": testenv.password, "use_tls": True, "opportunistic_tls": True,
        "ca_file": testenv.ca_file,
    }
    config.update(over)
    return config


def test_every_factory_sender_satisfies_the_protocol(testenv, tmp_path, resend_local):
    senders = [
        MailSenderFactory.create_sender("smtp", submission_config(testenv)),
        MailSenderFactory.create_sender("resend", {"api_key": "re_x", "api_url": resend_local}),
        MailSenderFactory.create_sender("sendgrid", {"api_key": "SG.x"}),
        MailSenderFactory.create_sender("file", {"dir": str(tmp_path)}),
        MailSenderFactory.create_sender("memory", {}),
        MailSenderFactory.create_sender("graph", {"client_id": "c", "client_secret": "s",
                                                  "tenant_id": "t", "default_from": "a@example.com"}),
        MailSenderFactory.create_sender("smtp", {"dsn": f"smtp://127.0.0.1:{testenv.plain}?tls=none"}),
    ]
    for sender in senders:
        assert isinstance(sender, MailSender), sender
        assert sender.is_configured() is True
    assert [s.mail_type for s in senders] == ["smtp", "resend", "sendgrid", "file", "memory", "graph", "smtp"]


def maillog_disconnects(testenv, offset):
    """Postfix's submission `disconnect from ... <command counts>` lines since `offset`."""
    import time
    time.sleep(0.5)  # Postfix logs the disconnect just after the client's QUIT
    with open(testenv["OUTBOUND_TEST_MAILLOG"], "rb") as f:
        f.seek(offset)
        text = f.read().decode("utf-8", "replace")
    return [l.split("disconnect from ", 1)[1] for l in text.splitlines()
            if "postfix/submission/smtpd" in l and "disconnect from " in l]


def test_test_connection_against_postfix(testenv, fault_server, caplog):
    log = testenv["OUTBOUND_TEST_MAILLOG"]
    good = MailSenderFactory.create_sender("smtp", submission_config(testenv))
    offset = os.path.getsize(log)
    assert good.test_connection() is True
    # A session that logged in and quit, with no MAIL, RCPT or DATA (the log is shared with
    # other suites, so ours is one of the lines).
    assert any(l.endswith("ehlo=2 starttls=1 auth=1 quit=1 commands=5")
               for l in maillog_disconnects(testenv, offset))
    bad = MailSenderFactory.create_sender("smtp", submission_config(testenv, password="wrong-pw-123"))
    offset = os.path.getsize(log)
    with caplog.at_level(logging.WARNING, logger="outbound"):
        assert bad.test_connection() is False
    assert any("auth=0/1" in l and "mail=" not in l for l in maillog_disconnects(testenv, offset))
    [record] = [r for r in caplog.records if "connection test failed" in r.getMessage()]
    assert "535" in record.getMessage() and "wrong-pw-123" not in record.getMessage()
    with pytest.raises(MailAuthError):
        bad.verify()


def test_test_connection_sends_nothing(fault_server):
    """On a server that logs every command: AUTH, then QUIT; no MAIL, RCPT or DATA."""
    for mode, expected in [("accept", True), ("auth-fail", False)]:
        server = fault_server(mode)
        sender = MailSenderFactory.create_sender("smtp", {
            "server": "127.0.0.1", "port": server.port, "use_tls": False,
            "username": "alice", "password": "pw"})
        assert sender.test_connection() is expected
        commands = [c.split()[0].upper() for c in server.commands() if c.strip()]
        assert "AUTH" in commands, commands
        assert not {"MAIL", "RCPT", "DATA"} & set(commands), commands
        assert server.count("message") == 0


def test_sender_keeps_its_pool_across_calls(fault_server):
    server = fault_server("accept")
    sender = MailSenderFactory.create_sender("smtp", {"server": "127.0.0.1", "port": server.port,
                                                      "use_tls": False})
    for i in range(5):
        sender.send(MailMessage(to=f"r{i}@example.test", subject=f"pool {i}", html="<p>x</p>",
                                from_="app@example.test"))
    assert server.count("message") == 5
    assert server.count("connect") == 1  # one connection for all five
    sender.close()


def test_mail_message_is_a_dataclass():
    m = MailMessage(to="a@example.com", subject="s", html="<p>h</p>")
    assert dataclasses.is_dataclass(m)
    assert (m.to, m.subject, m.html, m.from_, m.cc, m.bcc, m.reply_to) == (
        "a@example.com", "s", "<p>h</p>", None, None, None, None)
    assert m == MailMessage(to="a@example.com", subject="s", html="<p>h</p>")
    assert m != MailMessage(to="b@example.com", subject="s", html="<p>h</p>")
    assert repr(m).startswith("MailMessage(to='a@example.com', subject='s'")
    m2 = MailMessage(to=["a@example.com", "b@example.com"], subject="s", html="h",
                     attachments=[("a.txt", b"hello", "text/plain")], headers={"X-A": "1"})
    assert m2.recipients == ["a@example.com", "b@example.com"]


def test_attachments_headers_and_text_reach_the_wire(tmp_path):
    path = tmp_path / "report.csv"
    path.write_text("a,b\n1,2\n")
    outdir = tmp_path / "out"
    sender = MailSenderFactory.create_sender("file", {"dir": str(outdir), "default_from": "app@example.com"})
    receipt = sender.deliver(MailMessage(
        to="a@example.com", subject="files", html="<p>see attached</p>", text="see attached",
        reply_to="help@example.com", bcc=["hidden@example.com"],
        attachments=[str(path), ("logo.png", b"\x89PNG\r\n", "image/png")],
        headers={"X-Campaign": "spring"}))
    [eml] = list(outdir.iterdir())
    data = eml.read_bytes()
    assert receipt.message_id.strip("<>").encode() in data
    for needle in (b"X-Campaign: spring", b"Reply-To: <help@example.com>", b'filename="report.csv"',
                   b'filename="logo.png"', b"image/png", b"text/plain"):
        assert needle in data, needle
    assert b"hidden@example.com" not in data.split(b"\r\n\r\n")[0]


class RecordingSender:
    """A Python sender plugged into the factory."""

    sent = []

    def __init__(self, config):
        self.config = config

    def send(self, message):
        RecordingSender.sent.append((self.config, message))

    def is_configured(self):
        return bool(self.config.get("token"))

    def test_connection(self):
        return True


def test_register_sender():
    MailSenderFactory.register_sender("recording", RecordingSender)
    try:
        assert "recording" in MailSenderFactory.get_supported_types()
        sender = MailSenderFactory.create_sender("recording", {"token": "t"})
        assert isinstance(sender, MailSender) and sender.is_configured()
        msg = MailMessage(to="a@example.com", subject="s", html="h")
        sender.send(msg)
        assert RecordingSender.sent[-1] == ({"token": "t"}, msg)
        via_dify = MailSenderFactory.create_from_dify_config({"MAIL_TYPE": "recording", "X_OTHER": "1"})
        assert isinstance(via_dify, RecordingSender)
        assert via_dify.config == {"MAIL_TYPE": "recording"}
    finally:
        MailSenderFactory._registry.pop("recording", None)
    assert "recording" not in MailSenderFactory.get_supported_types()


def test_supported_types():
    types = MailSenderFactory.get_supported_types()
    assert {"smtp", "resend", "sendgrid", "graph", "file", "memory"} <= set(types)


def test_create_from_dify_config_none_when_mail_type_empty():
    assert MailSenderFactory.create_from_dify_config(SimpleNamespace(MAIL_TYPE="")) is None
    assert MailSenderFactory.create_from_dify_config(SimpleNamespace(MAIL_TYPE=None, SMTP_SERVER="x")) is None
    assert MailSenderFactory.create_from_dify_config({}) is None


def test_create_from_dify_config_reads_both_oauth_spellings(token_server):
    base = dict(MAIL_TYPE="smtp", SMTP_SERVER="smtp.office365.com", SMTP_PORT=587,
                SMTP_USERNAME="app@example.com", SMTP_USE_TLS=True, SMTP_OPPORTUNISTIC_TLS=True,
                SMTP_AUTH_TYPE="oauth2", MICROSOFT_OAUTH2_AUTHORITY=token_server)
    seeds_001 = MailSenderFactory.create_from_dify_config(SimpleNamespace(
        **base, SMTP_CLIENT_ID="id", SMTP_CLIENT_SECRET="s", SMTP_TENANT_ID="contoso"))
    seeds_000 = MailSenderFactory.create_from_dify_config(dict(
        base, MICROSOFT_OAUTH2_CLIENT_ID="id", MICROSOFT_OAUTH2_CLIENT_SECRET="s",
        MICROSOFT_OAUTH2_TENANT_ID="contoso"))
    for sender in (seeds_001, seeds_000):
        assert sender is not None and sender.mail_type == "smtp"
        assert "starttls" in sender.describe()
    from outbound import MailConfigError
    with pytest.raises(MailConfigError):  # conflicting values
        MailSenderFactory.create_from_dify_config(dict(
            base, SMTP_CLIENT_ID="one", MICROSOFT_OAUTH2_CLIENT_ID="two",
            MICROSOFT_OAUTH2_CLIENT_SECRET="s", MICROSOFT_OAUTH2_TENANT_ID="contoso"))


def test_create_from_dify_config_with_os_environ_shape(tmp_path, monkeypatch):
    monkeypatch.setenv("MAIL_TYPE", "file")
    monkeypatch.setenv("MAIL_FILE_DIR", str(tmp_path))
    monkeypatch.setenv("MAIL_DEFAULT_SEND_FROM", "app@example.com")
    sender = MailSenderFactory.create_from_dify_config(os.environ)
    assert sender is not None and sender.mail_type == "file"
    sender.send(MailMessage(to="a@example.com", subject="env", html="<p>x</p>"))
    assert len(list(tmp_path.iterdir())) == 1


def test_debug_logging_shows_the_smtp_dialogue_with_auth_redacted(testenv, caplog):
    sender = MailSenderFactory.create_sender("smtp", submission_config(testenv))
    logger = logging.getLogger("outbound")
    with caplog.at_level(logging.DEBUG, logger="outbound"):
        sender.send(MailMessage(to=testenv.rcpt("debug-log"), subject="debug", html="<p>x</p>",
                                from_=testenv.user))
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("outbound")]
    assert any(l.startswith("C: EHLO") for l in lines), lines
    assert any(l.startswith("S: 220") for l in lines), lines
    assert any(l.startswith("C: STARTTLS") for l in lines), lines
    assert any(l.startswith("C: MAIL FROM:") for l in lines), lines
    auth = [l for l in lines if "AUTH" in l and l.startswith("C:")]
    assert auth and all("redacted" in l for l in auth), auth
    text = "\n".join(lines)
    assert testenv.password not in text
    import base64
    assert base64.b64encode(f"\0{testenv.user}\0{testenv.password}".encode()).decode() not in text
    assert {r.name for r in caplog.records} >= {"outbound.smtp.wire"}

    # At the default level (WARNING) the dialogue is not logged.
    caplog.clear()
    logger.setLevel(logging.NOTSET)
    with caplog.at_level(logging.WARNING, logger="outbound"):
        sender.send(MailMessage(to=testenv.rcpt("quiet-log"), subject="quiet", html="<p>x</p>",
                                from_=testenv.user))
    assert not [r for r in caplog.records if r.name == "outbound.smtp.wire"]


def token_requests_for(token_server, client_id):
    import json
    import urllib.request
    with urllib.request.urlopen(f"{token_server}/stats", timeout=10) as r:
        recent = json.load(r)["recent"]
    return sum(1 for e in recent if e.get("client_id") == client_id)


def test_oauth2_sender_keeps_its_token_cache_across_calls(testenv, maildir, token_server):
    """Five sends over XOAUTH2 from one sender, and a second sender for the same app: one
    token request in all (the library's process-wide, single-flight cache)."""
    import uuid
    client_id = f"outbound-py-cache-{uuid.uuid4().hex[:8]}"
    config = {
        "server": testenv.host, "port": testenv.submission, "use_tls": True,
        "opportunistic_tls": True, "ca_file": testenv.ca_file,
        "username": testenv["OUTBOUND_TEST_OAUTH_USER"], "auth_type": "oauth2",
        "oauth2_provider": "microsoft", "client_id": client_id, "client_secret": "cache-secret",
        "tenant_id": "contoso", "authority": token_server, "pool_size": 1,
        "default_from": testenv["OUTBOUND_TEST_OAUTH_USER"],
    }
    sender = MailSenderFactory.create_sender("smtp", config)
    rcpts = [testenv.rcpt("token-cache") for _ in range(5)]
    for r in rcpts:
        sender.send(MailMessage(to=r, subject="token cache", html="<p>x</p>"))
    sender.close()  # the next send opens a new connection, which authenticates again
    second = MailSenderFactory.create_sender("smtp", config)
    last = testenv.rcpt("token-cache-2")
    second.send(MailMessage(to=last, subject="token cache 2", html="<p>x</p>"))
    for r in rcpts + [last]:
        assert maildir.find(r), r
    assert token_requests_for(token_server, client_id) == 1
