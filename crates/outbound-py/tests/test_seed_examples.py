"""The seeds' usage examples, as written, with only hosts and credentials replaced by the test
servers' values (and the import changed from Dify's `libs.mail` to `outbound`, which is the
point). Each delivered message is found in the Maildir, or read back from the provider.

Where a seed's example sets `use_tls=True` without `opportunistic_tls`, that means implicit
TLS (Dify's mapping), so the port is replaced by the test server's implicit-TLS port (465).
The test servers' certificate is trusted through `ca_file` / `SMTP_TLS_CA_FILE`.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from types import SimpleNamespace

from conftest import RESEND_KEY, SENDGRID_KEY, header, resend_get

README_EXT_MAIL = '''\
# api/extensions/ext_mail.py, delegating to Outbound (the package README's lines)
from outbound import Mail
from configs import dify_config

mail = Mail()


def is_enabled() -> bool:
    return bool(dify_config.MAIL_TYPE)


def init_app(app):
    mail.init_app(app, dify_config)
'''


def dify_smtp_config(testenv, rcpt_domain_user=None, **over):
    values = dict(
        MAIL_TYPE="smtp",
        MAIL_DEFAULT_SEND_FROM=testenv.user,
        SMTP_SERVER=testenv.host,
        SMTP_PORT=testenv.submission,
        SMTP_USERNAME=testenv.user,
        SMTP_PASSWORD=testenv.password,
        SMTP_USE_TLS=True,
        SMTP_OPPORTUNISTIC_TLS=True,
        SMTP_AUTH_TYPE="basic",
        SMTP_TLS_CA_FILE=testenv.ca_file,
    )
    values.update(over)
    return SimpleNamespace(**values)


def test_basic_usage_via_the_mail_extension(testenv, maildir, tmp_path, monkeypatch, capsys):
    # Dify's app layout: configs.dify_config and extensions/ext_mail.py as the README shows.
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "__init__.py").write_text("dify_config = None\n")
    (tmp_path / "extensions").mkdir()
    (tmp_path / "extensions" / "__init__.py").write_text("")
    (tmp_path / "extensions" / "ext_mail.py").write_text(README_EXT_MAIL)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("configs", "extensions", "extensions.ext_mail"):
        sys.modules.pop(name, None)
    import configs

    configs.dify_config = dify_smtp_config(testenv)
    ext_mail = importlib.import_module("extensions.ext_mail")
    assert ext_mail.is_enabled()
    ext_mail.init_app(SimpleNamespace(config={}))
    rcpt = testenv.rcpt("basic-ext")

    # --- the seed (000, "Basic Usage"), as written ---
    from extensions.ext_mail import mail

    # Send email
    mail_data = {
        "to": rcpt,
        "subject": "Test Email",
        "html": "<h1>Hello World</h1>"
    }

    try:
        mail._client.send(mail_data)
        print("Email sent successfully")
    except Exception as e:
        print(f"Failed to send email: {e}")
    # --- end of the seed ---

    assert capsys.readouterr().out == "Email sent successfully\n"
    assert mail.is_inited()
    [data] = maildir.find(rcpt)
    assert header(data, "Subject") == "Test Email"
    assert header(data, "From") == f"<{testenv.user}>"
    assert b"<h1>Hello World</h1>" in data

    # Dify's own call shape, mail.send(to, subject, html).
    rcpt2 = testenv.rcpt("basic-ext-send")
    mail.send(to=rcpt2, subject="Invitation", html="<p>Join us</p>")
    [data] = maildir.find(rcpt2)
    assert header(data, "Subject") == "Invitation"


def test_basic_usage_via_the_factory(testenv, maildir):
    dify_config = dify_smtp_config(testenv)
    rcpt = testenv.rcpt("basic-factory")

    # --- the seed (001, "Basic Usage"), as written ---
    from outbound import MailMessage, MailSenderFactory

    # Create mail message
    message = MailMessage(
        to=rcpt,
        subject="Test Email",
        html="<h1>Hello from Dify!</h1>",
        from_=testenv.user
    )

    # Create sender from configuration
    sender = MailSenderFactory.create_from_dify_config(dify_config)

    # Send email
    if sender and sender.is_configured():
        sender.send(message)
    # --- end of the seed ---

    [data] = maildir.find(rcpt)
    assert header(data, "Subject") == "Test Email"
    assert b"<h1>Hello from Dify!</h1>" in data
    # The derived text alternative is there too.
    assert b"text/plain" in data


def test_smtp_basic_auth_example(testenv, maildir):
    rcpt = testenv.rcpt("basic-auth")
    from outbound import MailMessage, MailSenderFactory

    # --- the seed (001, "SMTP Basic Auth Example"), as written ---
    # Configuration for SMTP Basic Auth
    config = {
        "server": testenv.host,
        "port": testenv.smtps,
        "username": testenv.user,
        "password": testenv.password,
        "use_tls": True,
        "auth_type": "basic",
        "default_from": testenv.user,
        "ca_file": testenv.ca_file,
    }

    # Create sender
    sender = MailSenderFactory.create_sender("smtp", config)

    # Create and send message
    message = MailMessage(
        to=rcpt,
        subject="Test Email - Basic Auth",
        html="<h1>Hello from Dify!</h1><p>This email was sent using SMTP Basic Auth.</p>",
        from_=testenv.user
    )

    sender.send(message)
    # --- end of the seed ---

    [data] = maildir.find(rcpt)
    assert header(data, "Subject") == "Test Email - Basic Auth"
    assert b"This email was sent using SMTP Basic Auth." in data
    assert "implicit" in sender.describe()


def test_microsoft_oauth2_example(testenv, maildir, token_server):
    rcpt = testenv.rcpt("oauth2")
    from outbound import MailMessage, MailSenderFactory

    # --- the seed (001, "Microsoft OAuth2 Example"), as written ---
    # Configuration for Microsoft OAuth2
    config = {
        "server": testenv.host,
        "port": testenv.smtps,
        "username": testenv["OUTBOUND_TEST_OAUTH_USER"],
        "use_tls": True,
        "auth_type": "oauth2",
        "oauth2_provider": "microsoft",
        "client_id": "outbound-py-seed-oauth2",
        "client_secret": "py-client-secret",
        "tenant_id": "contoso",
        "default_from": testenv["OUTBOUND_TEST_OAUTH_USER"],
        "authority": token_server,
        "ca_file": testenv.ca_file,
    }

    # Create sender
    sender = MailSenderFactory.create_sender("smtp", config)

    # Create and send message
    message = MailMessage(
        to=rcpt,
        subject="Test Email - OAuth2",
        html="<h1>Hello from Dify!</h1><p>This email was sent using Microsoft OAuth2.</p>",
        from_=testenv["OUTBOUND_TEST_OAUTH_USER"]
    )

    sender.send(message)
    # --- end of the seed ---

    [data] = maildir.find(rcpt)
    assert header(data, "Subject") == "Test Email - OAuth2"
    assert b"This email was sent using Microsoft OAuth2." in data


def test_resend_example(testenv, resend_local):
    from outbound import MailMessage, MailSenderFactory

    # --- the seed (001, "Resend Service"), as written ---
    config = {
        "api_key": RESEND_KEY,
        "default_from": "noreply@yourdomain.com",
        "api_url": resend_local,
    }

    sender = MailSenderFactory.create_sender("resend", config)
    # --- end of the seed ---

    message = MailMessage(to="ada@example.com", subject="Resend from Python", html="<p>Hi Ada</p>")
    receipt = sender.deliver(message)
    assert receipt.transport == "resend" and receipt.provider_id
    email = resend_get(resend_local, f"/emails/{receipt.provider_id}")
    assert email["from"] == "noreply@yourdomain.com"
    assert email["to"] == ["ada@example.com"]
    assert email["subject"] == "Resend from Python"
    assert email["html"] == "<p>Hi Ada</p>"
    assert sender.test_connection() is True


def test_sendgrid_example(testenv, sendgrid_server):
    from outbound import MailMessage, MailSenderFactory

    # --- the seed (001, "SendGrid Service"), as written ---
    config = {
        "api_key": SENDGRID_KEY,
        "default_from": "noreply@yourdomain.com",
        "api_url": sendgrid_server.url,
    }

    sender = MailSenderFactory.create_sender("sendgrid", config)
    # --- end of the seed ---

    message = MailMessage(
        to=["ada@example.com", "Bob <bob@example.com>"],
        cc=["carol@example.com"],
        subject="SendGrid from Python",
        html="<p>Hi</p>",
        text="Hi",
    )
    sender.send(message)
    assert sendgrid_server.problems == []
    [req] = sendgrid_server.requests
    body = req["body"]
    assert req["headers"]["authorization"] == f"Bearer {SENDGRID_KEY}"
    assert body["personalizations"] == [{
        "to": [{"email": "ada@example.com"}, {"email": "bob@example.com", "name": "Bob"}],
        "cc": [{"email": "carol@example.com"}],
    }]
    assert body["from"] == {"email": "noreply@yourdomain.com"}
    assert body["subject"] == "SendGrid from Python"
    assert body["content"] == [
        {"type": "text/plain", "value": "Hi"},
        {"type": "text/html", "value": "<p>Hi</p>"},
    ]
    assert sender.test_connection() is True


def test_oauth_token_management_example(testenv, token_server, capsys):
    # --- the seed (000, "OAuth Token Management"), as written ---
    from outbound.oauth_email import MicrosoftEmailOAuth

    # Initialize OAuth client
    oauth_client = MicrosoftEmailOAuth(
        client_id="outbound-py-seed-token",
        client_secret="py-client-secret",
        redirect_uri="",  # Not needed for client credentials
        tenant_id="contoso",
        authority=token_server,
    )

    # Get access token
    try:
        token_response = oauth_client.get_access_token_client_credentials()
        access_token = token_response["access_token"]
        print(f"Access token obtained: {access_token[:10]}...")
    except Exception as e:
        print(f"Failed to get OAuth token: {e}")
    # --- end of the seed ---

    out = capsys.readouterr().out
    assert out == f"Access token obtained: {access_token[:10]}...\n"
    assert access_token.startswith("eyJ")  # a JWT from the token server
    assert token_response["token_type"].lower() == "bearer"
    assert 3000 < token_response["expires_in"] <= 3600
    # The cache: a second call is the same token, with no new request.
    assert oauth_client.get_access_token_client_credentials()["access_token"] == access_token


def test_custom_smtp_client_with_oauth_access_token(testenv, maildir, token_server):
    from outbound.oauth_email import MicrosoftEmailOAuth

    token = MicrosoftEmailOAuth(
        "outbound-py-seed-client", "py-client-secret", tenant_id="contoso", authority=token_server
    ).get_access_token_client_credentials()["access_token"]
    rcpt = testenv.rcpt("smtpclient")

    # --- the seed (000, "Custom SMTP Client"), as written ---
    from outbound import SMTPClient

    # Create SMTP client with OAuth
    client = SMTPClient(
        server=testenv.host,
        port=testenv.submission,
        username=testenv["OUTBOUND_TEST_OAUTH_USER"],
        password="",  # Not used with OAuth
        from_addr=testenv["OUTBOUND_TEST_OAUTH_USER"],
        use_tls=True,
        opportunistic_tls=True,
        oauth_access_token=token,
        auth_type="oauth2",
        ca_file=testenv.ca_file,
    )

    # Send email
    mail_data = {
        "to": rcpt,
        "subject": "OAuth Test",
        "html": "<p>Sent via OAuth 2.0</p>"
    }

    client.send(mail_data)
    # --- end of the seed ---

    [data] = maildir.find(rcpt)
    assert header(data, "Subject") == "OAuth Test"
    assert header(data, "From") == f"<{testenv['OUTBOUND_TEST_OAUTH_USER']}>"


def test_dify_smtp_client_spelling(testenv, maildir):
    """Dify's own libs.smtp.SMTPClient spells the sender `_from` (and mail dicts use "from")."""
    from outbound import SMTPClient

    client = SMTPClient(
        server=testenv.host, port=testenv.submission, username=testenv.user,
        password=testenv.password, _from=testenv.user, use_tls=True, opportunistic_tls=True,
        ca_file=testenv.ca_file,
    )
    rcpt = testenv.rcpt("dify-from")
    client.send({"from": f"Dify <{testenv.user}>", "to": rcpt, "subject": "Dify spelling",
                 "html": "<p>x</p>", "cc": [testenv.rcpt("dify-cc")]})
    copies = maildir.find(rcpt, count=2)  # one for the To recipient, one for the Cc
    assert len(copies) == 2
    assert all(header(data, "From") == f'"Dify" <{testenv.user}>' for data in copies)


def test_testing_token_acquisition_script(testenv, token_server, capsys):
    # --- the seed (000, "Testing Token Acquisition"), as written (the function would be
    # collected by pytest under its own name, so it is defined here and called) ---
    from outbound.oauth_email import MicrosoftEmailOAuth

    def test_oauth_token():
        oauth_client = MicrosoftEmailOAuth(
            client_id="outbound-py-seed-testing",
            client_secret="py-client-secret",
            redirect_uri="",
            tenant_id="contoso",
            authority=token_server,
        )

        try:
            response = oauth_client.get_access_token_client_credentials()
            print("✓ OAuth token acquired successfully")
            print(f"Token type: {response.get('token_type')}")
            print(f"Expires in: {response.get('expires_in')} seconds")
            return True
        except Exception as e:
            print(f"✗ OAuth token acquisition failed: {e}")
            return False

    assert test_oauth_token() is True
    # --- end of the seed ---
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "✓ OAuth token acquired successfully"
    assert lines[1] == "Token type: Bearer"
    expires = int(lines[2].removeprefix("Expires in: ").removesuffix(" seconds"))
    assert 3000 < expires <= 3600


def test_token_acquisition_failure_is_reported(testenv, capsys):
    """The same script against a closed port prints the failure (and returns False)."""
    from outbound import MailConnectionError
    from outbound.oauth_email import MicrosoftEmailOAuth

    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    client = MicrosoftEmailOAuth("outbound-py-closed", "s3cr3t-closed-port", tenant_id="contoso",
                                 authority=f"http://127.0.0.1:{port}")
    try:
        client.get_access_token_client_credentials()
    except MailConnectionError as e:
        assert e.kind == "network" and e.retryable
        assert "s3cr3t-closed-port" not in str(e) and "s3cr3t-closed-port" not in repr(e)
    else:
        raise AssertionError("a closed port gave a token")


def test_authorization_code_helpers(testenv, token_server, maildir):
    """The redirect URI's flow: the authorization URL, redeeming the code, refreshing the
    token; the refreshed token then sends over XOAUTH2 (delegated, as the user)."""
    from urllib.parse import parse_qs, urlparse

    from outbound import SMTPClient
    from outbound.oauth_email import MicrosoftEmailOAuth

    oauth = MicrosoftEmailOAuth("outbound-py-authcode", "py-client-secret",
                                redirect_uri="http://localhost:5001/console/api/oauth/callback",
                                tenant_id="contoso", authority=token_server)
    url = urlparse(oauth.get_authorization_url(state="xyz"))
    assert f"{url.scheme}://{url.netloc}" == token_server
    assert url.path == "/contoso/oauth2/v2.0/authorize"
    q = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert q == {"client_id": "outbound-py-authcode", "response_type": "code",
                 "redirect_uri": "http://localhost:5001/console/api/oauth/callback",
                 "response_mode": "query", "state": "xyz",
                 "scope": "https://outlook.office.com/SMTP.Send offline_access"}

    first = oauth.exchange_code_for_token("code-from-the-redirect")
    assert first["access_token"].startswith("eyJ") and first["refresh_token"]
    assert first["token_type"].lower() == "bearer" and first["expires_in"] > 3000
    refreshed = oauth.refresh_access_token(first["refresh_token"])
    assert refreshed["access_token"].startswith("eyJ")
    assert refreshed["expires_in"] > 3000

    rcpt = testenv.rcpt("authcode")
    SMTPClient(testenv.host, testenv.submission, testenv["OUTBOUND_TEST_OAUTH_USER"], "",
               testenv["OUTBOUND_TEST_OAUTH_USER"], use_tls=True, opportunistic_tls=True,
               oauth_access_token=refreshed["access_token"], auth_type="oauth2",
               ca_file=testenv.ca_file).send({"to": rcpt, "subject": "delegated", "html": "<p>x</p>"})
    assert maildir.find(rcpt)
