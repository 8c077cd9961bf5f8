"""The bare aiohttp loop: the ceiling a Python asyncio load generator can reach on one core.

N coroutines share one ClientSession (``TCPConnector(limit=N)``) and pull (method, URL) pairs from
one list until it is empty, reading every body. No schedule, no symbols, no results file: what is
left is aiohttp's own cost. The URLs are the trace's requests in trace order with every symbol
resolved to ``"1"`` (the static target's id).

Prints one JSON line: {"requests", "ok", "errors", "seconds", "loop"}; ``seconds`` is the timed
loop only (URL rendering before it is excluded, process start-up too).

    python bench/bare_aiohttp.py --trace stress.wdmt --url http://127.0.0.1:8080 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp

from wdmreplay.api import get_dialect
from wdmreplay.traces import TraceReader, is_symbol


def trace_requests(trace: str, base_url: str, dialect_name: str | None) -> list[tuple[str, str]]:
    """Every request of ``trace`` as (method, URL), symbols resolved to ``"1"``, in trace order."""
    out: list[tuple[str, str]] = []
    with TraceReader(trace) as r:
        dialect = get_dialect(dialect_name or r.header.get("dialect") or "2024")
        for session in r:
            for st in session["steps"]:
                args = ["1" if is_symbol(a) else a for a in st["args"]]
                method, path = dialect.render(st["op"], args)
                out.append((method, base_url + path))
    return out


async def run_loop(requests: list[tuple[str, str]], concurrency: int, timeout: float) -> dict:
    """Send every request with ``concurrency`` workers over one session; counts and timed seconds."""
    ok = errors = 0
    it = iter(requests)
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        async def worker() -> None:
            nonlocal ok, errors
            for method, url in it:
                try:
                    async with session.request(method, url) as resp:
                        await resp.read()
                        if resp.status < 300:
                            ok += 1
                        else:
                            errors += 1
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - t0
    return {"requests": ok + errors, "ok": ok, "errors": errors, "seconds": seconds}


def main() -> None:
    """Parse options, render the URLs, run the loop, print the JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trace", required=True, help="trace file whose requests to send")
    ap.add_argument("--url", required=True, help="base URL of the static target")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--dialect", default=None, help="default: the trace's dialect, else 2024")
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    ap.add_argument("--timeout", type=float, default=10.0)
    a = ap.parse_args()
    requests = trace_requests(a.trace, a.url.rstrip("/"), a.dialect)
    if a.loop == "uvloop":
        import uvloop

        uvloop.install()
    result = asyncio.run(run_loop(requests, a.concurrency, a.timeout))
    result["loop"] = a.loop
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
