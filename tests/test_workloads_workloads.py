"""The consistency presets (the course benchmark's README and code) and the contention workload.

Deterministic, self-regenerating traces; the contention trace replayed against the reference shop
(real HTTP) ends as its header says on a correct shop and visibly wrong on lost-line / wrong-total.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from shop_http import ShopClient
from wdmreplay.analysis import check_results
from wdmreplay.operations import OP_NAMES
from wdmreplay.cli import main
from wdmreplay.workloads import generate
from wdmreplay.workloads.contention import pay_bounds
from wdmreplay.replayer import replay_trace
from wdmreplay.traces import TraceReader, load_results, read_header


def steps(path: Path) -> list[dict]:
    with TraceReader(str(path)) as r:
        return [dict(st, phase=s["phase"]) for s in r for st in s["steps"]]


def regenerates(path: Path, tmp_path: Path) -> bool:
    h = read_header(str(path))
    again = tmp_path / ("again-" + path.name)
    generate(h["workload"], again, seed=h["seed"], **h["params"])
    return again.read_bytes() == path.read_bytes()


# --- consistency presets --------------------------------------------------------------------


@pytest.mark.parametrize("preset, items, stock", [("readme", 100, 1), ("course", 1, 100)])
def test_consistency_presets(tmp_path, preset, items, stock):
    path = tmp_path / f"{preset}.wdmt"
    h = generate("consistency", path, seed=3, preset=preset)
    p = h["params"]
    assert (p["preset"], p["items"], p["stock"], p["price"], p["users"], p["credit"], p["orders"]) == \
        (preset, items, stock, 1, 1000, 1, 1000)
    assert h["benchmark"] == preset
    ops = Counter(s["op"] for s in steps(path))
    assert ops["create_item"] == items and ops["create_user"] == 1000 and ops["checkout"] == 1000
    assert all(s["args"][1] == stock for s in steps(path) if s["op"] == "add_stock")
    # 100 units in all, 1000 users of credit 1: exactly 100 checkouts can succeed, in any order.
    assert h["expect_range"]["checkout_ok"][1] == 100
    assert regenerates(path, tmp_path)


def test_course_preset_is_the_benchmarks_code(tmp_path):
    h = generate("consistency", tmp_path / "c.wdmt", seed=0, preset="course")
    assert h["expect"] == {"checkout_ok": 100, "stock_total": 0, "credit_total": 900}


def test_an_overridden_preset_is_not_the_benchmark(tmp_path):
    h = generate("consistency", tmp_path / "c.wdmt", seed=0, preset="course", users=500)
    assert h["params"]["users"] == 500 and h["params"]["items"] == 1 and h["benchmark"] is None
    plain = generate("consistency", tmp_path / "p.wdmt", seed=0)
    assert plain["benchmark"] is None and "preset" not in plain["params"]


def test_preset_cli(tmp_path, capsys):
    out = tmp_path / "c.wdmt"
    main(["generate-trace", "consistency", "--preset", "course", "-o", str(out), "-q"])
    assert read_header(str(out))["benchmark"] == "course"
    with pytest.raises(SystemExit) as e:
        main(["generate-trace", "consistency", "--preset", "nope", "-o", str(out)])
    assert e.value.code == 2 and "nope" in capsys.readouterr().err


# --- contention -----------------------------------------------------------------------------


@pytest.mark.parametrize("credit, funders, payers, amount, expected", [
    (10, 5, 10, 1, (10, 10, "ok")),     # the starting credit covers every pay
    (0, 0, 5, 1, (0, 0, "fail")),       # nothing can ever pay
    (5, 10, 20, 1, (5, 15, "any")),     # the interleaving decides
    (3, 2, 4, 2, (1, 3, "any")),
])
def test_pay_bounds(credit, funders, payers, amount, expected):
    assert pay_bounds(credit, funders, payers, amount) == expected


@pytest.mark.parametrize("dialect", ["2024", "2023"])
def test_contention_trace(tmp_path, dialect):
    path = tmp_path / f"c-{dialect}.wdmt"
    h = generate("contention", path, seed=0, dialect=dialect, orders=2, adders=10, users=3,
                 funders=6, payers=8, amount=2)
    st = steps(path)
    adds = [s for s in st if s["op"] == "add_item"]
    assert len(adds) == 20 and {s["phase"] for s in adds} == {1}
    assert Counter(s["args"][0] for s in adds) == {"$order0": 10, "$order1": 10}
    pays = [s for s in st if s["op"] == "pay"]
    assert len(pays) == 24 and {s["expect"] for s in pays} == {"any"}  # credit 8 of 16 needed
    assert h["expect"]["order_units"] == 20 and h["expect"]["order_total_cost"] == 20 * 3
    assert h["expect"]["checkout_ok"] == 2 and h["expect_range"]["pay_ok"] == [3 * 4, 3 * 8]
    assert len(h["proves"]) == 2 and h["params"]["credit"] == 8
    assert regenerates(path, tmp_path)


def test_contention_refuses_nothing_to_do(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["generate-trace", "contention", "--orders", "0", "--users", "0", "-o", str(tmp_path / "x.wdmt")])
    err = capsys.readouterr().err
    assert e.value.code != 0 and "nothing to contend on" in err and len(err.strip().splitlines()) == 1


def _replay_contention(tmp_path: Path, shop, dialect: str = "2024") -> tuple[Path, dict]:
    trace = tmp_path / f"contention-{dialect}.wdmt"
    h = generate("contention", trace, seed=0, dialect=dialect, orders=2, adders=20, users=2,
                 funders=15, payers=15)
    out = tmp_path / "r.wdmr"
    assert replay_trace(str(trace), str(out), target=shop.target, speed=None, timeout=30.0,
                        concurrency=64).complete
    return out, h


def _orders(shop, res) -> list[dict]:
    """Each contended order as the shop answers find_order (over HTTP)."""
    c = ShopClient(shop.target)
    return [c.ok("find_order", res.bindings[f"$order{k}"]) for k in range(2)]


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("dialect", ["2024", "2023"])
def test_contention_on_a_correct_shop_ends_as_expected(tmp_path, shop_factory, split, dialect):
    shop = shop_factory(split=split)
    out, h = _replay_contention(tmp_path, shop, dialect)
    res = load_results(out, with_args=True)
    orders = _orders(shop, res)
    assert all(sum(q for _, q in o["items"]) == 20 and o["total_cost"] == 20 * 3 and o["paid"] for o in orders)
    c = ShopClient(shop.target)
    lo, hi = h["expect_range"]["credit_total"]
    credit = sum(c.credit(res.bindings[f"$user{v}"]) for v in range(2))
    assert lo <= credit <= hi
    rep = check_results(res)
    assert [a.as_dict() for a in rep.anomalies] == [] and rep.expectations.differences == 0


@pytest.mark.parametrize("split", [False, True])
def test_contention_shows_lost_lines(tmp_path, shop_factory, split):
    shop = shop_factory(split=split, inject="lost-line")
    out, _ = _replay_contention(tmp_path, shop)
    res = load_results(out)
    add_item = res.cols["op"] == OP_NAMES.index("add_item")
    assert add_item.sum() == 40 and (res.cols["outcome"][add_item] == 0).all()  # every add_item 2xx...
    orders = _orders(shop, res)
    units = [sum(q for _, q in o["items"]) for o in orders]
    assert min(units) < 20, orders  # ...yet the shop kept fewer units than were added


def test_contention_shows_wrong_totals(tmp_path, shop_factory):
    shop = shop_factory(inject="wrong-total")
    out, _ = _replay_contention(tmp_path, shop)
    for o in _orders(shop, load_results(out)):
        assert sum(q for _, q in o["items"]) == 20 and o["total_cost"] < 20 * 3, o
