"""The bare loops: a trace's requests sent with nothing else around them, through aiohttp or the lean client.

N coroutines pull pre-rendered (method, path) pairs from one list until it is empty, reading every
body. No schedule, no symbols, no results file: what is left is the HTTP client's own cost.

- ``--client aiohttp``: one ``ClientSession(TCPConnector(limit=N, limit_per_host=0))`` — the
  ceiling of a Python asyncio generator built on aiohttp (the issue's baseline);
- ``--client lean``: one ``wdmreplay.replayer.http.Origin`` — the replayer's own transport, so the
  ceiling of ``replay`` with its bookkeeping taken away.

The requests are the trace's in trace order with every symbol resolved to ``"1"`` (the static
target's id). Prints one JSON line: {"requests", "ok", "errors", "seconds", "loop", "client",
"render_user", "render_system"}; ``seconds`` is the timed loop only (rendering before it is excluded,
process start-up too); ``render_user`` and ``render_system`` are the CPU seconds rendering took
(reading the trace and rendering every request, before the loop).

    python bench/bare_loop.py --trace stress.wdmt --url http://127.0.0.1:8080 --concurrency 64 --client lean
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time

from wdmreplay.operations import get_dialect
from wdmreplay.traces import TraceReader, is_symbol

CLIENTS = ("aiohttp", "lean")


def trace_requests(trace: str, dialect_name: str | None = None) -> list[tuple[str, str]]:
    """Every request of ``trace`` as (method, path), symbols resolved to ``"1"``, in trace order."""
    out: list[tuple[str, str]] = []
    with TraceReader(trace) as r:
        dialect = get_dialect(dialect_name or r.header.get("dialect") or "2024")
        for session in r:
            for st in session["steps"]:
                out.append(dialect.render(st["op"], ["1" if is_symbol(a) else a for a in st["args"]]))
    return out


async def run_loop(requests: list[tuple[str, str]], base_url: str, concurrency: int, *, client: str = "aiohttp",
                   timeout: float = 10.0) -> dict:
    """Send every request with ``concurrency`` coroutines through ``client``; counts and timed seconds."""
    ok = errors = 0
    it = iter(requests)

    async def drive(send) -> float:
        async def worker() -> None:
            nonlocal ok, errors
            for method, path in it:
                try:
                    if await send(method, path) < 300:
                        ok += 1
                    else:
                        errors += 1
                except (OSError, asyncio.TimeoutError):  # aiohttp.ClientError is an OSError too
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - t0

    if client == "lean":
        from wdmreplay.replayer.http import Origin

        origin = Origin(base_url, timeout)

        async def send_lean(method: str, path: str) -> int:
            return (await origin.request(method, path))[0]

        try:
            seconds = await drive(send_lean)
        finally:
            origin.close()
    else:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async def send_aiohttp(method: str, path: str) -> int:
                async with session.request(method, base_url + path) as resp:
                    await resp.read()
                    return resp.status

            seconds = await drive(send_aiohttp)
    return {"requests": ok + errors, "ok": ok, "errors": errors, "seconds": seconds, "client": client}


def main() -> None:
    """Parse options, render the requests, run the loop, print the JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trace", required=True, help="trace file whose requests to send")
    ap.add_argument("--url", required=True, help="base URL of the static target")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--client", choices=CLIENTS, default="aiohttp")
    ap.add_argument("--dialect", default=None, help="default: the trace's dialect, else 2024")
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    ap.add_argument("--timeout", type=float, default=10.0)
    a = ap.parse_args()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    requests = trace_requests(a.trace, a.dialect)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    if a.loop == "uvloop":
        import uvloop

        uvloop.install()
    result = asyncio.run(run_loop(requests, a.url.rstrip("/"), a.concurrency, client=a.client, timeout=a.timeout))
    result["loop"] = a.loop
    result["render_user"], result["render_system"] = r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
