"""Test support for the verdict tests: a tiny purpose-built shop (dialect 2024) with one knob per fault.

``TinyShop(mode)`` serves on 127.0.0.1:0 in a background thread. ``mode``:

- ``"correct"``: an in-memory shop, every operation serialised (the control: a judge must say CLEAN);
- ``"lost-line"``: add_item *sets* an order line's quantity instead of adding to it (two 2xx
  add_item of one unit end as quantity 1);
- ``"wrong-total"``: an order's total_cost is one below Σ quantity × price (the checkout charges it);
- ``"500"``: every request answers 500 with no effect (a 500 storm);
- ``"hang"``: every request answers only after ``hang`` seconds (longer than the client's timeout);
- ``"non-json"``: every request answers 200 with a plain-text body;
- ``"empty-json"``: every request answers 200 ``{}`` (valid JSON, but no created id, no fields);
- ``"dead"``: only the replayer's probe is answered; every other connection is closed unanswered;
- ``"amnesia"``: correct until the first find (the final read): then it forgets every item, user and
  order, as an in-memory shop restarted empty does, and answers 404 "not found" for each;
- ``"faulty-stock"``: correct, except between ``POST /_admin/fault/on`` and ``/_admin/fault/off``
  (a fault schedule's actions): then every request answers 502 with no effect, but add_item answers
  400 "item does not exist" — as the course template's order service turns a 502 from stock into a 4xx;
- ``"collapse-repeats"``: the checkout keeps one quantity per item id — the last add_item's — so an
  item added twice is charged in full but takes only the last add_item's units of stock (issue 25's
  student shop, whose stock service is single-threaded: no concurrency involved);
- ``"checkout-500"``: correct, except that every checkout answers 500 with no effect;
- ``"flaky-stock"``: correct, except that add_stock and checkout answer 502 with no effect and
  add_item answers 400 "Item does not exist" — always, no fault window declared.
- ``"int32-total"``: correct, except that the order's read answers total_cost as a signed 32-bit
  integer (a shop storing totals in an int32 column): wrong only once a total reaches 2**31; the
  checkout charges the right amount.
- ``"dies-at-final"``: correct until the first find (the final read): then the shop is killed — that
  request's connection is closed unanswered and the port closes (later connections are refused);
- ``"hangs-at-final"``: correct until the first find: from then on every request is accepted and
  never answered (a process stopped with SIGSTOP, a wedged event loop).
- ``"huge-figures"``: correct, except that every find_item answers a stock of 2**70 and every find_order a
  total_cost of 2**64 (numbers no signed 64-bit column holds: garbage the final read must survive).

``.stop()`` closes the port mid-run (a shop killed). ``.url`` is the base URL.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from typing import Any

from aiohttp import web

MODES = ("correct", "lost-line", "wrong-total", "500", "hang", "non-json", "empty-json", "dead", "amnesia", "faulty-stock", "collapse-repeats", "checkout-500", "flaky-stock",
         "int32-total", "huge-figures", "dies-at-final", "hangs-at-final")


class TinyShop:
    """A minimal 2024-dialect shop with an injected fault (see the module doc)."""

    def __init__(self, mode: str = "correct", *, hang: float = 2.0):
        assert mode in MODES, mode
        self.mode, self.hang = mode, hang
        self.items: dict[str, list[int]] = {}  # id -> [stock, price]
        self.users: dict[str, int] = {}
        self.orders: dict[str, dict[str, Any]] = {}  # id -> {user, lines {item: qty}, paid}
        self.url = ""
        self.faulty = False  # faulty-stock: inside the fault
        self.hung = False  # hangs-at-final: the final read has begun
        self.dead = False  # dies-at-final: the final read has begun
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- the shop's logic (one event loop: every handler runs to completion without a yield) --
    def _total(self, order: dict) -> int:
        total = sum(q * self.items[i][1] for i, q in order["lines"].items())
        return total - 1 if self.mode == "wrong-total" and total else total

    def _shown_total(self, order: dict) -> int:
        total = self._total(order)
        if self.mode == "huge-figures":
            return 1 << 64
        return (total + (1 << 31)) % (1 << 32) - (1 << 31) if self.mode == "int32-total" else total

    def _answer(self, method: str, parts: list[str]) -> tuple[int, Any]:
        svc, op, args = parts[0], parts[1], parts[2:]
        if svc == "stock":
            if op == "item" and args[:1] == ["create"]:
                iid = str(len(self.items))
                self.items[iid] = [0, int(args[1])]
                return 200, {"item_id": iid}
            if args[0] not in self.items:
                return 404, "no such item"
            it = self.items[args[0]]
            if op == "find":
                return 200, {"stock": 1 << 70 if self.mode == "huge-figures" else it[0], "price": it[1]}
            n = int(args[1])
            if op == "subtract" and it[0] < n:
                return 400, "insufficient stock"
            it[0] += n if op == "add" else -n
            return 200, "ok"
        if svc == "payment":
            if op == "create_user":
                uid = str(len(self.users))
                self.users[uid] = 0
                return 200, {"user_id": uid}
            if args[0] not in self.users:
                return 404, "no such user"
            if op == "find_user":
                return 200, {"user_id": args[0], "credit": self.users[args[0]]}
            n = int(args[1])
            if op == "pay" and self.users[args[0]] < n:
                return 400, "insufficient credit"
            self.users[args[0]] += n if op == "add_funds" else -n
            return 200, "ok"
        if op == "create":
            oid = str(len(self.orders))
            self.orders[oid] = {"user": args[0], "lines": {}, "paid": False}
            return 200, {"order_id": oid}
        order = self.orders.get(args[0])
        if order is None:
            return 404, "no such order"
        if op == "find":
            return 200, {"order_id": args[0], "paid": order["paid"], "items": [[i, q] for i, q in order["lines"].items()],
                         "user_id": order["user"], "total_cost": self._shown_total(order)}
        if op == "addItem":
            item, qty = args[1], int(args[2])
            if item not in self.items:
                return 400, "no such item"
            order["lines"][item] = qty if self.mode == "lost-line" else order["lines"].get(item, 0) + qty
            order.setdefault("last", {})[item] = qty
            return 200, "added"
        if op == "checkout":
            if self.mode == "checkout-500":
                return 500, "Internal Server Error"
            if order["paid"]:
                return 400, "already paid"
            cost = self._total(order)
            if self.users[order["user"]] < cost or any(self.items[i][0] < q for i, q in order["lines"].items()):
                return 400, "out of stock or credit"
            for i, q in order["lines"].items():
                self.items[i][0] -= order["last"][i] if self.mode == "collapse-repeats" else q
            self.users[order["user"]] -= cost
            order["paid"] = True
            return 200, "Checkout successful"
        return 404, "unknown route"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if "wdm-replay-probe" in path:
            return web.Response(status=404, text="probe")
        if self.mode == "dead":
            assert request.transport is not None
            request.transport.close()
            await asyncio.sleep(0.05)
            return web.Response(status=500)
        if self.mode == "500":
            return web.Response(status=500, text="Internal Server Error")
        if self.mode == "hang":
            await asyncio.sleep(self.hang)
        if path.startswith("/_admin/fault/"):
            self.faulty = path.endswith("/on")
            return web.Response(text="fault " + ("on" if self.faulty else "off"))
        if self.mode == "flaky-stock" and ("/add/" in path or "/checkout/" in path or "/addItem/" in path):
            if "/addItem/" in path:
                return web.Response(status=400, text="Item does not exist")
            return web.Response(status=502, text="Bad Gateway")
        if self.mode == "faulty-stock" and self.faulty:
            if "/addItem/" in path:
                return web.Response(status=400, text="Item does not exist")
            return web.Response(status=502, text="Bad Gateway")
        if self.mode == "dies-at-final" and ("find" in path or self.dead):
            if not self.dead:  # the port closes: new connections are refused
                self.dead = True
                server = self._site._server  # type: ignore[union-attr]
                for sock in server.sockets:  # shut down, not only closed: a forked replay worker holds the fd too
                    sock.shutdown(socket.SHUT_RDWR)
                server.close()
            assert request.transport is not None
            request.transport.close()  # and the open ones are cut, unanswered
            await asyncio.sleep(0.05)
            return web.Response(status=500)
        if self.mode == "hangs-at-final" and "find" in path:
            self.hung = True
        if self.hung:
            await asyncio.sleep(3600)  # never answers (the shop's cleanup cancels it)
        if self.mode == "amnesia" and "find" in path:
            self.items.clear(), self.users.clear(), self.orders.clear()
        status, body = self._answer(request.method, [p for p in path.split("/") if p])
        if self.mode == "non-json":
            return web.Response(status=200, text="ok")
        if self.mode == "empty-json":
            return web.Response(status=200, text="{}", content_type="application/json")
        if isinstance(body, dict):
            return web.Response(status=status, text=json.dumps(body), content_type="application/json")
        return web.Response(status=status, text=str(body))

    # -- lifecycle --
    def _serve(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        loop.run_until_complete(runner.setup())
        site = self._site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    def start(self) -> "TinyShop":
        """Serve in a background thread; returns once the port listens."""
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def stop(self) -> None:
        """Close the port and stop serving (idempotent): the shop is gone."""
        if self._thread is None:
            return
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> "TinyShop":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
