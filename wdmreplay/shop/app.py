"""The reference shop's aiohttp applications: one gateway app, or order, stock and payment apps.

Routes come from :mod:`wdmreplay.operations` (both dialects at once by default; their paths do not
collide). Every handler parses its path parameters, calls the synchronous store and answers as
API.md says: JSON for creates and finds, plain text for writes, 400 with a message for every
refusal. In one-port mode the order service uses the stock and payment stores directly, and a
checkout runs without any ``await`` between its checks and its updates, so it is atomic. In split
mode (or with ``--inject lost-update``) a checkout is a saga: take each item's stock, charge the
user, compensate on failure, under a per-order lock.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

from .. import operations
from ..errors import WdmError
from .inject import FAULT_KINDS, InjectError, parse_inject
from .orders import INTERNAL_HEADER, HttpPayment, HttpStock, OrderLogic, PeerClient
from .store import (
    OrderStore,
    PaymentStore,
    Refused,
    Stats,
    StockStore,
    parse_amount,
)

# How long --inject lost-update waits between reading a value and writing it back: long enough that
# concurrent requests reliably read the same value, short enough not to slow a demo down.
RACE_WINDOW_S = 0.002
DIALECT_CHOICES = ("both", "2023", "2024")


class ShopError(WdmError):
    """A shop option that cannot be used, or a shop that cannot start (e.g. port in use)."""


@dataclass(frozen=True)
class ShopConfig:
    """How a shop behaves: injected bug and faults, added latency and errors, seed, dialects served.

    ``inject`` is one bug of ``INJECT_KINDS``; it may also be given as ``--inject`` text
    (``"apply-then-500:0.2"``, comma-separated values), which is split into the bug and
    ``faults``: ``((kind, rate), …)`` of :data:`~.faults.FAULT_KINDS`. ``hang_s`` is how long
    ``apply-then-hang`` holds an answer, ``saga_delay_s`` the gap ``slow-saga`` puts between a
    checkout's stock and payment legs.
    """

    inject: str | None = None
    latency_ms: float = 0.0
    error_rate: float = 0.0
    seed: int = 0
    dialects: tuple[str, ...] = ("2023", "2024")
    faults: tuple[tuple[str, float], ...] = ()
    hang_s: float = 30.0
    saga_delay_s: float = 2.0
    leg_delay_s: float = 0.0

    def __post_init__(self) -> None:
        try:
            bug, faults = parse_inject(self.inject)
            _, given = parse_inject([f"{k}:{r:.17g}" for k, r in self.faults])
        except InjectError as e:
            raise ShopError(str(e)) from None
        overlap = {k for k, _ in faults} & {k for k, _ in given}
        if overlap:
            raise ShopError(f"--inject: {', '.join(sorted(overlap))} given twice")
        object.__setattr__(self, "inject", bug)
        object.__setattr__(self, "faults", tuple(sorted(faults + given)))
        if not (math.isfinite(self.error_rate) and 0.0 <= self.error_rate <= 1.0):
            raise ShopError(f"--error-rate must be between 0 and 1, got {self.error_rate}")
        if not (math.isfinite(self.latency_ms) and self.latency_ms >= 0):
            raise ShopError(f"--latency must be a finite number >= 0 ms, got {self.latency_ms}")
        if not (math.isfinite(self.hang_s) and self.hang_s > 0):
            raise ShopError(f"--hang must be a finite number of seconds > 0, got {self.hang_s}")
        if not (math.isfinite(self.saga_delay_s) and self.saga_delay_s >= 0):
            raise ShopError(f"--saga-delay must be a finite number of seconds >= 0, got {self.saga_delay_s}")
        if not (math.isfinite(self.leg_delay_s) and self.leg_delay_s >= 0):
            raise ShopError(f"--leg-delay must be a finite number of seconds >= 0, got {self.leg_delay_s}")
        object.__setattr__(self, "dialects", normalize_dialects(self.dialects))

    def fault_rate(self, kind: str) -> float:
        """The share of requests ``kind`` (one of ``FAULT_KINDS``) hits; 0 when it is off."""
        assert kind in FAULT_KINDS, kind
        return next((rate for k, rate in self.faults if k == kind), 0.0)


def normalize_dialects(dialects: str | Iterable[str]) -> tuple[str, ...]:
    """``"both"``, ``"2023"``, ``"2024"`` or a list of those, as a sorted tuple of dialect names."""
    names = [dialects] if isinstance(dialects, str) else list(dialects)
    out: set[str] = set()
    for n in names:
        if n == "both":
            out.update(("2023", "2024"))
        elif n in operations.BUILTIN_ROUTES:
            out.add(n)
        else:
            raise ShopError(f"unknown dialect {n!r}; choose one of: {', '.join(DIALECT_CHOICES)}")
    if not out:
        raise ShopError("the shop must serve at least one dialect")
    return tuple(sorted(out))


class ShopState:
    """Everything one shop holds: the three stores and the request counters."""

    def __init__(self, config: ShopConfig):
        self.config = config
        self.stock = StockStore(oversell=config.inject == "oversell")
        self.payment = PaymentStore(double_charge=config.inject == "double-charge")
        self.orders = OrderStore(config.seed, wrong_total=config.inject == "wrong-total")
        self.orders.collapse_repeats = config.inject == "repeat-collapse"
        self.stats = Stats()
        self.error_rng = random.Random(config.seed)
        # One generator per fault kind, so turning one fault on does not change another's draws.
        self.fault_rngs = {k: random.Random(f"{config.seed}:{k}") for k in FAULT_KINDS}
        # Work that outlives the request that started it (slow sagas): cancelled when the shop stops.
        self.background: set[asyncio.Task] = set()
        # serve --data: {services of one app: DurableStore} (see durable.py); empty in memory.
        self.durable: dict[tuple[str, ...], Any] = {}

    def reset(self) -> None:
        """Forget every item, user, order and counter (in place: handlers keep their references)."""
        for d in self.durable.values():
            d.clear()
        self.stock.items.clear()
        self.stock.ids.n = 0
        self.payment.users.clear()
        self.payment.payments.clear()
        self.payment.ids.n = 0
        self.orders.orders.clear()
        self.orders.ids.n = 0
        self.orders.rng.seed(self.config.seed)
        self.stats.clear()
        self.error_rng.seed(self.config.seed)
        for k, rng in self.fault_rngs.items():
            rng.seed(f"{self.config.seed}:{k}")

    def draw(self, kind: str) -> bool:
        """Whether fault ``kind`` hits this request (a seeded draw at its configured rate)."""
        rate = self.config.fault_rate(kind)
        return rate > 0 and (rate >= 1.0 or self.fault_rngs[kind].random() < rate)

    def snapshot(self) -> dict[str, Any]:
        """The whole state as ``{"items": …, "users": …, "orders": …}`` (results-file shapes)."""
        return {"items": self.stock.snapshot(), "users": self.payment.snapshot(), "orders": self.orders.snapshot()}


# --- the stock and payment services on their own stores (the order service's local backends) ----


class LocalStock:
    """The stock service's operations on its own store (with ``lost-update``: racy on purpose)."""

    def __init__(self, state: ShopState):
        self.store = state.stock
        self.racy = state.config.inject == "lost-update"

    async def subtract(self, item_id: str, amount: int) -> int:
        """Take ``amount`` units of ``item_id``; the new stock."""
        if not self.racy:
            return self.store.subtract(item_id, amount)
        item = self.store.check_subtract(item_id, amount)
        before = item.stock
        await asyncio.sleep(RACE_WINDOW_S)  # the injected bug: others write meanwhile, we overwrite
        item.stock = before - amount
        self.store.touched(item_id)  # written after an await: serve --data must see it again
        return item.stock

    async def add(self, item_id: str, amount: int) -> int:
        """Return ``amount`` units of ``item_id``; the new stock."""
        return self.store.add(item_id, amount)

    async def price(self, item_id: str) -> int:
        """The unit price of ``item_id``."""
        return self.store.find(item_id).price


class LocalPayment:
    """The payment service's charge on its own store (with ``lost-update``: racy on purpose)."""

    def __init__(self, state: ShopState):
        self.store = state.payment
        self.racy = state.config.inject == "lost-update"

    async def pay(self, user_id: str, amount: int, order_id: str | None = None, by_checkout: bool = False) -> int:
        """Charge ``user_id`` ``amount``; the new credit."""
        if not self.racy:
            return self.store.pay(user_id, amount, order_id, by_checkout)
        user = self.store.check_pay(user_id, amount)
        before = user.credit
        await asyncio.sleep(RACE_WINDOW_S)  # the injected bug: others write meanwhile, we overwrite
        user.credit = before - amount  # (only one bug at a time: no double charge here)
        self.store.touched(user_id)
        self.store.record(user_id, order_id, amount, by_checkout)
        return user.credit

    async def exists(self, user_id: str) -> None:
        """Refused if ``user_id`` is unknown."""
        self.store.find(user_id)



# --- handlers ---------------------------------------------------------------------------------


def _json(obj: Any) -> web.Response:
    return web.Response(text=json.dumps(obj), content_type="application/json")


def _text(msg: str) -> web.Response:
    return web.Response(text=msg)


Impl = Callable[..., Awaitable[web.Response]]


@dataclass
class _Ops:
    """The implementation of every operation one app serves, given its state and order logic."""

    state: ShopState
    logic: OrderLogic | None
    stock: LocalStock = field(init=False)
    payment: LocalPayment = field(init=False)

    def __post_init__(self) -> None:
        self.stock = LocalStock(self.state)
        self.payment = LocalPayment(self.state)

    # stock
    async def create_item(self, internal: str | None, price: int) -> web.Response:
        return _json({"item_id": self.state.stock.create(price)})

    async def find_item(self, internal: str | None, item: str) -> web.Response:
        it = self.state.stock.find(item)
        return _json({"stock": it.stock, "price": it.price})

    async def add_stock(self, internal: str | None, item: str, amount: int) -> web.Response:
        return _text(f"Item: {item} stock updated to: {await self.stock.add(item, amount)}")

    async def subtract_stock(self, internal: str | None, item: str, amount: int) -> web.Response:
        return _text(f"Item: {item} stock updated to: {await self.stock.subtract(item, amount)}")

    async def batch_init_stock(self, internal: str | None, n: int, starting_stock: int, item_price: int) -> web.Response:
        self.state.stock.batch_init(n, starting_stock, item_price)
        return _json({"msg": "Batch init for stock successful"})

    # payment
    async def create_user(self, internal: str | None) -> web.Response:
        return _json({"user_id": self.state.payment.create()})

    async def find_user(self, internal: str | None, user: str) -> web.Response:
        return _json({"user_id": user, "credit": self.state.payment.find(user).credit})

    async def add_funds(self, internal: str | None, user: str, amount: int) -> web.Response:
        return _text(f"User: {user} credit updated to: {self.state.payment.add_funds(user, amount)}")

    async def pay(self, internal: str | None, user: str, order: str | None, amount: int) -> web.Response:
        credit = await self.payment.pay(user, amount, order, by_checkout=internal == "checkout")
        return _text(f"User: {user} credit updated to: {credit}")

    async def cancel_payment(self, internal: str | None, user: str, order: str) -> web.Response:
        return _text(f"User: {user} credit updated to: {self.state.payment.cancel(user, order)}")

    async def payment_status(self, internal: str | None, user: str, order: str) -> web.Response:
        return _json({"paid": self.state.payment.status(user, order)})

    async def batch_init_users(self, internal: str | None, n: int, starting_money: int) -> web.Response:
        self.state.payment.batch_init(n, starting_money)
        return _json({"msg": "Batch init for users successful"})

    # orders
    async def create_order(self, internal: str | None, user: str) -> web.Response:
        assert self.logic is not None
        return _json({"order_id": await self.logic.create_order(user)})

    async def find_order(self, internal: str | None, order: str) -> web.Response:
        return _json(self.state.orders.find(order).as_json(order))

    async def add_item(self, internal: str | None, order: str, item: str, quantity: int | None) -> web.Response:
        assert self.logic is not None
        total = await self.logic.add_item(order, item, 1 if quantity is None else quantity)
        return _text(f"Item: {item} added to: {order} price updated to: {total}")

    async def remove_item(self, internal: str | None, order: str, item: str) -> web.Response:
        assert self.logic is not None
        await self.logic.remove_item(order, item)
        return _text(f"Item: {item} removed from: {order}")

    async def remove_order(self, internal: str | None, order: str) -> web.Response:
        assert self.logic is not None
        await self.logic.remove_order(order)
        return _text(f"Order: {order} removed")

    async def checkout(self, internal: str | None, order: str) -> web.Response:
        assert self.logic is not None
        await self.logic.checkout(order)
        return _text("Checkout successful")

    async def batch_init_orders(
        self, internal: str | None, n: int, n_items: int, n_users: int, item_price: int
    ) -> web.Response:
        self.state.orders.batch_init(n, n_items, n_users, item_price)
        return _json({"msg": "Batch init for orders successful"})


TIMER_RESOLUTION_S = 0.002  # below this an event loop's timer cannot be trusted (uvloop: 1 ms steps)


async def added_latency(seconds: float) -> None:
    """Wait ``seconds`` (``--latency``) without blocking other requests, accurately below a millisecond.

    An event loop's timers have millisecond steps (uvloop rounds ``sleep(0.0004)`` to no wait at
    all), so a short delay yields to the loop until the clock has moved on instead of sleeping:
    it costs CPU, but ``--latency 0.3`` then adds 0.3 ms as asked.
    """
    if seconds >= TIMER_RESOLUTION_S:
        await asyncio.sleep(seconds)
        return
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        await asyncio.sleep(0)


def _make_handler(op: operations.Operation, impl: Impl, state: ShopState,
                  flush: Callable[[], None] | None = None) -> Callable[[web.Request], Awaitable[web.Response]]:
    cfg = state.config
    count = state.stats.count
    name = op.name
    latency = cfg.latency_ms / 1000.0
    error_rate = cfg.error_rate
    rng = state.error_rng
    params = [(p, k == "int") for p, k in zip(op.params, op.kinds)]
    # apply-then-500 / apply-then-hang hit requests that change state: hiding a read's answer
    # would only hide the final state, not test how a client treats an unknown outcome.
    faulty = op.mutates and any(k in ("apply-then-500", "apply-then-hang") for k, _ in cfg.faults)

    async def handler(request: web.Request) -> web.Response:
        internal = request.headers.get(INTERNAL_HEADER)
        if internal is None:
            count(name)
            if latency:
                await added_latency(latency)
            if error_rate and rng.random() < error_rate:
                return web.Response(status=500, text="injected error (--error-rate); nothing was changed")
        info = request.match_info
        try:
            args = []
            for p, is_int in params:
                raw = info.get(p)
                args.append(raw if raw is None or not is_int else parse_amount(p, raw))
            response = await impl(internal, *args)
        except Refused as e:
            response = web.Response(status=400, text=str(e))
        if flush is not None:
            flush()  # serve --data: the effect is committed before the answer leaves
        if faulty and internal is None:
            return await _after_effect(state, response)
        return response

    return handler


async def _after_effect(state: ShopState, response: web.Response) -> web.Response:
    """The answer to a request that already took effect, as apply-then-hang / apply-then-500 make it."""
    if state.draw("apply-then-hang"):
        # The client has given up by now; the effect stays. Registered so that stopping the shop
        # cancels the held answer instead of leaving it pending on a closed loop.
        task = asyncio.current_task()
        if task is not None:
            state.background.add(task)
        try:
            await asyncio.sleep(state.config.hang_s)
        finally:
            state.background.discard(task)
    if state.draw("apply-then-500"):
        return web.Response(status=500, text=f"injected apply-then-500: the request took effect "
                                              f"(it would have been answered {response.status})")
    return response


async def _stats(request: web.Request) -> web.Response:
    return _json(request.app[STATE_KEY].stats.as_json())


async def _reset(request: web.Request) -> web.Response:
    request.app[STATE_KEY].reset()
    return _text("reset")


_FIELD = re.compile(r"\{(\w+)\}")
STATE_KEY = web.AppKey("wdm_shop_state", ShopState)
PEERS_KEY = web.AppKey("wdm_shop_peers", list)
LOGIC_KEY = web.AppKey("wdm_shop_order_logic", OrderLogic)


def _routes(dialects: tuple[str, ...], services: Iterable[str]) -> dict[tuple[str, str], str]:
    """``{(method, path template): op name}`` for every route of ``dialects`` in ``services``."""
    wanted = set(services)
    table: dict[tuple[str, str], str] = {}
    for d in dialects:
        for op_name, spec in operations.BUILTIN_ROUTES[d].items():
            if operations.OPERATIONS[op_name].service not in wanted:
                continue
            method, path = spec.split(None, 1)
            methods = ("GET", "POST") if op_name == "payment_status" else (method.upper(),)
            for m in methods:
                prev = table.setdefault((m, path), op_name)
                assert prev == op_name, f"route {m} {path} serves both {prev} and {op_name}"
    return table


def _build(state: ShopState, services: tuple[str, ...], logic: OrderLogic | None) -> web.Application:
    app = web.Application()
    app[STATE_KEY] = state
    ops = _Ops(state, logic)
    durable = state.durable.get(tuple(services))
    flush = durable.flush if durable is not None else None
    for (method, path), op_name in _routes(state.config.dialects, services).items():
        op = operations.OPERATIONS[op_name]
        # aiohttp's default {name} pattern refuses "{" and "}" (decoded); ids may hold any character but "/".
        pattern = _FIELD.sub(r"{\1:[^/]+}", path)
        app.router.add_route(method, pattern, _make_handler(op, getattr(ops, op_name), state, flush))
    app.router.add_get("/_shop/stats", _stats)
    app.router.add_post("/_shop/reset", _reset)
    if logic is not None:
        app[LOGIC_KEY] = logic
    return app


def make_app(config: ShopConfig | None = None, *, state: ShopState | None = None, **options: Any) -> web.Application:
    """The one-port shop: every service of every configured dialect on one application (a gateway).

    ``options`` are :class:`ShopConfig` fields (``inject``, ``latency_ms``, ``error_rate``, ``seed``,
    ``dialects``) when no ``config`` is given.
    """
    config = config or ShopConfig(**options)
    state = state or ShopState(config)
    # A slow saga holds its order's lock while it waits, so every order operation must take it.
    atomic = config.inject != "lost-update" and config.fault_rate("slow-saga") == 0
    logic = OrderLogic(state, LocalStock(state), LocalPayment(state), atomic=atomic)
    return _build(state, operations.SERVICES, logic)


def _peer_dialect(dialects: tuple[str, ...]) -> operations.Dialect:
    # The 2023 pay route records which order was paid, so payment_status can answer after checkout.
    return operations.get_dialect("2023" if "2023" in dialects else "2024")


def make_split_apps(
    config: ShopConfig | None = None, *, state: ShopState | None = None, **options: Any
) -> dict[str, web.Application]:
    """Three applications, ``{"orders", "stock", "payment"}``, for three ports.

    The order app reaches the others over HTTP; call :func:`connect_peers` with their base URLs
    before it serves. The state object is shared only for the admin endpoints (stats, reset):
    each service reads and writes only its own store.
    """
    config = config or ShopConfig(**options)
    state = state or ShopState(config)
    dialect = _peer_dialect(config.dialects)
    stock_client, payment_client = PeerClient(dialect), PeerClient(dialect)
    logic = OrderLogic(state, HttpStock(stock_client), HttpPayment(payment_client), atomic=False)
    orders = _build(state, ("orders",), logic)
    orders[PEERS_KEY] = [stock_client, payment_client]

    async def peer_session(app: web.Application) -> Any:
        # Explicit limits: aiohttp's defaults (100 connections, 300 s) would shape the benchmark.
        session = ClientSession(
            connector=TCPConnector(limit=1024, limit_per_host=0),
            timeout=ClientTimeout(total=30, connect=5),
        )
        for c in app[PEERS_KEY]:
            c.session = session
        yield
        await session.close()

    orders.cleanup_ctx.append(peer_session)
    return {"orders": orders, "stock": _build(state, ("stock",), None), "payment": _build(state, ("payment",), None)}


def connect_peers(orders_app: web.Application, stock_url: str, payment_url: str) -> None:
    """Tell a split-mode order app where the stock and payment services listen."""
    stock_client, payment_client = orders_app[PEERS_KEY]
    stock_client.base = stock_url.rstrip("/")
    payment_client.base = payment_url.rstrip("/")
