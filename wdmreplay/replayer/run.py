"""Replay a trace against a target: checks, probe, phases, final read, results file, summary.

:func:`replay_trace` is the library entry (the ``replay`` command is a thin wrapper). One process
runs everything in one event loop; with ``workers > 1`` this process coordinates worker processes
(:mod:`.workers`) phase by phase — phases stay barriers and the symbols bound in a phase reach every
worker before the next starts — and writes the one results file from the chunks they send.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import threading
import time
from typing import Any, Callable

import aiohttp
import numpy as np

from .. import __version__
from ..api import FIND_OP, OPERATIONS, Dialect, Target, WdmError, get_dialect
from ..traces.results import OUTCOMES, SKIPPED, ResultsWriter, results_header
from ..traces.trace import read_header, trace_digest
from .engine import CLIENTS, Engine, RowBuffer, make_client
from .final import TraceScan, check_dialect, id_sets, read_final, scan_trace
from .schedule import (histogram, histogram_add, histogram_quantile, is_lagging, rate,
                       scheduled_rate)

STOP_GRACE = 2.0  # seconds in-flight requests get after Ctrl-C / SIGTERM


class ReplayError(WdmError):
    """A replay that cannot start (bad option, unreachable target)."""


class TargetUnreachable(ReplayError):
    """The target did not answer the probe request."""


def run_async(coro: Any) -> Any:
    """Run a coroutine on a fresh event loop — uvloop's when importable (``WDM_REPLAY_UVLOOP=0`` turns it off)."""
    use_uvloop = os.environ.get("WDM_REPLAY_UVLOOP", "1") != "0"
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            use_uvloop = False
    if not use_uvloop:
        return asyncio.run(coro)
    if hasattr(asyncio, "Runner"):
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    loop = uvloop.new_event_loop()  # pragma: no cover - Python 3.10
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def shard_keep(shard: tuple[int, int] | None, worker: tuple[int, int] | None) -> Callable[[int], bool] | None:
    """The session filter of a ``--shard i/M`` and a worker ``j/N``: ``sid % M == i``, then ``(sid // M) % N == j``."""
    if shard is None and worker is None:
        return None
    i, m = shard or (0, 1)
    j, n = worker or (0, 1)
    return lambda sid: sid % m == i and (sid // m) % n == j


class Tally:
    """Summary statistics over request chunks as they are written (bounded memory: histograms)."""

    def __init__(self) -> None:
        self.rows = 0
        self.outcomes = np.zeros(len(OUTCOMES), dtype=np.int64)
        self.response = histogram()
        self.service = histogram()
        self.lag = histogram()
        self.done = 0
        self.errors = 0

    def add_chunk(self, cols: dict[str, bytes]) -> None:
        """Account one chunk of rows (column name → little-endian bytes)."""
        outcome = np.frombuffer(cols["outcome"], dtype="<u1")
        self.rows += len(outcome)
        self.outcomes += np.bincount(outcome, minlength=len(OUTCOMES))[: len(OUTCOMES)]
        sent_mask = outcome != SKIPPED
        intended = np.frombuffer(cols["intended"], dtype="<f8")[sent_mask]
        sent = np.frombuffer(cols["sent"], dtype="<f8")[sent_mask]
        done = np.frombuffer(cols["done"], dtype="<f8")[sent_mask]
        histogram_add(self.response, done - intended)
        histogram_add(self.service, done - sent)
        histogram_add(self.lag, sent - intended)


def probe_target(target: Target, dialect: Dialect, services: set[str], timeout: float) -> int:
    """Send one cheap GET per distinct base URL; any HTTP answer will do. Returns the number sent."""
    urls: dict[str, str] = {}
    for service in sorted(services):
        base = target.base(service)
        if base in urls:
            continue
        find = next((n for n, o in OPERATIONS.items() if o.service == service and n in FIND_OP.values()), None)
        if find and dialect.supports(find):
            urls[base] = base + dialect.route(find).fmt.format("wdm-replay-probe")
        else:
            urls[base] = base + "/"

    async def probe() -> None:
        async with make_client(4, min(timeout, 5.0)) as client:
            for base, url in urls.items():
                try:
                    async with client.get(url, allow_redirects=False) as resp:
                        await resp.read()
                except asyncio.TimeoutError:
                    raise TargetUnreachable(f"target {base} did not answer within {min(timeout, 5.0):g} s") from None
                except (aiohttp.ClientError, OSError, ValueError) as e:
                    reason = getattr(e, "os_error", None) or e
                    raise TargetUnreachable(f"cannot reach target {base}: {getattr(reason, 'strerror', None) or reason}") from None

    run_async(probe())
    return len(urls)


def _services(scan: TraceScan) -> set[str]:
    return {OPERATIONS[n].service for n in scan.ops} or {"stock"}


class _Signals:
    """SIGINT/SIGTERM → a callback, for the duration of a ``with`` block (main thread only)."""

    def __init__(self, on_signal: Callable[[int], None]):
        self.on_signal = on_signal
        self.saved: dict[int, Any] = {}

    def __enter__(self) -> "_Signals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.saved[sig] = signal.signal(sig, lambda s, f: self.on_signal(s))
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


def replay_trace(trace_path: str, out_path: str, *, target: Target | str, dialect: str | Dialect | None = None,
                 speed: float | None = 1.0, concurrency: int = 256, timeout: float = 10.0,
                 label: str | None = None, workers: int = 1, final_read: bool = True, settle: float = 0.0,
                 progress: bool = False, shard: tuple[int, int] | None = None, client: str = "lean") -> dict:
    """Replay ``trace_path`` against ``target``, write ``out_path``; return the run's summary dict.

    ``speed`` multiplies the recorded pace (``None`` = as fast as ``concurrency`` allows);
    ``dialect`` defaults to the trace header's. Raises :class:`~wdmreplay.api.WdmError` for a bad
    trace, a dialect lacking one of the trace's operations, or an unreachable target — before
    anything is sent. ``client`` is the HTTP client of the replay's requests: ``"lean"`` (the
    keep-alive client of :mod:`.http`, default) or ``"aiohttp"``. Ctrl-C / SIGTERM stop the run;
    the file is then marked partial (``summary["complete"] is False``, ``summary["reason"] ==
    "interrupted"``).
    """
    trace_path, out_path = str(trace_path), str(out_path)
    if isinstance(target, str):
        target = Target.single(target)
    if concurrency < 1:
        raise ReplayError(f"concurrency must be at least 1, got {concurrency}")
    if not 0 < timeout < math.inf:
        raise ReplayError(f"timeout must be a positive finite number of seconds, got {timeout}")
    if workers < 1:
        raise ReplayError(f"workers must be at least 1, got {workers}")
    if client not in CLIENTS:
        raise ReplayError(f"client must be one of {', '.join(CLIENTS)}, got {client!r}")
    if not 0 <= settle < math.inf:
        raise ReplayError(f"settle must be 0 or more (finite) seconds, got {settle}")
    if speed is not None and not speed > 0:
        raise ReplayError(f"speed must be positive or None (max), got {speed}")
    header = read_header(trace_path)
    if dialect is None:
        dialect = header.get("dialect") or "2024"
    if isinstance(dialect, str):
        dialect = get_dialect(dialect)
    scan = scan_trace(trace_path, keep=shard_keep(shard, None), final_read=final_read)
    check_dialect(scan, dialect, trace_path)
    probes = probe_target(target, dialect, _services(scan), timeout)

    scenarios = list(header.get("scenarios") or [])
    writer = ResultsWriter(out_path, results_header(
        trace={"path": trace_path, "digest": trace_digest(trace_path), "header": header},
        target=target.as_dict(), dialect=dialect.name, speed=speed, concurrency=concurrency,
        timeout=timeout, label=label, started=time.time(), tool=f"wdm-replay {__version__}",
        host=socket.gethostname(), shard=f"{shard[0]}/{shard[1]}" if shard else None, workers=workers,
        scenarios=scenarios, final_read=final_read, settle=settle, client=client,
    ))
    tally = Tally()

    def write_chunk(cols: dict, args: list, errors: list) -> None:
        writer.write_requests(cols, args, errors)
        tally.add_chunk(cols)

    bar = _progress_bar(scan.kept_requests, progress)
    run = _Run(trace_path=trace_path, target=target, dialect=dialect, speed=speed, concurrency=concurrency,
               timeout=timeout, scenarios=scenarios, phases=[p.get("name", str(i)) for i, p in
                                                            enumerate(header.get("phases") or [])],
               writer=writer, write_chunk=write_chunk, tally=tally, bar=bar, shard=shard, scan=scan,
               final_read=final_read, settle=settle, client=client)
    wall_start = time.perf_counter()
    complete, reason = False, "error"
    try:
        if workers == 1:
            complete, reason = run_async(run.in_process())
        else:
            complete, reason = run.with_workers(workers)
    except KeyboardInterrupt:  # a signal outside the window where the run's own handlers are installed
        complete, reason = False, "interrupted"
    finally:
        if bar is not None:
            bar.close()
        wall = time.perf_counter() - wall_start
        writer.close(complete=complete, wall=wall, reason=reason)
    return _summary(out_path, tally, run, header, scan, speed, wall, complete, reason, probes)


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="req", file=sys.stderr, dynamic_ncols=True, smoothing=0.1,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]")


class _Run:
    """The state of one replay shared by the single-process and the multi-process drivers."""

    def __init__(self, *, trace_path: str, target: Target, dialect: Dialect, speed: float | None,
                 concurrency: int, timeout: float, scenarios: list[str], phases: list[str],
                 writer: ResultsWriter, write_chunk: Callable, tally: Tally, bar: Any,
                 shard: tuple[int, int] | None, scan: TraceScan, final_read: bool, settle: float,
                 client: str):
        self.__dict__.update(locals())
        del self.__dict__["self"]
        self.bindings: dict[str, str] = {}  # shared symbols only (what later phases need)
        self.bound = 0  # symbols bound in the whole run (every one is in the results file)
        # Ids of every bound entity, compact, only for the final read (nothing grows without one).
        self.bound_ids = id_sets() if final_read else None
        self.interrupted = False
        self.send_start = self.send_end = 0.0
        self.final_reads = 0
        self.t0 = 0.0

    def clock(self) -> float:
        return time.perf_counter() - self.t0

    def _bar_update(self, done: int, errors: int) -> None:
        bar = self.bar
        if bar is not None and done > bar.n:
            bar.set_postfix_str(f"errors={errors}", refresh=False)
            bar.update(done - bar.n)

    # --- one process ----------------------------------------------------------------------------

    async def in_process(self) -> tuple[bool, str | None]:
        """Every phase in this event loop; then the final read."""
        loop = asyncio.get_running_loop()
        self.t0 = time.perf_counter()
        rows = RowBuffer(self.write_chunk)
        engine = Engine(self.trace_path, target=self.target, dialect=self.dialect, speed=self.speed,
                        concurrency=self.concurrency, timeout=self.timeout, t0=self.t0, rows=rows,
                        keep=shard_keep(self.shard, None), scenarios=self.scenarios, shared=self.scan.shared,
                        bind_sink=self.writer.write_bindings, bound_ids=self.bound_ids, client=self.client)

        final_task: asyncio.Task | None = None

        def on_signal() -> None:
            self.interrupted = True
            engine.request_stop()
            if final_task is not None:
                final_task.cancel()

        installed = []
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(sig, on_signal)
                    installed.append(sig)
                except (NotImplementedError, RuntimeError):
                    pass
        ticker = None
        if self.bar is not None:
            async def tick() -> None:
                while True:
                    await asyncio.sleep(0.25)
                    self._bar_update(engine.done, engine.errors)
            ticker = asyncio.create_task(tick())
        await engine.open()
        try:
            self.send_start = self.clock()
            for p, name in enumerate(self.phases):
                start = self.clock()
                self.writer.write_event(start, "phase_start", phase=p, name=name)
                new = await engine.run_phase(p, start, grace=STOP_GRACE)  # its bindings are written
                rows.flush()
                self.bindings.update(new)
                self.bound = engine.bound
                self.writer.write_event(self.clock(), "phase_end", phase=p, name=name)
                if self.interrupted:
                    break
            self.send_end = self.clock()
            if self.interrupted:
                self.writer.write_event(self.clock(), "interrupt", reason="signal")
                return False, "interrupted"
            self._bar_update(engine.done, engine.errors)
            if self.final_read:
                # A task, so that Ctrl-C during a long final read (large batch_init populations)
                # stops it too; the file is then partial (no final record).
                final_task = asyncio.ensure_future(self._final(engine.client))
                try:
                    await final_task
                except asyncio.CancelledError:
                    if not self.interrupted:
                        raise
                    self.writer.write_event(self.clock(), "interrupt", reason="signal during the final read")
                    return False, "interrupted"
            return True, None
        finally:
            if ticker is not None:
                ticker.cancel()
            await engine.close()
            for sig in installed:
                loop.remove_signal_handler(sig)

    async def _final(self, client: aiohttp.ClientSession) -> None:
        entities = self.scan.entities(self.bound_ids or id_sets())
        self.writer.write_event(self.clock(), "final_read", entities={k: len(v) for k, v in entities.items()})
        final, reads = await read_final(client, self.target, self.dialect, entities, self.concurrency,
                                        self.settle, self.clock)
        self.final_reads = reads
        self.writer.write_final(final)

    # --- worker processes -------------------------------------------------------------------------

    def with_workers(self, n: int) -> tuple[bool, str | None]:
        """Coordinate ``n`` worker processes phase by phase; write their chunks; then the final read."""
        from .workers import worker_main

        # fork: workers start at once and do not re-import the caller's __main__ (which spawn
        # would, breaking scripts without a main guard); no event loop runs here while forking.
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        cfg = {
            "trace_path": self.trace_path, "target": self.target.as_dict(),
            "dialect": (self.dialect.name, {k: f"{r.method} {r.template}" for k, r in self.dialect.routes.items()}),
            "speed": self.speed, "concurrency": max(1, math.ceil(self.concurrency / n)), "timeout": self.timeout,
            "scenarios": self.scenarios, "shard": self.shard, "workers": n, "progress": self.bar is not None,
            "shared": self.scan.shared, "final_read": self.final_read, "client": self.client,
        }
        procs, conns = [], []
        for i in range(n):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=worker_main, args=(child, dict(cfg, index=i)), daemon=True,
                            name=f"wdm-replay-worker-{i}")
            p.start()
            child.close()
            procs.append(p)
            conns.append(parent)
        progress = [(0, 0)] * n
        stop_sent = False
        quick_exit = False

        def on_signal(sig: int) -> None:
            self.interrupted = True

        def send_stop() -> None:
            nonlocal stop_sent
            if not stop_sent:
                stop_sent = True
                for c in conns:
                    try:
                        c.send(("stop",))
                    except OSError:
                        pass

        def receive(c: Any, i: int) -> Any:
            try:
                return c.recv()
            except (EOFError, OSError):
                raise ReplayError(f"replay worker {i} died (exit code {procs[i].exitcode})") from None

        try:
            with _Signals(on_signal):
                ready = 0
                deadline = time.monotonic() + 120
                while ready < n:
                    for c in multiprocessing.connection.wait(conns, timeout=0.2):
                        i = conns.index(c)
                        if receive(c, i)[0] == "ready":
                            ready += 1
                    if self.interrupted:
                        return False, "interrupted"
                    if time.monotonic() > deadline:
                        raise ReplayError("replay workers did not start within 120 s")
                self.t0 = time.perf_counter()
                self.send_start = 0.0
                new: dict[str, str] = {}
                for p, name in enumerate(self.phases):
                    start = self.clock()
                    self.writer.write_event(start, "phase_start", phase=p, name=name)
                    for c in conns:
                        c.send(("phase", p, start, self.t0, new))
                    new = {}
                    pending = set(range(n))
                    while pending:
                        if self.interrupted:
                            send_stop()
                        for c in multiprocessing.connection.wait([conns[i] for i in pending], timeout=0.1):
                            i = conns.index(c)
                            msg = receive(c, i)
                            kind = msg[0]
                            if kind == "chunk":
                                self.write_chunk(msg[1], msg[2], msg[3])
                            elif kind == "progress":
                                progress[i] = (msg[1], msg[2])
                                self._bar_update(sum(d for d, _ in progress), sum(e for _, e in progress))
                            elif kind == "bindings":
                                self.writer.write_bindings(msg[1])
                            elif kind == "phase_done":
                                new.update(msg[2])
                                self.bound += msg[4]
                                if self.bound_ids is not None:
                                    for k, ids in msg[5].items():
                                        self.bound_ids[k].update(ids)
                                pending.discard(i)
                            elif kind == "error":
                                raise ReplayError(f"replay worker {i} failed: {msg[1]}")
                    self.bindings.update(new)
                    self.writer.write_event(self.clock(), "phase_end", phase=p, name=name)
                    if self.interrupted:
                        break
                self.send_end = self.clock()
                final_record = None
                if self.final_read and not self.interrupted:
                    final_record = self._final_distributed(conns, receive)
                    if final_record is None:  # interrupted: workers may still be reading; do not wait
                        self.writer.write_event(self.clock(), "interrupt", reason="signal during the final read")
                        quick_exit = True
                        return False, "interrupted"
                for c in conns:
                    c.send(("end",))
                for i, c in enumerate(conns):
                    while True:
                        msg = receive(c, i)
                        if msg[0] == "chunk":
                            self.write_chunk(msg[1], msg[2], msg[3])
                        elif msg[0] == "bye":
                            progress[i] = (msg[1], msg[2])
                            break
                self._bar_update(sum(d for d, _ in progress), sum(e for _, e in progress))
                if self.interrupted:
                    self.writer.write_event(self.clock(), "interrupt", reason="signal")
                    return False, "interrupted"
            if final_record is not None:
                self.writer.write_final(final_record)
            return True, None
        finally:
            for c in conns:
                c.close()
            for p in procs:
                p.join(timeout=1 if quick_exit else 5)
                if p.is_alive():
                    p.terminate()
                    p.join(timeout=2)


    def _final_distributed(self, conns: list, receive: Callable[[Any, int], Any]) -> dict | None:
        """The final read split over the workers (entity lists dealt round-robin); None if interrupted."""
        entities = self.scan.entities(self.bound_ids or id_sets())
        self.writer.write_event(self.clock(), "final_read", entities={k: len(v) for k, v in entities.items()})
        n = len(conns)
        slices = [{k: v[i::n] for k, v in entities.items()} for i in range(n)]
        per_worker = max(1, math.ceil(self.concurrency / n))

        def snapshot() -> tuple[dict, dict, int] | None:
            for c, part in zip(conns, slices):
                c.send(("final", part, per_worker))
            state: dict[str, dict] = {"items": {}, "users": {}, "orders": {}}
            missing: dict[str, dict] = {}
            reads = 0
            pending = set(range(n))
            while pending:
                if self.interrupted:
                    return None
                for c in multiprocessing.connection.wait([conns[i] for i in pending], timeout=0.1):
                    i = conns.index(c)
                    msg = receive(c, i)
                    if msg[0] == "final_done":
                        for section, part in msg[1].items():
                            state[section].update(part)
                        for kind, part in msg[2].items():
                            missing.setdefault(kind, {}).update(part)
                        reads += msg[3]
                        pending.discard(i)
                    elif msg[0] == "error":
                        raise ReplayError(f"replay worker {i} failed: {msg[1]}")
            return state, missing, reads

        started = time.perf_counter()
        read_at = self.clock()
        snap = snapshot()
        if snap is None:
            return None
        state, missing, reads = snap
        settle_info = None
        if self.settle > 0:
            snapshots, settled = 1, False
            while time.perf_counter() - started < self.settle:
                read_at = self.clock()
                snap = snapshot()
                if snap is None:
                    return None
                snapshots += 1
                reads += snap[2]
                same = snap[0] == state and snap[1] == missing
                state, missing = snap[0], snap[1]
                if same:
                    settled = True
                    break
            settle_info = {"requested": self.settle, "settled": settled,
                           "seconds": round(time.perf_counter() - started, 6), "reads": snapshots}
        self.final_reads = reads
        return {**state, "missing": missing, "settle": settle_info, "read_at": read_at}


def _summary(path: str, tally: Tally, run: _Run, header: dict, scan: TraceScan, speed: float | None,
             wall: float, complete: bool, reason: str | None, probes: int) -> dict:
    outcomes = {name: int(c) for name, c in zip(OUTCOMES, tally.outcomes)}
    sent = tally.rows - outcomes["skipped"]
    send_wall = max(0.0, run.send_end - run.send_start)
    lag_p99 = histogram_quantile(tally.lag, 0.99)
    return {
        "path": path,
        "requests": tally.rows,
        "sent": sent,
        "outcomes": outcomes,
        "wall": wall,
        "send_wall": send_wall,
        "rate": rate(sent, send_wall),
        "scheduled_rate": scheduled_rate(scan.kept_requests, float(header.get("duration") or 0.0), speed),
        "p50": histogram_quantile(tally.response, 0.50),
        "p99": histogram_quantile(tally.response, 0.99),
        "service_p50": histogram_quantile(tally.service, 0.50),
        "service_p99": histogram_quantile(tally.service, 0.99),
        "lag_p99": lag_p99,
        "lagging": is_lagging(lag_p99, speed),
        "speed": speed,
        "complete": complete,
        "reason": reason,
        "bindings": run.bound,
        "probes": probes,
        "final_reads": run.final_reads,
    }


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.1f} ms"


def format_summary(s: dict) -> str:
    """The end-of-run summary as a few lines of text."""
    oc = s["outcomes"]
    counts = "  ".join(f"{k} {v}" for k, v in oc.items() if v or k == "ok")
    achieved = "-" if s["rate"] is None else f"{s['rate']:.1f} req/s"
    scheduled = "max" if s["speed"] is None else ("-" if s["scheduled_rate"] is None else f"{s['scheduled_rate']:.1f} req/s")
    lines = [
        f"{'replayed' if s['complete'] else 'PARTIAL (' + str(s['reason']) + ')'}: {s['requests']} requests "
        f"({s['sent']} sent) in {s['wall']:.2f} s -> {s['path']}",
        f"  outcomes: {counts}",
        f"  rate: {achieved} achieved, scheduled {scheduled}",
        f"  response time p50 {_ms(s['p50'])}  p99 {_ms(s['p99'])};  schedule lag p99 {_ms(s['lag_p99'])}",
    ]
    if s["lagging"]:
        lines.append("  warning: the replayer fell behind its schedule (p99 lag above 10 ms); these figures "
                     "describe the load generator, not the target — lower --speed or add --workers")
    return "\n".join(lines)
