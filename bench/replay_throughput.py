"""Replayer throughput: ``replay --speed max`` vs a bare aiohttp loop, and --workers 2 vs 1, in one run.

A fast loopback target runs in a separate process and answers every request with one fixed JSON
body ({"item_id": "1", "user_id": "1", "order_id": "1", "stock": 5, ...}), so ids bind and every
shop route is served. Then, alternating, each several rounds:

- bare: N coroutines over one ClientSession (``TCPConnector(limit=N)``) send the trace's requests
  (symbols resolved to "1") and read every body — aiohttp's own cost, no schedule, no results;
- replay-1: ``replay_trace(speed=None, concurrency=N, workers=1, final_read=False)`` of the same trace;
- replay-2: the same with ``workers=2``.

Both use the same event loop implementation (uvloop when importable). Prints req/s (best round)
and the ratios; targets: replay-1 / bare >= 0.8 (DESIGN §9), replay-2 / replay-1 near 2 given
free cores (this machine's cores are shared with the target process).

    python bench/replay_throughput.py                       # ~30 s
    python bench/replay_throughput.py --sessions 40000 --concurrency 128 --rounds 3
    python bench/replay_throughput.py --serve 8080          # just the fast target, until Ctrl-C
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BODY = (b'{"item_id":"1","user_id":"1","order_id":"1","stock":5,"price":1,"credit":5,'
        b'"paid":false,"items":[],"total_cost":0}')


# --- the fast target ---------------------------------------------------------------------------

class _Responder(asyncio.Protocol):
    """HTTP/1.1 keep-alive responder: one fixed 200 JSON answer per request head (no request bodies)."""

    RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        n = buf.count(b"\r\n\r\n")
        if n:
            self.transport.write(self.RESPONSE * n)  # type: ignore[attr-defined]
            buf = buf[buf.rfind(b"\r\n\r\n") + 4:]
        self.buf = buf


def serve(port: int, kind: str = "raw") -> None:
    """Run the fast target on 127.0.0.1:``port`` (0 = any); prints the port, serves until killed."""
    try:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if kind == "aiohttp":
            from aiohttp import web

            async def handle(request: web.Request) -> web.Response:
                return web.Response(body=BODY, content_type="application/json")

            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
            await site.start()
            sock = site._server.sockets[0]  # type: ignore[union-attr]
        else:
            server = await loop.create_server(_Responder, "127.0.0.1", port, backlog=1024)
            sock = server.sockets[0]
        print(sock.getsockname()[1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


class FastTarget:
    """The fast target in a child process; ``.url``."""

    def __init__(self, kind: str = "raw"):
        self.kind = kind

    def __enter__(self) -> "FastTarget":
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", "0", "--target", self.kind],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line.strip().isdigit():
            self.proc.kill()
            raise SystemExit(f"fast target failed to start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line)}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(5)


# --- the measured parts --------------------------------------------------------------------------

def build_trace(path: str, sessions: int, steps: int) -> int:
    """A trace of one-phase sessions: create_item (binds), then add_stock / find_item steps; returns requests."""
    from wdmreplay.traces import TraceWriter, step

    with TraceWriter(path, workload="bench", seed=0, params={"sessions": sessions}, phases=["main"],
                     scenarios=["bench"]) as w:
        for sid in range(sessions):
            sym = f"$s{sid}.item"
            body = [step("create_item", [1], bind=sym, scenario="bench")]
            for k in range(steps - 1):
                body.append(step("add_stock" if k % 2 == 0 else "find_item",
                                 [sym, 1] if k % 2 == 0 else [sym], scenario="bench"))
            w.write_session(sid, 0, 0.0, body)
    return sessions * steps


def bare_loop(trace: str, base: str, concurrency: int) -> tuple[int, float]:
    """The bare aiohttp loop over the trace's requests; (requests, seconds)."""
    import aiohttp

    from wdmreplay.api import get_dialect
    from wdmreplay.replayer.run import run_async
    from wdmreplay.traces import TraceReader, is_symbol

    dialect = get_dialect("2024")
    reqs = []
    with TraceReader(trace) as r:
        for s in r:
            for st in s["steps"]:
                method, path = dialect.render(st["op"], ["1" if is_symbol(a) else a for a in st["args"]])
                reqs.append((method, base + path))

    async def main() -> float:
        it = iter(reqs)
        connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:
            async def worker() -> None:
                for method, url in it:
                    async with session.request(method, url) as resp:
                        await resp.read()

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return time.perf_counter() - t0

    return len(reqs), run_async(main())


def replay(trace: str, base: str, concurrency: int, workers: int, out: str) -> tuple[int, float]:
    """``replay_trace --speed max``; (requests sent, first send → last response seconds)."""
    from wdmreplay.replayer import replay_trace

    s = replay_trace(trace, out, target=base, speed=None, concurrency=concurrency, workers=workers,
                     final_read=False)
    assert s["outcomes"]["ok"] == s["requests"], s["outcomes"]
    return s["sent"], s["send_wall"]


def _cpu() -> float:
    """CPU seconds of this process and its waited-for children (the --workers processes)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=20000)
    ap.add_argument("--steps", type=int, default=3, help="requests per session")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--target", choices=["raw", "aiohttp"], default="raw",
                    help="fast target: a raw asyncio responder (default) or an aiohttp.web app")
    ap.add_argument("--serve", type=int, metavar="PORT", help="only run the fast target")
    a = ap.parse_args()
    if a.serve is not None:
        serve(a.serve, a.target)
        return
    try:
        import uvloop  # noqa: F401
        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    if os.environ.get("WDM_REPLAY_UVLOOP") == "0":
        loop = "asyncio"
    with tempfile.TemporaryDirectory() as tmp, FastTarget(a.target) as target:
        trace = str(Path(tmp) / "bench.wdmt")
        n = build_trace(trace, a.sessions, a.steps)
        print(f"trace: {a.sessions} sessions x {a.steps} steps = {n} requests; concurrency {a.concurrency}; "
              f"target {a.target} in its own process; loop {loop}; cores {os.cpu_count()}", flush=True)
        best: dict[str, float] = {}
        per_cpu: dict[str, float] = {}
        for rnd in range(a.rounds):
            for name in ("bare", "replay-1", "replay-2"):
                cpu0 = _cpu()
                if name == "bare":
                    count, secs = bare_loop(trace, target.url, a.concurrency)
                else:
                    count, secs = replay(trace, target.url, a.concurrency, int(name[-1]), str(Path(tmp) / "r.wdmr"))
                cpu = _cpu() - cpu0
                rps = count / secs
                best[name] = max(best.get(name, 0.0), rps)
                per_cpu[name] = max(per_cpu.get(name, 0.0), count / cpu)
                print(f"  round {rnd + 1} {name:9s} {count} requests in {secs:.3f} s = {rps:,.0f} req/s; "
                      f"client CPU {cpu:.2f} s = {count / cpu:,.0f} req per CPU-second  "
                      f"(load average {os.getloadavg()[0]:.1f})", flush=True)
        print("best of rounds (req/s wall | req per client CPU-second, trace reading included for both):")
        for name, rps in best.items():
            print(f"  {name:9s} {rps:,.0f} req/s | {per_cpu[name]:,.0f} req/CPU-s")
        r1 = best["replay-1"] / best["bare"]
        c1 = per_cpu["replay-1"] / per_cpu["bare"]
        r2 = best["replay-2"] / best["replay-1"]
        print(f"replay-1 / bare aiohttp loop: {r1:.2f}x req/s, {c1:.2f}x req per CPU-second  "
              f"(target >= 0.8; issue target >= 0.9)")
        print(f"replay --workers 2 / --workers 1: {r2:.2f}x req/s  (the target process shares these "
              f"{os.cpu_count()} cores)")
        if os.getloadavg()[0] > 1.5:
            print("note: the machine was busy (load average above 1.5); wall-clock rates are noisy, "
                  "the per-CPU-second ratio is the steadier figure")


if __name__ == "__main__":
    main()
