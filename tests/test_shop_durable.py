"""The durable reference shop (``serve --data``): real processes on loopback, killed with SIGKILL.

Single process: many writes in flight when the shop is killed; after a restart on the same data
directory every 2xx-acknowledged effect is there. Split (one process per service): each service is
killed in the middle of checkouts (``--leg-delay`` widens the window) and restarted; once the saga
log is recovered every order is all-or-nothing, read over HTTP. With ``--inject no-recovery`` the
same kill leaves a non-atomic order.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
from typing import Any

import aiohttp
import pytest

from wdmreplay.shop.processes import _free_port, serve_command

DEADLINE_S = 60.0  # every wait below is bounded by this


class Service:
    """One ``wdm-replay serve`` process on a fixed port (so a restart keeps its URL)."""

    def __init__(self, args: list[str], port: int):
        self.args = args
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Service":
        self.proc = subprocess.Popen(serve_command() + ["serve", "--port", str(self.port), *self.args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        end = time.monotonic() + DEADLINE_S
        while time.monotonic() < end:
            assert self.proc.poll() is None, f"serve exited: {self.proc.stderr.read() if self.proc.stderr else ''}"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"serve {self.args} did not listen on {self.port}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)


@pytest.fixture
def services():
    started: list[Service] = []

    def make(args: list[str], port: int | None = None) -> Service:
        s = Service(args, port or _free_port())
        started.append(s)
        return s.start()

    yield make
    for s in started:
        s.stop()


async def _call(session: aiohttp.ClientSession, method: str, url: str) -> tuple[int, Any]:
    async with session.request(method, url) as r:
        body = await r.read()
        try:
            return r.status, json.loads(body)
        except ValueError:
            return r.status, body.decode()


def _run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, DEADLINE_S * 2))


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200),
                                 timeout=aiohttp.ClientTimeout(total=20))


# --- single process: every acknowledged write survives kill -9 --------------------------------


def test_single_process_keeps_every_acknowledged_write_across_kill_9(services, tmp_path):
    data = str(tmp_path / "data")
    # --latency holds every request 20 ms before it is applied, so the kill always finds requests on
    # the shop (a fast shop on a loaded machine could have answered all of them, the client not yet
    # having read the answers).
    shop = services(["--data", data, "--latency", "20"])
    n_items, n_users = 20, 20

    async def setup() -> tuple[list[str], list[str]]:
        async with _session() as s:
            items = [(await _call(s, "POST", f"{shop.url}/stock/item/create/3"))[1]["item_id"] for _ in range(n_items)]
            users = [(await _call(s, "POST", f"{shop.url}/payment/create_user"))[1]["user_id"] for _ in range(n_users)]
            return items, users

    items, users = _run(setup())
    acked_stock = {i: 0 for i in items}
    acked_credit = {u: 0 for u in users}
    sent_stock = dict(acked_stock)
    sent_credit = dict(acked_credit)
    acked_orders: list[str] = []

    async def hammer(stop_after_first: asyncio.Event) -> None:
        async with _session() as s:
            async def one(k: int) -> None:
                item, user = items[k % n_items], users[k % n_users]
                kind = k % 3
                try:
                    if kind == 0:
                        sent_stock[item] += 1
                        st, _ = await _call(s, "POST", f"{shop.url}/stock/add/{item}/1")
                        if st == 200:
                            acked_stock[item] += 1
                    elif kind == 1:
                        sent_credit[user] += 2
                        st, _ = await _call(s, "POST", f"{shop.url}/payment/add_funds/{user}/2")
                        if st == 200:
                            acked_credit[user] += 2
                    else:
                        st, body = await _call(s, "POST", f"{shop.url}/orders/create/{user}")
                        if st == 200:
                            acked_orders.append(body["order_id"])
                    if st == 200:
                        stop_after_first.set()
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass  # killed under us: not acknowledged

            pending = set()
            for k in range(100_000):
                pending.add(asyncio.ensure_future(one(k)))
                if len(pending) >= 64:
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if shop.proc.poll() is not None:
                    break
            await asyncio.gather(*pending)

    async def main() -> None:
        first = asyncio.Event()
        task = asyncio.ensure_future(hammer(first))
        await first.wait()
        await asyncio.sleep(1.0)  # let acknowledged writes pile up, many more in flight
        shop.kill()
        await task

    # A client starved of CPU at the kill (a loaded machine) may have every request answered, unread, when
    # it lands: then the kill hit nothing in flight, so restart the (durable) shop and try again; the
    # counts add up over the attempts (acknowledged <= applied <= sent holds for all of them).
    for _ in range(3):
        _run(main())
        in_flight = sum(sent_stock.values()) - sum(acked_stock.values())
        shop.start()
        if in_flight > 0:
            break
    assert sum(acked_stock.values()) > 50, "too few writes acknowledged before the kill to test anything"
    assert in_flight > 0, "the kill hit no write in flight (three attempts)"

    async def read() -> None:
        async with _session() as s:
            for item in items:
                st, body = await _call(s, "GET", f"{shop.url}/stock/find/{item}")
                assert st == 200
                assert acked_stock[item] <= body["stock"] <= sent_stock[item], (item, body, acked_stock[item])
            for user in users:
                st, body = await _call(s, "GET", f"{shop.url}/payment/find_user/{user}")
                assert st == 200
                assert acked_credit[user] <= body["credit"] <= sent_credit[user], (user, body)
            for order in acked_orders:
                st, body = await _call(s, "GET", f"{shop.url}/orders/find/{order}")
                assert st == 200 and body["paid"] is False, (order, body)
            # the id counter survived too: a new item does not reuse an acknowledged id
            st, body = await _call(s, "POST", f"{shop.url}/stock/item/create/1")
            assert st == 200 and body["item_id"] not in items

    _run(read())


def test_single_process_keeps_paid_orders_and_their_effects(services, tmp_path):
    data = str(tmp_path / "data")
    shop = services(["--data", data])

    async def go() -> dict[str, Any]:
        async with _session() as s:
            u = shop.url
            item = (await _call(s, "POST", f"{u}/stock/item/create/4"))[1]["item_id"]
            assert (await _call(s, "POST", f"{u}/stock/add/{item}/10"))[0] == 200
            user = (await _call(s, "POST", f"{u}/payment/create_user"))[1]["user_id"]
            assert (await _call(s, "POST", f"{u}/payment/add_funds/{user}/100"))[0] == 200
            order = (await _call(s, "POST", f"{u}/orders/create/{user}"))[1]["order_id"]
            assert (await _call(s, "POST", f"{u}/orders/addItem/{order}/{item}/3"))[0] == 200
            assert (await _call(s, "POST", f"{u}/orders/checkout/{order}"))[0] == 200
            return {"item": item, "user": user, "order": order}

    ids = _run(go())
    shop.kill()
    shop.start()

    async def read() -> None:
        async with _session() as s:
            u = shop.url
            assert (await _call(s, "GET", f"{u}/stock/find/{ids['item']}"))[1] == {"stock": 7, "price": 4}
            assert (await _call(s, "GET", f"{u}/payment/find_user/{ids['user']}"))[1]["credit"] == 88
            order = (await _call(s, "GET", f"{u}/orders/find/{ids['order']}"))[1]
            assert order["paid"] is True and order["total_cost"] == 12 and order["items"] == [[ids["item"], 3]]
            # a paid order stays frozen after the restart
            assert (await _call(s, "POST", f"{u}/orders/checkout/{ids['order']}"))[0] == 400

    _run(read())


def test_single_process_keeps_a_payment_and_its_cancel_across_kill_9(services, tmp_path):
    # A payment for an order is a row keyed by (user, order): kept after a kill, so a cancel after the
    # restart finds it; the cancel deletes it, so a second cancel after another restart is refused.
    shop = services(["--data", str(tmp_path / "data")])

    async def call(method: str, path: str) -> tuple[int, Any]:
        async with _session() as s:
            return await _call(s, method, f"{shop.url}{path}")

    user = _run(call("POST", "/payment/create_user"))[1]["user_id"]
    assert _run(call("POST", f"/payment/add_funds/{user}/50"))[0] == 200
    assert _run(call("POST", f"/payment/pay/{user}/o-7/20"))[0] == 200
    shop.kill()
    shop.start()
    assert _run(call("GET", f"/payment/find_user/{user}"))[1]["credit"] == 30
    assert _run(call("POST", f"/payment/cancel/{user}/o-7"))[0] == 200
    shop.kill()
    shop.start()
    assert _run(call("GET", f"/payment/find_user/{user}"))[1]["credit"] == 50
    status, body = _run(call("POST", f"/payment/cancel/{user}/o-7"))
    assert status == 400 and "no payment" in body


# --- split: kill one service mid-checkout ------------------------------------------------------


class SplitShop:
    """Three ``serve --split --only`` processes sharing one data directory."""

    def __init__(self, services: Any, data: str, extra: list[str]):
        self.ports = {s: _free_port() for s in ("orders", "stock", "payment")}
        self.data = data
        self.extra = extra
        self.procs: dict[str, Service] = {}
        for name in ("stock", "payment", "orders"):
            self.procs[name] = services(self.args(name), self.ports[name])

    def args(self, name: str) -> list[str]:
        base = ["--split", "--only", name, "--data", self.data, *self.extra]
        if name == "orders":
            base += ["--stock-url", f"http://127.0.0.1:{self.ports['stock']}",
                     "--payment-url", f"http://127.0.0.1:{self.ports['payment']}"]
        return base

    def url(self, name: str) -> str:
        return self.procs[name].url


N_ORDERS = 12


async def _populate(shop: SplitShop) -> dict[str, Any]:
    """Items with plenty of stock, users with plenty of credit, orders of two items each."""
    async with _session() as s:
        st, so, pa = shop.url("stock"), shop.url("orders"), shop.url("payment")
        items = []
        for price in (3, 5):
            item = (await _call(s, "POST", f"{st}/stock/item/create/{price}"))[1]["item_id"]
            assert (await _call(s, "POST", f"{st}/stock/add/{item}/1000"))[0] == 200
            items.append(item)
        users, orders = [], []
        for k in range(N_ORDERS):
            user = (await _call(s, "POST", f"{pa}/payment/create_user"))[1]["user_id"]
            assert (await _call(s, "POST", f"{pa}/payment/add_funds/{user}/1000"))[0] == 200
            order = (await _call(s, "POST", f"{so}/orders/create/{user}"))[1]["order_id"]
            assert (await _call(s, "POST", f"{so}/orders/addItem/{order}/{items[0]}/1"))[0] == 200
            assert (await _call(s, "POST", f"{so}/orders/addItem/{order}/{items[1]}/2"))[0] == 200
            users.append(user)
            orders.append(order)
        return {"items": items, "users": users, "orders": orders}


async def _read_all(shop: SplitShop, ents: dict[str, Any]) -> dict[str, Any]:
    async with _session() as s:
        stock = {i: (await _call(s, "GET", f"{shop.url('stock')}/stock/find/{i}"))[1]["stock"] for i in ents["items"]}
        credit = {u: (await _call(s, "GET", f"{shop.url('payment')}/payment/find_user/{u}"))[1]["credit"]
                  for u in ents["users"]}
        paid = {o: (await _call(s, "GET", f"{shop.url('orders')}/orders/find/{o}"))[1]["paid"] for o in ents["orders"]}
    return {"stock": stock, "credit": credit, "paid": paid}


def _non_atomic(ents: dict[str, Any], state: dict[str, Any]) -> list[str]:
    """Why the final state is not all-or-nothing per order (empty when it is)."""
    wrong = []
    n_paid = sum(state["paid"].values())
    item_a, item_b = ents["items"]
    if state["stock"][item_a] != 1000 - n_paid:
        wrong.append(f"{item_a}: stock {state['stock'][item_a]} with {n_paid} paid orders")
    if state["stock"][item_b] != 1000 - 2 * n_paid:
        wrong.append(f"{item_b}: stock {state['stock'][item_b]} with {n_paid} paid orders")
    for user, order in zip(ents["users"], ents["orders"]):
        want = 1000 - 13 if state["paid"][order] else 1000
        if state["credit"][user] != want:
            wrong.append(f"{order} paid={state['paid'][order]} but {user} has credit {state['credit'][user]}")
    return wrong


async def _checkouts(shop: SplitShop, ents: dict[str, Any]) -> list[int | None]:
    async with _session() as s:
        async def one(order: str) -> int | None:
            try:
                return (await _call(s, "POST", f"{shop.url('orders')}/orders/checkout/{order}"))[0]
            except (aiohttp.ClientError, asyncio.TimeoutError):
                return None  # no answer: indeterminate

        return list(await asyncio.gather(*(one(o) for o in ents["orders"])))


def _kill_mid_checkout(shop: SplitShop, victim: str, at_s: float, down_s: float) -> list[int | None]:
    ents = _run(_populate(shop))

    async def main() -> list[int | None]:
        task = asyncio.ensure_future(_checkouts(shop, ents))
        await asyncio.sleep(at_s)
        shop.procs[victim].kill()
        await asyncio.sleep(down_s)
        shop.procs[victim].start()
        return await task

    statuses = _run(main())
    shop.ents = ents  # type: ignore[attr-defined]
    return statuses


def _settled(shop: SplitShop, ents: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The state once it stops changing and is all-or-nothing, or the last one read (bounded)."""
    end = time.monotonic() + DEADLINE_S
    while True:
        state = _run(_read_all(shop, ents))
        wrong = _non_atomic(ents, state)
        if not wrong or time.monotonic() > end:
            return state, wrong
        time.sleep(0.3)


# With --leg-delay 0.6 each checkout waits before leg 1 (stock, item A), leg 2 (stock, item B) and
# leg 3 (payment): the legs land at about 0.6, 1.2 and 1.8 s. A kill at 0.9 s finds item A taken,
# item B and the payment not yet sent.
LEG_DELAY = "0.6"


@pytest.mark.parametrize("victim", ["orders", "stock", "payment"])
def test_split_checkout_stays_atomic_when_a_service_is_killed(services, tmp_path, victim):
    shop = SplitShop(services, str(tmp_path / "data"), ["--leg-delay", LEG_DELAY])
    statuses = _kill_mid_checkout(shop, victim, at_s=0.9, down_s=1.5)
    state, wrong = _settled(shop, shop.ents)  # type: ignore[attr-defined]
    assert not wrong, wrong
    for order, status in zip(shop.ents["orders"], statuses):  # type: ignore[attr-defined]
        if status == 200:
            assert state["paid"][order], f"{order}: checkout answered 200 but the order is not paid"
        elif status is not None and 400 <= status < 600:
            assert not state["paid"][order], f"{order}: checkout answered {status} but the order is paid"
    if victim == "orders":
        assert any(s is None for s in statuses), statuses  # the kill cut checkouts off
    else:
        # the order service kept answering; 503 = a leg's peer was down and the saga was compensated
        assert all(s is not None for s in statuses), statuses
        assert any(s == 503 for s in statuses), statuses
    # the shop serves checkouts again after the recovery
    again = _run(_checkouts(shop, shop.ents))  # type: ignore[attr-defined]
    assert all(s == 200 for s in again), again
    state, wrong = _settled(shop, shop.ents)  # type: ignore[attr-defined]
    assert not wrong and all(state["paid"].values()), (wrong, state["paid"])


@pytest.mark.parametrize("victim", ["orders", "stock"])
def test_no_recovery_variant_leaves_a_non_atomic_order(services, tmp_path, victim):
    shop = SplitShop(services, str(tmp_path / "data"), ["--leg-delay", LEG_DELAY, "--inject", "no-recovery"])
    _kill_mid_checkout(shop, victim, at_s=0.9, down_s=1.0)
    # the same bounded wait the correct shop gets: nothing will mend it
    time.sleep(1.5)
    state = _run(_read_all(shop, shop.ents))  # type: ignore[attr-defined]
    wrong = _non_atomic(shop.ents, state)  # type: ignore[attr-defined]
    assert wrong, state
    assert not any(state["paid"].values())  # every checkout was cut off between its legs


def test_no_recovery_needs_data(services):
    r = subprocess.run(serve_command() + ["serve", "--port", "0", "--split", "--inject", "no-recovery"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "needs --data" in r.stderr and "Traceback" not in r.stderr


def test_only_orders_needs_peer_urls(tmp_path):
    r = subprocess.run(serve_command() + ["serve", "--port", "0", "--split", "--only", "orders"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "--stock-url" in r.stderr and "Traceback" not in r.stderr
