"""The pure parts of shrink: ddmin, the causal closure, repair, amounts, the script (no HTTP, no clock)."""

from __future__ import annotations

import pytest

from wdmreplay.shrink import cut
from wdmreplay.shrink.ddmin import ddmin, split
from wdmreplay.shrink.search import NothingToShrink, ShrinkError, parse_anomaly, pick_finding, role_of
from wdmreplay.traces import read_header, step
from wdmreplay.traces.trace import TraceReader


@pytest.mark.parametrize("n_units, n, sizes", [(5, 2, [3, 2]), (6, 3, [2, 2, 2]), (3, 5, [1, 1, 1]), (1, 2, [1])])
def test_split_near_equal_contiguous(n_units, n, sizes):
    chunks = split(list(range(n_units)), n)
    assert [len(c) for c in chunks] == sizes
    assert [u for c in chunks for u in c] == list(range(n_units))


@pytest.mark.parametrize("needed", [{3}, {0, 7}, {2, 3, 11}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}])
def test_ddmin_finds_exactly_the_needed_units(needed):
    tested = []

    def test(units):
        tested.append(list(units))
        return needed <= set(units)

    assert set(ddmin(list(range(12)), test)) == needed
    assert all(t for t in tested)  # an empty candidate is never tested


def test_ddmin_keeps_order_and_a_single_unit():
    assert ddmin(["a"], lambda u: True) == ["a"]
    assert ddmin(list("abcdef"), lambda u: {"b", "e"} <= set(u)) == ["b", "e"]


def _consistency_like() -> tuple:
    """Two items, three users, four orders; $order0 and $order1 buy $item0, $order2 $item1, $order3 both."""
    s = []
    for i in range(2):
        s.append({"sid": len(s), "phase": 0, "at": 0.0, "steps": [
            step("create_item", [5], f"$item{i}"), step("add_stock", [f"$item{i}", 3])]})
    for u in range(3):
        s.append({"sid": len(s), "phase": 0, "at": 0.0, "steps": [
            step("create_user", [], f"$user{u}"), step("add_funds", [f"$user{u}", 40])]})
    layout = [(0, [0]), (1, [0]), (2, [1]), (2, [0, 1])]
    for k, (u, items) in enumerate(layout):
        steps = [step("create_order", [f"$user{u}"], f"$order{k}")]
        steps += [step("add_item", [f"$order{k}", f"$item{i}", 2]) for i in items]
        s.append({"sid": len(s), "phase": 1, "at": 0.5, "steps": steps})
    for k in range(4):
        s.append({"sid": len(s), "phase": 2, "at": 0.0, "steps": [step("checkout", [f"$order{k}"], expect="fail")]})
    return tuple(s)


def _binds(sessions) -> set:
    return {st["bind"] for s in sessions for st in s["steps"] if st["bind"]}


def test_closure_of_an_item_keeps_its_orders_their_users_and_items_only():
    got = cut.cut(_consistency_like(), "$item0", "closure")
    assert _binds(got) == {"$item0", "$item1", "$user0", "$user1", "$user2", "$order0", "$order1", "$order3"}
    # $order2 (user2's other order, of $item1 only) is outside the closure, and so is its checkout
    assert not any("$order2" in st["args"] for s in got for st in s["steps"])
    assert cut.count_requests(got) == 2 + 2 + 6 + 3 + 4 + 3


def test_closure_of_an_order_and_the_component():
    sessions = _consistency_like()
    order = cut.cut(sessions, "$order2", "closure")
    assert _binds(order) == {"$order2", "$user2", "$item1"}
    assert cut.count_requests(order) == 2 + 2 + 2 + 1
    # closure+users: user2's other order ($order3) and its items come too
    assert _binds(cut.cut(sessions, "$order2", "closure+users")) == {"$order2", "$order3", "$user2", "$item0", "$item1"}
    assert cut.count_requests(cut.cut(sessions, "$order2", "component")) == cut.count_requests(sessions)
    assert cut.cut(sessions, "$item0", "whole") == sessions


def test_repair_drops_what_depends_on_a_dropped_create():
    sessions = _consistency_like()
    without_user2 = cut.keep_sessions(sessions, [i for i in range(len(sessions)) if i != 4])
    assert "$user2" not in _binds(without_user2)
    # its orders go with it, and their add_item and checkout steps too
    assert not ({"$order2", "$order3"} & _binds(without_user2))
    assert not any(st["args"] and st["args"][0] in ("$order2", "$order3") for s in without_user2 for st in s["steps"])
    # a step dropped from the middle of a session: the session keeps the rest
    steps = cut.keep_steps(sessions, [p for p in cut.step_positions(sessions) if p != (0, 1)])
    assert [st["op"] for st in steps[0]["steps"]] == ["create_item"]
    assert cut.keep_sessions(sessions, []) == ()


def test_relaxed_expectations_amounts_and_times():
    sessions = cut.relax_expectations(_consistency_like())
    assert {st["expect"] for s in sessions for st in s["steps"] if st["op"] == "checkout"} == {"any"}
    assert {st["expect"] for s in sessions for st in s["steps"] if st["op"] != "checkout"} == {"ok"}
    slots = cut.amount_slots(sessions)
    assert [(sl.session, sl.step, sl.arg, sl.value) for sl in slots[:3]] == [(0, 0, 0, 5), (0, 1, 1, 3), (1, 0, 0, 5)]
    assert cut.smaller_values(40) == [1, 20] and cut.smaller_values(3) == [1] and cut.smaller_values(2) == [1]
    smaller = cut.with_amount(sessions, slots[1], 1)
    assert smaller[0]["steps"][1]["args"] == ["$item0", 1] and sessions[0]["steps"][1]["args"] == ["$item0", 3]
    assert cut.is_timed(sessions) and not cut.is_timed(cut.untimed(sessions))


def test_written_trace_is_ordinary_and_names_the_finding(tmp_path):
    source = {"workload": "consistency", "params": {"items": 2}, "dialect": "2024", "seed": 3,
              "phases": [{"name": "populate"}, {"name": "orders"}, {"name": "checkout"}], "scenarios": []}
    got = cut.cut(cut.relax_expectations(_consistency_like()), "$order2", "closure")
    header = cut.write_trace(str(tmp_path / "m.wdmt"), source, got, {"finding": {"kind": "oversell"}})
    assert read_header(tmp_path / "m.wdmt")["shrink"] == {"finding": {"kind": "oversell"}}
    assert header["workload"] == "shrunk" and header["expect"] == {} and header["requests"] == 7
    assert [p["name"] for p in header["phases"]] == ["populate", "orders", "checkout"]
    with TraceReader(tmp_path / "m.wdmt") as r:
        assert sum(len(s["steps"]) for s in r) == 7
    lines = cut.script_lines(["populate", "orders", "checkout"], got)
    assert lines[0] == "phase populate" and "create_item(5) -> $item1" in lines[1] and lines[1].endswith("expect ok")
    assert lines[-1].split()[:2] == ["s11", "checkout($order2)"] and lines[-1].endswith("expect any")


def test_anomaly_option_and_roles():
    assert parse_anomaly(None) == (None, None)
    assert parse_anomaly("lost-update") == ("lost_update", None)
    assert parse_anomaly("oversell:item-4") == ("oversell", "item-4")
    for bad in ("nonsense", "expectation_not_met", "oversell:"):
        with pytest.raises(ShrinkError):
            parse_anomaly(bad)
    assert role_of("item-4", {"item-4": "$item3"}) == "$item3" and role_of("7", {}) == "7"


class _Report:
    def __init__(self, anomalies):
        from wdmreplay.analysis.check import NOT_CLEAN, Verdict
        self.anomalies = anomalies
        self.verdict = Verdict(NOT_CLEAN, (), ("consistency",))


def test_pick_finding_default_kind_and_id():
    from wdmreplay.analysis import Anomaly
    rep = _Report([Anomaly("oversell", "item", "item-2", 1, -1, "d1"), Anomaly("lost_update", "user", "user-1", 3, 4, "d2"),
                   Anomaly("expectation_not_met", "aggregate", "checkout_ok", 1, 2, "d3")])
    binds = {"$item1": "item-2", "$user0": "user-1"}
    assert pick_finding(rep, binds, None, None, "r").role == "$item1"
    f = pick_finding(rep, binds, "lost_update", "user0", "r")
    assert (f.kind, f.entity, f.role, f.source_id) == ("lost_update", "user", "$user0", "user-1")
    with pytest.raises(NothingToShrink, match="no double_charge anomaly"):
        pick_finding(rep, binds, "double_charge", None, "r")
    with pytest.raises(NothingToShrink, match="no anomaly on an item, user or order"):
        pick_finding(_Report(rep.anomalies[2:]), binds, None, None, "r")


def test_help_explains_the_command_with_examples():
    from click.testing import CliRunner

    from wdmreplay.cli import cli

    res = CliRunner().invoke(cli, ["shrink", "--help"])
    assert res.exit_code == 0
    text = " ".join(res.output.split())
    assert "Examples:" in res.output and "wdm-replay shrink c.wdmr --url http://127.0.0.1:8000 -o min.wdmt" in text
    for option in ("--anomaly", "--runs", "--budget", "--before-each", "--trace", "--urls", "--url", "-o"):
        assert option in res.output
    assert "Exit 0 written, 2 bad input, 3 nothing to reproduce" in text


def test_keep_orders_drops_other_orders_with_the_users_and_items_only_they_needed():
    sessions = _consistency_like()
    assert cut.order_symbols(sessions) == ["$order0", "$order1", "$order2", "$order3"]
    got = cut.keep_orders(sessions, ["$order2"], "$item0")
    # $order2 (user2, item1) and the role $item0 stay; user0, user1 (only their dropped orders) go
    assert _binds(got) == {"$order2", "$user2", "$item1", "$item0"}
    assert [st["op"] for s in got for st in s["steps"] if st["args"] and st["args"][0] == "$order2"] == \
        ["add_item", "checkout"]
    both = cut.keep_orders(sessions, ["$order0", "$order3"], "$user2")
    assert _binds(both) == {"$order0", "$order3", "$user0", "$user2", "$item0", "$item1"}
