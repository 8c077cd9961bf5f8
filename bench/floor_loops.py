"""The two bare fixed-GET loops of bench/floor.py: the floor of a Python generator, and the replayer's client on it.

Both send the same request (``GET /stock/find/1``, the head ``wdmreplay.replayer.http.Origin``
writes) over ``--connections`` keep-alive connections until ``--requests`` responses have come
back, reading every body, on the event loop the replayer uses (uvloop when importable):

- ``callback``: one ``asyncio.Protocol`` per connection with an ``httptools`` response parser; the
  next request is written from the parser's ``on_message_complete`` callback. No coroutine, Task
  or Future per request, no timer, no pool: what is left is the event loop's read and write
  callbacks, the parser and the system calls. It proves how little CPU a request *can* cost a
  Python generator on this machine — the floor under every Python row of the bench.
- ``exchange``: ``--connections`` coroutines, each awaiting ``Origin.exchange`` (the replayer's own
  transport: slots, the pooled connection, a Future per request, the deadline queue) on one
  ``wdmreplay.replayer.http.HttpClient``. Minus ``callback`` it proves what the coroutine client
  costs per request over the bare loop, with no trace, schedule or results around it.

Each prints one JSON line: {"loop", "event_loop", "requests", "ok", "errors", "seconds"} (``seconds``:
the timed loop only). A response other than 2xx counts as an error; a connection that drops ends the run with
exit 1 and a one-line message.

    python bench/floor_loops.py callback --url http://127.0.0.1:8080 --requests 200000
    python bench/floor_loops.py exchange --url http://127.0.0.1:8080 --requests 200000 --connections 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit

PATH = "/stock/find/1"
LOOPS = ("callback", "exchange")


def request_head(url: str, path: str = PATH) -> bytes:
    """The GET head ``Origin.exchange`` writes for ``path`` on ``url`` (same header lines, same order)."""
    from wdmreplay.replayer.http import USER_AGENT

    host = urlsplit(url).netloc.rpartition("@")[2]
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\nAccept: */*\r\n\r\n"
            .encode("ascii"))


def _loop_kind(loop: asyncio.AbstractEventLoop) -> str:
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


class _Counts:
    """What the callback connections share: requests left to write, responses back, the end."""

    def __init__(self, requests: int, done: asyncio.Future):
        self.left = requests
        self.back = 0
        self.ok = 0
        self.total = requests
        self.done = done


class _CallbackConn(asyncio.Protocol):
    """One keep-alive connection that writes the next request when a response completes."""

    def __init__(self, counts: _Counts, head: bytes):
        import httptools

        self.counts = counts
        self.head = head
        self.body: list[bytes] = []
        self.on_body = self.body.append  # httptools calls it with each piece of the body
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.last_body = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._next()

    def _next(self) -> None:
        c = self.counts
        if c.left > 0:
            c.left -= 1
            self.transport.write(self.head)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except Exception as e:  # httptools' HttpParserError: an unreadable answer ends the run
            self._end(ConnectionError(f"invalid HTTP response: {e}"))

    def on_message_complete(self) -> None:
        c = self.counts
        self.last_body = b"".join(self.body)  # the body is read as the replayer reads it
        self.body.clear()
        c.back += 1
        if 200 <= self.parser.get_status_code() < 300:
            c.ok += 1
        if c.back == c.total:
            if not c.done.done():
                c.done.set_result(None)
        else:
            self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.counts.done.done():
            self._end(ConnectionError(f"the target closed a connection ({exc or 'EOF'})"))

    def _end(self, exc: Exception) -> None:
        if not self.counts.done.done():
            self.counts.done.set_exception(exc)


async def callback_loop(url: str, requests: int, connections: int) -> dict:
    """Send ``requests`` GETs over ``connections`` callback-driven connections; counts and timed seconds."""
    loop = asyncio.get_running_loop()
    parts = urlsplit(url)
    head = request_head(url)
    counts = _Counts(requests, loop.create_future())
    t0 = time.perf_counter()
    conns = [(await loop.create_connection(lambda: _CallbackConn(counts, head), parts.hostname, parts.port))[0]
             for _ in range(min(connections, requests))]
    try:
        await counts.done
    finally:
        for t in conns:
            t.close()
    return {"requests": counts.back, "ok": counts.ok, "errors": counts.back - counts.ok,
            "seconds": time.perf_counter() - t0, "event_loop": _loop_kind(loop)}


async def exchange_loop(url: str, requests: int, connections: int, timeout: float = 10.0) -> dict:
    """Send ``requests`` GETs with ``connections`` coroutines awaiting ``Origin.exchange``; counts and seconds."""
    from wdmreplay.replayer.http import HttpClient

    client = HttpClient(timeout, connections)
    origin = client.origin(url)
    ok = back = 0
    todo = iter(range(requests))

    async def worker() -> None:
        nonlocal ok, back
        for _ in todo:
            status = (await origin.exchange("GET", PATH))[0]
            back += 1
            if 200 <= status < 300:
                ok += 1

    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(connections)))
    finally:
        await client.close()
    return {"requests": back, "ok": ok, "errors": back - ok, "seconds": time.perf_counter() - t0,
            "event_loop": _loop_kind(asyncio.get_running_loop())}


def main(argv: list[str] | None = None) -> None:
    """Parse options, run one loop on uvloop (when importable), print its JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("loop", choices=LOOPS, help="which loop")
    ap.add_argument("--url", required=True, help="base URL of the static target (http://127.0.0.1:PORT)")
    ap.add_argument("--requests", type=int, default=200_000, help="responses to wait for (default 200000)")
    ap.add_argument("--connections", type=int, default=50, help="connections / coroutines (default 50)")
    a = ap.parse_args(argv)
    if a.requests < 1 or a.connections < 1:
        ap.error("--requests and --connections must be >= 1")
    parts = urlsplit(a.url)
    if parts.scheme != "http" or not parts.hostname or not parts.port:
        ap.error(f"--url must be http://HOST:PORT, not {a.url!r}")
    from wdmreplay.eventloop import run_async  # the replayer's loop: uvloop when importable

    run = callback_loop(a.url, a.requests, a.connections) if a.loop == "callback" else \
        exchange_loop(a.url, a.requests, a.connections)
    try:
        result = run_async(run)
    except (OSError, asyncio.TimeoutError) as e:
        sys.exit(f"floor_loops {a.loop}: {e}")
    result["loop"] = a.loop
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
