"""The replay hot path's HTTP/1.1 client: keep-alive connections on asyncio transports, parsed by llhttp.

Why not aiohttp here: against one fast loopback target (``bench/compare_generators.py``, bare
loops with pre-rendered requests), an ``aiohttp.ClientSession`` request costs about 70–90 µs of
client CPU (user + system, event loop included), a request through this client about 13–17 µs.
A replay's requests are all alike — no request body, no redirects, no cookies, no compression —
so the general client's per-request machinery buys nothing. Parsing is llhttp (the parser of
Node.js, through ``httptools``); framing by Content-Length, chunked, or connection close.

One :class:`Origin` per scheme/host/port holds idle connections (last in, first out). A request
first takes one of the client's :class:`Slots` (at most ``limit`` requests at once, across every
origin; the others wait in line, first come first served), then an idle connection or a new one,
queues the request head, and waits for the response with one deadline for connect + send +
response (the wait for a slot is not part of it: a request never written never times out).

**Writes are coalesced per event-loop pass.** The heads queued while the loop runs one pass of
callbacks (typically: one per response that came in together) are written together by one callback
queued behind them (:meth:`HttpClient.write_queued`), or as soon as :data:`WRITE_BATCH` are
queued, not each at once. On loopback the writer's system call also delivers the request to the
target and wakes it; written one by one, some 8 µs of Python apart, each request found the target
asleep again and paid a wake-up, written together only the first does (docs/performance.md: about
−1.5 µs of system CPU per request against nginx). A request waits for at most the 15 queued after
it; ``sent`` is stamped at its own write, and a request cancelled or failed before it is never
written. Open
connections never exceed ``limit`` either: an idle connection to another origin is closed to make
room for a new one. Interim 1xx responses are skipped. A connection is
reused only after a complete response that allows keep-alive; after a timeout, a parse error, bytes
nobody asked for, or any doubt it is closed.

Errors: :class:`asyncio.TimeoutError` for the deadline; :class:`HttpError` (an ``OSError``) for a
refused or dropped connection or a response that is not HTTP; ``OSError`` from connecting;
:class:`NotSent` for a request still waiting for a slot when the client stopped. Every error
raised by :meth:`Origin.exchange` carries ``sent``: when the request was written
(``time.perf_counter()``), or None if it never was.
The rest of the tool (probe, final read) uses aiohttp; ``replay --client aiohttp`` sends the
replay's requests through aiohttp too.
"""

from __future__ import annotations

import asyncio
import collections
import re
import ssl
import sys
from time import perf_counter
from typing import Any
from urllib.parse import quote, urlsplit

import httptools

from .. import __version__

USER_AGENT = f"wdm-replay/{__version__}"
# Characters allowed unescaped in a request-target path (RFC 3986 pchar + "/"); anything else is
# quoted, and so is a "%" that does not start an escape (as aiohttp/yarl do). The fast test takes
# "%" for unsafe too (rare in a path): a path that passes it is sent as it is. It runs on the path's
# ASCII bytes (a path that is not ASCII is quoted): a byte that maps to 1 needs quoting — one C pass
# and a memchr, about half the CPU of a regular expression's search (docs/performance.md).
_SAFE_PATH_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/"
_UNSAFE_BYTES = bytes(0 if chr(i) in _SAFE_PATH_CHARS else 1 for i in range(256))
_QUOTE_PATH = re.compile(f"[^{re.escape(_SAFE_PATH_CHARS)}%]|%(?![0-9A-Fa-f]{{2}})")  # the same set, "%" apart
_FRAMING_HEADER = re.compile(rb"\n(?:content-length[ \t]*:|transfer-encoding[ \t]*:[^\r\n]*chunked)",
                             re.IGNORECASE)
_HEAD_END = re.compile(rb"\r?\n\r?\n")  # bare LF line ends are accepted (see _lenient)
# At most this many request heads wait for one write pass: the pass is written as soon as it holds
# this many (a request then waits for at most 15 others' Python, ~0.1 ms, not a whole pass of the
# loop: at --concurrency 50 and full speed that was 0.2-0.4 ms). Measured: 16 keeps nearly all of
# the saving in system CPU that an unbounded pass has (docs/performance.md).
WRITE_BATCH = 16
HEAD_KEEP = 65536  # bytes of an unfinished response kept to read its head again if the connection ends it


def _quote_path(path: str) -> str:
    """``path`` with each character not allowed in a URL path, and each "%" starting no escape,
    percent-encoded."""
    return _QUOTE_PATH.sub(lambda m: quote(m.group(), safe=""), path)


def _lenient(parser: httptools.HttpResponseParser) -> None:
    """Accept what aiohttp's response parser accepts (its leniencies outside debug mode): bare LF
    line ends, any byte in header values, spaces after a chunk size — sloppy targets answer alike
    under --client lean and --client aiohttp. (A client has no request smuggling to fear.)"""
    try:
        parser.set_dangerous_leniencies(lenient_headers=True, lenient_optional_cr_before_lf=True,
                                        lenient_spaces_after_chunk_size=True)
    except (AttributeError, TypeError):  # an httptools without them: strict parsing
        pass


def _close_delimited(head: bytes) -> bool:
    """Whether ``head`` holds a whole final response head (after any interim 1xx heads) with neither
    Content-Length nor chunked Transfer-Encoding: its body ends with the connection (RFC 9112 §6.3).

    Only asked when the connection is lost before llhttp saw the response complete; llhttp does not
    expose its framing.
    """
    head = head.lstrip(b"\r\n")
    while True:
        m = _HEAD_END.search(head)
        if m is None:
            return False  # the head itself was cut off
        if head[9:10] != b"1":
            return _FRAMING_HEADER.search(head, 0, m.start()) is None
        head = head[m.end():]


class HttpError(ConnectionError):
    """A request that got no usable response: connection dropped or refused, or not an HTTP answer."""


class NotSent(Exception):
    """A request that was never written: the client stopped while it waited for a slot."""


class Slots:
    """A counting limit on requests at once (``limit`` slots), waiters served first come, first served.

    The hot path is inline in the callers (``if slots.free: slots.free -= 1`` else ``await
    slots.wait()``; ``release()`` when done): ``free`` is non-zero only while nobody waits, because
    a released slot is handed straight to the longest waiter.
    """

    __slots__ = ("limit", "free", "waiters", "waited", "stopped")

    def __init__(self, limit: int | None = None):
        self.limit = sys.maxsize if limit is None else max(1, limit)
        self.free = self.limit
        self.waiters: collections.deque[asyncio.Future] = collections.deque()
        self.waited = 0  # requests that had to wait for a slot
        self.stopped = False

    async def wait(self) -> None:
        """Wait until a slot is handed over (call only when ``free`` is 0); :class:`NotSent` once stopped.

        An error raised here (NotSent, or cancelled while waiting) carries ``sent = None``: never written.
        """
        try:
            if self.stopped:
                raise NotSent("stopped before it was sent")
            self.waited += 1
            fut = asyncio.get_running_loop().create_future()
            self.waiters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    self.release()  # handed a slot just as it was cancelled: pass it on
                else:
                    try:
                        self.waiters.remove(fut)
                    except ValueError:
                        pass
                raise
        except BaseException as e:
            e.sent = None  # type: ignore[attr-defined]
            raise

    def release(self) -> None:
        """Give a slot back: to the longest waiter, else to the free count."""
        waiters = self.waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.free += 1

    def stop(self) -> None:
        """Fail every waiter (and every later :meth:`wait`) with :class:`NotSent`."""
        self.stopped = True
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_exception(NotSent("stopped before it was sent"))


class _Conn:
    """One keep-alive connection: at most one request at a time; parses with llhttp.

    An asyncio protocol (connection_made, data_received, connection_lost) without
    ``asyncio.Protocol`` as its base, which only documents: the compiled twin makes it a C type
    (http.pxd), which cannot derive from a Python class.
    """

    __slots__ = ("transport", "parser", "fut", "body", "on_body", "expected", "on_message_begin", "head", "closed",
                 "keep_alive", "pool", "out", "sent", "deadline")

    def __init__(self, pool: "HttpClient | None" = None) -> None:
        self.pool = pool  # counts this connection among the client's open ones until it closes
        self.transport: asyncio.Transport | None = None
        self.fut: asyncio.Future | None = None
        self.body: list[bytes] = []  # the response's body parts, emptied after each response
        # llhttp's on_body callback is the list's own append: no Python frame per body part.
        self.on_body = self.body.append
        # One token per response the connection waits for, put by Origin.exchange; llhttp's
        # on_message_begin is the deque's own pop (no Python frame per response). A response nobody
        # asked for (after the one asked for, in the same packet) pops an empty deque: the parser
        # fails and the connection, which can no longer be trusted, is closed.
        self.expected: collections.deque[bool] = collections.deque()  # a list would realloc at each append and pop
        self.on_message_begin = self.expected.pop
        self.parser = httptools.HttpResponseParser(self)  # takes its callbacks from self: after on_body
        _lenient(self.parser)
        # The bytes of a response not complete yet (up to HEAD_KEEP), read again in one case only:
        # the connection ends before llhttp saw the response complete (connection_lost). So no
        # Python callback runs at the end of each head: one frame less per response.
        self.head = b""
        self.closed = False
        self.keep_alive = True  # whether the last response lets the connection be reused
        self.out = b""  # the request head queued for the next write (HttpClient.write_queued)
        self.sent: float | None = None  # perf_counter() when the current request's head was written
        self.deadline = 0.0  # loop time by which the current request (``fut``) must be answered

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.fut is None:  # bytes nobody asked for: the connection cannot be trusted any more
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(HttpError("the target switched protocols (HTTP upgrade)"))
        except httptools.HttpParserError as e:
            self._fail(HttpError(f"invalid HTTP response: {e}"))
        if self.fut is not None and len(self.head) < HEAD_KEEP:  # the response continues in the next chunk
            self.head += data

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone()
        fut = self.fut
        if fut is not None and not fut.done():
            if not self.parser.should_keep_alive() and _close_delimited(self.head):
                # A body delimited by the connection's close (no Content-Length, not chunked). Not
                # just "not keep-alive": a cut Content-Length or chunked body with Connection: close
                # (or HTTP/1.0) is an incomplete response, and so is a cut head.
                self._complete()
            else:
                why = f": {exc}" if exc else ""
                fut.set_exception(HttpError(f"server disconnected before the response was complete{why}"))
            self.fut = None

    # llhttp's callbacks: on_body and on_message_begin are C methods of a list and a deque (see __init__),
    # on_message_complete is _complete; no other is defined, so llhttp calls no other into Python.
    def _complete(self) -> None:
        status = self.parser.get_status_code()
        parts = self.body
        body = b"".join(parts)  # one part: that very bytes object (no copy)
        parts.clear()
        if status < 200:  # an interim response (100 Continue, 103 Early Hints): the final one follows
            self.expected.append(True)
            return
        # Asked here, in llhttp's callback: its flags are cleared once the callback returns.
        self.keep_alive = self.parser.should_keep_alive()
        self.head = b""
        fut, self.fut = self.fut, None
        if fut is not None and not fut.done():
            fut.set_result((status, body))

    on_message_complete = _complete  # llhttp callback (one Python frame less per response)

    def _fail(self, exc: BaseException) -> None:
        fut, self.fut = self.fut, None
        if fut is not None and not fut.done():
            fut.set_exception(exc)
        self.close()

    def on_timeout(self) -> None:
        fut, self.fut = self.fut, None
        if fut is not None and not fut.done():
            fut.set_exception(asyncio.TimeoutError())
        self.close()

    def _gone(self) -> None:
        if not self.closed:
            self.closed = True
            if self.pool is not None:
                self.pool.open -= 1
                self.pool.conns.discard(self)

    def close(self) -> None:
        self._gone()
        if self.transport is not None:
            self.transport.close()


class Origin:
    """Requests to one scheme://host:port (plus the base URL's path prefix), over pooled connections."""

    def __init__(self, base_url: str, timeout: float, ssl_context: ssl.SSLContext | None = None,
                 pool: "HttpClient | None" = None):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http:// or https:// URL: {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = (ssl_context or ssl.create_default_context()) if parts.scheme == "https" else None
        self.prefix = _quote_path(parts.path.rstrip("/"))
        self.timeout = timeout
        host = parts.netloc.rpartition("@")[2]  # without any user:password@
        self._head_tail = (f" HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\n"
                           "Accept: */*\r\n").encode("ascii")
        self._prefix_b = self.prefix.encode("ascii")
        # Per method seen: the request head's parts before and after the path, pre-encoded.
        self._heads: dict[str, tuple[bytes, bytes]] = {}
        self.idle: list[_Conn] = []
        self.opened = 0  # connections opened so far
        self.pool = pool if pool is not None else HttpClient(timeout)
        self.slots = self.pool.slots

    def _head_parts(self, method: str) -> tuple[bytes, bytes]:
        """A ``method`` request head's parts before and after the path: a POST says it has no body
        (as aiohttp does)."""
        end = b"Content-Length: 0\r\n\r\n" if method == "POST" else b"\r\n"
        return method.encode("ascii") + b" " + self._prefix_b, self._head_tail + end

    async def _connect(self, loop: asyncio.AbstractEventLoop, deadline: float) -> _Conn:
        kwargs: dict[str, Any] = {}
        if self.ssl is not None:
            kwargs = {"ssl": self.ssl, "server_hostname": self.host}
        pool = self.pool
        pool.make_room()
        pool.open += 1  # counted while connecting, so concurrent connects cannot overshoot the limit
        if pool.open > pool.most_open:
            pool.most_open = pool.open
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(_Conn, self.host, self.port, **kwargs),
                                             max(0.0, deadline - loop.time()))
        except BaseException:
            pool.open -= 1
            raise
        if conn.closed:  # closed by the server already: it no longer counts
            pool.open -= 1
        else:
            conn.pool = pool  # from now on it uncounts itself when it closes
            pool.conns.add(conn)
        self.opened += 1
        return conn  # type: ignore[return-value]

    async def request(self, method: str, path: str) -> tuple[int, bytes]:
        """Send ``method path`` (no body); the response's (status, body)."""
        status, body, _ = await self.exchange(method, path)
        return status, body

    async def exchange(self, method: str, path: str) -> tuple[int, bytes, float]:
        """Send ``method path`` (no body) once a slot is free; (status, body, when it was written).

        "When" is ``time.perf_counter()`` just before the request head is written (after any wait
        for a slot and any connect). An error raised here carries it as ``sent`` (None: never written).
        """
        slots = self.slots
        if slots.free:
            slots.free -= 1
        else:
            await slots.wait()  # an error raised while waiting carries sent = None
        sent = None
        try:
            # The client's loop, looked up once: on Python 3.11 get_running_loop() makes a getpid
            # system call on every call (strace: one per replayed request).
            loop = self.pool.loop
            if loop is None or loop.is_closed():
                loop = self.pool.loop = asyncio.get_running_loop()
                self.pool.queued.clear()  # heads queued on a loop that has closed: never to be written
            deadline = loop.time() + self.timeout
            idle = self.idle
            conn = None
            while idle:
                c = idle.pop()
                if not c.closed:
                    conn = c
                    break
            if conn is None:
                conn = await self._connect(loop, deadline)
            try:
                raw = path.encode("ascii")
            except UnicodeEncodeError:
                raw = None
            if raw is None or 1 in raw.translate(_UNSAFE_BYTES):
                raw = _quote_path(path).encode("ascii")
            # Concatenation of pre-encoded parts: cheaper than %-formatting the head (counted).
            parts = self._heads.get(method)
            if parts is None:
                parts = self._heads[method] = self._head_parts(method)
            head = parts[0] + raw + parts[1]
            fut = loop.create_future()
            conn.fut = fut
            conn.expected.append(True)  # its response may begin (see _Conn.expected)
            conn.out = head
            conn.sent = None
            # The deadline is the connection's, watched by the client's one timer (see HttpClient.arm).
            conn.deadline = deadline
            pool = self.pool
            if deadline < pool.timer_at or pool.timer_loop is not loop:
                pool.arm(loop, deadline)
            # Written with the others queued in this pass of the loop (see the module's docstring).
            queued = pool.queued
            if not queued:
                loop.call_soon(pool.write_queued)
            queued.append(conn)
            if len(queued) >= WRITE_BATCH:
                pool.write_queued()
            try:
                status, body = await fut
            except BaseException:
                # Timed out, dropped, unparsable, or cancelled mid-request: this connection is done.
                sent = conn.sent
                conn.fut = None
                conn.close()
                raise
            sent = conn.sent
            if conn.keep_alive and not conn.closed:
                idle.append(conn)
            else:
                conn.close()
        except BaseException as e:
            e.sent = sent  # type: ignore[attr-defined]
            slots.release()
            raise
        if slots.waiters:  # Slots.release inline (one call less per request)
            slots.release()
        else:
            slots.free += 1
        return status, body, sent

    def close(self) -> None:
        """Close every idle connection (and, with a client of its own, stop its deadline timer)."""
        for c in self.idle:
            c.close()
        self.idle.clear()
        if not self.pool.origins:  # an Origin made without a client: nothing else uses its timer
            self.pool.cancel_timer()


class HttpClient:
    """One :class:`Origin` per distinct base URL, sharing ``limit`` slots and connections; ``close()`` closes every pooled connection.

    ``limit`` (None: no limit) caps the requests in flight *and* the open connections across all
    origins; a request over the limit waits for a slot (see :class:`Slots`).
    """

    def __init__(self, timeout: float, limit: int | None = None):
        self.timeout = timeout
        self.origins: dict[str, Origin] = {}
        self._ssl: ssl.SSLContext | None = None
        self.slots = Slots(limit)
        self.open = 0  # connections open or being opened, over all origins
        self.most_open = 0  # the most that were open at once
        # The open connections (each carries at most one request: its ``fut`` and ``deadline``).
        # One timer serves every request's deadline, armed for the earliest: a timer armed and
        # cancelled per request cost ~2 µs of CPU a request, and a queue of (deadline, request)
        # entries ~1k instructions (docs/performance.md). A request only compares its deadline
        # with the timer's; when the timer fires it walks the open connections (at most ``limit``).
        self.conns: set[_Conn] = set()
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = float("inf")  # when ``timer`` fires
        self.timer_loop: asyncio.AbstractEventLoop | None = None
        # The event loop the client sends on (set by the first request; a client serves one loop
        # at a time, and one whose loop has closed takes the running one).
        self.loop: asyncio.AbstractEventLoop | None = None
        # Connections whose request head waits for write_queued (at most one request each).
        self.queued: list[_Conn] = []

    def write_queued(self) -> None:
        """Write every queued request head, in the order queued, each stamped ``sent`` as it goes.

        A request whose wait already ended (cancelled, timed out, its connection lost) is not written.
        """
        conns, self.queued = self.queued, []
        for conn in conns:
            fut = conn.fut
            if fut is not None and not fut.done() and not conn.closed:
                conn.sent = perf_counter()
                try:
                    conn.transport.write(conn.out)  # type: ignore[union-attr]
                except (OSError, RuntimeError) as e:  # one transport's failure must not strand the others
                    conn._fail(HttpError(f"writing the request failed: {e}"))
            conn.out = b""

    def arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        """(Re-)arm the one deadline timer to fire at ``when`` (loop time)."""
        if self.timer is not None:
            self.timer.cancel()
        self.timer = loop.call_at(when, self._expire, loop)
        self.timer_at, self.timer_loop = when, loop

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """The timer fired: time out every request whose deadline has come; re-arm for the next."""
        self.timer, self.timer_at = None, float("inf")
        now = loop.time() + 0.001  # a loop timer may fire up to its clock's granularity early
        nxt = float("inf")
        for c in list(self.conns):  # on_timeout closes the connection, which leaves the set
            if c.fut is not None:
                if c.deadline <= now:
                    c.on_timeout()
                elif c.deadline < nxt:
                    nxt = c.deadline
        if nxt != float("inf"):
            self.arm(loop, nxt)

    def cancel_timer(self) -> None:
        """Stop the deadline timer (the client is closing)."""
        if self.timer is not None:
            self.timer.cancel()
        self.timer, self.timer_at = None, float("inf")

    def make_room(self) -> None:
        """Before opening a connection: close idle ones (oldest first, any origin) while ``limit`` are open."""
        if self.open >= self.slots.limit:
            for o in self.origins.values():
                idle = o.idle
                while idle and self.open >= self.slots.limit:
                    idle.pop(0).close()

    def origin(self, base_url: str) -> Origin:
        """The origin for ``base_url`` (one per distinct base URL)."""
        o = self.origins.get(base_url)
        if o is None:
            if base_url.startswith("https:") and self._ssl is None:
                self._ssl = ssl.create_default_context()
            o = self.origins[base_url] = Origin(base_url, self.timeout, self._ssl, self)
        return o

    def stop(self) -> None:
        """Requests waiting for a slot give up with :class:`NotSent`; those out carry on."""
        self.slots.stop()

    async def close(self) -> None:
        """Close every pooled connection (and let the transports finish closing)."""
        self.slots.stop()
        for o in self.origins.values():
            o.close()
        self.queued.clear()
        self.cancel_timer()
        await asyncio.sleep(0)


# The compiled twin of this module, when one was built from this very source (see .compiled).
from .compiled import adopt, twin  # noqa: E402

COMPILED = adopt(globals(), twin(__name__, __file__))
