"""Fixtures for the Python package's tests, against the real test servers.

The servers are the ones `testenv/smtp-servers.sh start` (Postfix + Dovecot, the OAuth2 token
server, aiosmtpd for the fault server) and `testenv/resend-local/server.sh start` run; their
settings are read from `$OUTBOUND_TESTENV_DIR/env` (default /tmp/outbound-testenv/env). A test
whose server is missing fails, saying which to start; none skips.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Optional

import pytest

NOT_RUNNING = "test servers not running: run testenv/smtp-servers.sh start"
REPO = Path(__file__).resolve().parents[3]


def load_env() -> Dict[str, str]:
    root = Path(os.environ.get("OUTBOUND_TESTENV_DIR") or "/tmp/outbound-testenv")
    path = root / "env"
    if not path.exists():
        pytest.fail(f"{NOT_RUNNING} ({path} does not exist)", pytrace=False)
    env: Dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            env[key] = value
    return env


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


class TestEnv(dict):
    """The env file, with the values tests use most."""

    @property
    def host(self) -> str:
        return self["OUTBOUND_TEST_SMTP_HOST"]

    @property
    def submission(self) -> int:
        return int(self["OUTBOUND_TEST_PORT_SUBMISSION"])

    @property
    def smtps(self) -> int:
        return int(self["OUTBOUND_TEST_PORT_SMTPS"])

    @property
    def plain(self) -> int:
        return int(self["OUTBOUND_TEST_PORT_PLAIN"])

    @property
    def ca_file(self) -> str:
        return self["OUTBOUND_TEST_CA_FILE"]

    @property
    def user(self) -> str:
        return self["OUTBOUND_TEST_USER"]

    @property
    def password(self) -> str:
        return self["OUTBOUND_TEST_PASSWORD"]

    @property
    def oauth_url(self) -> str:
        return self["OUTBOUND_TEST_OAUTH_URL"]

    def rcpt(self, name: str = "py") -> str:
        return f"{name}-{uuid.uuid4().hex[:8]}@{self['OUTBOUND_TEST_DOMAIN']}"


@pytest.fixture(scope="session")
def testenv() -> TestEnv:
    env = TestEnv(load_env())
    for port in (env.submission, env.smtps, env.plain):
        if not port_open(env.host, port):
            pytest.fail(f"{NOT_RUNNING} (nothing listens on {env.host}:{port})", pytrace=False)
    return env


@pytest.fixture(scope="session")
def token_server(testenv: TestEnv) -> str:
    url = testenv.oauth_url
    hostport = url.split("://", 1)[1].rstrip("/")
    host, port = hostport.rsplit(":", 1)
    if not port_open(host, int(port)):
        pytest.fail(f"{NOT_RUNNING} (the OAuth2 token server {url} is not listening)", pytrace=False)
    return url


def token_requests(url: str) -> int:
    with urllib.request.urlopen(f"{url}/stats", timeout=10) as r:
        return int(json.load(r)["token_requests"])


class Maildir:
    """The shared catch-all Maildir Postfix delivers to. Other suites deliver there too, so
    messages are found by a unique token (the subject or Message-ID)."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def find(self, token: str, timeout: float = 15.0, count: int = 1) -> List[bytes]:
        deadline = time.time() + timeout
        needle = token.encode()
        started = time.time() - 120  # files written since shortly before the test
        while True:
            found = []
            for sub in ("new", "cur"):
                d = self.root / sub
                try:
                    entries = list(os.scandir(d))
                except FileNotFoundError:
                    continue
                for e in entries:
                    try:
                        if e.stat().st_mtime < started:
                            continue
                        data = Path(e.path).read_bytes()
                    except FileNotFoundError:
                        continue
                    if needle in data:
                        found.append(data)
            if len(found) >= count or time.time() > deadline:
                return found
            time.sleep(0.1)


@pytest.fixture(scope="session")
def maildir(testenv: TestEnv) -> Maildir:
    return Maildir(testenv["OUTBOUND_TEST_MAILDIR"])


def header(data: bytes, name: str) -> Optional[str]:
    """An unfolded header value from a raw message."""
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].decode("utf-8", "replace")
    head = re.sub(r"\r?\n[ \t]+", " ", head)
    for line in head.splitlines():
        if line.lower().startswith(name.lower() + ":"):
            return line.split(":", 1)[1].strip()
    return None


class FaultServer:
    """testenv/fault_smtpd.py in one mode on a free port; its JSON log is readable."""

    def __init__(self, testenv: TestEnv, mode: str, tmp: Path, *extra: str) -> None:
        script = Path(testenv.get("OUTBOUND_TEST_FAULT_SMTPD") or REPO / "testenv/fault_smtpd.py")
        if not script.exists():
            script = REPO / "testenv/fault_smtpd.py"
        if not script.exists():
            pytest.fail(f"{NOT_RUNNING} ({script} does not exist)", pytrace=False)
        self.log = tmp / f"fault-{mode}.log"
        python = testenv.get("OUTBOUND_TEST_PYTHON") or sys.executable
        self.proc = subprocess.Popen(
            [python, str(script), "--mode", mode, "--port", "0", "--log", str(self.log), *extra],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("READY "):
            self.proc.kill()
            pytest.fail(f"fault_smtpd.py --mode {mode} did not start (aiosmtpd missing?): {line!r}")
        self.port = int(line.split()[1])
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def events(self) -> List[dict]:
        try:
            return [json.loads(l) for l in self.log.read_text().splitlines() if l.strip()]
        except FileNotFoundError:
            return []

    def count(self, event: str) -> int:
        return sum(1 for e in self.events() if e["event"] == event)

    def commands(self) -> List[str]:
        return [e["line"] for e in self.events() if e["event"] == "cmd"]

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def fault_server(testenv: TestEnv, tmp_path: Path):
    servers: List[FaultServer] = []

    def start(mode: str, *extra: str) -> FaultServer:
        s = FaultServer(testenv, mode, tmp_path, *extra)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


RESEND_KEY = "re_outbound_python_test"


@pytest.fixture(scope="session")
def resend_local() -> str:
    url = (os.environ.get("OUTBOUND_RESEND_LOCAL_URL") or "http://127.0.0.1:8025").rstrip("/")
    req = urllib.request.Request(f"{url}/domains", headers={"Authorization": f"Bearer {RESEND_KEY}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200
    except Exception as e:
        pytest.fail(
            f"resend-local is not running at {url} ({e}): start it with testenv/resend-local/server.sh start",
            pytrace=False,
        )
    return url


def resend_get(url: str, path: str) -> dict:
    req = urllib.request.Request(f"{url}{path}", headers={"Authorization": f"Bearer {RESEND_KEY}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


SENDGRID_KEY = "SG.python-test.key"


class SendGridServer:
    """A local stand-in for SendGrid's v3 API that checks each request's shape the way
    SendGrid documents it (POST /v3/mail/send: Bearer key, JSON with personalizations,
    from, subject, content with text/plain before text/html; 202 with X-Message-Id) and
    answers 400 with SendGrid's error body when it does not match. GET /v3/scopes lists
    mail.send."""

    def __init__(self) -> None:
        self.requests: List[dict] = []
        self.problems: List[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def reply(self, status: int, body: Optional[dict] = None, headers: Optional[dict] = None):
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if body is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def authorized(self) -> bool:
                if self.headers.get("Authorization") != f"Bearer {SENDGRID_KEY}":
                    self.reply(401, {"errors": [{"field": None, "message": "authorization required"}]})
                    return False
                return True

            def do_GET(self):
                if self.path == "/v3/scopes" and self.authorized():
                    self.reply(200, {"scopes": ["mail.send", "user.profile.read"]})
                elif self.path != "/v3/scopes":
                    self.reply(404, {"errors": [{"message": "not found"}]})

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/v3/mail/send":
                    return self.reply(404, {"errors": [{"message": "not found"}]})
                if not self.authorized():
                    return
                problems = []
                if self.headers.get("Content-Type") != "application/json":
                    problems.append("content-type must be application/json")
                try:
                    doc = json.loads(body)
                except ValueError:
                    return self.reply(400, {"errors": [{"message": "invalid JSON", "field": None}]})
                problems += check_sendgrid_mail(doc)
                outer.requests.append({"headers": {k.lower(): v for k, v in self.headers.items()}, "body": doc})
                if problems:
                    outer.problems += problems
                    return self.reply(400, {"errors": [{"message": p, "field": None} for p in problems]})
                self.reply(202, None, {"X-Message-Id": f"sg-{len(outer.requests)}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


def check_sendgrid_mail(doc: dict) -> List[str]:
    """SendGrid v3 mail/send's required shape (its API reference)."""
    problems = []
    allowed = {"personalizations", "from", "reply_to", "reply_to_list", "subject", "content",
               "attachments", "headers", "categories", "custom_args", "template_id", "send_at"}
    extra = set(doc) - allowed
    if extra:
        problems.append(f"unknown fields {sorted(extra)}")
    ps = doc.get("personalizations")
    if not isinstance(ps, list) or not ps:
        problems.append("personalizations must be a non-empty list")
    else:
        for p in ps:
            if not p.get("to"):
                problems.append("each personalization needs to")
            for field in ("to", "cc", "bcc"):
                for r in p.get(field, []):
                    if not isinstance(r, dict) or "@" not in r.get("email", ""):
                        problems.append(f"{field} entries must be {{email, name?}}")
    frm = doc.get("from")
    if not isinstance(frm, dict) or "@" not in frm.get("email", ""):
        problems.append("from must be {email, name?}")
    if not doc.get("subject"):
        problems.append("subject is required")
    content = doc.get("content")
    if not isinstance(content, list) or not content:
        problems.append("content must be a non-empty list")
    else:
        types = [c.get("type") for c in content]
        if "text/plain" in types and types.index("text/plain") != 0:
            problems.append("text/plain must come first in content")
        if any(not c.get("value") for c in content):
            problems.append("content values must be non-empty")
    return problems


@pytest.fixture
def sendgrid_server():
    s = SendGridServer()
    yield s
    s.stop()
