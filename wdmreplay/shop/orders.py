"""The order service's logic and how it reaches stock and payment: in process, or peers over HTTP.

:class:`OrderLogic` holds add_item, remove_item and checkout — atomic in one-port mode (no ``await``
between a checkout's checks and its updates), a saga in split mode or with ``--inject lost-update``
(take each item's stock, charge the user, compensate on failure, under a per-order lock). It calls
a stock and a payment backend: :class:`~.app.LocalStock` / :class:`~.app.LocalPayment` on the
stores in this process, or :class:`HttpStock` / :class:`HttpPayment` through a :class:`PeerClient`.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any, Callable

from urllib.parse import quote

from aiohttp import ClientError, ClientSession

from yarl import URL

from .. import operations
from ..terms import named
from .store import Refused

if TYPE_CHECKING:
    from .app import ShopState

# Requests between the shop's own services carry this header: they are not counted, delayed or
# failed by --latency / --error-rate. Value "checkout" marks a payment made by a checkout.
INTERNAL_HEADER = "X-Wdm-Internal"
# --inject lost-line's window between reading an order's lines and writing them back: wider, so two
# add_item of one order sent together by a replay on a loaded machine still overlap.
LOST_LINE_WINDOW_S = 0.02


class ServiceUnavailable(Exception):
    """A call to a peer service failed without an answer we can trust (5xx, timeout, no connection)."""


class PeerClient:
    """Calls one peer service's public API over HTTP (split mode), marked as internal."""

    def __init__(self, dialect: operations.Dialect):
        self.dialect = dialect
        self.base = ""  # set once the peer is listening
        self.session: ClientSession | None = None

    async def call(self, op_name: str, args: list[Any], internal: str = "1") -> bytes:
        """The body of a 2xx answer; :class:`Refused` with the peer's message on a 4xx."""
        # Ids arrive percent-decoded from our own path; quote them again so "?" or "/" stay inside.
        method, path = self.dialect.render(op_name, [quote(a, safe="") if isinstance(a, str) else a for a in args])
        assert self.session is not None, "peer session not started"
        url = URL(self.base + path, encoded=True)
        try:
            async with self.session.request(method, url, headers={INTERNAL_HEADER: internal}) as r:
                body = await r.read()
                status = r.status
        except (ClientError, asyncio.TimeoutError, OSError) as e:
            raise ServiceUnavailable(f"{op_name}: {type(e).__name__}: {e}") from None
        if 200 <= status < 300:
            return body
        if 400 <= status < 500:
            raise Refused(body.decode("utf-8", "replace"))
        raise ServiceUnavailable(f"{op_name}: HTTP {status}")


class HttpStock:
    """The stock service, as the order service sees it in split mode."""

    def __init__(self, client: PeerClient):
        self.client = client

    async def subtract(self, item_id: str, amount: int) -> None:
        """Take ``amount`` units of ``item_id`` (POST subtract)."""
        await self.client.call("subtract_stock", [item_id, amount])

    async def add(self, item_id: str, amount: int) -> None:
        """Return ``amount`` units of ``item_id`` (POST add)."""
        await self.client.call("add_stock", [item_id, amount])

    async def price(self, item_id: str) -> int:
        """The unit price of ``item_id`` (GET find)."""
        return int(json.loads(await self.client.call("find_item", [item_id]))["price"])


class HttpPayment:
    """The payment service, as the order service sees it in split mode."""

    def __init__(self, client: PeerClient):
        self.client = client

    async def pay(self, user_id: str, amount: int, order_id: str | None = None, by_checkout: bool = False) -> None:
        """Charge ``user_id`` ``amount`` (POST pay; the 2023 route also records the order)."""
        await self.client.call("pay", [user_id, order_id, amount], "checkout" if by_checkout else "1")

    async def exists(self, user_id: str) -> None:
        """Refused if ``user_id`` is unknown (GET find_user)."""
        await self.client.call("find_user", [user_id])


class KeyedLocks:
    """One asyncio lock per key, created on demand and dropped when nobody holds or awaits it."""

    def __init__(self) -> None:
        self._locks: dict[str, list[Any]] = {}

    async def acquire(self, key: str) -> None:
        """Wait for, then hold, the lock of ``key``."""
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = [asyncio.Lock(), 0]
        entry[1] += 1
        await entry[0].acquire()

    def release(self, key: str) -> None:
        """Release the lock of ``key``."""
        entry = self._locks[key]
        entry[0].release()
        entry[1] -= 1
        if entry[1] == 0:
            del self._locks[key]


class OrderLogic:
    """The order service's operations that involve stock or payment."""

    def __init__(self, state: ShopState, stock: Any, payment: Any, atomic: bool):
        self.state = state
        self.stock = stock  # LocalStock or HttpStock
        self.payment = payment  # LocalPayment or HttpPayment
        self.atomic = atomic
        self.locks = KeyedLocks()
        self.saga: Any = None  # serve --data: a durable.SagaCoordinator that runs the checkout saga
        inject = state.config.inject
        self.no_rollback = inject == "no-rollback"
        self.lost_line = inject == "lost-line"

    async def create_order(self, user_id: str) -> str:
        """Create an order for an existing user."""
        await self.payment.exists(user_id)
        return self.state.orders.create(user_id)

    async def add_item(self, order_id: str, item_id: str, qty: int) -> int:
        """Add ``qty`` units of ``item_id`` at its current price; the new total_cost."""
        orders = self.state.orders
        if self.lost_line:
            return await self._add_item_racy(order_id, item_id, qty)
        if self.atomic:
            orders.get_unpaid(order_id)
            orders.add_item(order_id, item_id, qty, self.state.stock.find(item_id).price)
            return orders.orders[order_id].total_cost
        await self.locks.acquire(order_id)  # no checkout of this order may run meanwhile
        try:
            orders.get_unpaid(order_id)
            price = await self.stock.price(item_id)
            orders.add_item(order_id, item_id, qty, price)
            return orders.orders[order_id].total_cost
        finally:
            self.locks.release(order_id)

    async def _add_item_racy(self, order_id: str, item_id: str, qty: int) -> int:
        # The injected lost-line bug: read the order's lines, yield, write them back plus ours, so
        # a concurrent add_item of the same order is overwritten. No order lock is taken.
        orders = self.state.orders
        order = orders.get_unpaid(order_id)
        price = await self.stock.price(item_id)
        lines, total, prices = [list(x) for x in order.items], order.total_cost, dict(order.prices)
        await asyncio.sleep(LOST_LINE_WINDOW_S)
        order = orders.get_unpaid(order_id)
        order.items, order.total_cost, order.prices = lines, total, prices
        orders.add_item(order_id, item_id, qty, price)
        return order.total_cost

    async def remove_item(self, order_id: str, item_id: str) -> None:
        """Remove one unit of ``item_id`` from an unpaid order."""
        if self.atomic:
            return self.state.orders.remove_item(order_id, item_id)
        await self.locks.acquire(order_id)
        try:
            self.state.orders.remove_item(order_id, item_id)
        finally:
            self.locks.release(order_id)

    async def remove_order(self, order_id: str) -> None:
        """Delete an unpaid order."""
        if self.atomic:
            return self.state.orders.remove(order_id)
        await self.locks.acquire(order_id)
        try:
            self.state.orders.remove(order_id)
        finally:
            self.locks.release(order_id)

    async def checkout(self, order_id: str) -> None:
        """Pay for an order: all of its stock, its total_cost and its paid flag, or nothing."""
        if self.state.draw("slow-saga"):
            await self._checkout_slow(order_id)
            return
        if self.atomic:
            self._checkout_atomic(order_id)
            return
        await self._checkout_locked(order_id, 0.0)

    async def _checkout_locked(self, order_id: str, delay: float) -> None:
        await self.locks.acquire(order_id)
        try:
            await self._checkout_saga(order_id, delay)
        finally:
            self.locks.release(order_id)

    async def _checkout_slow(self, order_id: str) -> None:
        # The saga runs as its own task: if the client gives up (and aiohttp cancels the handler),
        # the saga still finishes, as a real one driven by a message queue or a log would.
        task = asyncio.ensure_future(self._checkout_locked(order_id, self.state.config.saga_delay_s))
        background = self.state.background
        background.add(task)
        task.add_done_callback(_forget_task(background))
        await asyncio.shield(task)

    def _checkout_atomic(self, order_id: str) -> None:
        # No await in here: on one event loop nothing can interleave between checks and updates.
        st = self.state
        order = st.orders.get_unpaid(order_id)
        lines = [(st.stock.check_subtract(i, q), q) for i, q in st.orders.needs(order).items()]
        if not self.no_rollback:
            st.payment.check_pay(order.user_id, order.total_cost)
        for item, qty in lines:
            item.stock -= qty
        # Cannot fail here unless no-rollback skipped the check: then the stock above stays taken.
        st.payment.pay(order.user_id, order.total_cost, order_id, by_checkout=True)
        order.paid = True

    async def _checkout_saga(self, order_id: str, delay: float = 0.0) -> None:
        if self.saga is not None:
            return await self.saga.checkout(order_id, delay)
        order = self.state.orders.get_unpaid(order_id)
        taken: list[tuple[str, int]] = []
        leg_delay = self.state.config.leg_delay_s
        try:
            for item_id, qty in self.state.orders.needs(order).items():
                if leg_delay:
                    await asyncio.sleep(leg_delay)  # serve --leg-delay: a wider window for a kill
                await self.stock.subtract(item_id, qty)
                taken.append((item_id, qty))
        except (Refused, ServiceUnavailable) as e:
            await self._give_back(taken)
            raise Refused(f"checkout of {named('order', order_id)} failed: {e}") from None
        if delay or leg_delay:
            await asyncio.sleep(delay + leg_delay)  # --inject slow-saga: the payment leg lands later
        try:
            await self.payment.pay(order.user_id, order.total_cost, order_id, by_checkout=True)
        except (Refused, ServiceUnavailable) as e:
            if not self.no_rollback:
                await self._give_back(taken)
            raise Refused(f"checkout of {named('order', order_id)} failed: {e}") from None
        self.state.orders.mark_paid(order_id)

    async def _give_back(self, taken: list[tuple[str, int]]) -> None:
        for item_id, qty in taken:
            for attempt in range(5):
                try:
                    await self.stock.add(item_id, qty)
                    break
                except ServiceUnavailable:
                    await asyncio.sleep(0.01 * (attempt + 1))
                except Refused:
                    break


def _forget_task(tasks: set) -> Callable[[asyncio.Task], None]:
    def done(task: asyncio.Task) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a refused saga whose client left is not an error
    return done

