"""Every exception class raised by a real failure (Postfix + Dovecot, a closed port, the
scriptable fault server), with its attributes asserted."""

from __future__ import annotations

import socket

import pytest

import outbound
from outbound import (
    InvalidMessageError,
    MailAmbiguousError,
    MailAuthError,
    MailConfigError,
    MailConnectionError,
    MailError,
    MailMessage,
    MailSendError,
    MailSenderFactory,
    MailTimeoutError,
)


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def submission(testenv, **over):
    config = {
        "server": testenv.host,
        "port": testenv.submission,
        "username": testenv.user,
        "password": testenv.password,
        "use_tls": True,
        "opportunistic_tls": True,
        "ca_file": testenv.ca_file,
        "timeout": 10,
    }
    config.update(over)
    return MailSenderFactory.create_sender("smtp", config)


def plain(port, **over):
    config = {"server": "127.0.0.1", "port": port, "use_tls": False, "timeout": 2}
    config.update(over)
    return MailSenderFactory.create_sender("smtp", config)


def message(testenv, name="err"):
    return MailMessage(to=testenv.rcpt(name), subject="error test", html="<p>x</p>", from_=testenv.user)


def test_hierarchy():
    for cls in (MailConfigError, MailAuthError, MailConnectionError, MailTimeoutError, MailSendError):
        assert issubclass(cls, MailError)
    assert issubclass(MailAmbiguousError, MailSendError)
    assert issubclass(InvalidMessageError, ValueError) and issubclass(InvalidMessageError, MailError)


def test_wrong_password_is_an_auth_error(testenv):
    sender = submission(testenv, password="not-the-password")
    with pytest.raises(MailAuthError) as info:
        sender.send(message(testenv, "wrong-pw"))
    e = info.value
    assert e.kind == "auth"
    assert e.retryable is False
    assert e.smtp_code == 535 and e.code == 535
    assert e.enhanced_code == "5.7.8"
    assert "authentication failed" in (e.server_text or "").lower()
    assert e.http_status is None
    assert "not-the-password" not in str(e) and "not-the-password" not in repr(e)


def test_unreachable_port_is_a_connection_error():
    sender = plain(closed_port())
    with pytest.raises(MailConnectionError) as info:
        sender.send(MailMessage(to="a@example.test", subject="s", html="h", from_="b@example.test"))
    e = info.value
    assert e.kind == "network"
    assert e.retryable is True
    assert e.smtp_code is None and e.enhanced_code is None and e.http_status is None
    assert "refused" in str(e).lower()


def test_exceptions_survive_pickling(testenv):
    """Celery stores a failed task's exception by pickling it."""
    import pickle
    sender = submission(testenv, password="not-the-password")
    with pytest.raises(MailAuthError) as info:
        sender.verify()
    copy = pickle.loads(pickle.dumps(info.value))
    assert type(copy) is MailAuthError and str(copy) == str(info.value)
    assert (copy.kind, copy.retryable, copy.smtp_code, copy.enhanced_code, copy.server_text) == (
        "auth", False, 535, "5.7.8", info.value.server_text)


def test_untrusted_certificate_is_a_tls_connection_error(testenv):
    # No CA file: the test server's self-signed certificate is not trusted.
    sender = submission(testenv, ca_file=None)
    with pytest.raises(MailConnectionError) as info:
        sender.verify()
    assert info.value.kind == "tls"
    assert info.value.retryable is False


def test_stalled_greeting_is_a_timeout(fault_server):
    server = fault_server("stall")
    sender = plain(server.port, timeout=1)
    with pytest.raises(MailTimeoutError) as info:
        sender.send(MailMessage(to="a@example.test", subject="s", html="h", from_="b@example.test"))
    e = info.value
    assert e.kind == "timeout"
    assert e.retryable is True
    assert e.smtp_code is None
    assert server.count("message") == 0


def test_rejected_recipient_is_a_send_error(testenv):
    sender = submission(testenv)
    msg = MailMessage(to=testenv["OUTBOUND_TEST_REJECT_RCPT"], subject="reject", html="<p>x</p>",
                      from_=testenv.user)
    with pytest.raises(MailSendError) as info:
        sender.send(msg)
    e = info.value
    assert type(e) is MailSendError
    assert e.kind == "permanent"
    assert e.retryable is False
    assert e.smtp_code is not None and 500 <= e.smtp_code < 600
    assert e.enhanced_code is not None and e.enhanced_code.startswith("5.")
    assert testenv["OUTBOUND_TEST_REJECT_RCPT"].split("@")[0] in (e.server_text or "") + str(e)


def test_partly_rejected_recipients_are_reported(testenv, maildir):
    sender = submission(testenv)
    good = testenv.rcpt("partial")
    receipt = sender.deliver(MailMessage(to=[good, testenv["OUTBOUND_TEST_REJECT_RCPT"]],
                                         subject="partial", html="<p>x</p>", from_=testenv.user))
    assert receipt.accepted == [good]
    [rejected] = receipt.rejected
    assert rejected.address == testenv["OUTBOUND_TEST_REJECT_RCPT"]
    assert 500 <= rejected.code < 600
    assert maildir.find(good)


def test_temporary_failure_at_data_is_a_retryable_send_error(fault_server):
    server = fault_server("tempfail-data")
    sender = plain(server.port)
    with pytest.raises(MailSendError) as info:
        sender.send(MailMessage(to="a@example.test", subject="s", html="h", from_="b@example.test"))
    e = info.value
    assert e.kind == "transient" and e.retryable is True
    assert e.smtp_code == 451 and e.enhanced_code == "4.3.0"
    assert "try again later" in (e.server_text or "").lower()


@pytest.mark.parametrize("mode", ["drop-after-data", "stall-after-data"])
def test_failure_after_data_is_ambiguous(fault_server, mode):
    server = fault_server(mode)
    sender = plain(server.port, timeout=1)
    with pytest.raises(MailAmbiguousError) as info:
        sender.send(MailMessage(to="a@example.test", subject="s", html="h", from_="b@example.test"))
    e = info.value
    assert e.kind == "ambiguous"
    assert e.retryable is False
    assert isinstance(e, MailSendError)
    assert server.count("data-end") == 1  # the whole message went out, once


def test_bad_configuration_is_a_config_error():
    with pytest.raises(MailConfigError) as info:
        MailSenderFactory.create_sender("smtp", {"server": "smtp.example.com", "port": "seventy"})
    e = info.value
    assert e.kind == "config" and e.retryable is False
    assert "`port`" in str(e)
    with pytest.raises(MailConfigError) as info:
        MailSenderFactory.create_sender("smtp", {"server": "smtp.example.com", "colour": "blue"})
    assert "`colour`" in str(info.value)
    with pytest.raises(MailConfigError) as info:
        MailSenderFactory.create_sender("carrier-pigeon", {})
    assert "smtp" in str(info.value)
    # OPPORTUNISTIC without USE_TLS is a config error (Dify's flags).
    with pytest.raises(MailConfigError):
        MailSenderFactory.create_sender("smtp", {"server": "h.example", "use_tls": False,
                                                 "opportunistic_tls": True})


def test_oauth2_without_client_settings_is_a_config_error():
    with pytest.raises(MailConfigError) as info:
        MailSenderFactory.create_sender("smtp", {"server": "smtp.office365.com", "port": 587,
                                                 "use_tls": True, "opportunistic_tls": True,
                                                 "auth_type": "oauth2", "username": "a@example.com"})
    assert "client_id" in str(info.value) or "client" in str(info.value)


def test_invalid_messages_raise_value_errors(testenv):
    for field, kwargs in [
        ("to", dict(to="", subject="s", html="h")),
        ("to", dict(to=[], subject="s", html="h")),
        ("subject", dict(to="a@example.com", subject="", html="h")),
        ("html", dict(to="a@example.com", subject="s", html="")),
    ]:
        with pytest.raises(ValueError, match=f"MailMessage.{field} is required"):
            MailMessage(**kwargs)
    sender = MailSenderFactory.create_sender("memory", {"default_from": "app@example.com"})
    # Header injection and malformed addresses are refused by the library.
    with pytest.raises(InvalidMessageError) as info:
        sender.send(MailMessage(to="a@example.com", subject="hi\r\nBcc: evil@example.com", html="h"))
    assert info.value.kind == "invalid_message" and isinstance(info.value, ValueError)
    with pytest.raises(InvalidMessageError):
        sender.send(MailMessage(to="not an address", subject="s", html="h"))
    # No sender at all.
    bare = MailSenderFactory.create_sender("memory", {})
    with pytest.raises(InvalidMessageError) as info:
        bare.send(MailMessage(to="a@example.com", subject="s", html="h"))
    assert info.value.setting == "default_from"


def test_exceptions_are_exported():
    for name in ("MailError", "MailConfigError", "MailAuthError", "MailConnectionError",
                 "MailTimeoutError", "MailSendError", "MailAmbiguousError", "InvalidMessageError"):
        assert getattr(outbound, name).__module__ == "outbound._errors"
