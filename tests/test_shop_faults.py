"""The reference shop's --inject modes over real HTTP: faults of a correct shop, and order bugs.

Faults (apply-then-500, apply-then-hang, slow-saga) change what the client hears, never the
state's correctness: each takes effect, and a replay against a faulty shop checks without anomaly.
The bugs lost-line and wrong-total leave orders visibly wrong in the shop's own answers.
"""

from __future__ import annotations

import http.client
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from shop_http import ShopClient, fire
from wdmreplay.analysis import check_results
from wdmreplay.cli import main
from wdmreplay.workloads import generate
from wdmreplay.replayer import replay_trace
from wdmreplay.shop import FAULT_KINDS, INJECT_KINDS, ShopConfig, ShopError, parse_inject
from wdmreplay.traces import load_results

# Contended: users run out of credit and items out of stock while checkouts overlap.
CONSISTENCY = {"items": 8, "stock": 3, "users": 20, "credit": 2, "orders": 60}


def wait_for(cond, timeout: float = 30.0, what: str = "condition") -> None:
    """Poll ``cond`` until true; fail after ``timeout`` seconds (generous: the machine is shared)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# --- the --inject vocabulary ----------------------------------------------------------------


@pytest.mark.parametrize("specs, bug, faults", [
    (None, None, ()),
    (["lost-update"], "lost-update", ()),
    (["lost-line"], "lost-line", ()),
    (["wrong-total"], "wrong-total", ()),
    (["apply-then-500"], None, (("apply-then-500", 1.0),)),
    (["apply-then-500:0.25"], None, (("apply-then-500", 0.25),)),
    ("slow-saga:0.5,apply-then-hang:0.1", None, (("apply-then-hang", 0.1), ("slow-saga", 0.5))),
    (["oversell", "apply-then-500:1"], "oversell", (("apply-then-500", 1.0),)),
])
def test_parse_inject(specs, bug, faults):
    assert parse_inject(specs) == (bug, faults)


@pytest.mark.parametrize("spec, message", [
    ("nope", "unknown --inject 'nope'"),
    ("apply-then-500:0", "rate must be a number in (0, 1]"),
    ("apply-then-500:1.5", "rate must be a number in (0, 1]"),
    ("apply-then-500:nan", "rate must be a number in (0, 1]"),
    ("apply-then-500:x", "rate must be a number in (0, 1]"),
    ("lost-update:0.5", "takes no rate"),
    ("lost-update,oversell", "only one bug at a time"),
    ("slow-saga,slow-saga:0.2", "given twice"),
])
def test_config_refuses_bad_inject(spec, message):
    with pytest.raises(ShopError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        ShopConfig(inject=spec)


@pytest.mark.parametrize("field, value", [("latency_ms", float("nan")), ("latency_ms", float("inf")),
                                          ("error_rate", float("nan")), ("hang_s", 0.0),
                                          ("hang_s", float("nan")), ("saga_delay_s", -1.0)])
def test_config_refuses_non_finite_numbers(field, value):
    with pytest.raises(ShopError):
        ShopConfig(**{field: value})


def test_every_kind_is_documented():
    doc = (Path(__file__).parent.parent / "docs" / "shop.md").read_text()
    for kind in INJECT_KINDS + FAULT_KINDS:
        assert f"`{kind}`" in doc, kind


@pytest.mark.parametrize("argv, needle", [
    (["serve", "--latency", "nan"], "not a finite number"),
    (["serve", "--hang", "inf"], "not a finite number"),
    (["serve", "--saga-delay", "nan"], "not a finite number"),
    (["serve", "--error-rate", "nan"], "not a finite number"),
    (["serve", "--inject", "bogus"], "unknown --inject 'bogus'"),
    (["serve", "--inject", "slow-saga:2"], "rate must be a number in (0, 1]"),
])
def test_serve_refuses_bad_options_in_one_line(capsys, argv, needle):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code != 0 and needle in err and "Traceback" not in err


# --- faults: the effect happens, the answer does not tell -----------------------------------


@pytest.mark.parametrize("split", [False, True])
def test_apply_then_500_applies_the_effect(shop_factory, split):
    shop = shop_factory(split=split, inject="apply-then-500")
    c = ShopClient(shop.target)
    status, body = c.call("create_item", 4)
    assert status == 500 and "took effect" in body
    (item_id,) = shop.snapshot()["items"]
    status, _ = c.call("add_stock", item_id, 7)
    assert status == 500
    assert c.ok("find_item", item_id) == {"stock": 7, "price": 4}  # reads are never hit


def test_apply_then_500_rate_hits_a_share(shop_factory):
    shop = shop_factory(faults=(("apply-then-500", 0.5),), seed=3)
    c = ShopClient(shop.target)
    statuses = [c.call("create_user")[0] for _ in range(200)]
    hit = statuses.count(500)
    assert 40 < hit < 160 and statuses.count(200) == 200 - hit
    assert len(shop.snapshot()["users"]) == 200  # every one of them was created


def _post_and_give_up(base: str, path: str, timeout: float) -> None:
    """POST ``path`` and give up after ``timeout`` s without an answer (asserted: none came)."""
    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request("POST", path, body=b"")
        with pytest.raises(OSError):  # socket.timeout is an OSError
            conn.getresponse()
    finally:
        conn.close()


@pytest.mark.parametrize("split", [False, True])
def test_apply_then_hang_answers_after_the_client_gave_up(shop_factory, split):
    shop = shop_factory(split=split, inject="apply-then-hang", hang_s=3.0)
    _post_and_give_up(shop.target.base("payment"), "/payment/create_user", 0.5)
    wait_for(lambda: len(shop.snapshot()["users"]) == 1, what="the hung create_user to have taken effect")


@pytest.mark.parametrize("split", [False, True])
def test_slow_saga_finishes_after_the_client_gave_up(shop_factory, split):
    shop = shop_factory(split=split, inject="slow-saga", saga_delay_s=1.5)
    c = ShopClient(shop.target)
    item, user = c.item(2, stock=5), c.user(credit=10)
    order = c.order(user, (item, 3))
    _post_and_give_up(shop.target.base("orders"), f"/orders/checkout/{order}", 0.3)
    snap = shop.snapshot()
    # Between the legs: the stock is taken, the credit not yet (the saga is still running).
    assert snap["items"][item]["stock"] == 2 and snap["users"][user]["credit"] == 10
    assert snap["orders"][order]["paid"] is False
    wait_for(lambda: shop.snapshot()["orders"][order]["paid"], what="the saga to finish")
    snap = shop.snapshot()
    assert snap["items"][item]["stock"] == 2 and snap["users"][user]["credit"] == 4


@pytest.mark.parametrize("split", [False, True])
def test_slow_saga_compensates_a_refused_payment(shop_factory, split):
    shop = shop_factory(split=split, inject="slow-saga", saga_delay_s=0.2)
    c = ShopClient(shop.target)
    item, user = c.item(5, stock=4), c.user(credit=3)
    order = c.order(user, (item, 2))
    assert "checkout" in c.fails("checkout", order)
    snap = shop.snapshot()
    assert snap["items"][item]["stock"] == 4 and snap["users"][user]["credit"] == 3
    assert snap["orders"][order]["paid"] is False


def test_slow_saga_holds_the_order_for_add_item(shop_factory):
    shop = shop_factory(inject="slow-saga", saga_delay_s=0.5)
    c = ShopClient(shop.target)
    item, user = c.item(1, stock=5), c.user(credit=10)
    order = c.order(user, (item, 1))
    # The checkout first, then add_item once the saga is under way (its stock leg done): fired at once,
    # the two could reach the shop in either order on a busy machine, and add_item first is no test.
    checkout: list[tuple[int, str]] = []
    t = threading.Thread(target=lambda: checkout.append(ShopClient(shop.target).call("checkout", order)))
    t.start()
    wait_for(lambda: shop.snapshot()["items"][item]["stock"] == 4, what="the saga's stock leg")
    added = c.call("add_item", order, item, 1)
    t.join(30)
    # add_item waits for the saga's lock, then finds the order paid: the paid order stays as charged.
    assert checkout and checkout[0][0] == 200 and added[0] == 400, (checkout, added)
    snap = shop.snapshot()
    assert snap["orders"][order]["items"] == [[item, 1]] and snap["users"][user]["credit"] == 9


# --- bugs a checker must catch per order ----------------------------------------------------


@pytest.mark.parametrize("split", [False, True])
def test_lost_line_loses_concurrent_add_item(shop_factory, split):
    shop = shop_factory(split=split, inject="lost-line")
    c = ShopClient(shop.target)
    item, user = c.item(2, stock=100), c.user()
    order = c.order(user)
    answers = fire(shop.target, [("add_item", [order, item, 1])] * 20)
    assert all(s == 200 for s, _ in answers), answers
    found = c.ok("find_order", order)
    units = sum(q for _, q in found["items"])
    assert units < 20, found  # 20 acknowledged units, fewer kept: a lost update of the order
    assert found["total_cost"] == 2 * units


def test_lost_line_alone_is_correct(shop_factory):
    shop = shop_factory(inject="lost-line")
    c = ShopClient(shop.target)
    item, user = c.item(2, stock=100), c.user()
    order = c.order(user, (item, 1), (item, 2))
    assert sum(q for _, q in c.ok("find_order", order)["items"]) == 3


@pytest.mark.parametrize("dialect", ["2024", "2023"])
def test_wrong_total_is_below_the_sum_of_lines(shop_factory, dialect):
    shop = shop_factory(inject="wrong-total")
    c = ShopClient(shop.target, dialect)
    item, user = c.item(5, stock=10), c.user(credit=100)
    order = c.order(user, (item, 3))
    found = c.ok("find_order", order)
    assert sum(q for _, q in found["items"]) == 3 and found["total_cost"] == 5 < 3 * 5
    c.ok("checkout", order)
    assert c.credit(user) == 95  # charged the wrong total


# --- a replay against a faulty, correct shop has no anomaly -------------------------------


def _replay(tmp_path: Path, shop, timeout: float, dialect: str = "2024", seed: int = 1) -> Path:
    trace = tmp_path / f"c-{dialect}-{seed}.wdmt"
    generate("consistency", trace, seed=seed, dialect=dialect, **CONSISTENCY)
    out = tmp_path / "r.wdmr"
    summary = replay_trace(str(trace), str(out), target=shop.target, speed=None, timeout=timeout,
                           concurrency=64)
    assert summary.complete
    return out


def _anomalies(out: Path) -> list:
    rep = check_results(load_results(out, with_args=True))
    return [a.as_dict() for a in rep.anomalies]


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("dialect", ["2024", "2023"])
def test_replay_against_apply_then_500_has_no_anomaly(tmp_path, shop_factory, split, dialect):
    shop = shop_factory(split=split, faults=(("apply-then-500", 0.2),), seed=5)
    out = _replay(tmp_path, shop, timeout=10.0, dialect=dialect)
    res = load_results(out)
    assert (res.cols["status"] == 500).sum() > 0  # the fault did hit
    assert _anomalies(out) == []


@pytest.mark.parametrize("split", [False, True])
def test_replay_against_apply_then_hang_has_no_anomaly(tmp_path, shop_factory, split):
    shop = shop_factory(split=split, faults=(("apply-then-hang", 0.1),), hang_s=2.0, seed=5)
    out = _replay(tmp_path, shop, timeout=0.5)
    res = load_results(out)
    assert (res.cols["outcome"] == 3).sum() > 0  # timeouts: the fault did hit
    assert _anomalies(out) == []


def _settled_check(out: Path, shop) -> list:
    """Anomalies of the run judged against the shop's state once every saga has finished."""
    wait_for(lambda: not shop.running.state.background, what="every saga to finish")
    res = load_results(out, with_args=True)
    res.final = {**shop.snapshot(), "missing": {}, "settle": None, "read_at": res.final["read_at"]}
    return [a.as_dict() for a in check_results(res).anomalies]


@pytest.mark.parametrize("split", [False, True])
def test_slow_saga_shop_is_consistent_once_settled(tmp_path, shop_factory, split):
    shop = shop_factory(split=split, faults=(("slow-saga", 0.3),), saga_delay_s=1.0, seed=5)
    out = _replay(tmp_path, shop, timeout=0.4)
    assert (load_results(out).cols["outcome"] == 3).sum() > 0  # checkouts timed out: the fault did hit
    assert _settled_check(out, shop) == []


# The final read waits `--timeout` + grace for abandoned requests and settles (spaced snapshots)
# when requests were indeterminate, so sagas still between their legs do not tear it.
@pytest.mark.parametrize("split", [False, True])
def test_replay_against_slow_saga_has_no_anomaly(tmp_path, shop_factory, split):
    shop = shop_factory(split=split, faults=(("slow-saga", 0.3),), saga_delay_s=1.0, seed=5)
    out = _replay(tmp_path, shop, timeout=0.4)
    assert (load_results(out).cols["outcome"] == 3).sum() > 0
    assert _anomalies(out) == []


def test_serve_announces_faults_as_correct_and_applies_them():
    from test_shop_serve import Served

    s = Served("--port", "0", "--inject", "apply-then-500:1", "--inject", "slow-saga:0.5", "--saga-delay", "0.1")
    try:
        url = s.wait_for(r"listening on (http://127\.0\.0\.1:\d+)").group(1)
        s.wait_for(r"injected fault \(a correct, unhelpful shop\): apply-then-500 on 100% of requests")
        s.wait_for(r"slow-saga on 50% of requests \(payment 0\.1 s after stock\)")
        assert not any("BUG INJECTED" in line for line in s.seen)
        from wdmreplay.targets import Target

        c = ShopClient(Target.single(url))
        assert c.call("create_user")[0] == 500
        assert c.call("create_user")[0] == 500
        assert c.ok("find_user", "user-2") == {"user_id": "user-2", "credit": 0}  # both took effect
        rc, err = s.stop(15)
        assert rc == 0 and err == ""
    finally:
        s.kill()
