"""No input makes the shop answer 5xx or corrupt its state.

A hypothesis fuzzer sends sequences of requests — real operations with valid, malformed, negative,
huge and junk arguments, and paths assembled from route words and junk — and checks every answer
against a reference model of API.md: 200 exactly when the model says the request is valid (then the
model applies it), 400 when it is refused, 404/405 for paths no route matches, never 5xx. After each
sequence the shop's whole state must equal the model's, so a half-applied change cannot hide.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shop_http import ShopClient
from wdmreplay import operations
from wdmreplay.shop import ShopThread

MAX_VALUE = 2**62
_INT = re.compile(r"[0-9]{1,15}")
DIALECTS = [operations.get_dialect("2023"), operations.get_dialect("2024")]
FUZZ_OPS = sorted({op for d in DIALECTS for op in d.routes if not op.startswith("batch_init")})


class Model:
    """API.md's semantics on plain dicts: what each request must do to the shop."""

    def __init__(self) -> None:
        self.items: dict[str, dict] = {}
        self.users: dict[str, dict] = {}
        self.orders: dict[str, dict] = {}
        self.prices: dict[str, dict] = {}  # order -> item -> unit price when added
        self.payments: dict[tuple[str, str], list] = {}

    def state(self) -> dict:
        return {"items": self.items, "users": self.users, "orders": self.orders}

    def apply(self, op: str, p: dict, body: str) -> bool:
        """Whether ``op`` with decoded params ``p`` must succeed; applies it if so."""
        ints = {k: int(v) for k, v in p.items() if k in operations.OPERATIONS[op].params
                and operations.OPERATIONS[op].kinds[operations.OPERATIONS[op].params.index(k)] == "int"
                and v is not None and _INT.fullmatch(v)}
        bad_int = any(operations.OPERATIONS[op].kinds[i] == "int" and p.get(n) is not None and n not in ints
                      for i, n in enumerate(operations.OPERATIONS[op].params))
        if bad_int:
            return False
        item, user, order = self.items.get(p.get("item")), self.users.get(p.get("user")), self.orders.get(p.get("order"))
        amount = ints.get("amount")
        if op == "create_item":
            self.items[json.loads(body)["item_id"]] = {"stock": 0, "price": ints["price"]}
        elif op == "create_user":
            self.users[json.loads(body)["user_id"]] = {"credit": 0}
        elif op in ("find_item", "add_stock", "subtract_stock"):
            if item is None:
                return False
            if op == "add_stock":
                if item["stock"] + amount > MAX_VALUE:
                    return False
                item["stock"] += amount
            elif op == "subtract_stock":
                if item["stock"] < amount:
                    return False
                item["stock"] -= amount
        elif op in ("find_user", "add_funds", "pay", "payment_status", "cancel_payment", "create_order"):
            if user is None:
                return False
            if op == "add_funds":
                if user["credit"] + amount > MAX_VALUE:
                    return False
                user["credit"] += amount
            elif op == "pay":
                if user["credit"] < amount:
                    return False
                user["credit"] -= amount
                self._record(p["user"], p.get("order"), amount, False)
            elif op == "cancel_payment":
                rec = self.payments.get((p["user"], p["order"]))
                if rec is None or rec[1]:
                    return False
                user["credit"] += rec[0]
                del self.payments[(p["user"], p["order"])]
            elif op == "create_order":
                oid = json.loads(body)["order_id"]
                self.orders[oid] = {"paid": False, "items": [], "user_id": p["user"], "total_cost": 0}
                self.prices[oid] = {}
        elif op == "find_order":
            return order is not None
        elif op in ("add_item", "remove_item", "remove_order", "checkout"):
            if order is None or order["paid"]:
                return False
            if op == "add_item":
                qty = ints.get("quantity", 1)
                if item is None or order["total_cost"] + qty * item["price"] > MAX_VALUE:
                    return False
                order["items"].append([p["item"], qty])
                order["total_cost"] += qty * item["price"]
                self.prices[p["order"]][p["item"]] = item["price"]
            elif op == "remove_item":
                lines = order["items"]
                idx = next((i for i in range(len(lines) - 1, -1, -1)
                            if lines[i][0] == p["item"] and lines[i][1] > 0), None)
                if idx is None:
                    return False
                lines[idx][1] -= 1
                if lines[idx][1] == 0:
                    del lines[idx]
                order["total_cost"] = max(0, order["total_cost"] - self.prices[p["order"]].get(p["item"], 0))
            elif op == "remove_order":
                del self.orders[p["order"]]
            else:
                need: dict[str, int] = {}
                for i, q in order["items"]:
                    need[i] = need.get(i, 0) + q
                buyer = self.users.get(order["user_id"])
                if any(i not in self.items or self.items[i]["stock"] < q for i, q in need.items()):
                    return False
                if buyer is None or buyer["credit"] < order["total_cost"]:
                    return False
                for i, q in need.items():
                    self.items[i]["stock"] -= q
                buyer["credit"] -= order["total_cost"]
                self._record(order["user_id"], p["order"], order["total_cost"], True)
                order["paid"] = True
        else:
            raise AssertionError(f"model lacks {op}")
        return True

    def _record(self, user: str, order: str | None, amount: int, by_checkout: bool) -> None:
        if order is not None:
            prev = self.payments.get((user, order))
            self.payments[(user, order)] = [amount + (prev[0] if prev else 0), by_checkout or bool(prev and prev[1])]


def _match(method: str, path: str) -> tuple[str, dict] | None:
    for d in DIALECTS:
        m = d.match(method, path)
        if m:
            return m[0], {k: unquote(v) for k, v in m[1].items()}
    return None


# --- strategies --------------------------------------------------------------------------------

IDS = [f"{k}-{n}" for k in ("item", "user", "order") for n in (1, 2, 3, 4, 5)]
INT_WORDS = ["0", "1", "2", "3", "7", "-1", "-0", "+1", " 1", "1.5", "1e3", "0x10", "\u0661", "\uff11",
             "99999999999999999999", str(10**15 - 1), str(10**15), str(2**62), "NaN", "null", "1 "]
junk = st.text(max_size=8)
arg = st.one_of(st.sampled_from(IDS), st.sampled_from(INT_WORDS), st.integers(0, 25).map(str), junk)
WORDS = ["orders", "stock", "payment", "find", "find_user", "add", "subtract", "item", "create", "create_user",
         "addItem", "removeItem", "remove", "checkout", "pay", "cancel", "status", "add_funds", ".", "..",
         "%ZZ", "%2F", "%31", "%00", "%2e%2e"]
segment = st.one_of(st.sampled_from(WORDS), st.sampled_from(IDS), st.sampled_from(INT_WORDS).map(
    lambda s: quote(s, safe="")), junk.map(lambda s: quote(s, safe="")))


@st.composite
def op_request(draw):
    d = draw(st.sampled_from(DIALECTS))
    op = draw(st.sampled_from(sorted(d.routes)).filter(lambda o: not o.startswith("batch_init")))
    args = [quote(draw(arg), safe="") for _ in operations.OPERATIONS[op].params]
    method, path = d.render(op, args)
    if op == "payment_status":
        method = draw(st.sampled_from(["GET", "POST"]))
    return method, path


raw_request = st.tuples(
    st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH"]),
    st.lists(segment, min_size=0, max_size=6).map(lambda segs: "/" + "/".join(segs)),
)
requests = st.lists(st.one_of(op_request(), op_request(), raw_request), min_size=1, max_size=12)


def _seed(c: ShopClient, model: Model, shop: ShopThread) -> None:
    """Base entities: items 1..3, users 1..3, orders 1..3 (ids are deterministic after a reset)."""
    for method, path in [("POST", "/stock/item/create/1"), ("POST", "/stock/item/create/2"),
                         ("POST", "/stock/item/create/5"), ("POST", "/stock/add/item-1/3"),
                         ("POST", "/stock/add/item-3/10"), ("POST", "/payment/create_user"),
                         ("POST", "/payment/create_user"), ("POST", "/payment/create_user"),
                         ("POST", "/payment/add_funds/user-2/7"), ("POST", "/payment/add_funds/user-3/100"),
                         ("POST", "/orders/create/user-2"), ("POST", "/orders/create/user-3"),
                         ("POST", "/orders/create/user-1"), ("POST", "/orders/addItem/order-1/item-1/2"),
                         ("POST", "/orders/addItem/order-2/item-3/4"), ("POST", "/orders/addItem/order-2/item-1")]:
        _send(c, model, method, path, shop)


def _base(shop: ShopThread, path: str) -> str:
    first = path.split("/")[1] if path.count("/") else ""
    return shop.urls.get(first, shop.url)


def _send(c: ShopClient, model: Model, method: str, path: str, shop: ShopThread) -> None:
    base = _base(shop, path)
    status, body = c.raw(method, base, path)
    assert status < 500, f"{method} {path} -> {status} {body}"
    m = _match(method, path)
    if m is None:
        assert status in (404, 405), f"{method} {path} matches no route but got {status} {body}"
        return
    op, params = m
    expect_ok = model.apply(op, params, body if status == 200 else "")
    assert status == (200 if expect_ok else 400), f"{method} {path} ({op} {params}) -> {status} {body}"
    if status == 400:
        assert body.strip()


@pytest.fixture(scope="module", params=[False, True], ids=["one-port", "split"])
def fuzz_shop(request):
    with ShopThread(split=request.param) as s:
        yield s


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(reqs=requests)
def test_no_input_yields_5xx_or_corrupts_state(fuzz_shop, reqs):
    fuzz_shop.reset()
    c = ShopClient(fuzz_shop.target)
    model = Model()
    try:
        _seed(c, model, fuzz_shop)
        assert fuzz_shop.snapshot() == model.state()
        for method, path in reqs:
            _send(c, model, method, path, fuzz_shop)
        snap = fuzz_shop.snapshot()
    finally:
        c.close()
    assert all(v["stock"] >= 0 for v in snap["items"].values())
    assert all(v["credit"] >= 0 for v in snap["users"].values())
    assert snap == model.state()


MALFORMED_INTS = ["-1", "abc", "1.5", "1e3", "0x1f", "99999999999999999999", str(10**15), "%20", "\uff11", "+3"]


@pytest.mark.parametrize("split", [False, True], ids=["one-port", "split"])
def test_malformed_integers_in_every_route_are_400_and_change_nothing(shop_factory, split):
    s = shop_factory(split=split)
    c = ShopClient(s.target)
    item, user = c.item(2, stock=5), c.user(10)
    order = c.order(user, (item, 1))
    ids = {"item": item, "user": user, "order": order}
    before = s.snapshot()
    for d in DIALECTS:
        for op, route in d.routes.items():
            if not any(k == "int" and "{%s}" % n in route.template for n, k in zip(route.op.params, route.op.kinds)):
                continue
            for bad in MALFORMED_INTS:
                args = [ids[k] if k in ids else (bad if k == "int" else None) for k in route.op.kinds]
                method, path = d.render(op, [quote(a, safe="%+") for a in args])
                status, body = c.raw(method, s.target.base(route.op.service), path)
                assert status == 400 and "integer" in body, f"{op} {path}: {status} {body}"
    assert s.snapshot() == before
    assert c.raw("POST", s.target.stock_url, "/stock/add/" + item + "/")[0] == 404
    assert c.raw("GET", s.target.stock_url, "/stock/find/" + "x" * 20000)[0] in (400, 414, 431)
    assert s.snapshot() == before
