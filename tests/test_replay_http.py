"""The replayer's lean HTTP/1.1 client (wdmreplay.replayer.http) over real loopback sockets.

Malformed and unusual answers come from a raw asyncio server (:class:`RawServer`, bytes exactly as
written); well-formed ones from aiohttp.web apps on port 0. The client is tested directly (one
:class:`Origin` in an event loop, under asyncio's loop and uvloop) and end to end through
``replay_trace`` where the results file's outcome column is what matters.
"""

from __future__ import annotations

import asyncio
import string
import threading
import time
from typing import Any, Awaitable, Callable

import pytest
from aiohttp import web

from replay_support import LoopThread, abort_all, closed_port, write_trace
from wdmreplay.replayer import TargetUnreachable, replay_trace
from wdmreplay.replayer.http import WRITE_BATCH, HttpClient, HttpError
from wdmreplay.traces import load_results, step
from wdmreplay.traces.results import CONN_ERROR, OK, TIMEOUT

PROBE = "wdm-replay-probe"  # replay_trace's probe (through aiohttp) must always get a sane answer


def ok(body: bytes = b"{}", headers: str = "", status: str = "200 OK", version: str = "HTTP/1.1") -> bytes:
    """A complete response with a Content-Length."""
    return (f"{version} {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{headers}\r\n").encode() + body


class RawConn:
    """One accepted connection of a :class:`RawServer`: read request heads, write raw bytes."""

    def __init__(self, server: "RawServer", reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.server, self.reader, self.writer = server, reader, writer

    async def read_request(self) -> tuple[str, str] | None:
        """The next request's (method, path); None once the client closed the connection."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.server.eofs += 1
            return None
        self.server.heads.append(head)
        method, path, _ = head.split(b"\r\n", 1)[0].decode().split(" ")
        return method, path

    async def send(self, *parts: bytes, pause: float = 0.0) -> None:
        """Write ``parts`` one after another (``pause`` seconds between them: separate packets)."""
        for i, p in enumerate(parts):
            if i and pause:
                await asyncio.sleep(pause)
            self.writer.write(p)
            await self.writer.drain()

    async def until_client_closes(self) -> None:
        """Read (and drop) whatever comes until the client closes the connection."""
        try:
            while await self.reader.read(65536):
                pass
        except ConnectionError:
            pass
        self.server.eofs += 1


Respond = Callable[[RawConn, str, str, int], Awaitable[bool]]


class RawServer(LoopThread):
    """A raw TCP server on 127.0.0.1:0 in a background thread; ``respond`` answers each request.

    ``respond(conn, method, path, n)`` (``n`` = index of the request on this connection) writes
    whatever it likes and returns whether to keep reading requests (False closes the connection).
    The probe of ``replay_trace`` gets a well-formed answer without reaching ``respond``.
    ``opened`` counts accepted connections, ``eofs`` connections the client closed, ``heads`` the
    raw request heads received.
    """

    def __init__(self, respond: Respond):
        self.respond = respond
        self.opened = 0
        self.eofs = 0
        self.heads: list[bytes] = []
        self.port = 0
        self._tasks: set[asyncio.Task] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        self._writers.add(writer)
        self.opened += 1
        conn = RawConn(self, reader, writer)
        try:
            n = 0
            while True:
                req = await conn.read_request()
                if req is None:
                    return
                if PROBE in req[1]:
                    await conn.send(ok(b'{"stock": 0, "price": 0}'))
                    continue
                if not await self.respond(conn, req[0], req[1], n):
                    return
                n += 1
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve_conn, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        self._server.close()
        abort_all(self._writers)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)


def answering(response: bytes) -> Respond:
    """Answer every request with ``response`` and keep the connection."""
    async def respond(conn: RawConn, method: str, path: str, n: int) -> bool:
        await conn.send(response)
        return True
    return respond


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request) -> Callable[[Awaitable[Any]], Any]:
    """Run a coroutine to completion on a fresh loop of each kind (the replay uses uvloop)."""
    if request.param == "uvloop":
        uvloop = pytest.importorskip("uvloop")

    def runner(coro: Awaitable[Any]) -> Any:
        if request.param == "asyncio":
            return asyncio.run(coro)  # type: ignore[arg-type]
        return uvloop.run(coro)  # asyncio.run's steps on a uvloop loop (also on Python 3.10)
    return runner


async def twice(url: str, method: str = "GET") -> tuple[list[tuple[int, bytes]], int]:
    """Two requests in a row to ``url``: their (status, body) results and the connections opened."""
    client = HttpClient(2.0)
    origin = client.origin(url)
    got = [await origin.request(method, "/x") for _ in range(2)]
    await client.close()
    return got, origin.opened


async def until_idle_closed(origin: Any, within: float = 3.0) -> None:
    """Wait until the client has noticed that its most recent idle connection was closed."""
    end = time.monotonic() + within
    while origin.idle and not origin.idle[-1].closed:
        assert time.monotonic() < end, "the idle connection was not closed"
        await asyncio.sleep(0.005)


async def start_app(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on 127.0.0.1:0 in the running loop; (runner, base URL)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]


# --- keep-alive and framing ------------------------------------------------------------------


def test_sequential_requests_reuse_one_connection(run):
    with RawServer(answering(ok(b'{"n": 1}'))) as srv:
        async def go():
            client = HttpClient(2.0)
            origin = client.origin(srv.url)
            got = [await origin.request("GET", f"/stock/find/{i}") for i in range(10)]
            await client.close()
            return got, origin.opened
        got, opened = run(go())
        assert got == [(200, b'{"n": 1}')] * 10
        assert opened == 1 and srv.opened == 1
        assert srv.wait_for(lambda: srv.eofs == 1)  # client.close() closed the pooled connection


def test_concurrent_requests_open_at_most_the_concurrency(run):
    transports: set[int] = set()

    async def handler(request: web.Request) -> web.Response:
        transports.add(id(request.transport))
        await asyncio.sleep(0.02)
        return web.Response(text=request.path)

    async def go():
        app = web.Application()
        app.router.add_get("/{tail:.*}", handler)
        runner, url = await start_app(app)
        client = HttpClient(5.0)
        origin = client.origin(url)

        async def worker(w: int) -> list:
            return [await origin.request("GET", f"/w{w}/{i}") for i in range(5)]

        got = await asyncio.gather(*(worker(w) for w in range(4)))
        after_burst = origin.opened
        more = [await origin.request("GET", "/again") for _ in range(3)]
        await client.close()
        await runner.cleanup()
        return got, after_burst, more, origin.opened

    got, after_burst, more, opened = run(go())
    assert got == [[(200, f"/w{w}/{i}".encode()) for i in range(5)] for w in range(4)]
    assert after_burst == 4 and len(transports) == 4  # all four out at once at the start
    assert more == [(200, b"/again")] * 3 and opened == 4  # later requests reuse the pool


@pytest.mark.parametrize("server_closes", [True, False])
def test_connection_close_response_is_not_reused(run, server_closes):
    async def respond(conn: RawConn, method: str, path: str, n: int) -> bool:
        await conn.send(ok(path.encode(), headers="Connection: close\r\n"))
        if not server_closes:  # the client must close it: wait to see that it does
            await conn.until_client_closes()
        return False

    with RawServer(respond) as srv:
        async def go():
            client = HttpClient(2.0)
            origin = client.origin(srv.url)
            a = await origin.request("GET", "/a")
            idle = len(origin.idle)
            b = await origin.request("POST", "/b")
            await client.close()
            return a, b, idle, origin.opened
        a, b, idle, opened = run(go())
        assert (a, b) == ((200, b"/a"), (200, b"/b"))
        assert idle == 0 and opened == 2 and srv.opened == 2
        if not server_closes:
            assert srv.wait_for(lambda: srv.eofs == 2)


def test_chunked_body_from_aiohttp_stream_response_is_reassembled(run):
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in (b'{"item_id": ', b'"abc', b'"}'):
            await resp.write(part)
            await asyncio.sleep(0.005)
        await resp.write_eof()
        return resp

    async def go():
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner, url = await start_app(app)
        client = HttpClient(5.0)
        origin = client.origin(url)
        got = [await origin.request("POST", "/stock/item/create/1") for _ in range(3)]
        await client.close()
        await runner.cleanup()
        return got, origin.opened

    got, opened = run(go())
    assert got == [(200, b'{"item_id": "abc"}')] * 3 and opened == 1


def test_raw_chunked_body_split_across_packets_is_reassembled(run):
    # Head split mid-line, a chunk extension, a trailer: the framing llhttp must get right.
    response = (b"HTTP/1.1 200 OK\r\nTransfer-", b"Encoding: chunked\r\n\r\n", b"5;ext=1\r\nhello\r\n",
                b"6\r\n, worl\r\n1\r\nd\r\n0\r\nX-Trailer: t\r\n\r\n")

    async def respond(conn: RawConn, method: str, path: str, n: int) -> bool:
        await conn.send(*response, pause=0.01)
        return True

    with RawServer(respond) as srv:
        got, opened = run(twice(srv.url))
        assert got == [(200, b"hello, world")] * 2 and opened == 1


@pytest.mark.parametrize("version, split", [("HTTP/1.0", False), ("HTTP/1.1", False), ("HTTP/1.1", True)])
def test_close_delimited_body_is_read_to_the_end(run, version, split):
    async def respond(conn: RawConn, method: str, path: str, n: int) -> bool:
        head = f"{version} 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n".encode()
        parts = (head[:20], head[20:]) if split else (head,)  # a head over two packets
        await conn.send(*parts, b"first half, ", b"second half", pause=0.02)
        return False  # the close ends the body

    with RawServer(respond) as srv:
        got, opened = run(twice(srv.url))
        assert got == [(200, b"first half, second half")] * 2 and opened == 2


@pytest.mark.parametrize("packets, body", [
    # an interim 100 in a packet of its own, then the final head over two packets
    ((b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 200 OK\r\nConne", b"ction: close\r\n\r\nab", b"cd"), b"abcd"),
    # the interim and the final head in one packet, a body in many
    ((b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.0 200 OK\r\n\r\n", *[b"x" * 30000] * 5), b"x" * 150000),
], ids=["after-100-split-head", "after-103-long-body"])
def test_close_delimited_body_after_an_interim_response_is_read_to_the_end(run, packets, body):
    # The client keeps an unfinished response's first bytes (up to HEAD_KEEP) to read its head again
    # when the connection ends it: a body longer than that still arrives whole.
    async def respond(conn: RawConn, method: str, path: str, n: int) -> bool:
        await conn.send(*packets, pause=0.02)
        return False

    with RawServer(respond) as srv:
        got, opened = run(twice(srv.url))
        assert got == [(200, body)] * 2 and opened == 2


# --- malformed, missing and cut answers ------------------------------------------------------


def test_garbage_answer_is_an_http_error(run):
    with RawServer(answering(b"hello\r\n")) as srv:
        async def go():
            origin = HttpClient(2.0).origin(srv.url)
            with pytest.raises(HttpError) as e:
                await origin.request("GET", "/x")
            return str(e.value), origin.idle
        text, idle = run(go())
        assert "invalid HTTP response" in text and idle == []
        assert srv.wait_for(lambda: srv.eofs == 1)  # the client closed the connection


def test_no_answer_times_out_and_closes_the_connection(run):
    async def silent(conn: RawConn, method: str, path: str, n: int) -> bool:
        await conn.until_client_closes()
        return False

    with RawServer(silent) as srv:
        async def go():
            origin = HttpClient(0.3).origin(srv.url)
            started = time.monotonic()
            with pytest.raises(asyncio.TimeoutError):
                await origin.request("GET", "/x")
            return time.monotonic() - started, origin.idle
        elapsed, idle = run(go())
        assert 0.25 < elapsed < 3 and idle == []
        assert srv.wait_for(lambda: srv.eofs == 1)


def test_heads_queued_in_one_loop_pass_are_written_together_after_it(run):
    """Requests started in one pass of the loop are written by one callback after that pass, or as
    soon as WRITE_BATCH are queued: of WRITE_BATCH + 3 requests started together, the first
    WRITE_BATCH are stamped ``sent`` before a callback that ran later in the same pass, the other 3
    after it, each at its own write in the order queued; all reach the server."""
    n = WRITE_BATCH + 3
    with RawServer(answering(ok(b'{"n": 1}'))) as srv:
        async def go():
            client = HttpClient(10.0)
            origin = client.origin(srv.url)
            await asyncio.gather(*(origin.request("GET", f"/warm/{i}") for i in range(n)))  # n idle connections
            assert origin.opened == n
            loop = asyncio.get_running_loop()
            tasks = [loop.create_task(origin.exchange("GET", f"/x/{i}")) for i in range(n)]
            mark: list[float] = []
            # Runs after the tasks' first steps in the same pass (call_soon is FIFO): a request
            # written before it is stamped before it.
            loop.call_soon(lambda: (time.sleep(0.05), mark.append(time.perf_counter())))
            got = await asyncio.gather(*tasks)
            await client.close()
            return got, mark[0]
        got, mark = run(go())
        sent = [g[2] for g in got]
        assert [g[0] for g in got] == [200] * n
        assert [s < mark for s in sent] == [True] * WRITE_BATCH + [False] * 3, (sent, mark)
        assert sent == sorted(sent)
        assert sorted(h.split(b" ")[1] for h in srv.heads[-n:]) == sorted(f"/x/{i}".encode() for i in range(n))


def test_request_cancelled_before_its_head_is_written_never_reaches_the_server(run):
    """A request cancelled in the pass that queued it is never written: the server sees only the
    request before it, the error carries sent = None (no row: it had no effect), and its connection
    is closed."""
    with RawServer(answering(ok())) as srv:
        async def go():
            client = HttpClient(10.0)
            origin = client.origin(srv.url)
            assert (await origin.request("GET", "/first"))[0] == 200  # one idle connection

            async def second():
                try:
                    return await origin.exchange("GET", "/second")
                except asyncio.CancelledError as e:
                    return getattr(e, "sent", "no sent attribute")

            t = asyncio.get_running_loop().create_task(second())
            await asyncio.sleep(0)  # the task's first step ran: its head is queued, not yet written
            t.cancel()
            sent = await t
            await client.close()
            return sent
        sent = run(go())
        assert sent is None
        assert srv.wait_for(lambda: srv.eofs == 1)
        assert [h.split(b" ")[1] for h in srv.heads] == [b"/first"]


def test_deadlines_share_one_timer_each_silent_request_times_out_on_time(run):
    """One timer serves every deadline: a silent request times out on time while requests written
    before and after it are answered; a second silent one, written later, times out on its own
    deadline (the timer re-armed); the client's registry of open connections (what the timer walks)
    holds exactly the open ones, none of them with a request left once all are answered; close stops
    the timer."""
    async def respond(conn: RawConn, method: str, path: str, n: int) -> bool:
        if path.startswith("/slow"):
            await conn.until_client_closes()
            return False
        await conn.send(ok(path.encode()))
        return True

    with RawServer(respond) as srv:
        async def go():
            client = HttpClient(0.4, limit=8)
            origin = client.origin(srv.url)

            async def slow(name: str) -> float:
                t0 = time.monotonic()
                with pytest.raises(asyncio.TimeoutError):
                    await origin.request("GET", f"/slow/{name}")
                return time.monotonic() - t0

            fast = [await origin.request("GET", f"/fast/{i}") for i in range(5)]
            first = asyncio.ensure_future(slow("a"))
            t_end = time.monotonic() + 0.2
            while time.monotonic() < t_end:  # requests written after the silent one, answered
                fast.append(await origin.request("GET", f"/fast/{len(fast)}"))
                await asyncio.sleep(0.005)
            # Written last, with nothing after it: only the timer re-armed after the first
            # timeout can end it on time.
            second = asyncio.ensure_future(slow("b"))
            waits = (await first, await second)
            fast.append(await origin.request("GET", f"/fast/{len(fast)}"))
            registry = (len(client.conns), client.open, sum(c.fut is not None for c in client.conns),
                        all(not c.closed for c in client.conns))
            await client.close()
            return fast, waits, registry, client.timer, len(client.conns)
        fast, waits, registry, timer, left = run(go())
        assert all(status == 200 and body == f"/fast/{i}".encode() for i, (status, body) in enumerate(fast))
        assert len(fast) > 10
        for w in waits:  # each on its own deadline: not early, not held back by the other's
            assert 0.39 <= w < 0.4 + 0.35, waits
        conns, still_open, busy, none_closed = registry
        assert conns == still_open >= 1 and none_closed  # the two timed-out connections left it when they closed
        assert busy == 0
        assert timer is None and left == 0


def test_idle_connection_closed_by_the_server_is_replaced(run):
    async def one_then_close(conn: RawConn, method: str, path: str, n: int) -> bool:
        await conn.send(ok(path.encode()))  # keep-alive response, then the server closes anyway
        return False

    with RawServer(one_then_close) as srv:
        async def go():
            client = HttpClient(2.0)
            origin = client.origin(srv.url)
            got = []
            for p in ("/a", "/b", "/c"):
                got.append(await origin.request("GET", p))
                await until_idle_closed(origin)  # the FIN arrives while the connection is idle
            await client.close()
            return got, origin.opened
        got, opened = run(go())
        assert got == [(200, b"/a"), (200, b"/b"), (200, b"/c")] and opened == 3


@pytest.mark.parametrize("head", [
    "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n",
    "HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n32\r\n",
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 100\r\n\r\n",
    "HTTP/1.0 200 OK\r\nServer: x\r\n",
], ids=["keep-alive", "connection-close", "http10", "chunked-close", "after-100", "cut-head"])
def test_connection_dropped_mid_body_is_an_error(run, head):
    # A cut body is an error even when the response said it would close (the framing is not the close),
    # and so is a cut head (not a close-delimited response with an empty body).
    async def half(conn: RawConn, method: str, path: str, n: int) -> bool:
        b = head.encode()
        body = b"x" * 50 if b"\r\n\r\n" in b else b""  # a whole head: half its body
        await conn.send(b[:30], b[30:], body, pause=0.01)  # the head over two packets, half the body
        return False

    with RawServer(half) as srv:
        async def go():
            origin = HttpClient(2.0).origin(srv.url)
            with pytest.raises(HttpError) as e:
                await origin.request("GET", "/x")
            return str(e.value)
        assert "disconnected" in run(go())


def test_refused_port_is_an_os_error(run):
    async def go():
        origin = HttpClient(2.0).origin(f"http://127.0.0.1:{closed_port()}")
        with pytest.raises(OSError) as e:
            await origin.request("GET", "/x")
        return e.value, origin.opened
    exc, opened = run(go())
    assert isinstance(exc, ConnectionRefusedError) and opened == 0


def test_interim_1xx_response_is_skipped(run):
    with RawServer(answering(b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"final"))) as srv:
        got, opened = run(twice(srv.url, "POST"))
        assert got == [(200, b"final")] * 2 and opened == 1


def test_unsolicited_bytes_close_an_idle_connection(run):
    async def chatty(conn: RawConn, method: str, path: str, n: int) -> bool:
        await conn.send(ok(path.encode()))
        if n == 0:  # then, while nothing is asked, a stray response
            await asyncio.sleep(0.02)
            await conn.send(ok(b"stray"))
            await conn.until_client_closes()
            return False
        return True

    with RawServer(chatty) as srv:
        async def go():
            client = HttpClient(2.0)
            origin = client.origin(srv.url)
            a = await origin.request("GET", "/a")
            await until_idle_closed(origin)  # the stray response closes it
            b = await origin.request("GET", "/b")
            await client.close()
            return a, b, origin.opened
        a, b, opened = run(go())
        assert a == (200, b"/a") and b == (200, b"/b") and opened == 2
        assert srv.wait_for(lambda: srv.eofs == 2)


@pytest.mark.parametrize("extra", [b"garbage\r\n", b"HTTP/1.1 200 OK\r\nContent-"],
                         ids=["garbage", "partial-response"])
def test_bytes_after_a_response_in_the_same_packet_do_not_leak_into_the_next(run, extra):
    async def respond(conn: RawConn, method: str, path: str, n: int) -> bool:
        await conn.send(ok(path.encode()) + (extra if n == 0 else b""))
        return True

    with RawServer(respond) as srv:
        async def go():
            client = HttpClient(2.0)
            origin = client.origin(srv.url)
            a = await origin.request("GET", "/a")
            await asyncio.sleep(0.05)
            b = await origin.request("GET", "/b")
            await client.close()
            return a, b, origin.opened
        a, b, opened = run(go())
        assert a == (200, b"/a") and b == (200, b"/b") and opened == 2


@pytest.mark.parametrize("head, expected", [
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody", True),
    (b"\r\nHTTP/1.0 200 OK\r\nServer: x\r\n\r\n", True),
    (b"HTTP/1.1 200 OK\r\ncontent-length : 5\r\n\r\nhello", False),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", False),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", True),  # not chunked: read to the close
    (b"HTTP/1.1 200 OK\r\nX-Content-Length: 5\r\n\r\n", True),
    (b"HTTP/1.1 100 Continue\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n\r\nContent-Length: 1", True),
    (b"HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", False),
    (b"HTTP/1.0 200 OK\nContent-Length: 5\n\nhello", False),  # bare LF line ends
    (b"HTTP/1.0 100 Continue\n\nHTTP/1.0 200 OK\nServer: x\n\nContent-Length: 1", True),
])
def test_close_delimited_reads_the_final_head_only(head, expected):
    from wdmreplay.replayer.http import _close_delimited

    assert _close_delimited(head) is expected


SLOPPY = [  # answers aiohttp's response parser accepts (or not): the lean client must agree
    b"HTTP/1.1 200 OK\nContent-Length: 2\n\nab",  # bare LF
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\n\r\nab",
    b"HTTP/1.1 200 OK\r\nX: a\x01b\r\nContent-Length: 2\r\n\r\nab",  # a control byte in a header value
    b"HTTP/1.1 200 OK\r\nContent-Length:  2 \r\n\r\nab",
    b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nab",  # no reason phrase
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2 \r\nab\r\n0\r\n\r\n",  # space after chunk size
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab0\r\n\r\n",  # chunk without CRLF: error
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab",  # error
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",  # error
    b"HTTP/1.0 200 OK\nConnection: close\n\nto the close",  # close-delimited, bare LF
]


def test_sloppy_answers_are_read_as_the_aiohttp_client_reads_them():
    import aiohttp

    async def ask(url: str) -> tuple[Any, Any]:
        try:
            lean = await HttpClient(1.0).origin(url).request("GET", "/x")
        except HttpError:
            lean = "error"
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(url + "/x") as resp:
                    aio: Any = (resp.status, await resp.read())
        except aiohttp.ClientError:
            aio = "error"
        return lean, aio

    got = []
    for answer in SLOPPY:
        close = b"Connection: close" in answer
        async def respond(conn: RawConn, method: str, path: str, n: int, answer=answer, close=close) -> bool:
            await conn.send(answer)
            return not close
        with RawServer(respond) as srv:
            got.append(asyncio.run(ask(srv.url)))
    assert [lean for lean, _ in got] == [aio for _, aio in got]
    assert [lean for lean, _ in got] == [(200, b"ab")] * 6 + ["error"] * 3 + [(200, b"to the close")]


def test_cut_body_with_bare_lf_head_and_close_is_an_error(run):
    async def half(conn: RawConn, method: str, path: str, n: int) -> bool:
        await conn.send(b"HTTP/1.0 200 OK\nContent-Length: 100\n\n", b"x" * 50, pause=0.01)
        return False

    with RawServer(half) as srv:
        async def go():
            with pytest.raises(HttpError, match="disconnected"):
                await HttpClient(2.0).origin(srv.url).request("GET", "/x")
        run(go())


# --- the request head --------------------------------------------------------------------------


def test_request_head_method_path_host_length_prefix_and_quoting(run):
    with RawServer(answering(ok())) as srv:
        async def go():
            client = HttpClient(2.0)
            plain, prefixed = client.origin(srv.url), client.origin(srv.url + "/prefix/")
            await plain.request("GET", "/stock/find/1")
            await plain.request("POST", "/stock/add/1/5")
            await prefixed.request("GET", "/stock/find/1")
            await plain.request("GET", "/stock/find/a b")
            await plain.request("DELETE", "/orders/remove/é?#")
            await plain.request("GET", "/stock/find/a%20b%zz%")  # a valid escape kept, stray "%" quoted
            await client.origin(f"http://user:pw@127.0.0.1:{srv.port}/ä b").request("GET", "/x")
            await client.close()
        run(go())
        heads = [h.decode("ascii") for h in srv.heads]
        assert [h.split("\r\n")[0] for h in heads] == [
            "GET /stock/find/1 HTTP/1.1", "POST /stock/add/1/5 HTTP/1.1", "GET /prefix/stock/find/1 HTTP/1.1",
            "GET /stock/find/a%20b HTTP/1.1", "DELETE /orders/remove/%C3%A9%3F%23 HTTP/1.1",
            "GET /stock/find/a%20b%25zz%25 HTTP/1.1", "GET /%C3%A4%20b/x HTTP/1.1"]
        for h in heads:
            assert f"\r\nHost: 127.0.0.1:{srv.port}\r\n" in h and h.endswith("\r\n\r\n")
            assert ("\r\nContent-Length: 0\r\n" in h) == h.startswith("POST ")
            assert "Transfer-Encoding" not in h


def test_ids_are_quoted_as_the_aiohttp_client_quotes_them():
    # Same request-target from both clients (so --client does not change what the shop sees),
    # except "?" and "#", which aiohttp takes for a query or fragment; in an id they are data.
    import aiohttp

    ids = ["a b", "é", "a+b", "a%20b", "a;b", "a%zz", "a%", 'a"b', "a<b>", "a|b", "a{b}", "a[b]", "a\\b", "~._-"]
    with RawServer(answering(ok())) as srv:
        async def go():
            origin = HttpClient(2.0).origin(srv.url)
            for i in ids + ["a?b", "a#b"]:
                await origin.request("GET", "/stock/find/" + i)
            async with aiohttp.ClientSession() as session:
                for i in ids:
                    async with session.get(srv.url + "/stock/find/" + i) as resp:
                        await resp.read()
        asyncio.run(go())
        targets = [h.split(b" ")[1].decode() for h in srv.heads]
    n = len(ids)
    assert targets[:n] == targets[n + 2:]
    assert targets[n:n + 2] == ["/stock/find/a%3Fb", "/stock/find/a%23b"]


def test_every_character_of_an_id_is_sent_as_rfc_3986_allows():
    # Each of the first 384 code points as a one-character id: the characters RFC 3986 allows in a
    # path segment (unreserved, sub-delims, ":" and "@") and "/" go as they are, every other one as
    # the percent-encoding of its UTF-8 bytes (a lone "%" included) - written out here from the RFC,
    # not from the client's tables.
    allowed = set(string.ascii_letters + string.digits + "-._~" + "!$&'()*+,;=" + ":@" + "/")
    chars = [chr(i) for i in range(1, 384) if chr(i) not in "\r\n"]
    with RawServer(answering(ok())) as srv:
        async def go():
            origin = HttpClient(2.0).origin(srv.url)
            for c in chars:
                status, _ = await origin.request("GET", f"/stock/find/x{c}y")
                assert status == 200
        asyncio.run(go())
        targets = [h.split(b" ")[1].decode("ascii") for h in srv.heads]
    expected = [f"/stock/find/x{c if c in allowed else ''.join(f'%{b:02X}' for b in c.encode())}y" for c in chars]
    assert targets == expected


# --- end to end through replay_trace -----------------------------------------------------------


def _one_step_trace(tmp_path, *steps) -> tuple[Any, Any]:
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [[(0.0, [s]) for s in steps]])
    return trace, out


def test_replay_garbage_answer_is_conn_error_in_a_clean_run(tmp_path, capfd):
    trace, out = _one_step_trace(tmp_path, step("add_stock", ["1", 1]), step("find_item", ["1"]))
    with RawServer(answering(b"hello\r\n")) as srv:
        s = replay_trace(trace, out, target=srv.url, final_read=False)
    r = load_results(out)
    assert s.complete and r.complete and r.n == 2
    assert list(r.cols["outcome"]) == [CONN_ERROR, CONN_ERROR] and list(r.cols["status"]) == [0, 0]
    assert all("invalid HTTP response" in e for e in r.errors.values()) and len(r.errors) == 2
    assert "Traceback" not in capfd.readouterr().err


def test_replay_no_answer_is_timeout(tmp_path):
    async def silent(conn: RawConn, method: str, path: str, n: int) -> bool:
        await conn.until_client_closes()
        return False

    trace, out = _one_step_trace(tmp_path, step("add_stock", ["1", 1]))
    with RawServer(silent) as srv:
        s = replay_trace(trace, out, target=srv.url, timeout=0.3, final_read=False)
        assert srv.wait_for(lambda: srv.eofs == srv.opened)  # the timed-out connection was closed
    r = load_results(out)
    assert s.complete and list(r.cols["outcome"]) == [TIMEOUT]
    assert 0.25 < r.cols["done"][0] - r.cols["sent"][0] < 3


def test_replay_chunked_create_binds_and_prefix_and_quoting_reach_the_server(tmp_path):
    # A chunked create response still yields the id; the id (with a space) is quoted in later paths.
    async def respond(conn: RawConn, method: str, path: str, n: int) -> bool:
        if "/create" in path:
            parts = [b'{"item', '_id": "a bé"}'.encode()]
            await conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                            *(b"%x\r\n%s\r\n" % (len(p), p) for p in parts), b"0\r\n\r\n", pause=0.01)
        else:
            await conn.send(ok(b"{}"))
        return True

    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [[(0.0, [step("create_item", [3], bind="$s0.item"), step("add_stock", ["$s0.item", 5])])]])
    with RawServer(respond) as srv:
        s = replay_trace(trace, out, target=srv.url + "/shop", final_read=False)
        lines = [h.split(b"\r\n")[0].decode() for h in srv.heads]
    r = load_results(out)
    assert s.complete and list(r.cols["outcome"]) == [OK, OK] and r.bindings == {"$s0.item": "a bé"}
    assert lines[1:] == ["POST /shop/stock/item/create/3 HTTP/1.1", "POST /shop/stock/add/a%20b%C3%A9/5 HTTP/1.1"]


def test_replay_dropped_requests_are_conn_errors_sent_exactly_once(tmp_path):
    # DESIGN: no retries of trace requests, idempotent or not (aiohttp retries a dropped GET once).
    async def drop(conn: RawConn, method: str, path: str, n: int) -> bool:
        return False  # close without an answer

    trace, out = _one_step_trace(tmp_path, step("find_item", ["1"]), step("add_stock", ["1", 1]))
    with RawServer(drop) as srv:
        s = replay_trace(trace, out, target=srv.url, final_read=False)
        lines = sorted(h.split(b"\r\n")[0].decode() for h in srv.heads if PROBE.encode() not in h)
    r = load_results(out)
    assert s.complete and list(r.cols["outcome"]) == [CONN_ERROR, CONN_ERROR]
    assert all("disconnected" in e for e in r.errors.values())
    assert lines == ["GET /stock/find/1 HTTP/1.1", "POST /stock/add/1/1 HTTP/1.1"]


def test_replay_refused_port_is_refused_up_front(tmp_path):
    trace, out = _one_step_trace(tmp_path, step("add_stock", ["1", 1]))
    with pytest.raises(TargetUnreachable, match="cannot reach target"):
        replay_trace(trace, out, target=f"http://127.0.0.1:{closed_port()}")
    assert not out.exists()


# --- interrupted requests leave no connection open ---------------------------------------------


def test_cancelled_request_closes_its_connection(run):
    async def silent(conn: RawConn, method: str, path: str, n: int) -> bool:
        await conn.until_client_closes()
        return False

    with RawServer(silent) as srv:
        async def go():
            client = HttpClient(30.0)
            origin = client.origin(srv.url)
            tasks = [asyncio.ensure_future(origin.request("GET", f"/{i}")) for i in range(3)]
            end = time.monotonic() + 5
            while len(srv.heads) < 3 and time.monotonic() < end:  # all three out, awaiting answers
                await asyncio.sleep(0.005)
            for t in tasks:
                t.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            await client.close()
            return results, origin.opened
        results, opened = run(go())
        assert all(isinstance(x, asyncio.CancelledError) for x in results) and opened == 3
        assert srv.wait_for(lambda: srv.opened == 3 and srv.eofs == 3)


def test_interrupted_replay_closes_every_connection(tmp_path):
    import os
    import signal

    async def silent(conn: RawConn, method: str, path: str, n: int) -> bool:
        await conn.until_client_closes()
        return False

    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [[(0.0, [step("add_stock", ["1", 1])]) for _ in range(10)]])
    with RawServer(silent) as srv:
        def interrupt_when_four_are_out() -> None:
            srv.wait_for(lambda: len(srv.heads) >= 5, within=10)  # the probe and four requests
            os.kill(os.getpid(), signal.SIGINT)
        timer = threading.Thread(target=interrupt_when_four_are_out)
        timer.start()
        s = replay_trace(trace, out, target=srv.url, speed=None, concurrency=4, timeout=60)
        timer.join()
        assert srv.wait_for(lambda: srv.eofs == srv.opened)
        assert srv.opened == 5  # the probe's and the four requests out
    assert not s.complete and s.reason == "interrupted"
    r = load_results(out)
    assert r.n == 4 and set(r.cols["outcome"]) == {TIMEOUT}


# --- parity with the aiohttp client against the reference shop --------------------------------


def _final_by_symbol(r) -> dict:
    """The final state with created ids replaced by their symbols (ids differ between runs)."""
    sym = {real: s for s, real in r.bindings.items()}
    f = r.final
    return {
        "items": {sym.get(i, i): v for i, v in f["items"].items()},
        "users": {sym.get(i, i): v for i, v in f["users"].items()},
        "orders": {sym.get(i, i): {**o, "user_id": sym.get(o["user_id"], o["user_id"]),
                                   "items": sorted([sym.get(a, a), q] for a, q in o["items"])}
                   for i, o in f["orders"].items()},
        "missing": f["missing"],
    }


def test_lean_and_aiohttp_clients_give_the_same_run(tmp_path, shop_factory):
    import numpy as np

    from wdmreplay.analysis import check_results
    from wdmreplay.workloads import generate

    trace = tmp_path / "c.wdmt"
    # Uncontended (stock and credit to spare), so every outcome is determined and must match.
    generate("consistency", trace, seed=7, items=10, stock=50, users=20, credit=50, orders=60)
    runs = {}
    for client, workers in (("lean", 1), ("aiohttp", 1), ("lean", 2)):
        out = tmp_path / f"{client}-{workers}.wdmr"
        s = replay_trace(trace, out, target=shop_factory().target, speed=None, concurrency=16,
                         client=client, workers=workers)
        assert s.complete
        r = load_results(out, with_args=True)
        rep = check_results(r)
        assert rep.clean, [a.as_dict() for a in rep.anomalies[:5]]
        order = np.lexsort((r.cols["step"], r.cols["sid"]))
        runs[(client, workers)] = (r.cols["sid"][order].tolist(), r.cols["outcome"][order].tolist(),
                                   r.cols["status"][order].tolist(), _final_by_symbol(r), r.header.get("client"))
    lean, aio, lean2 = runs[("lean", 1)], runs[("aiohttp", 1)], runs[("lean", 2)]
    assert (lean[4], aio[4]) == ("lean", "aiohttp")
    assert set(lean[1]) == {OK} and len(lean[1]) == 2 * 10 + 2 * 20 + 3 * 60
    assert lean[:4] == aio[:4] == lean2[:4]
