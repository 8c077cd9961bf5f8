"""How fast the reference shop answers, as a ratio to a bare aiohttp server on the same machine.

Starts, each in its own process on 127.0.0.1: ``wdm-replay serve`` (one port, and ``--split``), and
a bare aiohttp app whose catch-all handler returns a fixed JSON body (the floor any aiohttp shop
pays). Drives each with the same closed-loop aiohttp client (64 connections, a fixed number of
requests per operation, best of 3 rounds) and prints req/s and the shop/bare ratio per operation.

    python bench/shop_throughput.py [--requests 10000] [--concurrency 64]
    python bench/shop_throughput.py --durable   # also serve --data (SQLite), one port and split
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import aiohttp

BARE = r"""
import sys
from aiohttp import web
async def h(request):
    return web.Response(text='{"item_id": "1", "user_id": "1", "order_id": "1", "stock": 1, "price": 1}',
                        content_type="application/json")
app = web.Application()
app.router.add_route("*", "/{tail:.*}", h)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def free_port(n: int = 1) -> int:
    """A port p such that p..p+n-1 were free a moment ago."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p + n < 65535 and all(_free(p + i) for i in range(1, n)):
            return p


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def start(argv: list[str], port: int) -> subprocess.Popen:
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return p
        except OSError:
            time.sleep(0.05)
    stop(p)
    raise SystemExit(f"server {argv} did not start")


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


async def drive(urls: dict[str, str], requests: int, concurrency: int) -> dict[str, float]:
    """req/s per operation against ``urls`` (service -> base URL)."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    out = {}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as s:
        async def post(service: str, path: str) -> dict:
            async with s.post(urls[service] + path) as r:
                body = await r.read()
                try:
                    return json.loads(body)
                except ValueError:
                    return {}

        item = (await post("stock", "/stock/item/create/1"))["item_id"]
        await post("stock", f"/stock/add/{item}/{10**12}")
        user = (await post("payment", "/payment/create_user"))["user_id"]
        await post("payment", f"/payment/add_funds/{user}/{10**12}")
        order = (await post("orders", f"/orders/create/{user}"))["order_id"]
        await post("orders", f"/orders/addItem/{order}/{item}/1")
        ops = {
            "find_item": ("GET", "stock", f"/stock/find/{item}"),
            "subtract_stock": ("POST", "stock", f"/stock/subtract/{item}/1"),
            "pay": ("POST", "payment", f"/payment/pay/{user}/1"),
            "add_item": ("POST", "orders", f"/orders/addItem/{order}/{item}/1"),
            "checkout (split: 2 internal calls)": ("POST", "orders", "/orders/checkout/{}"),
        }
        for name, (method, service, path) in ops.items():
            if "checkout" in name:  # a fresh order per checkout, made beforehand
                fresh = []
                for _ in range(requests // 4):
                    o = (await post("orders", f"/orders/create/{user}"))["order_id"]
                    await post("orders", f"/orders/addItem/{o}/{item}/1")
                    fresh.append(path.format(o))
                paths = fresh
            else:
                paths = [path] * requests
            it = iter(paths)

            async def worker() -> None:
                for p in it:
                    async with s.request(method, urls[service] + p) as r:
                        await r.read()

            t = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            out[name] = len(paths) / (time.perf_counter() - t)
    return out


def measure(argv: list[str], port: int, split: bool, args: argparse.Namespace) -> dict[str, float]:
    """Best-of-rounds req/s per operation of the server started by ``argv``."""
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        p = start(argv, port)
        try:
            base = f"http://127.0.0.1:{port}"
            urls = {"orders": base, "stock": base, "payment": base}
            if split:
                urls = {"orders": base, "stock": f"http://127.0.0.1:{port + 1}",
                        "payment": f"http://127.0.0.1:{port + 2}"}
            got = asyncio.run(drive(urls, args.requests, args.concurrency))
        finally:
            stop(p)
        for k, v in got.items():
            best[k] = max(best.get(k, 0.0), v)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=10000, help="requests per operation per round")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--durable", action="store_true", help="also measure serve --data DIR (durable, SQLite)")
    args = ap.parse_args()
    exe = shutil.which("wdm-replay")
    shop = [exe] if exe else [sys.executable, "-m", "wdmreplay"]

    port = free_port()
    bare = measure([sys.executable, "-c", BARE, str(port)], port, False, args)
    one = measure(shop + ["serve", "--port", str(port)], port, False, args)
    port3 = free_port(3)
    split = measure(shop + ["serve", "--split", "--port", str(port3)], port3, True, args)

    print(f"shop throughput, {args.requests} requests/op, {args.concurrency} connections, best of {args.rounds}"
          f" (client in one process; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})")
    print(f"{'operation':<36}{'bare req/s':>11}{'shop req/s':>11}{'ratio':>7}{'split req/s':>12}{'ratio':>7}")
    for op in one:
        b = bare[op]
        print(f"{op:<36}{b:>11.0f}{one[op]:>11.0f}{one[op] / b:>7.2f}{split[op]:>12.0f}{split[op] / b:>7.2f}")
    if args.durable:
        with tempfile.TemporaryDirectory(prefix="wdm-bench-") as d:
            # a fresh directory per round would be fairer; the state each round adds is small
            one_d = measure(shop + ["serve", "--port", str(port), "--data", os.path.join(d, "one")],
                            port, False, args)
            split_d = measure(shop + ["serve", "--split", "--port", str(port3), "--data", os.path.join(d, "split")],
                              port3, True, args)
        print("\ndurable (--data, SQLite WAL, a commit per answer) as a ratio to in-memory:")
        print(f"{'operation':<36}{'one req/s':>11}{'ratio':>7}{'split req/s':>12}{'ratio':>7}")
        for op in one:
            print(f"{op:<36}{one_d[op]:>11.0f}{one_d[op] / one[op]:>7.2f}"
                  f"{split_d[op]:>12.0f}{split_d[op] / split[op]:>7.2f}")


if __name__ == "__main__":
    main()
