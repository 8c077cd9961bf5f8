"""The capture proxy behind ``wdm-replay record``: an aiohttp reverse proxy that remembers what it forwards.

Every request is forwarded unchanged to its service's base URL (by path prefix: ``/orders`` →
ORDER_URL, ``/stock`` → STOCK_URL, ``/payment`` → PAYMENT_URL; anything else → ORDER_URL) and its
answer passed back unchanged — status, headers (hop-by-hop ones aside), body streamed chunk by chunk
and never decompressed; both sides keep connections alive. For each request the proxy keeps one
:class:`~.sessionize.Exchange` (method, path, client connection, times, status and, for answers
to writes that name an id, the answer's first 512 bytes); when the capture stops they become a trace (:mod:`.sessionize`).

Stopping: :meth:`CaptureProxy.stop` (Ctrl-C / SIGTERM in the CLI), ``duration`` seconds after the
start, or once ``max_requests`` requests were taken — later ones are answered 503 and neither
forwarded nor recorded. On stop the proxy stops listening, lets requests in flight finish (up to
``grace`` seconds) and answers requests still arriving on open connections with 503.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import aiohttp
from aiohttp import web

from ..errors import WdmError
from ..targets import Target
from .sessionize import Exchange, build_trace, write_captured

# Of each answer to a POST/PUT/DELETE, the first bytes are kept when they name an id (``"…_id"``):
# that is where create answers carry it. Kept small so a long capture's memory stays modest.
BODY_KEPT = 512
SMALL_ANSWER = 4096  # answers of known length up to this are read whole and sent in one write
# Headers that belong to one connection, not to the message (RFC 9110 §7.6.1), plus Host and the
# framing ones aiohttp sets itself from the streamed body.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "transfer-encoding", "upgrade", "host", "content-length"})
UPSTREAM_CONNECTIONS = 512  # explicit (aiohttp's default of 100 would quietly cap a capture's concurrency)
UPSTREAM_TIMEOUT = 300.0


class CaptureError(WdmError):
    """A capture that cannot start (address in use) or produced nothing."""


class CaptureProxy:
    """The reverse proxy and its list of exchanges (one event loop)."""

    def __init__(self, target: Target, *, max_requests: int | None = None, grace: float = 30.0):
        self.target = target
        self.max_requests = max_requests
        self.grace = grace
        self.exchanges: list[Exchange] = []
        self.refused = 0  # answered 503 (limit reached or stopping), not forwarded
        self.stop_reason = ""
        self.started_at = ""
        self.stopped = asyncio.Event()
        self.url = ""
        self._taken = 0
        self._in_flight = 0
        self._closing = False
        self._hurry = False
        self._conns: dict[Any, int] = {}
        self._t0 = 0.0
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None

    def _base(self, path: str) -> str:
        for prefix, base in (("/stock", self.target.stock_url), ("/payment", self.target.payment_url)):
            if path == prefix or path.startswith(prefix + "/"):
                return base
        return self.target.order_url

    def request_stop(self, reason: str) -> None:
        """Ask the capture to stop (first reason wins); :meth:`run_until_stopped` then finishes it.

        A second request (a second Ctrl-C) ends the grace wait at once: requests still in flight are
        cut off and recorded with no answer (an upstream that never answers held the proxy for the
        whole ``--grace``, deaf to Ctrl-C).
        """
        if not self.stopped.is_set():
            self.stop_reason = reason
            self.stopped.set()
        else:
            self._hurry = True

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start listening; return the proxy's base URL."""
        self._client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=UPSTREAM_CONNECTIONS, limit_per_host=0),
            timeout=aiohttp.ClientTimeout(total=UPSTREAM_TIMEOUT), auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"))
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                      shutdown_timeout=1.0)  # in-flight requests are drained before
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as e:
            await self._cleanup()
            raise CaptureError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        h, p = sock.getsockname()[:2]
        self.url = f"http://{'[' + h + ']' if ':' in h else h}:{p}"
        self._t0 = time.perf_counter()
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return self.url

    async def run_until_stopped(self, duration: float | None = None) -> None:
        """Wait for a stop request (or ``duration`` seconds), then drain requests in flight and close."""
        try:
            await asyncio.wait_for(self.stopped.wait(), duration)
        except asyncio.TimeoutError:
            self.request_stop("duration")
        await self.close()

    async def close(self) -> None:
        """Stop taking requests, let those in flight finish (up to ``grace`` s), close both sides."""
        self._closing = True
        deadline = time.perf_counter() + self.grace
        while self._in_flight and time.perf_counter() < deadline and not self._hurry:
            await asyncio.sleep(0.01)
        await self._cleanup()

    async def _cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._client is not None:
            await self._client.close()
            self._client = None

    def _now(self) -> float:
        return time.perf_counter() - self._t0

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        if self._closing or (self.max_requests is not None and self._taken >= self.max_requests):
            self.refused += 1
            return web.Response(status=503, text="wdm-replay record: capture stopped\n",
                                headers={"Connection": "close"})
        seq = self._taken
        self._taken += 1
        if self.max_requests is not None and self._taken >= self.max_requests:
            self.request_stop("requests")
        self._in_flight += 1
        peer = request.transport.get_extra_info("peername") if request.transport else None
        conn = self._conns.setdefault(peer if peer is not None else ("?", seq), len(self._conns))
        sent = self._now()
        answer: list[int | None] = [None]  # upstream's status, once known
        head = bytearray()
        try:
            return await self._exchange(request, answer, head)
        finally:
            self._in_flight -= 1
            kept = bytes(head) if request.method not in ("GET", "HEAD") and b"_id" in head else b""
            self.exchanges.append(Exchange(seq, conn, request.method, request.raw_path, round(sent, 6),
                                           round(self._now(), 6), answer[0], kept))

    async def _exchange(self, request: web.Request, answer: list, head: bytearray) -> web.StreamResponse:
        """Forward ``request``, stream the answer back; note its status in ``answer`` and first bytes in ``head``."""
        assert self._client is not None
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        if request.content_length is not None:
            headers.append(("Content-Length", str(request.content_length)))
        data = request.content if request.body_exists else None
        url = self._base(request.path) + request.raw_path
        try:
            up_cm = self._client.request(request.method, url, headers=headers, data=data, allow_redirects=False)
            up = await up_cm.__aenter__()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            return web.Response(status=502, text=f"wdm-replay record: upstream: {e}\n")
        resp: web.StreamResponse | None = None
        try:
            answer[0] = up.status
            headers = [(k, v) for k, v in up.headers.items() if k.lower() not in HOP_BY_HOP]
            if up.content_length is not None and up.content_length <= SMALL_ANSWER:
                # A small answer of known length (the shop's usual): one read, one write.
                body = await up.read()
                head += body[:BODY_KEPT]
                small = web.Response(status=up.status, reason=up.reason, body=body)
                small.headers.extend(headers)
                return small
            resp = web.StreamResponse(status=up.status, reason=up.reason)
            resp.headers.extend(headers)
            if up.content_length is not None:
                resp.content_length = up.content_length
            await resp.prepare(request)
            async for chunk in up.content.iter_any():
                if len(head) < BODY_KEPT:
                    head += chunk[: BODY_KEPT - len(head)]
                await resp.write(chunk)
            await resp.write_eof()
            return resp
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            # Upstream broke off its answer (closed mid-body, timed out): the request is recorded
            # with no answer, as an unreachable upstream's is. An answer not begun yet is a 502; one
            # already streaming can only be cut off, so the client sees it incomplete too.
            answer[0] = None
            del head[:]
            if resp is None:
                return web.Response(status=502, text=f"wdm-replay record: upstream broke off its answer: {e}\n",
                                    headers={"Connection": "close"})
            if request.transport is not None:
                request.transport.close()
            return resp
        finally:
            await up_cm.__aexit__(None, None, None)

    def write_trace(self, output: str | Path, *, dialect: str | None = None, phase_gap: float | None = None,
                    extra: dict | None = None) -> dict:
        """Write what was captured as a trace; return its header. Refuses an empty capture."""
        if not self.exchanges:
            raise CaptureError("nothing was captured: no request reached the proxy; no trace written")
        facts = {"upstream": self.target.as_dict(), "listen": self.url, "started": self.started_at,
                 "wall": round(max(e.done for e in self.exchanges), 3), "stopped_by": self.stop_reason,
                 "refused": self.refused, "connections": len(self._conns), **(extra or {})}
        trace = build_trace(self.exchanges, dialect=dialect, phase_gap=phase_gap, facts=facts)
        return write_captured(trace, output)


async def record(target: Target, output: str | Path, *, host: str = "127.0.0.1", port: int = 0,
                 duration: float | None = None, max_requests: int | None = None, phase_gap: float | None = None,
                 dialect: str | None = None, on_ready: Callable[[str], None] | None = None,
                 grace: float = 30.0) -> dict:
    """Run a capture until Ctrl-C / SIGTERM / ``duration`` / ``max_requests``; write the trace; return its header."""
    proxy = CaptureProxy(target, max_requests=max_requests, grace=grace)
    await proxy.start(host, port)
    loop = asyncio.get_running_loop()
    installed: dict[int, Any] = {}  # signal -> the handler it had before (asyncio's removal would set the default)
    if threading.current_thread() is threading.main_thread():
        for sig, name in ((signal.SIGINT, "interrupt"), (signal.SIGTERM, "terminate")):
            before = signal.getsignal(sig)
            try:
                loop.add_signal_handler(sig, proxy.request_stop, name)
                installed[sig] = before
            except (NotImplementedError, RuntimeError):
                pass
    try:
        if on_ready is not None:
            on_ready(proxy.url)
        await proxy.run_until_stopped(duration)
        # Written while the loop still owns the signals: a Ctrl-C or SIGTERM now waits for the loop
        # (a no-op by then) instead of killing the write and, with it, everything captured.
        return proxy.write_trace(output, dialect=dialect, phase_gap=phase_gap)
    finally:
        for sig, before in installed.items():
            loop.remove_signal_handler(sig)
            signal.signal(sig, before)
