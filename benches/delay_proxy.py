#!/usr/bin/env python3
"""A user-space TCP proxy that adds latency, for benchmarks at a realistic round-trip time (the
kernel here has no `tc netem`). Loopback only.

    delay_proxy.py --listen 127.0.0.1:2526 --target 127.0.0.1:2525 --delay-ms 20

Every byte is delayed by --delay-ms in each direction (so the round trip grows by twice that),
without limiting bandwidth: each direction has a reader that timestamps chunks and a writer
that releases each chunk when its time has come, in order. Opening the upstream connection is
delayed by one round trip (2 x delay), standing in for the TCP handshake a real network would
cost, so the server's greeting reaches the client 3 x delay after connect().

Prints `READY <port>` once listening (use --listen 127.0.0.1:0 for any free port). Stops on
SIGTERM/SIGINT, or by itself after --max-seconds (default 900) so it never outlives a run.
"""

import argparse
import asyncio
import signal
import socket
import sys
import time


async def pipe(reader, writer, delay):
    """Copies reader -> writer, each chunk released `delay` seconds after it was read."""
    queue = asyncio.Queue()

    async def read_side():
        try:
            while True:
                data = await reader.read(65536)
                queue.put_nowait((time.monotonic() + delay, data))
                if not data:
                    return
        except (ConnectionError, OSError):
            queue.put_nowait((time.monotonic() + delay, b""))

    async def write_side():
        try:
            while True:
                due, data = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass

    await asyncio.gather(read_side(), write_side())


async def handle(client_r, client_w, target, delay):
    try:
        await asyncio.sleep(2 * delay)  # the TCP handshake's round trip
        server_r, server_w = await asyncio.open_connection(*target)
    except OSError:
        client_w.close()
        return
    for w in (client_w, server_w):
        sock = w.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        await asyncio.gather(
            pipe(client_r, server_w, delay), pipe(server_r, client_w, delay)
        )
    finally:
        for w in (client_w, server_w):
            try:
                w.close()
            except Exception:
                pass


def hostport(s):
    host, _, port = s.rpartition(":")
    return host, int(port)


async def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--target", required=True)
    p.add_argument("--delay-ms", type=float, default=20.0)
    p.add_argument("--max-seconds", type=float, default=900.0)
    a = p.parse_args()
    listen, target = hostport(a.listen), hostport(a.target)
    for h in (listen[0], target[0]):
        if h not in ("127.0.0.1", "::1", "localhost"):
            sys.exit("delay_proxy: loopback addresses only")
    delay = a.delay_ms / 1000.0
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, target, delay), listen[0], listen[1]
    )
    port = server.sockets[0].getsockname()[1]
    print("READY %d" % port, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), a.max_seconds)
    except asyncio.TimeoutError:
        pass
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
