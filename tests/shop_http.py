"""Test helpers for the shop's tests: call operations over real HTTP, sequentially or concurrently."""

from __future__ import annotations

import asyncio
import http.client
import json
from typing import Any, Iterable
from urllib.parse import quote, urlsplit

import aiohttp
from yarl import URL

from wdmreplay import operations, targets


def _q(a: Any) -> str:
    return quote(a, safe="") if isinstance(a, str) else str(a)


class ShopClient:
    """Calls shop operations by name in one dialect, one keep-alive connection per service."""

    def __init__(self, target: targets.Target, dialect: str = "2024"):
        self.target = target
        self.dialect = operations.get_dialect(dialect)
        self._conns: dict[str, http.client.HTTPConnection] = {}

    def raw(self, method: str, base: str, path: str) -> tuple[int, str]:
        """Send ``method path`` to ``base``; (status, body text)."""
        conn = self._conns.get(base)
        if conn is None:
            u = urlsplit(base)
            conn = self._conns[base] = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        try:
            conn.request(method, path, body=b"" if method != "GET" else None)
            r = conn.getresponse()
            return r.status, r.read().decode()
        except (http.client.HTTPException, OSError):
            conn.close()
            del self._conns[base]
            raise

    def call(self, op: str, *args: Any) -> tuple[int, str]:
        """Call ``op`` with ``args`` in its parameter order (missing trailing ones are None)."""
        full = list(args) + [None] * (len(operations.OPERATIONS[op].params) - len(args))
        method, path = self.dialect.render(op, [_q(a) for a in full])
        return self.raw(method, self.target.base(operations.OPERATIONS[op].service), path)

    def ok(self, op: str, *args: Any) -> Any:
        """Call ``op``, assert 2xx, and return the parsed JSON body (or the text)."""
        status, body = self.call(op, *args)
        assert 200 <= status < 300, f"{op}{args}: {status} {body}"
        try:
            return json.loads(body)
        except ValueError:
            return body

    def fails(self, op: str, *args: Any) -> str:
        """Call ``op``, assert 400 with a non-empty message; the message."""
        status, body = self.call(op, *args)
        assert status == 400 and body.strip(), f"{op}{args}: expected 400, got {status} {body!r}"
        return body

    # shortcuts
    def item(self, price: int, stock: int = 0) -> str:
        """A new item with ``stock`` units at ``price``."""
        i = self.ok("create_item", price)["item_id"]
        if stock:
            self.ok("add_stock", i, stock)
        return i

    def user(self, credit: int = 0) -> str:
        """A new user with ``credit``."""
        u = self.ok("create_user")["user_id"]
        if credit:
            self.ok("add_funds", u, credit)
        return u

    def order(self, user: str, *lines: tuple[str, int]) -> str:
        """A new order of ``user`` with ``(item, qty)`` lines (qty 1 per call in dialect 2023)."""
        o = self.ok("create_order", user)["order_id"]
        for item, qty in lines:
            if self.dialect.route("add_item").template.count("{") == 3:
                self.ok("add_item", o, item, qty)
            else:
                for _ in range(qty):
                    self.ok("add_item", o, item)
        return o

    def stock(self, item: str) -> int:
        """Current stock of ``item``."""
        return self.ok("find_item", item)["stock"]

    def credit(self, user: str) -> int:
        """Current credit of ``user``."""
        return self.ok("find_user", user)["credit"]

    def close(self) -> None:
        """Close every connection."""
        for c in self._conns.values():
            c.close()
        self._conns.clear()


async def _fire(target: targets.Target, dialect: str, calls: list[tuple[str, list[Any]]]) -> list[tuple[int, str]]:
    d = operations.get_dialect(dialect)
    connector = aiohttp.TCPConnector(limit=len(calls) or 1)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = asyncio.Event()

        async def one(op: str, args: list[Any]) -> tuple[int, str]:
            full = list(args) + [None] * (len(operations.OPERATIONS[op].params) - len(args))
            method, path = d.render(op, [_q(a) for a in full])
            url = URL(target.base(operations.OPERATIONS[op].service) + path, encoded=True)
            await start.wait()
            async with session.request(method, url) as r:
                return r.status, await r.text()

        tasks = [asyncio.ensure_future(one(op, args)) for op, args in calls]
        await asyncio.sleep(0)
        start.set()
        return list(await asyncio.gather(*tasks))


def fire(target: targets.Target, calls: Iterable[tuple[str, list[Any]]], dialect: str = "2024") -> list[tuple[int, str]]:
    """Send every call at once (one connection each); (status, body) per call, in order."""
    return asyncio.run(_fire(target, dialect, list(calls)))
