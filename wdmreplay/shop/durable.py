"""The reference shop's durable state (``serve --data DIR``): SQLite write-through and checkout sagas.

Durability: the in-memory stores of :mod:`.store` stay the working set; subclasses here remember
which entities a request touched, and every request ends with :meth:`DurableStore.flush`, which
writes those rows and commits (one SQLite transaction, WAL) *before* the answer is sent. So every
2xx (and 4xx) the shop gives is on disk, and a ``kill -9`` loses only requests not yet answered.
The stores are synchronous and run on one event loop, so a flush always sees a state between two
synchronous steps: one-port checkouts (no ``await`` inside) are written whole.

A checkout that spans services (``--split``) is a **saga with backward recovery**:

1. the order service logs the saga's intent (its legs, each with a request id) and commits;
2. it calls each stock leg, then the payment leg, each idempotent by its request id: stock and
   payment apply an id once (the effect and the id in one transaction) and answer a repeat with
   the first outcome;
3. when every leg answered 2xx, the order becomes paid and the saga *done* in one commit, then
   the client gets 200;
4. otherwise (a refusal, a peer down, or the order service itself died and restarted) the saga is
   *compensated*: every leg id is undone. An undo reverses an applied leg once; an undo of an id
   never applied records a tombstone, so a leg still in flight from a dead order service that
   arrives later is refused. Compensation is retried in the background until every peer answered;
   at start-up the order service compensates every saga the log shows open.

The client sees 200 only for a done saga, 400 for a refusal whose compensation finished, 503 when
compensation is still pending (the end state is then reached in the background): all-or-nothing
across stock, payment and order, whichever one service is killed. See docs/shop.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import uuid
from typing import Any, Iterable

from aiohttp import ClientError, web
from yarl import URL

from ..terms import named
from .store import Item, Order, OrderStore, Payment, PaymentStore, Refused, StockStore, User

# How long the background compensator waits between rounds while a peer is unreachable.
RETRY_S = 0.25

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (id TEXT PRIMARY KEY, stock INTEGER NOT NULL, price INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, credit INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS payments (user_id TEXT, order_id TEXT, amount INTEGER NOT NULL,
                                     by_checkout INTEGER NOT NULL, PRIMARY KEY (user_id, order_id));
CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, items TEXT NOT NULL,
                                   total_cost INTEGER NOT NULL, paid INTEGER NOT NULL, prices TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS legs (rid TEXT PRIMARY KEY, kind TEXT, target TEXT, order_id TEXT,
                                 amount INTEGER, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sagas (id TEXT PRIMARY KEY, order_id TEXT NOT NULL, body TEXT NOT NULL,
                                  state TEXT NOT NULL);
"""


def db_path(data_dir: str, role: str) -> str:
    """The SQLite file of ``role`` (``shop`` for one port, else the service name) in ``data_dir``."""
    return os.path.join(data_dir, f"{role}.sqlite")


class DurableStore:
    """One SQLite file holding some of a shop's stores; :meth:`flush` commits what requests changed."""

    def __init__(self, path: str):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        # isolation_level=None: transactions are explicit (BEGIN ... COMMIT in flush).
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit is in the OS's page cache when it returns, so it survives
        # the process being killed (-9); FULL would also survive a power cut, at an fsync per write.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self.path = path
        self.stock: StockStore | None = None
        self.payment: PaymentStore | None = None
        self.orders: OrderStore | None = None
        self.dirty: dict[str, set[Any]] = {"items": set(), "users": set(), "payments": set(), "orders": set()}
        self.pending: list[tuple[str, tuple[Any, ...]]] = []  # log rows (legs, sagas) to write
        self.counters: dict[str, int] = {}

    # --- what requests changed ----------------------------------------------------------------

    def mark(self, table: str, key: Any) -> None:
        """Remember that row ``key`` of ``table`` may have changed (written at the next flush)."""
        self.dirty[table].add(key)

    def log(self, sql: str, *params: Any) -> None:
        """Queue one statement for the next flush's transaction."""
        self.pending.append((sql, params))

    def flush(self) -> None:
        """Write every touched row and queued statement in one transaction, and commit."""
        d = self.dirty
        counters = self._changed_counters()
        if not (self.pending or d["items"] or d["users"] or d["payments"] or d["orders"] or counters):
            return
        db = self.db
        db.execute("BEGIN")
        try:
            if self.stock is not None and d["items"]:
                self._write(d["items"], self.stock.items, "items",
                            lambda k, v: (k, v.stock, v.price))
            if self.payment is not None:
                self._write(d["users"], self.payment.users, "users", lambda k, v: (k, v.credit))
                self._write(d["payments"], self.payment.payments, "payments",
                            lambda k, v: (*k, v.amount, int(v.by_checkout)), ("user_id", "order_id"))
            if self.orders is not None and d["orders"]:
                self._write(d["orders"], self.orders.orders, "orders",
                            lambda k, o: (k, o.user_id, json.dumps(o.items), o.total_cost, int(o.paid),
                                          json.dumps(o.prices)))
            for sql, params in self.pending:
                db.execute(sql, params)
            for name, n in counters:
                db.execute("INSERT OR REPLACE INTO counters VALUES (?,?)", (name, n))
                self.counters[name] = n
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        for s in d.values():
            s.clear()
        self.pending.clear()

    def _write(self, keys: set, live: dict, table: str, row: Any, key: tuple[str, ...] = ("id",)) -> None:
        """Write the rows of ``keys`` changed in ``live`` (keyed by ``key``'s columns; a tuple when several),
        deleting those gone from it."""
        gone = [k if len(key) > 1 else (k,) for k in keys if k not in live]
        if gone:
            self.db.executemany(f"DELETE FROM {table} WHERE {' AND '.join(c + '=?' for c in key)}", gone)
        rows = [row(k, live[k]) for k in keys if k in live]
        if rows:
            marks = ",".join("?" * len(rows[0]))
            self.db.executemany(f"INSERT OR REPLACE INTO {table} VALUES ({marks})", rows)

    def _changed_counters(self) -> list[tuple[str, int]]:
        """The id counters (name, next number) of the live stores that differ from what is on disk."""
        live = (("stock", self.stock), ("payment", self.payment), ("orders", self.orders))
        return [(name, store.ids.n) for name, store in live
                if store is not None and self.counters.get(name) != store.ids.n]

    def clear(self) -> None:
        """Forget everything on disk (``POST /_shop/reset``)."""
        self.db.execute("BEGIN")
        for table in ("items", "users", "payments", "orders", "counters", "legs", "sagas"):
            self.db.execute(f"DELETE FROM {table}")
        self.db.execute("COMMIT")
        for s in self.dirty.values():
            s.clear()
        self.pending.clear()
        self.counters.clear()

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    # --- loading ------------------------------------------------------------------------------

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Every row of a query."""
        return self.db.execute(sql, params).fetchall()

    def counter(self, name: str) -> int:
        """The persisted id counter ``name`` (0 if none)."""
        r = self.rows("SELECT n FROM counters WHERE name=?", name)
        n = int(r[0][0]) if r else 0
        self.counters[name] = n
        return n


# --- stores that remember what they changed ----------------------------------------------------


class DurableStock(StockStore):
    """A :class:`StockStore` whose writes are persisted by its :class:`DurableStore`."""

    def __init__(self, durable: DurableStore, oversell: bool = False):
        super().__init__(oversell)
        self.durable = durable
        for k, stock, price in durable.rows("SELECT id, stock, price FROM items"):
            self.items[k] = Item(stock, price)
        self.ids.n = durable.counter("stock")
        durable.stock = self

    def create(self, price: int) -> str:
        item_id = super().create(price)
        self.durable.mark("items", item_id)
        return item_id

    def touched(self, item_id: str) -> None:
        self.durable.mark("items", item_id)

    def add(self, item_id: str, amount: int) -> int:
        self.durable.mark("items", item_id)
        return super().add(item_id, amount)

    def check_subtract(self, item_id: str, amount: int) -> Item:
        self.durable.mark("items", item_id)  # the caller writes right after the check
        return super().check_subtract(item_id, amount)

    def batch_init(self, n: int, stock: int, price: int) -> None:
        super().batch_init(n, stock, price)
        self.durable.dirty["items"].update(str(i) for i in range(n))


class DurablePayment(PaymentStore):
    """A :class:`PaymentStore` whose writes are persisted by its :class:`DurableStore`."""

    def __init__(self, durable: DurableStore, double_charge: bool = False):
        super().__init__(double_charge)
        self.durable = durable
        for k, credit in durable.rows("SELECT id, credit FROM users"):
            self.users[k] = User(credit)
        for u, o, amount, by_checkout in durable.rows("SELECT * FROM payments"):
            self.payments[(u, o)] = Payment(amount, bool(by_checkout))
        self.ids.n = durable.counter("payment")
        durable.payment = self

    def create(self) -> str:
        user_id = super().create()
        self.durable.mark("users", user_id)
        return user_id

    def touched(self, user_id: str) -> None:
        self.durable.mark("users", user_id)

    def add_funds(self, user_id: str, amount: int) -> int:
        self.durable.mark("users", user_id)
        return super().add_funds(user_id, amount)

    def check_pay(self, user_id: str, amount: int) -> User:
        self.durable.mark("users", user_id)
        return super().check_pay(user_id, amount)

    def record(self, user_id: str, order_id: str | None, amount: int, by_checkout: bool) -> None:
        if order_id is not None:
            self.durable.mark("payments", (user_id, order_id))
        super().record(user_id, order_id, amount, by_checkout)

    def cancel(self, user_id: str, order_id: str) -> int:
        self.durable.mark("users", user_id)
        self.durable.mark("payments", (user_id, order_id))
        return super().cancel(user_id, order_id)

    def batch_init(self, n: int, credit: int) -> None:
        super().batch_init(n, credit)
        self.durable.dirty["users"].update(str(i) for i in range(n))


class DurableOrders(OrderStore):
    """An :class:`OrderStore` whose writes are persisted by its :class:`DurableStore`."""

    def __init__(self, durable: DurableStore, seed: int = 0, wrong_total: bool = False):
        super().__init__(seed, wrong_total)
        self.durable = durable
        for k, user_id, items, total, paid, prices in durable.rows("SELECT * FROM orders"):
            order = Order(user_id, json.loads(items), total, json.loads(prices))
            order.paid = bool(paid)
            self.orders[k] = order
        self.ids.n = durable.counter("orders")
        durable.orders = self

    def create(self, user_id: str) -> str:
        order_id = super().create(user_id)
        self.durable.mark("orders", order_id)
        return order_id

    def get_unpaid(self, order_id: str) -> Order:
        self.durable.mark("orders", order_id)  # every change of an order starts here
        return super().get_unpaid(order_id)

    def mark_paid(self, order_id: str) -> None:
        self.durable.mark("orders", order_id)
        super().mark_paid(order_id)

    def batch_init(self, n: int, n_items: int, n_users: int, item_price: int) -> None:
        super().batch_init(n, n_items, n_users, item_price)
        self.durable.dirty["orders"].update(str(i) for i in range(n))


# --- legs: stock and payment operations idempotent by request id -----------------------------


class Leg:
    """One saga leg as logged: ``"subtract"`` (target: an item) or ``"pay"`` (target: a user, for an
    order), its amount, and ``"applied"`` or ``"undone"`` (a leg undone before it ran has no kind)."""

    __slots__ = ("kind", "target", "order_id", "amount", "state")

    def __init__(self, kind: str | None, target: str | None, order_id: str | None, amount: int, state: str):
        self.kind, self.target, self.order_id, self.amount, self.state = kind, target, order_id, amount, state


class LegLog:
    """Saga legs applied once per request id, and undone once (or fenced off if never applied)."""

    def __init__(self, durable: DurableStore, state: Any):
        self.durable = durable
        self.state = state
        self.legs: dict[str, Leg] = {rid: Leg(*rest) for rid, *rest in durable.rows("SELECT * FROM legs")}

    def _save(self, rid: str) -> None:
        leg = self.legs[rid]
        self.durable.log("INSERT OR REPLACE INTO legs VALUES (?,?,?,?,?,?)", rid, leg.kind, leg.target,
                         leg.order_id, leg.amount, leg.state)

    def _seen(self, rid: str) -> bool:
        leg = self.legs.get(rid)
        if leg is None:
            return False
        if leg.state == "undone":
            raise Refused(f"leg {rid} was cancelled")
        return True

    def subtract(self, rid: str, item_id: str, amount: int) -> None:
        """Take ``amount`` units of ``item_id`` once for ``rid``."""
        if not self._seen(rid):
            self.state.stock.subtract(item_id, amount)
            self.legs[rid] = Leg("subtract", item_id, None, amount, "applied")
            self._save(rid)

    def pay(self, rid: str, user_id: str, order_id: str, amount: int) -> None:
        """Charge ``user_id`` ``amount`` for ``order_id`` once for ``rid``."""
        if not self._seen(rid):
            self.state.payment.pay(user_id, amount, order_id, by_checkout=True)
            self.legs[rid] = Leg("pay", user_id, order_id, amount, "applied")
            self._save(rid)

    def undo(self, rid: str) -> None:
        """Reverse leg ``rid`` if it was applied; if it never was, fence it off (refused later)."""
        leg = self.legs.get(rid)
        if leg is not None and leg.state == "undone":
            return
        if leg is None:
            self.legs[rid] = Leg(None, None, None, 0, "undone")
        else:
            try:
                if leg.kind == "subtract":
                    self.state.stock.add(leg.target, leg.amount)
                else:
                    pay = self.state.payment
                    pay.add_funds(leg.target, leg.amount)
                    key = (leg.target, leg.order_id)
                    rec = pay.payments.get(key)
                    if rec is not None:
                        pay.durable.mark("payments", key)
                        rec.amount -= leg.amount
                        if rec.amount <= 0:
                            del pay.payments[key]
            except Refused:
                pass  # the item or user is gone (POST /_shop/reset): nothing left to give back
            leg.state = "undone"
        self._save(rid)


def add_leg_routes(app: web.Application, legs: LegLog, durable: DurableStore, service: str) -> None:
    """The internal routes the saga coordinator calls: apply a leg once, undo a leg once."""

    async def run(fn: Any, *args: Any) -> web.Response:
        try:
            fn(*args)
            return web.Response(text="ok")
        except Refused as e:
            return web.Response(status=400, text=str(e))
        finally:
            durable.flush()

    async def subtract(request: web.Request) -> web.Response:
        m = request.match_info
        return await run(legs.subtract, m["rid"], m["item"], int(m["amount"]))

    async def pay(request: web.Request) -> web.Response:
        m = request.match_info
        return await run(legs.pay, m["rid"], m["user"], m["order"], int(m["amount"]))

    async def undo(request: web.Request) -> web.Response:
        return await run(legs.undo, request.match_info["rid"])

    if service == "stock":
        app.router.add_post("/_shop/leg/{rid}/subtract/{item:[^/]+}/{amount:[0-9]+}", subtract)
    else:
        app.router.add_post("/_shop/leg/{rid}/pay/{user:[^/]+}/{order:[^/]+}/{amount:[0-9]+}", pay)
    app.router.add_post("/_shop/leg/{rid}/undo", undo)


# --- the saga coordinator (order service) ------------------------------------------------------


class PeerDown(Exception):
    """A leg's answer is unknown (the peer is down, timed out or failed with a 5xx)."""


class HttpLegs:
    """The legs as HTTP calls to the stock and payment services' internal routes."""

    def __init__(self, stock_client: Any, payment_client: Any):
        self.stock_client = stock_client
        self.payment_client = payment_client

    async def _post(self, client: Any, path: str) -> None:
        from urllib.parse import quote

        assert client.session is not None, "peer session not started"
        url = URL(client.base + "/_shop/leg/" + "/".join(quote(str(p), safe="") for p in path), encoded=True)
        try:
            async with client.session.post(url) as r:
                body = await r.read()
                status = r.status
        except (ClientError, asyncio.TimeoutError, OSError) as e:
            raise PeerDown(f"{type(e).__name__}: {e}") from None
        if 400 <= status < 500:
            raise Refused(body.decode("utf-8", "replace"))
        if not 200 <= status < 300:
            raise PeerDown(f"HTTP {status}")

    async def subtract(self, rid: str, item_id: str, amount: int) -> None:
        await self._post(self.stock_client, [rid, "subtract", item_id, amount])

    async def pay(self, rid: str, user_id: str, order_id: str, amount: int) -> None:
        await self._post(self.payment_client, [rid, "pay", user_id, order_id, amount])

    async def undo(self, service: str, rid: str) -> None:
        await self._post(self.stock_client if service == "stock" else self.payment_client, [rid, "undo"])


class LocalLegs:
    """The legs on this process's own stores (one-port shop with a saga, e.g. ``slow-saga``)."""

    def __init__(self, stock_legs: LegLog, payment_legs: LegLog):
        self.stock_legs = stock_legs
        self.payment_legs = payment_legs

    async def subtract(self, rid: str, item_id: str, amount: int) -> None:
        self.stock_legs.subtract(rid, item_id, amount)
        self.stock_legs.durable.flush()

    async def pay(self, rid: str, user_id: str, order_id: str, amount: int) -> None:
        self.payment_legs.pay(rid, user_id, order_id, amount)
        self.payment_legs.durable.flush()

    async def undo(self, service: str, rid: str) -> None:
        log = self.stock_legs if service == "stock" else self.payment_legs
        log.undo(rid)
        log.durable.flush()


class SagaCoordinator:
    """Checkouts as logged sagas: intent first, legs by request id, done or compensated."""

    def __init__(self, state: Any, durable: DurableStore, legs: Any, leg_delay_s: float = 0.0):
        self.state = state
        self.durable = durable
        self.legs = legs
        self.leg_delay_s = leg_delay_s
        self.running: set[str] = set()  # sagas driven by a request of this process right now
        self.open: dict[str, dict[str, Any]] = {
            sid: json.loads(body) for sid, body in durable.rows("SELECT id, body FROM sagas WHERE state='open'")
        }
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        """Start the background compensator (on the running loop); it first recovers the log."""
        self.task = asyncio.ensure_future(self._compensator())

    async def stop(self) -> None:
        """Stop the background compensator."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def checkout(self, order_id: str, delay: float) -> None:
        """Run one checkout saga (the caller holds the order's lock)."""
        order = self.state.orders.get_unpaid(order_id)
        sid = f"{order_id}~{uuid.uuid4().hex[:16]}"
        stock_legs = [[f"{sid}.s{i}", item_id, qty] for i, (item_id, qty) in enumerate(self.state.orders.needs(order).items())]
        saga = {"order": order_id, "user": order.user_id, "amount": order.total_cost,
                "stock": stock_legs, "pay": f"{sid}.p"}
        self.open[sid] = saga
        self.running.add(sid)
        self.durable.log("INSERT INTO sagas VALUES (?,?,?,'open')", sid, order_id, json.dumps(saga))
        self.durable.flush()  # the intent is on disk before any leg is sent
        try:
            try:
                for rid, item_id, qty in stock_legs:
                    await self._pause()
                    await self.legs.subtract(rid, item_id, qty)
                await self._pause()
                if delay:
                    await asyncio.sleep(delay)  # --inject slow-saga: the payment leg lands later
                await self.legs.pay(saga["pay"], saga["user"], order_id, saga["amount"])
            except (Refused, PeerDown) as e:
                if await self._compensate(sid):
                    if isinstance(e, Refused):
                        raise Refused(f"checkout of {named('order', order_id)} failed: {e}") from None
                    raise web.HTTPServiceUnavailable(
                        text=f"checkout of {named('order', order_id)} failed: a service is unavailable ({e}); "
                             "nothing was changed") from None
                self.wake.set()
                raise web.HTTPServiceUnavailable(
                    text=f"checkout of {named('order', order_id)} failed ({e}); it is being undone in the background") from None
            self.state.orders.mark_paid(order_id)
            self._close(sid, "done")
        finally:
            self.running.discard(sid)

    async def _pause(self) -> None:
        if self.leg_delay_s:
            await asyncio.sleep(self.leg_delay_s)

    def _close(self, sid: str, how: str) -> None:
        self.open.pop(sid, None)
        self.durable.log("UPDATE sagas SET state=? WHERE id=?", how, sid)
        self.durable.flush()

    async def _compensate(self, sid: str) -> bool:
        """Undo every leg of saga ``sid``; True when all peers confirmed (the saga is then closed)."""
        saga = self.open[sid]
        try:
            for rid, _, _ in saga["stock"]:
                await self.legs.undo("stock", rid)
            await self.legs.undo("payment", saga["pay"])
        except (PeerDown, Refused):
            return False
        self._close(sid, "compensated")
        return True

    async def _compensator(self) -> None:
        while True:
            for sid in [s for s in self.open if s not in self.running]:
                await self._compensate(sid)
            self.wake.clear()
            if any(s not in self.running for s in self.open):
                await asyncio.sleep(RETRY_S)
            else:
                await self.wake.wait()


# --- wiring ------------------------------------------------------------------------------------


def attach(state: Any, data_dir: str, roles: Iterable[str]) -> dict[tuple[str, ...], DurableStore]:
    """Replace ``state``'s stores by durable ones loaded from ``data_dir``.

    ``roles``: ``("shop",)`` for one port (every store in ``shop.sqlite``, so a checkout is one
    transaction), else service names, each in its own file. Returns ``{services: DurableStore}``
    keyed as the apps are built (one port: every service).
    """
    from .. import operations

    cfg = state.config
    out: dict[tuple[str, ...], DurableStore] = {}
    for role in roles:
        d = DurableStore(db_path(data_dir, role))
        services = operations.SERVICES if role == "shop" else (role,)
        if "stock" in services:
            state.stock = DurableStock(d, oversell=cfg.inject == "oversell")
        if "payment" in services:
            state.payment = DurablePayment(d, double_charge=cfg.inject == "double-charge")
        if "orders" in services:
            state.orders = DurableOrders(d, cfg.seed, wrong_total=cfg.inject == "wrong-total")
            state.orders.collapse_repeats = cfg.inject == "repeat-collapse"
        out[tuple(services)] = d
    return out


def wire(state: Any, apps: dict[str, web.Application], *, one_port: bool) -> list[SagaCoordinator]:
    """Add the leg routes to stock and payment apps and a saga coordinator to the order app.

    ``apps``: ``{"shop": app}`` for one port, else the services being served. Returns the
    coordinators to start once the shop listens (none with an injected bug: ``no-recovery``'s
    checkout is the plain in-memory saga, with no log).
    """
    from .. import operations
    from .app import LOGIC_KEY, PEERS_KEY

    cfg = state.config
    legs: dict[str, LegLog] = {}
    for name, app in apps.items():
        for service in (("stock", "payment") if one_port else (name,)):
            if service in ("stock", "payment"):
                d = state.durable[operations.SERVICES if one_port else (service,)]
                legs[service] = LegLog(d, state)
                if not one_port:  # one port: the coordinator calls its LegLogs directly
                    add_leg_routes(app, legs[service], d, service)
    out = []
    for name, app in apps.items():
        if cfg.inject is not None or (not one_port and name != "orders") or LOGIC_KEY not in app:
            continue
        logic = app[LOGIC_KEY]
        if one_port:
            d = next(iter(state.durable.values()))
            coordinator = SagaCoordinator(state, d, LocalLegs(legs["stock"], legs["payment"]), cfg.leg_delay_s)
        else:
            d = state.durable[("orders",)]
            coordinator = SagaCoordinator(state, d, HttpLegs(*app[PEERS_KEY]), cfg.leg_delay_s)
        logic.saga = coordinator
        out.append(coordinator)
    return out
