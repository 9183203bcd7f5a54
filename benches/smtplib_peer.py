#!/usr/bin/env python3
"""Python smtplib as Dify uses it, the reference peer for benches/smtp-throughput.sh.

Dify's SMTP sender (api/libs/smtp.py) opens a new connection for every message:
smtplib.SMTP(server, port, timeout=10) [+ starttls()] or smtplib.SMTP_SSL(...), login() when a
user and password are set, builds a MIMEMultipart with one MIMEText part, sendmail(), quit().
`--mode new` does exactly that per message; `--mode reuse` opens one connection per thread and
sends every message of that thread over it (what a careful caller could do with smtplib).

Differences from Dify, on purpose: the TLS context verifies the server against --ca-file
(Dify's starttls()/SMTP_SSL() without a context does not verify certificates, which is slightly
cheaper); the MIMEText part is text/plain with the same body the other peers send.

Prints a human line and `RESULT peer=smtplib messages=.. rate=.. elapsed_s=.. cpu_us_per_msg=..
peak_rss_kib=..` (elapsed and CPU: first connection to last reply; interpreter start-up is not
counted).
Standard library only. Exit status 1 if any message failed.
"""

import argparse
import os
import resource
import smtplib
import ssl
import sys
import threading
import time
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

LINE = "The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs"


def body(size):
    """The same body as smtp_blast.rs: 76-character lines, `size` bytes in all."""
    out = []
    n = 0
    while n + len(LINE) + 2 <= size:
        out.append(LINE + "\r\n")
        n += len(LINE) + 2
    rest = size - n - 2
    if rest > 0:
        out.append(LINE[: min(rest, len(LINE))] + "\r\n")
    return "".join(out)


def peak_rss_kib():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return "?"


class Peer:
    def __init__(self, a):
        self.a = a
        self.ctx = None
        if a.tls != "none":
            self.ctx = ssl.create_default_context(cafile=a.ca_file)
        self.text = body(a.size)
        self.run = "%d-%d" % (os.getpid(), int(time.time() * 1000))

    def connect(self):
        a = self.a
        if a.tls == "implicit":
            smtp = smtplib.SMTP_SSL(a.host, a.port, timeout=10, context=self.ctx)
        else:
            smtp = smtplib.SMTP(a.host, a.port, timeout=10)
            if a.tls == "starttls":
                smtp.starttls(context=self.ctx)
        if a.user and a.password:
            smtp.login(a.user, a.password)
        return smtp

    def build(self, i):
        msg = MIMEMultipart()
        msg["Subject"] = "smtplib_peer %s %d" % (self.run, i)
        msg["From"] = self.a.sender
        msg["To"] = self.a.to
        msg["Message-ID"] = "<smtplib-%s-%d@example.test>" % (self.run, i)
        msg.attach(MIMEText(self.text, "plain"))
        return msg.as_string()

    def worker(self, indexes, errors):
        a = self.a
        smtp = None
        try:
            for i in indexes:
                try:
                    if smtp is None:
                        smtp = self.connect()
                    smtp.sendmail(a.sender, a.to, self.build(i))
                except Exception as e:  # count and go on, like a caller would
                    errors.append("message %d: %r" % (i, e))
                    smtp = None
                    continue
                if a.mode == "new":
                    smtp.quit()
                    smtp = None
        finally:
            if smtp is not None:
                try:
                    smtp.quit()
                except Exception:
                    pass


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=25)
    p.add_argument("--tls", choices=["none", "starttls", "implicit"], default="none")
    p.add_argument("--ca-file")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--mode", choices=["new", "reuse"], default="new")
    p.add_argument("--size", type=int, default=5120)
    p.add_argument("--from", dest="sender", default="bench@example.test")
    p.add_argument("--to", default="bench@example.test")
    a = p.parse_args()

    peer = Peer(a)
    errors = []
    # Messages are dealt round-robin to the threads (each thread: its own connection(s)).
    chunks = [range(t, a.count, a.threads) for t in range(a.threads)]
    threads = [threading.Thread(target=peer.worker, args=(c, errors)) for c in chunks]
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    sent = a.count - len(errors)
    rate = sent / elapsed
    if errors:
        print("smtplib_peer: %d failures, first: %s" % (len(errors), errors[0]), file=sys.stderr)
    rss = peak_rss_kib()
    cpu_us = cpu * 1e6 / max(sent, 1)
    print(
        "smtplib: %d/%d messages in %.3f s = %.1f msg/s (%s, %d threads); %.0f us CPU/msg; "
        "peak RSS %s KiB" % (sent, a.count, elapsed, rate, a.mode, a.threads, cpu_us, rss)
    )
    print(
        "RESULT peer=smtplib messages=%d failed=%d elapsed_s=%.4f rate=%.1f cpu_us_per_msg=%.0f "
        "peak_rss_kib=%s" % (sent, len(errors), elapsed, rate, cpu_us, rss)
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
