"""The reference shop, operation by operation, over real HTTP: both dialects, one port and --split."""

from __future__ import annotations

import json

import pytest

from shop_http import ShopClient
from wdmreplay.operations import BUILTIN_ROUTES, get_dialect
from wdmreplay.targets import Target
from wdmreplay.shop import ShopError, ShopThread

MODES = [pytest.param(False, id="one-port"), pytest.param(True, id="split")]


@pytest.fixture(scope="module", params=MODES)
def running(request):
    """A shop shared by this module's tests (each test makes its own entities)."""
    with ShopThread(split=request.param) as s:
        yield s


@pytest.fixture(params=["2023", "2024"])
def client(running, request):
    c = ShopClient(running.target, request.param)
    yield c
    c.close()


def test_stock_operations(client):
    item = client.ok("create_item", 7)["item_id"]
    assert isinstance(item, str) and item
    assert client.ok("find_item", item) == {"stock": 0, "price": 7}
    assert client.call("add_stock", item, 10)[0] == 200
    assert client.call("subtract_stock", item, 4)[0] == 200
    assert client.stock(item) == 6
    assert "stock" in client.fails("subtract_stock", item, 7)
    assert client.stock(item) == 6  # the refused subtract changed nothing
    assert client.call("subtract_stock", item, 6)[0] == 200
    assert client.stock(item) == 0
    assert "not found" in client.fails("find_item", "no-such-item")
    assert "not found" in client.fails("add_stock", "no-such-item", 1)
    assert "not found" in client.fails("subtract_stock", "no-such-item", 1)
    # a refusal names the entity once: "item-3: not enough stock", "item no-such-item not found"
    assert client.fails("subtract_stock", item, 1).startswith(f"{item}: not enough stock") and item.startswith("item-")
    assert "item no-such-item not found" in client.fails("find_item", "no-such-item")


def test_payment_operations(client):
    user = client.ok("create_user")["user_id"]
    assert client.ok("find_user", user) == {"user_id": user, "credit": 0}
    assert client.call("add_funds", user, 50)[0] == 200
    assert client.call("pay", user, "some-order", 20)[0] == 200
    assert client.credit(user) == 30
    assert "credit" in client.fails("pay", user, "some-order", 31)
    assert client.credit(user) == 30
    assert "not found" in client.fails("find_user", "nobody")
    assert "not found" in client.fails("add_funds", "nobody", 5)
    assert "not found" in client.fails("pay", "nobody", "o", 0)
    assert client.fails("pay", user, "some-order", 31).startswith(f"{user}: not enough credit") and user.startswith("user-")


def test_payment_status_and_cancel_2023(running):
    c = ShopClient(running.target, "2023")
    user = c.user(100)
    assert c.ok("payment_status", user, "ord-a") == {"paid": False}
    c.ok("pay", user, "ord-a", 40)
    assert c.ok("payment_status", user, "ord-a") == {"paid": True}
    # the written spec says GET, some systems POST: both are served
    base = running.target.payment_url
    assert c.raw("GET", base, f"/payment/status/{user}/ord-a") == (200, json.dumps({"paid": True}))
    c.ok("cancel_payment", user, "ord-a")
    assert c.credit(user) == 100
    assert c.ok("payment_status", user, "ord-a") == {"paid": False}
    assert "no payment" in c.fails("cancel_payment", user, "ord-a")
    assert c.credit(user) == 100


def test_order_lifecycle_and_checkout(client):
    a, b = client.item(3, stock=5), client.item(10, stock=1)
    user = client.user(100)
    assert "not found" in client.fails("create_order", "nobody")
    order = client.order(user, (a, 2), (b, 1), (a, 1))
    found = client.ok("find_order", order)
    assert found["order_id"] == order and found["user_id"] == user and found["paid"] is False
    assert found["total_cost"] == 3 * 3 + 10  # Σ qty × price
    assert sorted((i, q) for i, q in found["items"] if i == b) == [(b, 1)]
    assert sum(q for i, q in found["items"] if i == a) == 3
    assert client.call("checkout", order) == (200, "Checkout successful")
    assert client.ok("find_order", order)["paid"] is True
    assert (client.stock(a), client.stock(b), client.credit(user)) == (2, 0, 81)
    # an already-paid order is refused and nothing changes
    assert "already paid" in client.fails("checkout", order)
    assert (client.stock(a), client.stock(b), client.credit(user)) == (2, 0, 81)
    assert "already paid" in client.fails("add_item", order, a, 1)
    assert client.ok("find_order", order)["total_cost"] == 19
    assert "not found" in client.fails("find_order", "no-order")
    assert "not found" in client.fails("checkout", "no-order")
    assert "not found" in client.fails("add_item", "no-order", a, 1)
    assert "not found" in client.fails("add_item", order + "x", "no-item", 1)


def test_checkout_out_of_stock_changes_nothing(client):
    a, b = client.item(1, stock=3), client.item(1, stock=1)
    user = client.user(100)
    order = client.order(user, (a, 2), (b, 2))
    assert "stock" in client.fails("checkout", order)
    assert (client.stock(a), client.stock(b), client.credit(user)) == (3, 1, 100)
    assert client.ok("find_order", order)["paid"] is False


def test_checkout_out_of_credit_changes_nothing(client):
    a = client.item(5, stock=3)
    user = client.user(9)
    order = client.order(user, (a, 2))
    assert "credit" in client.fails("checkout", order)
    assert (client.stock(a), client.credit(user)) == (3, 9)
    assert client.ok("find_order", order)["paid"] is False
    client.ok("add_funds", user, 1)
    client.ok("checkout", order)
    assert (client.stock(a), client.credit(user)) == (1, 0)


def test_checkout_with_missing_item_changes_nothing(client):
    a = client.item(1, stock=3)
    user = client.user(10)
    order = client.order(user, (a, 1))
    client.ok("find_order", order)
    assert "not found" in client.fails("add_item", order, "ghost", 1)
    client.ok("checkout", order)
    assert client.stock(a) == 2


def test_remove_item_and_order_2023(running):
    c = ShopClient(running.target, "2023")
    a, b = c.item(4, stock=5), c.item(6, stock=5)
    user = c.user(100)
    order = c.order(user, (a, 2), (b, 1))
    c.ok("remove_item", order, a)
    found = c.ok("find_order", order)
    assert found["total_cost"] == 4 + 6
    assert sum(q for i, q in found["items"] if i == a) == 1
    c.ok("remove_item", order, a)
    assert "no item" in c.fails("remove_item", order, a)
    assert c.ok("find_order", order)["total_cost"] == 6
    c.ok("checkout", order)
    assert (c.stock(a), c.stock(b), c.credit(user)) == (5, 4, 94)
    assert "already paid" in c.fails("remove_item", order, b)
    assert "already paid" in c.fails("remove_order", order)
    other = c.order(user, (a, 1))
    c.ok("remove_order", other)
    assert "not found" in c.fails("find_order", other)
    assert "not found" in c.fails("remove_order", other)


def test_batch_init_2024(running):
    c = ShopClient(running.target, "2024")
    assert "msg" in c.ok("batch_init_stock", 5, 10, 3)
    assert "msg" in c.ok("batch_init_users", 4, 100)
    assert "msg" in c.ok("batch_init_orders", 6, 5, 4, 3)
    assert c.ok("find_item", "4") == {"stock": 10, "price": 3}
    assert c.ok("find_user", "3") == {"user_id": "3", "credit": 100}
    order = c.ok("find_order", "5")
    assert len(order["items"]) == 2 and all(q == 1 and 0 <= int(i) < 5 for i, q in order["items"])
    assert 0 <= int(order["user_id"]) < 4 and order["total_cost"] == 6
    c.ok("checkout", "5")
    assert c.credit(order["user_id"]) == 94
    assert sum(c.stock(str(i)) for i in range(5)) == 48
    assert "at least 1" in c.fails("batch_init_orders", 3, 0, 4, 3)
    assert "at most" in c.fails("batch_init_stock", 10**9, 1, 1)


def test_unknown_paths_are_404_and_wrong_methods_4xx(running):
    c = ShopClient(running.target)
    base = running.target.order_url
    for path in ("/", "/orders", "/orders/find", "/orders/find/", "/stock/find/a/b", "/nope/x", "/payment/pay/u"):
        status, body = c.raw("GET", base, path)
        assert status == 404, path
    for method, path in (("GET", "/orders/checkout/x"), ("DELETE", "/stock/find/x"), ("PUT", "/payment/create_user")):
        assert c.raw(method, running.target.base(path.split("/")[1]), path)[0] in (404, 405)


def test_every_route_of_both_dialects_is_served(running):
    c = ShopClient(running.target)
    for dialect, routes in BUILTIN_ROUTES.items():
        d = get_dialect(dialect)
        for op in routes:
            args = ["x" if k != "int" else 1 for k in d.route(op).op.kinds]
            method, path = d.render(op, args)
            service = d.route(op).op.service
            status, body = c.raw(method, running.target.base(service), path)
            assert status != 404 and status < 500, f"{dialect} {op}: {method} {path} -> {status} {body}"


def test_serving_one_dialect_hides_the_other(shop_factory):
    s = shop_factory(dialects="2024")
    c23, c24 = ShopClient(s.target, "2023"), ShopClient(s.target, "2024")
    item, user = c24.item(1, stock=1), c24.user(5)
    order = c24.order(user)
    assert c23.call("add_item", order, item)[0] == 404
    assert c23.call("remove_order", order)[0] == 404
    assert c24.call("add_item", order, item, 1)[0] == 200
    with pytest.raises(ShopError):
        ShopThread(dialects="1999")


def test_stats_count_requests_and_reset_clears(shop_factory):
    s = shop_factory(split=True)
    c = ShopClient(s.target, "2024")
    item = c.item(2, stock=3)  # create_item + add_stock
    user = c.user(10)  # create_user + add_funds
    order = c.order(user, (item, 1))  # create_order + add_item
    c.ok("checkout", order)
    c.call("find_item", "nope")
    stats = s.stats()
    # the order service's own calls to stock and payment are not client requests
    assert stats["by_op"] == {"create_item": 1, "add_stock": 1, "create_user": 1, "add_funds": 1,
                              "create_order": 1, "add_item": 1, "checkout": 1, "find_item": 1}
    assert stats["requests"] == 8
    for base in s.urls.values():  # every service answers the admin endpoints
        assert c.raw("GET", base, "/_shop/stats")[0] == 200
    assert c.raw("POST", s.urls["stock"], "/_shop/reset") == (200, "reset")
    assert s.stats() == {"requests": 0, "by_op": {}}
    assert s.snapshot() == {"items": {}, "users": {}, "orders": {}}
    assert "not found" in c.fails("find_item", item)


def test_target_and_urls(shop_factory):
    one = shop_factory()
    assert one.target == Target.single(one.url)
    split = shop_factory(split=True)
    urls = split.urls
    assert len(set(urls.values())) == 3
    assert split.target.as_dict() == {"ORDER_URL": urls["orders"], "PAYMENT_URL": urls["payment"],
                                      "STOCK_URL": urls["stock"]}


def test_shop_fixture_serves(shop):
    c = ShopClient(shop.target)
    assert c.stock(c.item(1, stock=2)) == 2


def test_shop_thread_lifecycle_and_port_in_use(shop_factory):
    first = shop_factory()
    port = int(first.url.rsplit(":", 1)[1])
    with pytest.raises(ShopError, match="address already in use"):
        ShopThread(port=port).start()
    c = ShopClient(first.target)
    assert c.item(1) == "item-1"
    first.reset()
    assert c.item(1) == "item-1"  # ids restart after a reset
    first.stop()
    first.stop()  # idempotent
    with pytest.raises(ShopError, match="not running"):
        first.url


def test_banner_of_a_shop_thread_names_its_urls_and_bug(shop_factory):
    from wdmreplay.shop import banner

    s = shop_factory(split=True, inject="no-rollback")
    text = banner(s.running)
    assert "BUG INJECTED: --inject no-rollback" in text
    for url in s.urls.values():
        assert url in text
