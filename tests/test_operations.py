"""The shop API model: rendering, matching, dialects, route overrides and urls.json."""

from __future__ import annotations

import json

import pytest

from wdmreplay.errors import ApiError
from wdmreplay.operations import BUILTIN_ROUTES, OP_CODES, OPERATIONS, get_dialect, load_routes
from wdmreplay.targets import Target, load_urls


@pytest.mark.parametrize("dialect, op, args, expected", [
    ("2024", "create_item", [7], ("POST", "/stock/item/create/7")),
    ("2024", "add_item", ["o1", "i2", 3], ("POST", "/orders/addItem/o1/i2/3")),
    ("2023", "add_item", ["o1", "i2", 1], ("POST", "/orders/addItem/o1/i2")),
    ("2024", "pay", ["u", "o", 5], ("POST", "/payment/pay/u/5")),
    ("2023", "pay", ["u", "o", 5], ("POST", "/payment/pay/u/o/5")),
    ("2023", "remove_item", ["o", "i"], ("DELETE", "/orders/removeItem/o/i")),
    ("2024", "batch_init_orders", [10, 5, 7, 2], ("POST", "/orders/batch_init/10/5/7/2")),
    ("2024", "find_order", ["abc"], ("GET", "/orders/find/abc")),
])
def test_render(dialect, op, args, expected):
    d = get_dialect(dialect)
    assert d.render(op, args) == expected


@pytest.mark.parametrize("dialect", ["2023", "2024"])
def test_every_route_matches_back_to_its_operation(dialect):
    d = get_dialect(dialect)
    for name in BUILTIN_ROUTES[dialect]:
        op = OPERATIONS[name]
        args = [f"x{i}" if k != "int" else 10 + i for i, k in enumerate(op.kinds)]
        method, path = d.render(name, args)
        matched = d.match(method, path)
        assert matched is not None and matched[0] == name, (name, path)


def test_match_rejects_unknown_paths_and_methods():
    d = get_dialect("2024")
    assert d.match("GET", "/stock/item/create/5") is None
    assert d.match("POST", "/nowhere") is None
    assert d.match("POST", "/stock/add/a/b/c") is None


def test_dialects_differ_where_api_md_says():
    assert get_dialect("2024").missing(["remove_item", "checkout", "batch_init_stock"]) == ["remove_item"]
    assert get_dialect("2023").missing(["remove_item", "batch_init_stock"]) == ["batch_init_stock"]
    with pytest.raises(ApiError, match="unknown dialect"):
        get_dialect("2022")
    with pytest.raises(ApiError, match="no route for remove_item"):
        get_dialect("2024").render("remove_item", ["o", "i"])


def test_route_overrides(tmp_path):
    p = tmp_path / "routes.json"
    p.write_text(json.dumps({"checkout": "PUT /orders/co/{order}"}))
    d = get_dialect("2024", load_routes(p))
    assert d.render("checkout", ["9"]) == ("PUT", "/orders/co/9")
    assert d.match("PUT", "/orders/co/9") == ("checkout", {"order": "9"})
    p.write_text(json.dumps({"checkout": "PUT /orders/co/{orderid}"}))
    with pytest.raises(ApiError, match="unknown parameter"):
        get_dialect("2024", load_routes(p))
    p.write_text(json.dumps({"chekout": "PUT /x"}))
    with pytest.raises(ApiError, match="unknown operation"):
        load_routes(p)


def test_load_urls(tmp_path):
    p = tmp_path / "urls.json"
    p.write_text(json.dumps({"ORDER_URL": "http://a:1/", "PAYMENT_URL": "http://b:2", "STOCK_URL": "http://c:3"}))
    t = load_urls(p)
    assert t == Target("http://a:1", "http://b:2", "http://c:3")
    assert t.base("stock") == "http://c:3"
    p.write_text(json.dumps({"ORDER_URL": "http://a:1"}))
    with pytest.raises(ApiError, match="PAYMENT_URL"):
        load_urls(p)
    p.write_text("{not json")
    with pytest.raises(ApiError, match="not valid JSON"):
        load_urls(p)
    with pytest.raises(ApiError, match="not found"):
        load_urls(tmp_path / "missing.json")


def test_repo_urls_json_is_valid():
    from pathlib import Path
    t = load_urls(Path(__file__).resolve().parent.parent / "urls.json")
    assert t == Target.single("http://localhost:8000")
