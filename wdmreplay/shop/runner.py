"""Running the reference shop: bind its port(s), a background-thread shop for tests and the demo,
and the blocking ``wdm-replay serve`` loop with its banner and clean shutdown.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import signal
import sqlite3
import threading
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from aiohttp import web

from ..targets import Target
from .app import ShopConfig, ShopError, ShopState, connect_peers, make_app, make_split_apps
from .inject import describe_faults


def _client_host(host: str) -> str:
    # A wildcard bind address is not one a client (or the order service) can connect to.
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class RunningShop:
    """A shop listening on an event loop: its runners, URLs and state."""

    def __init__(self, config: ShopConfig, state: ShopState, split: bool):
        self.config = config
        self.state = state
        self.split = split
        self.runners: list[web.AppRunner] = []
        self.urls: dict[str, str] = {}  # service ("orders", "stock", "payment") -> base URL
        self.sagas: list[Any] = []  # serve --data: saga coordinators (their background compensators)
        self.data: str | None = None
        self.only: str | None = None

    @property
    def target(self) -> Target:
        """The shop as a replay target (urls.json shape)."""
        return Target(self.urls["orders"], self.urls["payment"], self.urls["stock"])

    async def stop(self) -> None:
        """Close every listener and wait for in-flight requests (briefly)."""
        # Held answers (apply-then-hang) and running sagas (slow-saga) first: the runners wait for
        # in-flight handlers, and these would only be cut off at the shutdown timeout.
        pending = list(self.state.background)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        for saga in self.sagas:
            await saga.stop()
        for r in reversed(self.runners):
            await r.cleanup()
        self.runners.clear()
        for d in self.state.durable.values():
            d.close()
        self.state.durable.clear()


async def _bind(app: web.Application, host: str, port: int, shop: RunningShop) -> int:
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    shop.runners.append(runner)
    site = web.TCPSite(runner, host, port, backlog=2048, reuse_address=True)
    try:
        await site.start()
    except OSError as e:
        await shop.stop()
        if e.errno == errno.EADDRINUSE:
            raise ShopError(f"cannot listen on {host}:{port}: address already in use") from None
        raise ShopError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    server = site._server  # aiohttp keeps the asyncio server here; it knows the real port
    assert server is not None and server.sockets
    return int(server.sockets[0].getsockname()[1])


@dataclass(frozen=True, slots=True)
class Peers:
    """The base URLs the order service reaches stock and payment at (``serve --only orders``)."""

    stock: str | None = None
    payment: str | None = None


async def start_shop(
    config: ShopConfig, host: str = "127.0.0.1", port: int = 0, split: bool = False,
    data: str | None = None, only: str | None = None, peers: Peers | None = None,
) -> RunningShop:
    """Start the shop on this event loop: one port, or three consecutive ones with ``split``.

    Port 0 picks free ports (with ``split``, three independent free ports). ``data``: a directory
    whose SQLite files hold the state (durable; see durable.py). ``only`` (split): serve just that
    service on ``port``; the order service then needs both of ``peers``.
    """
    from .durable import attach, wire

    if config.inject == "no-recovery" and data is None:
        raise ShopError("--inject no-recovery is a bug of the durable shop: it needs --data DIR")
    if only is not None and not split:
        raise ShopError("--only needs --split")
    if only == "orders" and not (peers and peers.stock and peers.payment):
        raise ShopError("--only orders needs --stock-url and --payment-url")
    state = ShopState(config)
    shop = RunningShop(config, state, split)
    shop.data, shop.only = data, only
    if data is not None:
        try:
            state.durable = attach(state, data, ["shop"] if not split else [only] if only else
                                   ["orders", "stock", "payment"])
        except (OSError, sqlite3.Error) as e:
            raise ShopError(f"--data {data}: cannot open the shop's database: {e}") from None
    base = f"http://{_client_host(host)}:"
    if not split:
        app = make_app(config, state=state)
        if data is not None:
            shop.sagas = wire(state, {"shop": app}, one_port=True)
        p = await _bind(app, host, port, shop)
        shop.urls = {s: base + str(p) for s in ("orders", "stock", "payment")}
        _start_sagas(shop)
        return shop
    apps = make_split_apps(config, state=state)
    if only is not None:
        app = apps[only]
        if only == "orders":
            assert peers is not None and peers.stock and peers.payment
            connect_peers(app, peers.stock, peers.payment)
        if data is not None:
            shop.sagas = wire(state, {only: app}, one_port=False)
        p = await _bind(app, host, port, shop)
        shop.urls = {only: base + str(p)}
        if only == "orders":
            shop.urls.update(stock=peers.stock.rstrip("/"), payment=peers.payment.rstrip("/"))
        _start_sagas(shop)
        return shop
    if data is not None:
        shop.sagas = wire(state, apps, one_port=False)
    ports = {}
    # Stock and payment first, so the order service knows its peers before it accepts a request.
    for i, service in ((1, "stock"), (2, "payment"), (0, "orders")):
        if service == "orders":
            connect_peers(apps["orders"], base + str(ports["stock"]), base + str(ports["payment"]))
        ports[service] = await _bind(apps[service], host, port + i if port else 0, shop)
    shop.urls = {s: base + str(ports[s]) for s in ("orders", "stock", "payment")}
    _start_sagas(shop)
    return shop


def _start_sagas(shop: RunningShop) -> None:
    # After binding: the compensator's first round recovers the sagas a killed process left open.
    for saga in shop.sagas:
        saga.start()


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop  # installed by default where it runs (setup.cfg): faster, same semantics

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


class ShopThread:
    """The reference shop served from a background thread with its own event loop.

    Example::

        with ShopThread(split=True, inject="oversell") as shop:
            replay_trace(path, out, target=shop.target, dialect="2024")
    """

    def __init__(
        self,
        split: bool = False,
        inject: str | None = None,
        latency_ms: float = 0,
        error_rate: float = 0.0,
        seed: int = 0,
        dialects: str | Iterable[str] = "both",
        host: str = "127.0.0.1",
        port: int = 0,
        faults: tuple[tuple[str, float], ...] = (),
        hang_s: float = 30.0,
        saga_delay_s: float = 2.0,
        data: str | None = None,
    ):
        self.config = ShopConfig(inject, float(latency_ms), float(error_rate), seed, dialects,  # type: ignore[arg-type]
                                 tuple(faults), float(hang_s), float(saga_delay_s))
        self.data = data
        self.split = split
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._shop: RunningShop | None = None
        self._stopped: asyncio.Event | None = None

    # lifecycle
    def start(self) -> "ShopThread":
        """Start serving; returns once the shop listens (or raises why it could not)."""
        if self._thread is not None:
            raise ShopError("shop already started")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = self._loop = _new_loop()
            asyncio.set_event_loop(loop)
            try:
                self._stopped = asyncio.Event()
                self._shop = loop.run_until_complete(start_shop(self.config, self.host, self.port, self.split,
                                                                  data=self.data))
            except BaseException as e:  # handed to the starting thread
                failure.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_until_complete(self._stopped.wait())
                loop.run_until_complete(self._shop.stop())
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="wdm-shop", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop serving and join the thread (idempotent)."""
        if self._thread is None:
            return
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stopped.set)
            except RuntimeError:
                pass  # loop already closed
        self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> "ShopThread":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # where it is
    def _running(self) -> RunningShop:
        if self._shop is None or self._thread is None:
            raise ShopError("shop is not running")
        return self._shop

    @property
    def running(self) -> RunningShop:
        """The running shop (config, state, URLs); ShopError if not started."""
        return self._running()

    @property
    def target(self) -> Target:
        """The shop as a replay target."""
        return self._running().target

    @property
    def url(self) -> str:
        """Base URL of the gateway (one-port) or of the order service (split)."""
        return self._running().urls["orders"]

    @property
    def urls(self) -> dict[str, str]:
        """Base URL per service: ``{"orders", "stock", "payment"}``."""
        return dict(self._running().urls)

    @property
    def state(self) -> ShopState:
        """The live state (read it through :meth:`snapshot` while requests may be in flight)."""
        return self._running().state

    # inspection, over HTTP like any client, or on the shop's own loop
    def stats(self) -> dict[str, Any]:
        """``GET /_shop/stats``: requests received, total and by operation."""
        with urllib.request.urlopen(self.url + "/_shop/stats", timeout=10) as r:
            return json.loads(r.read())

    def reset(self) -> None:
        """``POST /_shop/reset``: forget every entity and counter."""
        req = urllib.request.Request(self.url + "/_shop/reset", method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()

    def snapshot(self) -> dict[str, Any]:
        """The whole state ``{"items", "users", "orders"}``, read on the shop's loop (consistent)."""
        shop = self._running()
        assert self._loop is not None

        async def read() -> dict[str, Any]:
            return shop.state.snapshot()

        return asyncio.run_coroutine_threadsafe(read(), self._loop).result(timeout=30)


def banner(shop: RunningShop) -> str:
    """What ``serve`` prints at startup: where it listens, a urls.json, and any injected bug."""
    cfg = shop.config
    lines = []
    if cfg.inject:
        bar = "!" * 72
        lines += [
            bar,
            f"!!! BUG INJECTED: --inject {cfg.inject} -- this shop is DELIBERATELY WRONG",
            f"!!! {INJECT_EFFECTS[cfg.inject]}",
            bar,
        ]
    dialects = " and ".join(cfg.dialects)
    if shop.only is not None:
        lines.append(f"wdm-replay reference shop: {shop.only} service alone (split, dialects {dialects}) "
                     f"on {shop.urls[shop.only]}")
        if shop.only == "orders":
            lines.append(f"  calls stock at {shop.urls['stock']}, payment at {shop.urls['payment']}")
    elif shop.split:
        lines.append(f"wdm-replay reference shop (split, dialects {dialects}):")
        for s in ("orders", "stock", "payment"):
            lines.append(f"  {s:<8} service on {shop.urls[s]}")
    else:
        lines.append(f"wdm-replay reference shop (dialects {dialects}) listening on {shop.urls['orders']}")
    extras = []
    if cfg.latency_ms:
        extras.append(f"latency +{cfg.latency_ms:g} ms per request")
    if cfg.error_rate:
        extras.append(f"error rate {cfg.error_rate:g} (HTTP 500, no effect; seed {cfg.seed})")
    if extras:
        lines.append("  faults: " + "; ".join(extras))
    for line in describe_faults(cfg.faults, cfg.hang_s, cfg.saga_delay_s):
        lines.append(f"  injected fault (a correct, unhelpful shop): {line}")
    if shop.data is not None:
        lines.append(f"  durable: state in SQLite under {shop.data} (every answer is committed first)"
                     + ("; checkouts are logged sagas, recovered at start"
                        if shop.sagas and (shop.split or cfg.fault_rate("slow-saga")) else ""))
    if shop.only is None or shop.only == "orders":
        lines.append("urls.json:")
        lines.append(json.dumps(shop.target.as_dict(), indent=2))
    lines.append("admin: GET /_shop/stats, POST /_shop/reset. Stop with Ctrl-C.")
    return "\n".join(lines)


INJECT_EFFECTS = {
    "lost-update": "stock subtract and payment read, yield, then write: concurrent updates are lost",
    "oversell": "stock subtract never refuses: stock goes negative, more checkouts succeed than stock",
    "no-rollback": "a checkout refused for credit keeps the stock it took (order stays unpaid)",
    "double-charge": "a successful checkout charges the user twice (credit may go negative)",
    "lost-line": "add_item reads the order's lines, yields, writes them back: concurrent add_item lose lines",
    "wrong-total": "total_cost counts each distinct item's price once (quantity ignored): below sum qty x price",
    "repeat-collapse": "checkout keeps one quantity per item id (the last line's): adding 1 then 2 units of "
                       "an item charges for 3 and takes 2",
    "no-recovery": "split checkouts keep no saga log: a kill between the legs leaves stock taken without payment",
}


class _OneLineFormatter(logging.Formatter):
    """aiohttp's server log (e.g. a malformed request) as one line, without a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            detail = " ".join(str(exc).split())
            msg += f": {type(exc).__name__}" + (f": {detail[:200]}" if detail else "")
        return f"wdm-replay serve: {msg}"


def _quiet_aiohttp_logs() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(_OneLineFormatter())
    log = logging.getLogger("aiohttp")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.WARNING)


def serve(
    config: ShopConfig,
    host: str = "127.0.0.1",
    port: int = 8000,
    split: bool = False,
    announce: Callable[[str], None] = print,
    data: str | None = None,
    only: str | None = None,
    peers: Peers | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM, then stop cleanly; ``announce`` receives the banner."""
    _quiet_aiohttp_logs()
    loop = _new_loop()
    asyncio.set_event_loop(loop)

    async def main() -> None:
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # not the main thread / platform
                pass
        shop = await start_shop(config, host, port, split, data=data, only=only, peers=peers)
        try:
            announce(banner(shop))
            await stop.wait()
        finally:
            await shop.stop()

    try:
        loop.run_until_complete(main())
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
        loop.close()
