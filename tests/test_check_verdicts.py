"""Verdicts over real HTTP: broken shops are never CLEAN, correct ones are, and faults are named.

Every run here is a real replay (``replay_trace``) against a purpose-built shop on 127.0.0.1:0
(``verdict_shops.TinyShop``) or the reference shop, then ``check`` through the CLI (exit codes)
and the library (sections, anomalies).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from replay_support import write_trace
from verdict_shops import TinyShop

from wdmreplay.analysis import check_results
from wdmreplay.cli import main
from wdmreplay.workloads import generate
from wdmreplay.replayer import replay_trace
from wdmreplay.traces import load_results, step

EXIT = {"CLEAN": 0, "NOT CLEAN": 1, "INCONCLUSIVE": 3}


def order_trace(path: Path, n: int = 4, *, spacing: float = 0.0) -> Path:
    """Phase 0: n items (price 3, stock 10) and n users (credit 100); phase 1: n orders, each of two
    add_item of one unit of its item, then a checkout (expect ok everywhere)."""
    p0 = [(0.0, [step("create_item", [3], bind=f"$s{i}.item", scenario="populate"),
                 step("add_stock", [f"$s{i}.item", 10], scenario="populate"),
                 step("create_user", [], bind=f"$s{i}.user", scenario="populate"),
                 step("add_funds", [f"$s{i}.user", 100], scenario="populate")]) for i in range(n)]
    p1 = []
    for i in range(n):
        o = f"$s{n + i}.order"
        p1.append((i * spacing, [step("create_order", [f"$s{i}.user"], bind=o, scenario="orders"),
                                 step("add_item", [o, f"$s{i}.item", 1], scenario="orders"),
                                 step("add_item", [o, f"$s{i}.item", 1], scenario="orders"),
                                 step("checkout", [o], scenario="orders")]))
    write_trace(path, [p0, p1])
    return path


def cli_check(path: Path, capsys, *extra: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        main(["check", str(path), *extra])
    out = capsys.readouterr()
    assert out.err == ""
    return e.value.code, out.out


def replay_tiny(tmp_path: Path, shop: TinyShop, *, timeout: float = 5.0, n: int = 4, speed: float | None = None,
                spacing: float = 0.0, settle: float = 0.0) -> Path:
    trace = order_trace(tmp_path / "orders.wdmt", n, spacing=spacing)
    out = tmp_path / f"{shop.mode}.wdmr"
    replay_trace(str(trace), str(out), target=shop.url, speed=speed, timeout=timeout, concurrency=8, settle=settle)
    return out


def test_correct_tiny_shop_is_clean(tmp_path, capsys):
    with TinyShop("correct") as shop:
        out = replay_tiny(tmp_path, shop)
    rep = check_results(load_results(out, with_args=True))
    assert rep.verdict.verdict == "CLEAN", rep.verdict.reasons()
    assert rep.consistency.checked == {"items": 4, "users": 4, "orders": 4}
    assert cli_check(out, capsys)[0] == 0


def test_lost_order_line_is_named_per_order(tmp_path, capsys):
    with TinyShop("lost-line") as shop:
        out = replay_tiny(tmp_path, shop)
    rep = check_results(load_results(out, with_args=True))
    assert rep.verdict.verdict == "NOT CLEAN" and rep.verdict.decided_by == ("consistency",)
    lost = [a for a in rep.anomalies if a.kind == "lost_order_line"]
    assert len(lost) == 4 and {a.kind for a in rep.anomalies} == {"lost_order_line"}
    a = lost[0]
    assert (a.entity, a.expected, a.actual) == ("order", 2, 1)
    assert len(a.requests) == 2 and all(r.startswith("session ") for r in a.requests)
    code, text = cli_check(out, capsys)
    assert code == 1 and f"lost_order_line      order {a.id}" in text


def test_wrong_total_is_named_per_order(tmp_path, capsys):
    with TinyShop("wrong-total") as shop:
        out = replay_tiny(tmp_path, shop)
    rep = check_results(load_results(out, with_args=True))
    assert {a.kind for a in rep.anomalies} == {"wrong_total"}
    assert sorted((a.expected, a.actual) for a in rep.anomalies) == [(6, 5)] * 4
    assert {a.id for a in rep.anomalies} == set(rep.consistency.final.orders)
    assert cli_check(out, capsys)[0] == 1


@pytest.mark.parametrize("mode, unanswered", [("500", "5xx"), ("dead", "connection error"), ("non-json", "bad answer"),
                                              ("empty-json", "bad answer")])
def test_broken_shop_is_never_clean(tmp_path, capsys, mode, unanswered):
    with TinyShop(mode) as shop:
        out = replay_tiny(tmp_path, shop, timeout=2.0)
    rep = check_results(load_results(out, with_args=True))
    assert rep.verdict.verdict == "NOT CLEAN"
    assert "availability" in rep.verdict.decided_by
    assert any(unanswered in r for r in rep.verdict.reasons()), rep.verdict.reasons()
    code, text = cli_check(out, capsys)
    assert code == 1 and "unavailable: " in text
    # Even when unavailability is tolerated, nothing was observed: never CLEAN.
    rep0 = check_results(load_results(out, with_args=True), min_availability=0.0)
    assert rep0.verdict.verdict in ("NOT CLEAN", "INCONCLUSIVE") and rep0.verdict.verdict != "CLEAN"
    # Nothing was created, so nothing could be checked: consistency never passes on it.
    consistency = next(sec for sec in rep0.verdict.sections if sec.name == "consistency")
    assert consistency.status != "pass", consistency
    assert cli_check(out, capsys, "--min-availability", "0")[0] == EXIT[rep0.verdict.verdict] != 0


def test_hanging_shop_is_never_clean(tmp_path, capsys):
    with TinyShop("hang", hang=1.5) as shop:
        out = replay_tiny(tmp_path, shop, timeout=0.3, n=2)
    rep = check_results(load_results(out, with_args=True))
    assert rep.verdict.verdict == "NOT CLEAN"
    assert any("timeout" in r for r in rep.verdict.reasons()), rep.verdict.reasons()
    assert cli_check(out, capsys)[0] == 1


def test_shop_killed_mid_run_is_never_clean(tmp_path, capsys):
    shop = TinyShop("correct").start()
    killed = threading.Event()
    try:
        trace = order_trace(tmp_path / "orders.wdmt", 30, spacing=0.1)  # phase 1 spans about 3 s at speed 1
        out = tmp_path / "killed.wdmr"

        def kill() -> None:
            # Wait until the run is well into phase 1 (some orders exist), then the shop is gone.
            deadline = time.monotonic() + 30
            while len(shop.orders) < 8 and time.monotonic() < deadline:
                time.sleep(0.01)
            shop.stop()
            killed.set()

        t = threading.Thread(target=kill)
        t.start()
        replay_trace(str(trace), str(out), target=shop.url, speed=1.0, timeout=1.0, concurrency=8)
        t.join(30)
    finally:
        shop.stop()
    assert killed.is_set()
    run = load_results(out, with_args=True)
    # Not one read of the final state answered: a second snapshot could only repeat the timeouts.
    assert len(run.final["settle"]["snapshots"]) == 1 and run.final["settle"]["settled"] is False
    rep = check_results(run)
    assert rep.verdict.verdict == "NOT CLEAN" and "availability" in rep.verdict.decided_by
    # A stopped server shows as refused connections or as requests that never got an answer.
    assert rep.availability.overall.conn_error + rep.availability.overall.timeout > 0
    # Nothing could be read back: coverage says how many of each kind are missing.
    cov = rep.verdict.sections[3]
    assert cov.status == "inconclusive" and any("not read back" in r for r in cov.reasons), cov
    # The circuit breaker stopped the final read (once ~25 s of 3 x 1 s timeouts per entity) and says so.
    assert run.final["stopped"]["why"] and any(r.startswith("final read stopped after 8 connection failures in a row")
                                               for r in cov.reasons), cov
    assert cli_check(out, capsys)[0] == 1


@pytest.mark.parametrize("workload, params, dialect", [
    ("consistency", {"items": 10, "stock": 3, "users": 20, "credit": 2, "orders": 60}, "2023"),
    ("consistency", {"items": 10, "stock": 3, "users": 20, "credit": 2, "orders": 60}, "2024"),
    ("stress", {"rate": 60, "duration": 1}, "2024"),
    ("stress", {"rate": 60, "duration": 1}, "2023"),
])
def test_reference_shop_is_clean(tmp_path, shop, capsys, workload, params, dialect):
    trace = tmp_path / "t.wdmt"
    generate(workload, trace, seed=5, dialect=dialect, **params)
    out = tmp_path / "r.wdmr"
    replay_trace(str(trace), str(out), target=shop.target, speed=None, timeout=10.0)
    code, text = cli_check(out, capsys)
    assert code == 0, text
    lines = text.splitlines()
    assert lines[0] == lines[-1] == "verdict: CLEAN (exit 0)" and lines[1].startswith("covered: ")


def test_error_rate_shop_has_no_anomaly(tmp_path, shop_factory, capsys):
    # --error-rate answers 500 with no effect: no anomaly, the verdict says unavailable only.
    shop = shop_factory(error_rate=0.1, seed=3)
    trace = tmp_path / "t.wdmt"
    generate("consistency", trace, seed=2, items=10, stock=3, users=20, credit=2, orders=60)
    out = tmp_path / "r.wdmr"
    replay_trace(str(trace), str(out), target=shop.target, speed=None, timeout=10.0, settle=2.0)
    rep = check_results(load_results(out, with_args=True))
    assert rep.undetermined > 0 and not rep.anomalies
    assert rep.verdict.verdict == "NOT CLEAN" and rep.verdict.decided_by == ("availability",)
    tolerant = check_results(load_results(out, with_args=True), min_availability=50.0)
    # The final read retries a 500 twice; an entity still unread leaves coverage inconclusive, never more.
    assert tolerant.verdict.decided_by in ((), ("coverage",)), tolerant.verdict.reasons()
    assert cli_check(out, capsys, "--min-availability", "50")[0] == tolerant.verdict.exit_code


def test_min_availability_refuses_nan(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["check", str(tmp_path / "x.wdmr"), "--min-availability", "nan"])
    assert e.value.code == 2
