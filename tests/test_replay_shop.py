"""The replayer against the reference shop (real loopback HTTP): counts, bindings, final state, workers, speed."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from replay_support import populate_and_order_trace, write_trace
from wdmreplay.replayer import replay_trace
from wdmreplay.traces import TraceReader, load_results, step


def _trace_ops(path) -> Counter:
    with TraceReader(path) as r:
        return Counter(st["op"] for s in r for st in s["steps"])


def _check_counts(shop, trace, summary) -> None:
    stats = shop.stats()
    # Every request of the trace sent exactly once; the only extras are the probe and the final reads.
    assert stats["requests"] == summary.sent + summary.probes + summary.final_reads
    for op, n in _trace_ops(trace).items():
        if not op.startswith("find_"):
            assert stats["by_op"].get(op, 0) == n, op


def _check_final_matches_shop(shop, results) -> None:
    snap = shop.snapshot()
    final = results.final
    assert final["missing"] == {}
    for iid, item in final["items"].items():
        assert item["stock"] == snap["items"][iid]["stock"], iid
    for uid, user in final["users"].items():
        assert user["credit"] == snap["users"][uid]["credit"], uid
    assert set(final["orders"]) <= set(snap["orders"])


def test_every_request_sent_once_with_bindings_and_final_state(shop, tmp_path):
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    n = 41
    populate_and_order_trace(trace, n)
    s = replay_trace(trace, out, target=shop.target, concurrency=32)
    r = load_results(out, with_args=True)
    assert s.complete and s.requests == r.n == 7 * n
    assert s.outcomes["ok"] == 7 * n
    _check_counts(shop, trace, s)
    assert len(r.bindings) == 3 * n
    # The checkout of order n+i used the item and user bound for session i.
    assert sorted(r.final["orders"]) == sorted(r.bindings[f"$s{n + i}.order"] for i in range(n))
    for i in range(n):
        order = r.final["orders"][r.bindings[f"$s{n + i}.order"]]
        assert order["paid"] is True
        assert order["user_id"] == r.bindings[f"$s{i}.user"]
        assert order["items"] == [[r.bindings[f"$s{i}.item"], 2]]
        assert r.final["items"][r.bindings[f"$s{i}.item"]]["stock"] == 8
        assert r.final["users"][r.bindings[f"$s{i}.user"]]["credit"] == 94
    _check_final_matches_shop(shop, r)
    assert [e["kind"] for e in r.events] == ["phase_start", "phase_end", "phase_start", "phase_end", "final_read",
                                         "final_read_done"]
    h = r.header
    assert h["trace"]["digest"].startswith("sha256:") and h["dialect"] == "2024" and h["workers"] == 1
    assert h["target"]["STOCK_URL"] == shop.url and h["concurrency"] == 32


def test_two_workers_same_requests_and_bindings_across_phases(shop, tmp_path):
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    n = 41  # odd: every phase-1 session uses symbols bound by the other worker in phase 0
    populate_and_order_trace(trace, n)
    s = replay_trace(trace, out, target=shop.target, workers=2, concurrency=32)
    r = load_results(out)
    assert s.complete and r.n == 7 * n and s.outcomes["ok"] == 7 * n
    assert r.header["workers"] == 2
    _check_counts(shop, trace, s)
    assert len(r.bindings) == 3 * n
    assert all(o["paid"] for o in r.final["orders"].values()) and len(r.final["orders"]) == n
    # Both shards ran: rows from even and odd sessions.
    assert {int(x) % 2 for x in r.cols["sid"]} == {0, 1}
    _check_final_matches_shop(shop, r)


def test_speed_two_takes_about_half_the_time(shop, tmp_path):
    trace = tmp_path / "t.wdmt"
    # 13 sessions spread over 1.2 s, each with 0.1 s of think time between its two steps.
    write_trace(trace, [[(i * 0.1, [step("create_user", [], bind=f"$s{i}.u"),
                                    step("find_user", [f"$s{i}.u"], think=0.1)]) for i in range(13)]])
    walls = {}
    for speed in (1.0, 2.0):
        s = replay_trace(trace, tmp_path / f"s{speed}.wdmr", target=shop.target, speed=speed, final_read=False)
        assert s.outcomes["ok"] == 26
        walls[speed] = s.send_wall
    assert walls[1.0] == pytest.approx(1.3, abs=0.25)
    assert 0.35 < walls[2.0] / walls[1.0] < 0.65
    r = load_results(tmp_path / "s2.0.wdmr")
    first = r.cols["step"] == 0
    # Sessions were due at at/speed after the phase start (0.05 s apart at speed 2).
    starts = np.sort(r.cols["intended"][first])
    assert np.allclose(np.diff(starts), 0.05, atol=1e-6)


def test_speed_max_ignores_the_schedule(shop, tmp_path):
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [[(i * 100.0, [step("create_item", [1], bind=f"$s{i}.i"),
                                      step("find_item", [f"$s{i}.i"], think=50.0)]) for i in range(20)]])
    s = replay_trace(trace, out, target=shop.target, speed=None, concurrency=4, final_read=False)
    assert s.complete and s.outcomes["ok"] == 40 and s.send_wall < 5.0
    assert s.scheduled_rate is None and load_results(out).header["speed"] is None


@pytest.mark.parametrize("workers", [1, 2])
def test_settle_rereads_until_two_snapshots_agree(shop, tmp_path, workers):
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [[(0.0, [step("batch_init_stock", [5, 10, 2])])]])
    s = replay_trace(trace, out, target=shop.target, settle=2.0, workers=workers)
    r = load_results(out)
    settle = r.final["settle"]
    assert settle["settled"] is True and len(settle["snapshots"]) == 2 and settle["why"] == "--settle"
    first, second = settle["snapshots"]
    assert settle["requested"] == 2.0 and second["end"] - first["at"] < 2.0
    assert second["at"] - first["end"] >= 0.1  # spaced apart, not back to back
    assert r.final["read_at"] == second["at"] and r.final["quiesce"]["waited"] == 0
    assert r.final["items"] == {str(i): {"stock": 10, "price": 2} for i in range(5)}
    assert s.final_reads == 10


def test_2023_dialect_trace_against_the_shop(shop, tmp_path):
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [[(0.0, [
        step("create_user", [], bind="$u"), step("add_funds", ["$u", 10]),
        step("create_item", [3], bind="$i"), step("add_stock", ["$i", 2]),
        step("create_order", ["$u"], bind="$o"), step("add_item", ["$o", "$i"]),
        step("remove_item", ["$o", "$i"]), step("add_item", ["$o", "$i"]), step("checkout", ["$o"]),
    ])]], dialect="2023")
    s = replay_trace(trace, out, target=shop.target)
    r = load_results(out)
    assert r.header["dialect"] == "2023" and s.outcomes["ok"] == 9
    order = next(iter(r.final["orders"].values()))
    assert order["paid"] and order["total_cost"] == 3


def test_shards_partition_the_trace(shop, tmp_path):
    trace = tmp_path / "t.wdmt"
    write_trace(trace, [[(0.0, [step("create_user", [], bind=f"$s{i}.u"), step("add_funds", [f"$s{i}.u", 5])])
                         for i in range(9)]])
    sids = []
    for i in range(2):
        out = tmp_path / f"shard{i}.wdmr"
        s = replay_trace(trace, out, target=shop.target, shard=(i, 2), progress=True)
        r = load_results(out)
        assert r.header["shard"] == f"{i}/2" and s.outcomes["ok"] == r.n
        assert all(int(x) % 2 == i for x in r.cols["sid"])
        assert len(r.final["users"]) == len(set(r.cols["sid"].tolist()))  # only this shard's users read back
        sids += r.cols["sid"].tolist()
    assert sorted(sids) == sorted(list(range(9)) * 2)


def test_route_overrides_and_progress_with_workers(tmp_path):
    from replay_support import TinyTarget, counting_shop
    from wdmreplay.operations import get_dialect

    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    write_trace(trace, [[(0.0, [step("find_item", ["7"])]) for _ in range(4)]])
    dialect = get_dialect("2024", {"find_item": "GET /stock/lookup/{item}"})
    with TinyTarget(counting_shop()) as t:
        s = replay_trace(trace, out, target=t.url, dialect=dialect, workers=2, progress=True, final_read=False)
        assert t.sent("/stock/lookup/7") == 4 and t.sent("/stock/lookup/wdm-replay-probe") == 1
    assert s.outcomes["ok"] == 4 and load_results(out).header["dialect"] == "2024+overrides"


def test_split_shop_three_services_via_urls(shop_factory, tmp_path):
    shop = shop_factory(split=True)
    assert len({shop.target.order_url, shop.target.stock_url, shop.target.payment_url}) == 3
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    populate_and_order_trace(trace, 5)
    s = replay_trace(trace, out, target=shop.target, workers=2)
    r = load_results(out)
    assert s.complete and s.outcomes["ok"] == 35 and s.probes == 3  # one per service
    assert r.header["target"] == shop.target.as_dict()
    assert all(o["paid"] for o in r.final["orders"].values()) and len(r.final["orders"]) == 5
    _check_final_matches_shop(shop, r)


def test_final_read_retries_a_flaky_shop(shop_factory, tmp_path):
    # A shop failing 30% of all requests (finds too): each final read gets two retries, so an
    # entity ends up missing with probability 0.3^3 = 2.7% instead of 30%.
    flaky = shop_factory(error_rate=0.3, seed=3)
    trace, out = tmp_path / "t.wdmt", tmp_path / "t.wdmr"
    n = 80
    write_trace(trace, [[(0.0, [step("create_item", [5], bind=f"$s{i}.item"),
                                step("create_user", [], bind=f"$s{i}.user")]) for i in range(n)]])
    s = replay_trace(trace, out, target=flaky.target, concurrency=8)
    r = load_results(out)
    entities = len(r.bindings)
    assert entities > n  # most creates succeeded (a 500 from --error-rate changes nothing)
    missing = sum(len(v) for v in r.final["missing"].values())
    assert missing <= 0.1 * entities, r.final["missing"]  # without retries ~30 % would be missing
    assert s.final_reads > entities  # retries were sent
    snap = flaky.snapshot()
    read = len(r.final["items"]) + len(r.final["users"])
    assert read + missing == entities
    for iid, item in r.final["items"].items():
        assert item == {"stock": snap["items"][iid]["stock"], "price": 5}
