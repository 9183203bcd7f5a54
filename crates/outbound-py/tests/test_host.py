"""What a Python host needs: the GIL released during I/O, gevent greenlets not frozen by a
send, a forked child (Celery's prefork workers) sending with a runtime of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO, header
from outbound import MailMessage, MailSenderFactory, MailTimeoutError, _native


def start_delay_proxy(target_port: int, delay_ms: int):
    script = REPO / "benches" / "delay_proxy.py"
    proc = subprocess.Popen(
        [sys.executable, str(script), "--listen", "127.0.0.1:0", "--target", f"127.0.0.1:{target_port}",
         "--delay-ms", str(delay_ms), "--max-seconds", "120"],
        stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("READY "), f"delay_proxy.py did not start: {line!r}"
    return proc, int(line.split()[1])


def test_the_gil_is_released_while_sending(fault_server):
    server = fault_server("stall")
    sender = MailSenderFactory.create_sender("smtp", {"server": "127.0.0.1", "port": server.port,
                                                      "use_tls": False, "timeout": 1})
    ticks = 0
    stop = threading.Event()

    def tick():
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.005)

    t = threading.Thread(target=tick)
    t.start()
    time.sleep(0.05)
    before = ticks
    started = time.monotonic()
    with pytest.raises(MailTimeoutError):
        sender.send(MailMessage(to="a@example.test", subject="s", html="h", from_="b@example.test"))
    elapsed = time.monotonic() - started
    during = ticks - before
    stop.set()
    t.join()
    assert elapsed >= 0.9
    # ~1 s of 5 ms ticks: a held GIL would allow none.
    assert during >= 50, during


GEVENT_SCRIPT = r'''
from gevent import monkey
monkey.patch_all()
import json, sys, time
import gevent
from outbound import MailMessage, MailSenderFactory

port, rcpt, sender_addr = int(sys.argv[1]), sys.argv[2], sys.argv[3]
sender = MailSenderFactory.create_sender("smtp", {"server": "127.0.0.1", "port": port, "use_tls": False})
ticks = []
done = []

def send():
    t0 = time.monotonic()
    sender.send(MailMessage(to=rcpt, subject="gevent", html="<p>from a greenlet</p>", from_=sender_addr))
    done.append((t0, time.monotonic()))

def counter():
    while not done:
        ticks.append(time.monotonic())
        gevent.sleep(0.01)

gevent.joinall([gevent.spawn(send), gevent.spawn(counter)], raise_error=True)
(t0, t1) = done[0]
inside = [t for t in ticks if t0 <= t <= t1]
print(json.dumps({"send_seconds": t1 - t0, "ticks_during_send": len(inside)}))
'''


def test_gevent_greenlets_keep_running_during_a_send(testenv, maildir, tmp_path):
    # A slow server: Postfix on port 25 behind a proxy that delays every byte 100 ms.
    proxy, port = start_delay_proxy(testenv.plain, 100)
    try:
        script = tmp_path / "gevent_send.py"
        script.write_text(GEVENT_SCRIPT)
        rcpt = testenv.rcpt("gevent")
        out = subprocess.run([sys.executable, str(script), str(port), rcpt, testenv.user],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        import json
        result = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        proxy.terminate()
        proxy.wait()
    # Greeting, EHLO, MAIL/RCPT/DATA, the final dot: several 200 ms round trips.
    assert result["send_seconds"] >= 0.8, result
    # Ticking every 10 ms: a frozen hub would give 0 or 1.
    assert result["ticks_during_send"] >= 0.5 * result["send_seconds"] / 0.01, result
    [data] = maildir.find(rcpt)
    assert header(data, "Subject") == "gevent"


def test_fork_send_then_send_from_the_child(testenv, maildir):
    sender = MailSenderFactory.create_sender("smtp", {
        "server": testenv.host, "port": testenv.submission, "username": testenv.user,
        "password": testenv.password, "use_tls": True, "opportunistic_tls": True,
        "ca_file": testenv.ca_file})
    before = testenv.rcpt("fork-parent-before")
    sender.send(MailMessage(to=before, subject="before fork", html="<p>1</p>", from_=testenv.user))
    assert _native.runtime_pid() == os.getpid()
    in_child = testenv.rcpt("fork-child")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            os.close(r)
            sender.send(MailMessage(to=in_child, subject="from the child", html="<p>2</p>",
                                    from_=testenv.user))
            os.write(w, f"{_native.runtime_pid()}".encode())
            code = 0
        except BaseException as e:  # report, never return into pytest in the child
            os.write(w, f"error {e!r}".encode())
        finally:
            os._exit(code)
    os.close(w)
    report = b""
    while chunk := os.read(r, 4096):
        report += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0, report
    assert int(report) == pid  # the child built a runtime of its own
    # The parent's pooled connection is still its own and works.
    after = testenv.rcpt("fork-parent-after")
    sender.send(MailMessage(to=after, subject="after fork", html="<p>3</p>", from_=testenv.user))
    for rcpt, subject in [(before, "before fork"), (in_child, "from the child"), (after, "after fork")]:
        [data] = maildir.find(rcpt)
        assert header(data, "Subject") == subject


def test_abi3_wheel_tag():
    """The installed extension is built for the stable ABI (loads on any CPython >= 3.9)."""
    path = Path(_native.__file__)
    assert path.name.endswith(".abi3.so"), path.name
