"""Test support for the replayer's tests: hand-built traces and a tiny purpose-built HTTP target."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

from aiohttp import web

from wdmreplay.traces import TraceWriter, step

# A behaviour gets (method, path) and returns (status, body bytes, delay seconds); status -1 drops
# the connection without answering.
Behaviour = Callable[[str, str], Any]


class LoopThread:
    """A server on its own event loop in a daemon thread: ``with`` starts it (until ready) and stops it.

    Subclasses implement ``_start`` (bind, note ports/URLs) and ``_stop`` (close what ``_start`` opened),
    both run on the server's loop.
    """

    _loop: asyncio.AbstractEventLoop
    _thread: threading.Thread

    async def _start(self) -> None:
        raise NotImplementedError

    async def _stop(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        loop.run_until_complete(self._start())
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._stop())
        loop.close()

    def __enter__(self):  # type: ignore[no-untyped-def]
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10), f"{type(self).__name__} did not start"
        return self

    def __exit__(self, *exc: Any) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @staticmethod
    def wait_for(condition: Callable[[], bool], within: float = 10.0) -> bool:
        """Poll ``condition`` (about the server's counters) for up to ``within`` seconds."""
        end = time.monotonic() + within
        while not condition():
            if time.monotonic() > end:
                return False
            time.sleep(0.005)
        return True


def abort_all(writers: set[asyncio.StreamWriter]) -> None:
    """Abort raw connections (handlers then see EOF) rather than cancel their handlers: asyncio
    3.11 logs a cancelled client_connected_cb task as an error."""
    for w in writers:
        w.transport.abort()


class TinyTarget(LoopThread):
    """An aiohttp app on 127.0.0.1:0 in a background thread answering every path via ``behaviour``.

    ``.url`` is its base URL; ``.seen`` lists every ``(method, path)`` it received, in order.
    """

    def __init__(self, behaviour: Behaviour):
        self.behaviour = behaviour
        self.seen: list[tuple[str, str]] = []
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.method, request.path))
        status, body, delay = self.behaviour(request.method, request.path)
        if delay:
            await asyncio.sleep(delay)
        if status < 0:  # drop the connection without an answer
            assert request.transport is not None
            request.transport.close()
            await asyncio.sleep(0.05)
        return web.Response(status=status, body=body, content_type="application/json")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        await self._runner.cleanup()

    def sent(self, prefix: str) -> int:
        """How many requests had a path starting with ``prefix``."""
        return sum(1 for _, p in self.seen if p.startswith(prefix))


def counting_shop(bad_create: str | None = None, create_status: int = 200) -> Behaviour:
    """A fake shop: creates answer fresh ids (or ``bad_create`` / ``create_status``), finds answer state."""
    counter = {"n": 0}

    def behave(method: str, path: str) -> tuple[int, bytes, float]:
        if "/create" in path:
            counter["n"] += 1
            if bad_create is not None:
                return create_status, bad_create.encode(), 0
            if create_status != 200:
                return create_status, b"cannot create", 0
            key = "item_id" if path.startswith("/stock") else "user_id" if path.startswith("/payment") else "order_id"
            return 200, json.dumps({key: f"id{counter['n']}"}).encode(), 0
        if path.startswith("/stock/find"):
            return 200, b'{"stock": 3, "price": 2}', 0
        if path.startswith("/payment/find_user"):
            return 200, b'{"user_id": "u", "credit": 7}', 0
        if path.startswith("/orders/find"):
            return 200, b'{"order_id": "o", "paid": false, "items": [], "user_id": "u", "total_cost": 0}', 0
        return 200, b"ok", 0

    return behave


def write_trace(path: str | Path, phases: list[list[tuple[float, list[dict]]]], *, dialect: str = "2024",
                scenarios: tuple[str, ...] = ("populate", "orders"), sid0: int = 0) -> dict:
    """A trace from ``phases`` = per phase, a list of (at, steps); sids count up from ``sid0``."""
    with TraceWriter(path, workload="test", seed=0, params={}, phases=[f"p{i}" for i in range(len(phases))],
                     scenarios=list(scenarios), dialect=dialect) as w:
        sid = sid0
        for p, sessions in enumerate(phases):
            for at, steps in sessions:
                w.write_session(sid, p, at, steps)
                sid += 1
    return w.header


def populate_and_order_trace(path: str | Path, n: int, *, spacing: float = 0.0) -> dict:
    """Phase 0: n sessions each create an item with stock and a user with funds; phase 1: n sessions
    each order the item of session ``i`` for the user of session ``i`` and check out.

    With ``n`` odd, phase-1 session ``n + i`` and phase-0 session ``i`` have different parity, so
    under two workers every order uses symbols bound by the other worker.
    """
    p0 = []
    for i in range(n):
        p0.append((i * spacing, [
            step("create_item", [3], bind=f"$s{i}.item", scenario="populate"),
            step("add_stock", [f"$s{i}.item", 10], scenario="populate"),
            step("create_user", [], bind=f"$s{i}.user", scenario="populate"),
            step("add_funds", [f"$s{i}.user", 100], scenario="populate"),
        ]))
    p1 = []
    for i in range(n):
        o = f"$s{n + i}.order"
        p1.append((i * spacing, [
            step("create_order", [f"$s{i}.user"], bind=o, scenario="orders"),
            step("add_item", [o, f"$s{i}.item", 2], scenario="orders"),
            step("checkout", [o], scenario="orders"),
        ]))
    return write_trace(path, [p0, p1])


def closed_port() -> int:
    """A loopback port nothing listens on (bound, read, released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run_cli(capsys: Any, *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``wdm-replay ARGV`` run in this process (a command that returns: 0)."""
    from wdmreplay.cli import main

    try:
        main(list(argv))
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def merge_final_maps(finals: list, offsets: list, labels: list) -> tuple[dict | None, dict]:
    """``merge.merge_final`` of final records as stored (maps, as the tests write them), the merged one as a map."""
    from wdmreplay.replayer.merge import merge_final
    from wdmreplay.traces.records import FinalRecord

    merged, disagree = merge_final([None if f is None else FinalRecord.from_record(f) for f in finals], offsets, labels)
    return (None if merged is None else merged.to_record()), disagree
