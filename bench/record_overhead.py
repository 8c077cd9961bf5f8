"""What ``wdm-replay record`` costs a client: added latency (p50/p99) and max request rate, proxy vs direct.

Starts, each in its own process on 127.0.0.1: a bare aiohttp target whose catch-all handler returns
a fixed JSON body (so the figures are the proxy's, not a shop's), and ``wdm-replay record
--upstream`` in front of it. Then, in one run:

- **latency**: one keep-alive connection sends ``--latency-requests`` requests one after another,
  alternating direct and through the proxy in blocks, so machine drift falls on both; p50/p99 each,
  and the added p50/p99 (proxy minus direct);
- **max rate**: ``--concurrency`` connections send ``--requests`` requests as fast as they are
  answered, direct and through the proxy (best of ``--rounds``); req/s each and their ratio.

Finally the proxy is stopped with SIGTERM and must have written a trace holding every request it
forwarded (a sanity check that the capture was real). Bounded: fixed request counts, loopback only.

    python bench/record_overhead.py [--requests 20000] [--concurrency 32] [--latency-requests 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shop_throughput import BARE, free_port, start, stop  # noqa: E402

from wdmreplay.traces import read_header  # noqa: E402

PATH = "/stock/find/1"  # a find_item: matched, recorded, no state


async def latencies(bases: list[str], n: int, block: int = 100) -> list[np.ndarray]:
    """Per base URL, ``n`` sequential request latencies (seconds) over one connection each, interleaved."""
    out: list[list[float]] = [[] for _ in bases]
    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1),
                                      timeout=aiohttp.ClientTimeout(total=30)) for _ in bases]
    try:
        for _ in range(max(1, n // block)):
            for i, (base, s) in enumerate(zip(bases, sessions)):
                for _ in range(block):
                    t = time.perf_counter()
                    async with s.get(base + PATH) as r:
                        await r.read()
                    out[i].append(time.perf_counter() - t)
    finally:
        for s in sessions:
            await s.close()
    return [np.asarray(x) for x in out]


async def rate(base: str, n: int, concurrency: int) -> float:
    """req/s of ``n`` requests sent by ``concurrency`` closed-loop connections."""
    left = iter(range(n))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency),
                                     timeout=aiohttp.ClientTimeout(total=60)) as s:
        async def worker() -> None:
            for _ in left:
                async with s.get(base + PATH) as r:
                    await r.read()

        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=20000, help="requests per max-rate round")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--latency-requests", type=int, default=4000, help="sequential requests per side")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    exe = shutil.which("wdm-replay")
    tool = [exe] if exe else [sys.executable, "-m", "wdmreplay"]

    tport, pport = free_port(), free_port()
    target = start([sys.executable, "-c", BARE, str(tport)], tport)
    out = Path(tempfile.mkdtemp(prefix="wdm-record-bench-")) / "overhead.wdmt"
    proxy = start(tool + ["record", "--upstream", f"http://127.0.0.1:{tport}", "--listen", f"127.0.0.1:{pport}",
                          "-o", str(out)], pport)
    direct, via = f"http://127.0.0.1:{tport}", f"http://127.0.0.1:{pport}"
    try:
        lat_d, lat_p = asyncio.run(latencies([direct, via], args.latency_requests))
        best_d = best_p = 0.0
        for _ in range(args.rounds):
            best_d = max(best_d, asyncio.run(rate(direct, args.requests, args.concurrency)))
            best_p = max(best_p, asyncio.run(rate(via, args.requests, args.concurrency)))
    finally:
        stop(proxy)  # SIGTERM: the proxy drains and writes the trace
        stop(target)
    sent_via = len(lat_p) + args.rounds * args.requests
    recorded = read_header(out)["requests"] if out.exists() else 0

    ms = lambda a, q: float(np.percentile(a, q)) * 1e3  # noqa: E731
    print(f"record overhead: bare aiohttp target, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"latency, 1 connection, {len(lat_d)} requests each side (ms)")
    print(f"  {'':<8}{'p50':>8}{'p99':>8}")
    print(f"  {'direct':<8}{ms(lat_d, 50):>8.3f}{ms(lat_d, 99):>8.3f}")
    print(f"  {'proxy':<8}{ms(lat_p, 50):>8.3f}{ms(lat_p, 99):>8.3f}")
    print(f"  {'added':<8}{ms(lat_p, 50) - ms(lat_d, 50):>8.3f}{ms(lat_p, 99) - ms(lat_d, 99):>8.3f}")
    print(f"max rate, {args.concurrency} connections, {args.requests} requests, best of {args.rounds}")
    print(f"  direct {best_d:,.0f} req/s   proxy {best_p:,.0f} req/s   ratio {best_p / best_d:.2f}")
    print(f"trace: {recorded:,} requests recorded of {sent_via:,} sent through the proxy"
          + ("" if recorded == sent_via else "  (MISMATCH)"))
    if recorded != sent_via:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
