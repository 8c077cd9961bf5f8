"""Lost acknowledged data is an anomaly (issue 19 item 1): ``lost_entity``, NOT CLEAN, named by id;
and every anomaly says what is impossible in a person's words, with its arithmetic and the possible
causes seen in the entity's history (issue 19 item 7, issue 25 item 4).

Over real HTTP on 127.0.0.1: a purpose-built shop that forgets everything before the final read
(as an in-memory shop restarted empty does), and the reference shop whose store a ``--faults``
action wipes mid-run (its admin reset), each against the same shape of run that loses nothing.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from fault_support import write_schedule
from replay_support import write_trace
from test_check_verdicts import cli_check, replay_tiny
from verdict_shops import TinyShop

from wdmreplay.analysis import check_results
from wdmreplay.replayer import replay_trace
from wdmreplay.shop import ShopThread
from wdmreplay.traces import load_results, step


def test_a_shop_that_forgets_everything_before_the_final_read_is_not_clean(tmp_path, capsys):
    with TinyShop("amnesia") as shop:
        out = replay_tiny(tmp_path, shop)
    rep = check_results(load_results(out, with_args=True))
    assert rep.verdict.verdict == "NOT CLEAN" and "consistency" in rep.verdict.decided_by, rep.verdict.reasons()
    lost = [a for a in rep.anomalies if a.kind == "lost_entity"]
    assert sorted((a.entity, a.id) for a in lost) == sorted((k, str(i)) for k in ("item", "user", "order")
                                                            for i in range(4))
    item = next(a for a in lost if a.entity == "item" and a.id == "0")
    # 10 units added with a 2xx; its order (also lost) took 2 of them, or not: 8..10 went with it
    assert item.expected == [8, 10] and item.actual is None
    assert item.headline.startswith("item 0 lost: created with a 2xx") and len(item.headline) <= 120
    order = next(a for a in lost if a.entity == "order" and a.id == "0")
    assert order.expected == 2 and "2 x item 0" in order.detail and "paid" in order.detail
    # named in the verdict's reasons (first ids, then a count) — not "not read back" under coverage
    assert any("lost acknowledged data: 4 item(s)" in r and "0, 1, 2, 3" in r for r in rep.verdict.reasons())
    assert rep.coverage.missing == {}
    code, text = cli_check(out, capsys)
    assert code == 1 and "lost_entity" in text and "item 0 lost" in text and "verdict: NOT CLEAN" in text
    code, js = cli_check(out, capsys, "--json")
    d = json.loads(js)
    assert code == 1 and d["consistency"]["anomaly_counts"]["lost_entity"] == 12
    assert {a["id"] for a in d["consistency"]["anomalies"] if a["entity"] == "item"} == {"0", "1", "2", "3"}


def test_the_same_run_on_a_shop_that_remembers_is_clean(tmp_path):
    with TinyShop("correct") as shop:
        out = replay_tiny(tmp_path, shop)
    rep = check_results(load_results(out, with_args=True))
    assert rep.verdict.verdict == "CLEAN", rep.verdict.reasons()
    assert rep.anomaly_counts["lost_entity"] == 0


def test_a_results_file_written_before_bound_not_found_is_judged_as_before(tmp_path):
    # Older files do not say which 4xx reads were acknowledged entities: they stay "not read back".
    with TinyShop("amnesia") as shop:
        out = replay_tiny(tmp_path, shop)
    run = load_results(out, with_args=True)
    assert run.final is not None and run.final.pop("bound_not_found")
    rep = check_results(run)
    assert rep.anomaly_counts["lost_entity"] == 0
    assert rep.coverage.missing == {"item": 4, "user": 4, "order": 4}


def _wipe_trace(path: Path, n: int = 3) -> Path:
    """Phase 0 creates n items, users and paid orders; phase 1 looks up an id that never existed at 1.5 s."""
    p0 = []
    for i in range(n):
        p0.append((0.0, [step("create_item", [4], bind=f"$s{i}.item"), step("add_stock", [f"$s{i}.item", 10]),
                         step("create_user", [], bind=f"$s{i}.user"), step("add_funds", [f"$s{i}.user", 50]),
                         step("create_order", [f"$s{i}.user"], bind=f"$s{i}.order"),
                         step("add_item", [f"$s{i}.order", f"$s{i}.item", 2]), step("checkout", [f"$s{i}.order"])]))
    p1 = [(1.5, [step("find_item", ["no-such-item"], expect="fail")])]
    write_trace(path, [p0, p1])
    return path


def _request(url: str, method: str) -> list[str]:
    """An argv that sends ``method`` to ``url`` with this interpreter (no dependence on PATH)."""
    data = "b''" if method == "POST" else "None"
    code = f"import urllib.request as u; u.urlopen(u.Request({url!r}, data={data}, method={method!r}), timeout=5).read()"
    return [sys.executable, "-c", code]


@pytest.mark.parametrize("wipe", [True, False], ids=["wiped", "not-wiped"])
def test_a_store_wiped_by_a_fault_action_is_not_clean(tmp_path, wipe, capsys):
    trace = _wipe_trace(tmp_path / "w.wdmt")
    out = tmp_path / "w.wdmr"
    with ShopThread() as shop:
        # the same schedule shape: an action at 0.8 s; only one of them forgets the shop's data
        action = _request(shop.url + "/_shop/reset", "POST") if wipe else _request(shop.url + "/_shop/stats", "GET")
        noop = [sys.executable, "-c", "pass"]
        sched = write_schedule(tmp_path / "f.json", [{"name": "wipe" if wipe else "look", "at": 0.8, "for": 0.2,
                                                      "do": action, "undo": noop}])
        summary = replay_trace(str(trace), str(out), target=shop.target, speed=1.0, timeout=5.0, faults=str(sched))
    assert summary.complete and summary.faults.failures == (), summary
    rep = check_results(load_results(out, with_args=True))
    if not wipe:
        assert rep.verdict.verdict == "CLEAN", rep.verdict.reasons()
        return
    assert rep.verdict.verdict == "NOT CLEAN" and "consistency" in rep.verdict.decided_by, rep.verdict.reasons()
    lost = {(a.entity, a.id) for a in rep.anomalies if a.kind == "lost_entity"}
    assert len({i for k, i in lost if k == "item"}) == 3 and len(lost) == 9, lost
    # the literal id nobody created answers 404 too: absent, neither lost nor "not read back"
    assert rep.coverage.missing == {}
    items = [a for a in rep.anomalies if a.kind == "lost_entity" and a.entity == "item"]
    assert all(a.expected == [8, 10] for a in items), items
    code, text = cli_check(out, capsys)
    # the reference shop's ids say what they are ("item-3"): named once, not "item item-3"
    assert code == 1 and all(f" {a.id} lost: created with a 2xx" in text for a in items) and "item item-" not in text
    assert "lost acknowledged data: 3 item(s)" in text
    code, js = cli_check(out, capsys, "--json")
    named = {(a["entity"], a["id"]) for a in json.loads(js)["consistency"]["anomalies"] if a["kind"] == "lost_entity"}
    assert code == 1 and named == lost


def test_a_collapsed_repeated_item_is_stated_as_a_fact_with_candidate_causes(tmp_path, capsys):
    # The shop's checkout takes only the last add_item's unit of an item added twice: stock 9, not 8.
    # Its requests are serial (no concurrency): the headline states the excess, the repeated item is
    # a candidate cause, and no cause is asserted.
    with TinyShop("collapse-repeats") as shop:
        out = replay_tiny(tmp_path, shop)
    rep = check_results(load_results(out, with_args=True))
    assert rep.verdict.verdict == "NOT CLEAN" and rep.verdict.decided_by == ("consistency",), rep.verdict.reasons()
    items = [a for a in rep.anomalies if a.entity == "item"]
    assert len(items) == 4 and {a.actual for a in items} == {9}
    a = items[0]
    assert a.headline == f"stock of item {a.id} is 1 higher: paid order(s) without their stock effect"
    assert a.arithmetic[0] == "initial stock 0" and "+ 10 added by answered add_stock" in a.arithmetic
    assert a.arithmetic[-1] == "= 8 allowed; read back: 9"
    assert any("repeated items collapsed?" in c for c in a.candidates)
    assert not any("concurrent" in c for c in a.candidates) and "concurrent" not in a.detail
    code, text = cli_check(out, capsys)
    assert code == 1 and a.headline in text and "      = 8 allowed; read back: 9" in text
    assert "possible causes (not asserted): 1 order(s) got one item in more than one add_item" in text
    code, js = cli_check(out, capsys, "--json")
    first = next(x for x in json.loads(js)["consistency"]["anomalies"] if x["entity"] == "item")
    assert first["headline"] == a.headline and first["arithmetic"] == list(a.arithmetic)
    assert first["candidates"] == list(a.candidates)


def test_every_headline_is_one_line_of_at_most_120_characters(tmp_path):
    with TinyShop("lost-line") as shop:
        out = replay_tiny(tmp_path, shop)
    rep = check_results(load_results(out, with_args=True))
    lines = [a for a in rep.anomalies if a.kind == "lost_order_line"]
    assert len(lines) == 4
    for a in lines:
        assert re.fullmatch(rf"order {a.id} holds 1 of item \d+: fewer than its answered add_item built \(2\)", a.headline)
        assert len(a.headline) <= 120 and "\n" not in a.headline
        assert any("repeated items collapsed?" in c for c in a.candidates)


def test_course_figures_only_for_the_benchmarks_own_workload(tmp_path, shop, capsys):
    # The README preset is the benchmark's workload: its four figures, comparable. The same
    # workload with one option changed (a hot-user consistency trace) is not: "not comparable",
    # `comparable: false` and no figures in JSON.
    from wdmreplay.workloads import generate

    for name, opts in (("readme", {"preset": "readme"}), ("hot", {"items": 4, "stock": 5, "users": 3, "orders": 40})):
        trace, out = tmp_path / f"{name}.wdmt", tmp_path / f"{name}.wdmr"
        generate("consistency", trace, seed=2, **opts)
        replay_trace(str(trace), str(out), target=shop.target, speed=None, timeout=10.0)
        code, js = cli_check(out, capsys, "--json")
        b = json.loads(js)["consistency"]["benchmark"]
        _, text = cli_check(out, capsys, "--verbose")  # the figures are details of a passing section
        if name == "readme":
            assert code == 0 and b["comparable"] is True, b
            assert b["stock_inconsistencies_logs"] == 0 and b["payment_inconsistencies_db"] == 0
            assert "Stock service inconsistencies in the logs: 0" in text
        else:
            assert code == 0 and b["comparable"] is False and b["stock_inconsistencies_logs"] is None, b
            assert "course benchmark figures: not comparable" in text and "inconsistencies in the logs" not in text


def test_merged_shards_keep_what_each_found_gone():
    # One shard bound item 3 and found it gone; another read item 4 back. The merged record keeps
    # the final read's kind keys ("item") so check still sees the 4xx and the acknowledged ids.
    from wdmreplay.analysis.final_state import final_state
    from replay_support import merge_final_maps

    a = {"items": {}, "users": {}, "orders": {}, "missing": {"item": {"3": "HTTP 404: no such item",
                                                                      "4": "timeout"}},
         "bound_not_found": {"item": ["3"]}, "settle": None, "read_at": 1.0}
    b = {"items": {"4": {"stock": 1, "price": 1}}, "users": {}, "orders": {}, "missing": {},
         "bound_not_found": {}, "settle": None, "read_at": 1.0}
    merged, _ = merge_final_maps([a, b], [0.0, 0.0], ["0/2", "1/2"])
    assert merged["missing"] == {"item": {"3": "shard 0/2: HTTP 404: no such item"}}
    assert merged["bound_not_found"] == {"item": ["3"]}
    fs = final_state(merged)
    assert fs.not_found("item") == {"3": "shard 0/2: HTTP 404: no such item"} and fs.unanswered_count("item") == 0
    assert fs.bound_not_found == {"item": frozenset({"3"})}
    del b["bound_not_found"]  # a shard written before the record had it: the merge says nothing
    assert "bound_not_found" not in merge_final_maps([a, b], [0.0, 0.0], ["0/2", "1/2"])[0]


def test_batch_init_entities_wiped_are_lost(tmp_path):
    # The 2024 checkout workload: batch_init of 20 items, users and orders (their ids 0..19 are the
    # trace's, never bound from a create), then checkouts; a --faults action wipes the store at 1 s.
    from wdmreplay.workloads import generate

    trace, out = tmp_path / "c.wdmt", tmp_path / "c.wdmr"
    generate("checkout", trace, seed=1, items=20, users=20, orders=20, rate=20, duration=2)
    with ShopThread() as shop:
        sched = write_schedule(tmp_path / "f.json", [{"name": "wipe", "at": 1.0, "for": 0.1,
                                                      "do": _request(shop.url + "/_shop/reset", "POST"),
                                                      "undo": [sys.executable, "-c", "pass"]}])
        summary = replay_trace(str(trace), str(out), target=shop.target, speed=1.0, timeout=5.0, faults=str(sched))
    assert summary.faults.failures == (), summary
    rep = check_results(load_results(out, with_args=True))
    assert rep.verdict.verdict == "NOT CLEAN" and "consistency" in rep.verdict.decided_by, rep.verdict.reasons()
    lost = {(a.entity, a.id) for a in rep.anomalies if a.kind == "lost_entity"}
    assert lost == {(k, str(i)) for k in ("item", "user", "order") for i in range(20)}
    assert rep.coverage.missing == {}
