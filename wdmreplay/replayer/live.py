"""The live view of a replay (``replay --ui``): running figures, and a small web app that serves them.

:class:`LiveStats` is the compute: it takes the request chunks and events the coordinator writes
(through :meth:`LiveView.tap`, a pass-through of the results writer) and keeps bounded running
figures — outcome counts, the response-time histogram of the replay summary (so its final p50/p99
equal the summary's), per-second counts by outcome with a coarse histogram each (p50/p99 over
time), per-operation outcome counts, fault windows as they open and close. :meth:`LiveStats.snapshot`
returns them as the JSON-ready dict ``GET /stats.json`` serves.

:class:`LiveView` is the web app: an aiohttp server on its own event loop in a daemon thread,
serving the page (``live.html`` in this package: self-contained, it polls ``/stats.json`` once a
second and draws its charts as inline SVG) and the figures. Its socket is bound when the view is
opened — before anything is sent, so a port in use is a one-line error — and the thread starts
after the coordinator forked its workers (no thread runs in the process while it forks).
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import threading
import time
from importlib import resources
from typing import Any, Mapping

import numpy as np

from ..errors import WdmError
from ..operations import OP_NAMES
from ..traces.records import Event
from ..traces.results import (CONN_ERROR, ERROR, EVENT_FAULT, EVENT_FAULT_START, EVENT_FINAL_READ, EVENT_PHASE_START,
                              FAIL, OK, OUTCOMES, SKIPPED, TIMEOUT, run_rate, send_window)
from .messages import FLUSH_EVERY
from .schedule import LogScale, histogram, histogram_add, histogram_quantile
from .summary import ReplaySummary

SERIES_POINTS = 300  # at most this many points per chart: longer runs merge adjacent seconds
# The per-second histograms are coarse (≈ 9 % buckets from 0.1 ms to ~100 s): 160 int32 per second of run.
SERIES_BUCKETS = 160
SERIES_SCALE = LogScale(1e-4, 2 ** (1 / 8), SERIES_BUCKETS, 1e-4 / 2)  # bucket 0 reads as half its bound
UNANSWERED = (ERROR, TIMEOUT, CONN_ERROR)


class LiveViewError(WdmError):
    """The live view cannot listen where asked (bad HOST:PORT, port in use, no permission)."""


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


class LiveStats:
    """Running figures of one replay from its request chunks and events (thread-safe, bounded per second of run)."""

    def __init__(self, total_requests: int = 0) -> None:
        self._lock = threading.Lock()
        self.total = total_requests
        self.rows = 0
        self.outcomes = np.zeros(len(OUTCOMES), dtype=np.int64)
        self.response = histogram()  # the summary's histogram: final p50/p99 equal the summary's
        self.window: tuple[float, float] | None = None
        self.by_op = np.zeros((len(OP_NAMES), len(OUTCOMES)), dtype=np.int64)
        # Per second of the run clock (by `done`): [ok, refused, unanswered] and a coarse histogram.
        self.counts = np.zeros((0, 3), dtype=np.int64)
        self.hists = np.zeros((0, SERIES_BUCKETS), dtype=np.int32)
        self.faults: list[dict] = []  # {"name", "start", "end" (None while open)}
        self.phase: str | None = None
        self.stage = "starting"  # starting → replaying → final read → done / partial
        self.run_started: float | None = None  # perf_counter of the run clock's 0
        self.ended: float | None = None  # perf_counter when the run ended
        self.result: dict | None = None

    # --- feeding --------------------------------------------------------------------------------

    def add_chunk(self, cols: dict[str, bytes]) -> None:
        """Account one chunk of request rows (column name → little-endian bytes, as the workers send them)."""
        outcome = np.frombuffer(cols["outcome"], dtype="<u1")
        intended = np.frombuffer(cols["intended"], dtype="<f8")
        sent = np.frombuffer(cols["sent"], dtype="<f8")
        done = np.frombuffer(cols["done"], dtype="<f8")
        op = np.frombuffer(cols["op"], dtype="<u1")
        answered = outcome != SKIPPED
        response = (done - intended)[answered]
        cls = np.full(len(outcome), -1, dtype=np.int64)
        cls[outcome == OK] = 0
        cls[outcome == FAIL] = 1
        cls[np.isin(outcome, UNANSWERED)] = 2
        has_time = answered & np.isfinite(done) & (cls >= 0)
        sec = np.maximum(done[has_time], 0).astype(np.int64)
        with self._lock:
            self.rows += len(outcome)
            self.outcomes += np.bincount(outcome, minlength=len(OUTCOMES))[: len(OUTCOMES)]
            histogram_add(self.response, response)
            w = send_window(sent, done, outcome)
            if w is not None:
                self.window = w if self.window is None else (min(self.window[0], w[0]), max(self.window[1], w[1]))
            n_ops, n_out = self.by_op.shape
            keep = op < n_ops
            self.by_op += np.bincount(op[keep].astype(np.int64) * n_out + outcome[keep],
                                      minlength=n_ops * n_out)[: n_ops * n_out].reshape(n_ops, n_out)
            if len(sec):
                lo, hi = int(sec.min()), int(sec.max()) + 1
                self._grow(hi)
                span = hi - lo
                self.counts[lo:hi] += np.bincount((sec - lo) * 3 + cls[has_time], minlength=span * 3).reshape(span, 3)
                rt = (done - intended)[has_time]
                ok_time = np.isfinite(rt)
                idx = (sec[ok_time] - lo) * SERIES_BUCKETS + SERIES_SCALE.index_all(rt[ok_time])
                self.hists[lo:hi] += np.bincount(idx, minlength=span * SERIES_BUCKETS).reshape(
                    span, SERIES_BUCKETS).astype(self.hists.dtype)

    def _grow(self, seconds: int) -> None:
        have = len(self.counts)
        if seconds <= have:
            return
        size = max(seconds, 2 * have, 64)
        self.counts = np.concatenate([self.counts, np.zeros((size - have, 3), dtype=self.counts.dtype)])
        self.hists = np.concatenate([self.hists, np.zeros((size - have, SERIES_BUCKETS), dtype=self.hists.dtype)])

    def add_event(self, at: float, kind: str, info: Mapping[str, Any]) -> None:
        """Account one results event (phases, fault windows, the final read), as written: ``at``, ``kind``, fields."""
        self.add_event_record(Event.from_record({**info, "at": at, "kind": kind}))

    def add_event_record(self, ev: Event) -> None:
        """Account one typed results event."""
        with self._lock:
            if ev.kind == EVENT_PHASE_START:
                if self.run_started is None:
                    self.run_started = time.perf_counter() - max(0.0, ev.at)
                self.phase = str(ev.name)
                self.stage = "replaying"
            elif ev.kind == EVENT_FAULT_START:
                self.faults.append({"name": ev.name, "start": ev.at, "end": None})
            elif ev.kind == EVENT_FAULT:
                for f in self.faults:
                    if f["name"] == ev.name and f["end"] is None:
                        f["start"], f["end"] = ev.at, ev.end
                        break
                else:
                    self.faults.append({"name": ev.name, "start": ev.at, "end": ev.end})
            elif ev.kind == EVENT_FINAL_READ:
                self.stage = "final read"

    def finish(self, summary: ReplaySummary) -> None:
        """The run ended: freeze the clock and keep what the page shows afterwards (results path, end state)."""
        with self._lock:
            self.ended = time.perf_counter()
            self.stage = "done" if summary.complete else "partial"
            self.result = {"path": summary.path, "complete": bool(summary.complete),  # the JSON edge (stats.json)
                           "reason": summary.reason, "wall_s": summary.wall}

    # --- reading --------------------------------------------------------------------------------

    def elapsed(self) -> float:
        """Seconds on the run's clock (0 before the first phase; frozen once the run ended)."""
        if self.run_started is None:
            return 0.0
        return max(0.0, (self.ended if self.ended is not None else time.perf_counter()) - self.run_started)

    def snapshot(self) -> dict:
        """The live figures as a JSON-ready dict (the body of ``GET /stats.json``)."""
        with self._lock:
            oc = {name: int(c) for name, c in zip(OUTCOMES, self.outcomes)}
            sent = self.rows - oc["skipped"]
            elapsed = self.elapsed()
            return {
                "stage": self.stage, "phase": self.phase,
                "requests_done": self.rows, "requests_total": self.total,
                "ok": oc["ok"], "refused": oc["fail"], "unanswered": sum(oc[OUTCOMES[c]] for c in UNANSWERED),
                "skipped": oc["skipped"], "outcomes": oc,
                "rate": run_rate(sent, self.window),
                "p50_ms": _ms(histogram_quantile(self.response, 0.50)),
                "p99_ms": _ms(histogram_quantile(self.response, 0.99)),
                "elapsed_s": round(elapsed, 3),
                "series": self._series(elapsed),
                "by_op": self._by_op(),
                "faults": [dict(f) for f in self.faults],
                "result": self.result,
            }

    def _series(self, elapsed: float) -> dict:
        """Per-step counts (per second of each step) and p50/p99, over the complete seconds so far."""
        if self.run_started is not None and self.ended is None:
            # While running, only the seconds whose rows have all arrived (workers send every
            # FLUSH_EVERY s): a second still filling would draw as a fall in the rate.
            n = max(0, int(elapsed - FLUSH_EVERY))
        else:
            seen = int(np.nonzero(self.counts.any(axis=1))[0].max()) + 1 if self.counts.any() else 0
            n = max(seen, int(elapsed))
        step = max(1, math.ceil(n / SERIES_POINTS))
        out: dict[str, list] = {"step_s": step, "t": [], "ok": [], "refused": [], "unanswered": [],
                                "p50_ms": [], "p99_ms": []}
        for start in range(0, n, step):
            c = self.counts[start:start + step].sum(axis=0) if start < len(self.counts) else np.zeros(3)
            h = self.hists[start:start + step].sum(axis=0) if start < len(self.hists) else np.zeros(1)
            width = min(step, n - start)
            out["t"].append(start)
            for key, v in zip(("ok", "refused", "unanswered"), c):
                out[key].append(round(float(v) / width, 3))
            out["p50_ms"].append(_ms(SERIES_SCALE.quantile(h, 0.50)))
            out["p99_ms"].append(_ms(SERIES_SCALE.quantile(h, 0.99)))
        return out

    def _by_op(self) -> list[dict]:
        rows = []
        for i, name in enumerate(OP_NAMES):
            c = self.by_op[i]
            if not c.any():
                continue
            rows.append({"op": name, "requests": int(c.sum()), "ok": int(c[OK]), "refused": int(c[FAIL]),
                         "error_5xx": int(c[ERROR]), "timeout": int(c[TIMEOUT]), "conn_error": int(c[CONN_ERROR]),
                         "skipped": int(c[SKIPPED])})
        return rows


class _TappedWriter:
    """The results writer, passing every request chunk and event on to the live figures too."""

    def __init__(self, writer: Any, stats: LiveStats) -> None:
        self._writer = writer
        self._stats = stats

    def write_requests(self, cols: dict, *args: Any, **kwargs: Any) -> Any:
        out = self._writer.write_requests(cols, *args, **kwargs)
        self._stats.add_chunk(cols)
        return out

    def write_packed_requests(self, cols: dict, record: bytes) -> Any:
        out = self._writer.write_packed_requests(cols, record)
        self._stats.add_chunk(cols)
        return out

    def write_event(self, at: float, kind: str, **info: Any) -> Any:
        out = self._writer.write_event(at, kind, **info)
        self._stats.add_event(at, kind, info)
        return out

    def write_event_record(self, event: Event) -> Any:
        out = self._writer.write_event_record(event)
        self._stats.add_event_record(event)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)


class LiveView:
    """The live page and ``/stats.json`` of one replay, on a socket bound at construction.

    ``with LiveView(host, port) as view:`` binds (LiveViewError when it cannot); :meth:`tap` wraps the
    results writer; :meth:`start` serves (after the workers forked); :meth:`finish` shows the end;
    :meth:`linger` keeps the page up; leaving the block stops the server.
    """

    def __init__(self, host: str, port: int, total_requests: int = 0) -> None:
        self.stats = LiveStats(total_requests)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            family, _, _, _, addr = infos[0]
            sock = socket.socket(family, socket.SOCK_STREAM)
        except (OSError, UnicodeError) as e:
            raise LiveViewError(f"--ui {host}:{port}: cannot listen there: {getattr(e, 'strerror', None) or e}") from None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            sock.listen(128)
        except OSError as e:
            sock.close()
            why = "the port is in use (choose another: --ui HOST:PORT)" if e.errno in (98, 48) else e.strerror
            raise LiveViewError(f"--ui {host}:{port}: cannot listen there: {why}") from None
        sock.setblocking(False)
        self._sock = sock
        bound = sock.getsockname()
        self.host, self.port = bound[0], bound[1]
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._page = resources.files(__package__).joinpath("live.html").read_bytes()

    @property
    def url(self) -> str:
        """The page's address, e.g. ``http://127.0.0.1:8089/``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def set_total(self, total_requests: int) -> None:
        """The number of requests the run will record (the progress bar's 100 %)."""
        self.stats.total = total_requests

    def tap(self, writer: Any) -> Any:
        """``writer`` (a ResultsWriter) that also feeds the live figures with what it writes."""
        return _TappedWriter(writer, self.stats)

    def start(self) -> None:
        """Serve the page and the figures from a daemon thread (idempotent)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._serve, name="wdm-replay-live", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def finish(self, summary: ReplaySummary) -> None:
        """The run ended with ``summary`` (replay_trace's): the page shows the final figures and the results path."""
        self.stats.finish(summary)
        self.start()  # a run that ended before its workers started still shows why

    def linger(self, seconds: float | None) -> None:
        """Keep the page up for ``seconds`` (None: until Ctrl-C); Ctrl-C ends the wait quietly."""
        end = None if seconds is None else time.monotonic() + seconds
        try:
            while end is None or time.monotonic() < end:
                time.sleep(0.2 if end is None else max(0.0, min(0.2, end - time.monotonic())))
        except KeyboardInterrupt:
            pass

    def close(self) -> None:
        """Stop the server and release the port."""
        loop = self._loop
        if loop is not None and self._thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(5)
        self._sock.close()

    def __enter__(self) -> LiveView:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- the web app (on the thread's own loop) ---------------------------------------------------

    def _app(self) -> Any:
        from aiohttp import web

        async def page(_: web.Request) -> web.Response:
            return web.Response(body=self._page, content_type="text/html", charset="utf-8",
                                headers={"Cache-Control": "no-store"})

        async def stats(_: web.Request) -> web.Response:
            return web.Response(text=json.dumps(self.stats.snapshot()), content_type="application/json",
                                headers={"Cache-Control": "no-store"})

        app = web.Application()
        app.router.add_get("/", page)
        app.router.add_get("/stats.json", stats)
        return app

    def _serve(self) -> None:
        from aiohttp import web

        loop = self._loop = asyncio.new_event_loop()
        runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=0.5)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.SockSite(runner, self._sock).start())
        finally:
            self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()
