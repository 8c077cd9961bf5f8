"""The durable shop's building blocks over real HTTP: idempotent legs, undo fencing, restart, reset."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from wdmreplay.shop import ShopThread


def _req(method: str, url: str) -> tuple[int, Any]:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            body = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        body, status = e.read(), e.code
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode()


def test_a_leg_applies_once_and_undoes_once(tmp_path):
    with ShopThread(split=True, data=str(tmp_path)) as shop:
        st = shop.urls["stock"]
        item = _req("POST", f"{st}/stock/item/create/2")[1]["item_id"]
        assert _req("POST", f"{st}/stock/add/{item}/10")[0] == 200
        for _ in range(3):  # a retried leg is not applied twice
            assert _req("POST", f"{st}/_shop/leg/r1/subtract/{item}/4")[0] == 200
        assert _req("GET", f"{st}/stock/find/{item}")[1]["stock"] == 6
        for _ in range(2):
            assert _req("POST", f"{st}/_shop/leg/r1/undo")[0] == 200
        assert _req("GET", f"{st}/stock/find/{item}")[1]["stock"] == 10
        # an undo that arrives before its leg fences the leg off
        assert _req("POST", f"{st}/_shop/leg/r2/undo")[0] == 200
        status, body = _req("POST", f"{st}/_shop/leg/r2/subtract/{item}/4")
        assert status == 400 and "cancelled" in body
        assert _req("GET", f"{st}/stock/find/{item}")[1]["stock"] == 10
        # a refused leg changes nothing
        assert _req("POST", f"{st}/_shop/leg/r3/subtract/{item}/11")[0] == 400
        assert _req("GET", f"{st}/stock/find/{item}")[1]["stock"] == 10


def test_a_payment_leg_undo_refunds_the_credit_and_the_record(tmp_path):
    with ShopThread(split=True, data=str(tmp_path)) as shop:
        pa = shop.urls["payment"]
        user = _req("POST", f"{pa}/payment/create_user")[1]["user_id"]
        assert _req("POST", f"{pa}/payment/add_funds/{user}/50")[0] == 200
        assert _req("POST", f"{pa}/_shop/leg/p1/pay/{user}/o1/20")[0] == 200
        assert _req("POST", f"{pa}/_shop/leg/p1/pay/{user}/o1/20")[0] == 200
        assert _req("GET", f"{pa}/payment/find_user/{user}")[1]["credit"] == 30
        assert _req("GET", f"{pa}/payment/status/{user}/o1")[1] == {"paid": True}
        assert _req("POST", f"{pa}/_shop/leg/p1/undo")[0] == 200
        assert _req("GET", f"{pa}/payment/find_user/{user}")[1]["credit"] == 50
        assert _req("GET", f"{pa}/payment/status/{user}/o1")[1] == {"paid": False}


def test_split_durable_state_and_legs_survive_a_restart(tmp_path):
    with ShopThread(split=True, data=str(tmp_path)) as shop:
        u = shop.urls
        item = _req("POST", f"{u['stock']}/stock/item/create/3")[1]["item_id"]
        assert _req("POST", f"{u['stock']}/stock/add/{item}/5")[0] == 200
        user = _req("POST", f"{u['payment']}/payment/create_user")[1]["user_id"]
        assert _req("POST", f"{u['payment']}/payment/add_funds/{user}/100")[0] == 200
        order = _req("POST", f"{u['orders']}/orders/create/{user}")[1]["order_id"]
        assert _req("POST", f"{u['orders']}/orders/addItem/{order}/{item}/2")[0] == 200
        assert _req("POST", f"{u['orders']}/orders/checkout/{order}")[0] == 200
        assert _req("POST", f"{u['stock']}/_shop/leg/x1/subtract/{item}/1")[0] == 200
    assert sorted(p.name for p in tmp_path.glob("*.sqlite")) == ["orders.sqlite", "payment.sqlite", "stock.sqlite"]
    with ShopThread(split=True, data=str(tmp_path)) as shop:
        u = shop.urls
        assert _req("GET", f"{u['stock']}/stock/find/{item}")[1]["stock"] == 2
        assert _req("GET", f"{u['payment']}/payment/find_user/{user}")[1]["credit"] == 94
        assert _req("GET", f"{u['orders']}/orders/find/{order}")[1]["paid"] is True
        # the leg log survived: the same id is not applied again
        assert _req("POST", f"{u['stock']}/_shop/leg/x1/subtract/{item}/1")[0] == 200
        assert _req("GET", f"{u['stock']}/stock/find/{item}")[1]["stock"] == 2
        assert _req("POST", f"{u['orders']}/_shop/reset")[0] == 200
    with ShopThread(split=True, data=str(tmp_path)) as shop:
        assert _req("GET", f"{shop.urls['stock']}/stock/find/{item}")[0] == 400  # reset emptied the files


def test_one_port_slow_saga_is_durable_too(tmp_path):
    with ShopThread(data=str(tmp_path), faults=(("slow-saga", 1.0),), saga_delay_s=0.05) as shop:
        u = shop.url
        item = _req("POST", f"{u}/stock/item/create/3")[1]["item_id"]
        assert _req("POST", f"{u}/stock/add/{item}/1")[0] == 200
        user = _req("POST", f"{u}/payment/create_user")[1]["user_id"]
        assert _req("POST", f"{u}/payment/add_funds/{user}/2")[0] == 200  # not enough for 3
        order = _req("POST", f"{u}/orders/create/{user}")[1]["order_id"]
        assert _req("POST", f"{u}/orders/addItem/{order}/{item}/1")[0] == 200
        assert _req("POST", f"{u}/orders/checkout/{order}")[0] == 400  # refused after the stock leg
        assert _req("GET", f"{u}/stock/find/{item}")[1]["stock"] == 1  # compensated
    with ShopThread(data=str(tmp_path)) as shop:
        assert _req("GET", f"{shop.url}/stock/find/{item}")[1]["stock"] == 1
        assert _req("GET", f"{shop.url}/orders/find/{order}")[1]["paid"] is False


def test_split_processes_kill_and_restart_one_service(tmp_path):
    from wdmreplay.shop.processes import SplitProcesses

    with SplitProcesses(str(tmp_path), ("--leg-delay", "0")) as shop:
        item = _req("POST", f"{shop.url('stock')}/stock/item/create/2")[1]["item_id"]
        assert _req("POST", f"{shop.url('stock')}/stock/add/{item}/9")[0] == 200
        user = _req("POST", f"{shop.url('payment')}/payment/create_user")[1]["user_id"]
        assert _req("POST", f"{shop.url('payment')}/payment/add_funds/{user}/10")[0] == 200
        order = _req("POST", f"{shop.url('orders')}/orders/create/{user}")[1]["order_id"]
        assert _req("POST", f"{shop.url('orders')}/orders/addItem/{order}/{item}/2")[0] == 200
        old_pid = shop.pid("stock")
        shop.kill("stock")
        status, _ = _req("POST", f"{shop.url('orders')}/orders/checkout/{order}")
        assert status == 503  # stock is down: nothing changed, and the client is told so
        shop.start("stock")
        assert shop.pid("stock") != old_pid
        assert _req("GET", f"{shop.url('stock')}/stock/find/{item}")[1]["stock"] == 9
        assert _req("POST", f"{shop.url('orders')}/orders/checkout/{order}")[0] == 200
        assert _req("GET", f"{shop.url('stock')}/stock/find/{item}")[1]["stock"] == 7
        assert _req("GET", f"{shop.url('payment')}/payment/find_user/{user}")[1]["credit"] == 6
        assert shop.target.order_url == shop.url("orders")


def test_split_processes_that_fail_to_start_leave_no_service_running(tmp_path):
    # The order service (started last) cannot bind its port: start() raised, and the stock and
    # payment processes it had started were orphaned (`with` never reached __exit__); the same
    # happened when Ctrl-C or SIGTERM hit `demo --faults` while its shop was starting.
    import socket

    import pytest

    from wdmreplay.shop.app import ShopError
    from wdmreplay.shop.processes import SplitProcesses

    shop = SplitProcesses(str(tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", shop.ports["orders"]))
        try:
            with pytest.raises(ShopError, match="orders service exited at start"):
                with shop:
                    pass
            assert set(shop.procs) == {"stock", "payment", "orders"}
            assert all(p.poll() is not None for p in shop.procs.values())
        finally:
            for p in shop.procs.values():
                if p.poll() is None:
                    p.kill()
                    p.wait()
