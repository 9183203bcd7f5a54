#!/usr/bin/env python3
"""200 messages to Postfix 587 (STARTTLS + AUTH PLAIN) from Python, three ways, in one run:

  outbound       the `outbound` package (one sender: pooled, pipelined connections),
                 sequential sends from one thread (HTML only, as Dify sends, so the library
                 derives the text part; and with a text part given), and from --threads threads
  smtplib-dify   smtplib the way Dify's libs/smtp.py sends: a new connection per message
                 (SMTP(), ehlo, starttls, ehlo, login, sendmail, quit)
  smtplib-reuse  smtplib over one reused connection (the best a careful smtplib caller gets)

    python3 benches/python-send.py [--messages 200] [--threads 3] [--size 5000]

Reads the test servers' settings from $OUTBOUND_TESTENV_DIR/env (default
/tmp/outbound-testenv/env): host, port 587, user, password and the CA file. Every peer
verifies the server certificate against that CA file (Dify's starttls() without a context
would not). Prints a table with messages per second and the ratio to Dify's way.
Needs the package installed (`pip install ./crates/outbound-py`).
"""

import argparse
import os
import smtplib
import ssl
import sys
import threading
import time
import uuid
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path


def load_env():
    path = Path(os.environ.get("OUTBOUND_TESTENV_DIR") or "/tmp/outbound-testenv") / "env"
    if not path.exists():
        sys.exit(f"{path} not found: run testenv/smtp-servers.sh start")
    env = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            env[k.strip()] = v.strip()
    return env


LINE = "The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs"


def html_body(size):
    lines, n = [], 0
    while n + len(LINE) + 9 <= size:
        lines.append(f"<p>{LINE}</p>")
        n += len(LINE) + 9
    return "\n".join(lines)


def rcpt(env, run, i):
    return f"pybench-{run}-{i}@{env['OUTBOUND_TEST_DOMAIN']}"


def dify_message(sender, to, subject, html):
    msg = MIMEMultipart()
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = to
    msg.attach(MIMEText(html, "html"))
    return msg.as_string()


def smtplib_dify(env, n, html, run):
    ctx = ssl.create_default_context(cafile=env["OUTBOUND_TEST_CA_FILE"])
    host, port = env["OUTBOUND_TEST_SMTP_HOST"], int(env["OUTBOUND_TEST_PORT_SUBMISSION"])
    user, pw = env["OUTBOUND_TEST_USER"], env["OUTBOUND_TEST_PASSWORD"]
    for i in range(n):
        smtp = smtplib.SMTP(host, port, timeout=10)
        smtp.ehlo(host)
        smtp.starttls(context=ctx)
        smtp.ehlo(host)
        smtp.login(user, pw)
        to = rcpt(env, run, i)
        smtp.sendmail(user, to, dify_message(user, to, f"dify {i}", html))
        smtp.quit()


def smtplib_reuse(env, n, html, run):
    ctx = ssl.create_default_context(cafile=env["OUTBOUND_TEST_CA_FILE"])
    host, port = env["OUTBOUND_TEST_SMTP_HOST"], int(env["OUTBOUND_TEST_PORT_SUBMISSION"])
    user, pw = env["OUTBOUND_TEST_USER"], env["OUTBOUND_TEST_PASSWORD"]
    smtp = smtplib.SMTP(host, port, timeout=10)
    smtp.ehlo(host)
    smtp.starttls(context=ctx)
    smtp.ehlo(host)
    smtp.login(user, pw)
    for i in range(n):
        to = rcpt(env, run, i)
        smtp.sendmail(user, to, dify_message(user, to, f"reuse {i}", html))
    smtp.quit()


def outbound_sender(env):
    from outbound import MailSenderFactory

    return MailSenderFactory.create_sender("smtp", {
        "server": env["OUTBOUND_TEST_SMTP_HOST"],
        "port": env["OUTBOUND_TEST_PORT_SUBMISSION"],
        "username": env["OUTBOUND_TEST_USER"],
        "password": env["OUTBOUND_TEST_PASSWORD"],
        "use_tls": True,
        "opportunistic_tls": True,
        "ca_file": env["OUTBOUND_TEST_CA_FILE"],
    })


def outbound_sequential(with_text):
    def run_it(env, n, html, run):
        from outbound import MailMessage

        sender = outbound_sender(env)
        # Without `text` the library derives the text/plain alternative from the HTML.
        text = "Hello from the benchmark. " * (len(html) // 26) if with_text else None
        for i in range(n):
            sender.send(MailMessage(to=rcpt(env, run, i), subject=f"outbound {i}", html=html,
                                    text=text, from_=env["OUTBOUND_TEST_USER"]))
        sender.close()

    return run_it


def outbound_threads(threads):
    def run_it(env, n, html, run):
        from outbound import MailMessage

        sender = outbound_sender(env)
        errors = []

        def work(k):
            try:
                for i in range(k, n, threads):
                    sender.send(MailMessage(to=rcpt(env, run, i), subject=f"outbound-mt {i}",
                                            html=html, from_=env["OUTBOUND_TEST_USER"]))
            except Exception as e:  # reported after the run
                errors.append(e)

        ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        sender.close()
        if errors:
            raise errors[0]

    return run_it


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=200)
    p.add_argument("--threads", type=int, default=3)
    p.add_argument("--size", type=int, default=5000, help="approximate HTML body size in bytes")
    p.add_argument("--runs", type=int, default=3, help="runs per peer, round-robin; the median is shown")
    a = p.parse_args()
    env = load_env()
    html = html_body(a.size)
    import outbound  # fail early when the package is missing

    peers = [
        ("smtplib, new connection per message (Dify's way)", smtplib_dify),
        ("smtplib, one reused connection", smtplib_reuse),
        ("outbound package, 1 thread", outbound_sequential(False)),
        ("outbound package, 1 thread, text part given", outbound_sequential(True)),
        (f"outbound package, {a.threads} threads (one sender)", outbound_threads(a.threads)),
    ]
    timings = {name: [] for name, _ in peers}
    for r in range(a.runs):
        for name, fn in peers:
            run = uuid.uuid4().hex[:6]
            cpu0, t0 = time.process_time(), time.perf_counter()
            fn(env, a.messages, html, run)
            elapsed = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
            timings[name].append((elapsed, cpu))
            print(f"  run {r + 1}: {name}: {a.messages} in {elapsed:.2f} s", file=sys.stderr)
    results = []
    for name, _ in peers:
        runs = sorted(timings[name])
        elapsed, cpu = runs[len(runs) // 2]
        results.append((name, elapsed, cpu, a.messages / runs[-1][0], a.messages / runs[0][0]))

    base = a.messages / results[0][1]
    print(f"\n{a.messages} messages (~{a.size} B HTML) to Postfix {env['OUTBOUND_TEST_SMTP_HOST']}:"
          f"{env['OUTBOUND_TEST_PORT_SUBMISSION']} (STARTTLS + AUTH PLAIN), outbound {outbound.__version__}, "
          f"Python {sys.version.split()[0]}\n")
    print(f"median of {a.runs} runs per peer (round-robin); msg/s range in brackets; CPU is this "
          f"process's (Python and the package's I/O threads)\n")
    print(f"| {'peer':<52} | {'seconds':>7} | {'msg/s (min-max)':>17} | {'CPU ms/msg':>10} | {'vs Dify':>7} |")
    print(f"|{'-' * 54}|{'-' * 9}|{'-' * 19}|{'-' * 12}|{'-' * 9}|")
    for name, elapsed, cpu, low, high in results:
        rate = a.messages / elapsed
        spread = f"{rate:.0f} ({low:.0f}-{high:.0f})"
        print(f"| {name:<52} | {elapsed:7.2f} | {spread:>17} | {1000 * cpu / a.messages:10.2f} | {rate / base:6.1f}x |")


if __name__ == "__main__":
    main()
