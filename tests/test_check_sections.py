"""The verdict's sections on hand-built runs: coverage, settle contract, lone shard, partial runs,
fault windows, proven bounds, order histories, re-checkout hint, JSON form and exit codes."""

from __future__ import annotations

import json
import math

import pytest

from wdmreplay.analysis import check_results
from synthetic import History
from wdmreplay.cli import main
from wdmreplay.traces import load_results

SETTLED = {"requested": 2.0, "settled": True, "snapshots": [{"at": 5.0, "end": 5.1}, {"at": 5.3, "end": 5.4}],
           "why": "two snapshots agreed"}
O1 = ["i1", 1]


def populated(**kw) -> History:
    """Item i1 (price 2, stock 5), user u1 (credit 10), order o1 = [i1 x1], then its checkout."""
    h = History(**kw)
    h.req("create_item", [2]).req("add_stock", ["i1", 5]).req("create_user", []).req("add_funds", ["u1", 10])
    h.req("create_order", ["u1"]).req("add_item", ["o1", "i1", 1])
    return h


def paid_final(h: History, **kw) -> History:
    return h.set_final(items={"i1": (4, 2)}, users={"u1": 8}, orders={"o1": (True, [O1], "u1", 2)}, **kw)


def check(tmp_path, h: History, **kw):
    path = h.write(tmp_path / "r.wdmr", **{k: kw.pop(k) for k in ("complete", "reason") if k in kw})
    return check_results(load_results(path, with_args=True), **kw)


def section(rep, name: str):
    return next(s for s in rep.verdict.sections if s.name == name)


def test_clean_run_every_section_passes(tmp_path):
    rep = check(tmp_path, paid_final(populated().req("checkout", ["o1"])))
    assert rep.verdict.verdict == "CLEAN" and rep.verdict.exit_code == 0 and rep.verdict.decided_by == ()
    assert {s.status for s in rep.verdict.sections} == {"pass"}


def test_no_final_state_is_inconclusive(tmp_path):
    rep = check(tmp_path, populated().req("checkout", ["o1"]))
    assert rep.verdict.verdict == "INCONCLUSIVE" and rep.verdict.exit_code == 3
    assert set(rep.verdict.decided_by) == {"consistency", "coverage"}
    assert any("no final state" in r for r in rep.verdict.reasons())


def test_missing_entities_are_counted_per_kind(tmp_path):
    h = populated().req("checkout", ["o1"])
    h.set_final(items={}, users={"u1": 8}, orders={}, missing={"item": {"i1": "HTTP 500"}, "order": {"o1": "timeout"}})
    rep = check(tmp_path, h)
    assert rep.verdict.verdict == "INCONCLUSIVE" and rep.verdict.decided_by == ("coverage",)
    assert rep.coverage.missing == {"item": 1, "order": 1}
    assert "not read back: 1 item(s), 1 order(s)" in section(rep, "coverage").reasons


def test_unsettled_state_is_inconclusive_and_its_anomalies_are_not_proof(tmp_path):
    # A saga's payment leg still in flight: the credit is not yet taken. Unsettled, that is no proof.
    h = populated().req("checkout", ["o1"], "timeout")
    h.set_final(items={"i1": (4, 2)}, users={"u1": 10}, orders={"o1": (True, [O1], "u1", 2)},
                settle={"requested": 1.0, "settled": False, "snapshots": [{"at": 1, "end": 1.1}] * 3,
                        "why": "snapshots kept changing"})
    # (--min-availability 0: the timed-out checkout is availability's to judge, not this test's)
    rep = check(tmp_path, h, min_availability=0.0)
    assert rep.anomalies and rep.verdict.verdict == "INCONCLUSIVE"
    assert section(rep, "consistency").status == "inconclusive"
    assert any("did not settle within 1 s" in r for r in section(rep, "coverage").reasons)


def test_indeterminate_requests_without_settle_are_inconclusive(tmp_path):
    # (an unanswered request counts against availability whatever it expects: min 0 here, coverage is the subject)
    h = paid_final(populated().req("checkout", ["o1"], "error", expect="any"))
    rep = check(tmp_path, h, min_availability=0.0)
    assert rep.verdict.verdict == "INCONCLUSIVE" and "replay with --settle" in rep.verdict.reasons()[0]
    rep = check(tmp_path, paid_final(populated().req("checkout", ["o1"], "error", expect="any"), settle=SETTLED),
                min_availability=0.0)
    assert rep.verdict.verdict == "CLEAN", rep.verdict.reasons()
    assert check(tmp_path, h).verdict.decided_by == ("availability",)  # by default: checkout 0/1 answered
    assert rep.coverage.settle.snapshots == 2


def test_old_settle_record_is_read(tmp_path):
    old = {"requested": 2.0, "settled": False, "seconds": 2.0, "reads": 5}
    rep = check(tmp_path, paid_final(populated().req("checkout", ["o1"]), settle=old))
    assert rep.verdict.verdict == "INCONCLUSIVE" and rep.coverage.settle.snapshots == 5


def test_lone_shard_is_inconclusive_and_says_merge(tmp_path, capsys):
    h = paid_final(populated().req("checkout", ["o1"]))
    h.shard = "0/2"
    rep = check(tmp_path, h)
    assert rep.verdict.verdict == "INCONCLUSIVE" and rep.verdict.decided_by == ("coverage",)
    assert any("wdm-replay merge" in r for r in rep.verdict.reasons())
    h.shard = "0/1"  # one shard of one is the whole run
    assert check(tmp_path, h).verdict.verdict == "CLEAN"


def test_partial_run_proven_wrong_is_not_clean(tmp_path):
    h = populated().req("checkout", ["o1"])
    h.set_final(items={"i1": (-1, 2)}, users={"u1": 8}, orders={"o1": (True, [O1], "u1", 2)})
    rep = check(tmp_path, h, complete=False, reason="interrupted")
    assert rep.verdict.verdict == "NOT CLEAN" and rep.verdict.decided_by == ("consistency",)
    # A discrepancy a missing request could explain is not proof in a partial run.
    h.set_final(items={"i1": (3, 2)}, users={"u1": 8}, orders={"o1": (True, [O1], "u1", 2)})
    rep = check(tmp_path, h, complete=False, reason="interrupted")
    assert rep.anomalies and rep.verdict.verdict == "INCONCLUSIVE"


def test_availability_below_minimum_names_operation_and_breakdown(tmp_path):
    h = populated()
    for k in range(9):
        h.req("find_item", ["i1"])
    h.req("find_item", ["i1"], "timeout", expect="ok")
    h.req("checkout", ["o1"])
    rep = check(tmp_path, paid_final(h, settle=SETTLED))
    assert rep.verdict.verdict == "NOT CLEAN" and rep.verdict.decided_by == ("availability",)
    assert section(rep, "availability").reasons == ("unavailable: find_item 9/10 answered (90.0%): 1 timeout < 99%",)
    assert check(tmp_path, paid_final(h, settle=SETTLED), min_availability=90.0).verdict.verdict == "CLEAN"


def test_fault_window_requests_are_counted_apart(tmp_path):
    h = populated()
    for k in range(10):
        h.req("find_item", ["i1"], at=1.0 + k * 0.1, latency=0.01)
    for k in range(5):
        h.req("find_item", ["i1"], "conn_error", expect="ok", at=3.0 + k * 0.1, latency=0.01)
    h.req("checkout", ["o1"], at=5.0)
    paid_final(h, settle=SETTLED)
    assert check(tmp_path, h).verdict.decided_by == ("availability",)
    h.events.append({"at": 2.9, "kind": "fault", "end": 3.6, "name": "kill stock"})
    rep = check(tmp_path, h)
    assert rep.verdict.verdict == "CLEAN", rep.verdict.reasons()
    fi = next(a for a in rep.availability.ops if a.op == "find_item")
    assert (fi.counted, fi.answered, fi.in_fault) == (10, 10, 5)
    assert rep.availability.windows[0].name == "kill stock"
    # A fault that never ended covers everything after its start.
    h.events[0] = {"at": 2.9, "kind": "fault", "name": "open"}
    rep = check(tmp_path, h)
    assert math.isinf(rep.availability.windows[0].end) and rep.availability.overall.in_fault == 6


def test_skips_caused_by_a_fault_count_with_the_fault(tmp_path):
    # Session 7's create_item got no answer during the fault; its later steps, skipped after the
    # window, are the fault's doing. Session 8's skip has nothing to do with a fault: it counts.
    h = populated()
    for k in range(20):
        h.req("find_item", ["i1"], at=1.0 + k * 0.1, latency=0.01)
    h.req("create_item", [1], "conn_error", expect="ok", at=3.0, sid=7)
    h.req("add_stock", ["$s7.item0", 5], "skipped", expect="ok", at=4.0, sid=7, step=1)
    h.req("checkout", ["o1"], at=5.0)
    h.events.append({"at": 2.95, "kind": "fault", "end": 3.6, "name": "kill stock"})
    paid_final(h, settle=SETTLED)
    rep = check(tmp_path, h)
    assert rep.verdict.verdict == "CLEAN", rep.verdict.reasons()
    # in_fault: the create_item and the skip, and the checkout at 5.0 — the first success after the
    # window, whose answer ends its recovery (the recovery is counted apart too)
    assert rep.availability.overall.in_fault == 3 and rep.availability.overall.skipped == 0
    h.req("add_stock", ["$s8.item0", 5], "skipped", expect="ok", at=7.5, sid=8, step=1)  # after the recovery
    rep = check(tmp_path, h)
    assert rep.availability.overall.skipped == 1 and rep.verdict.decided_by == ("availability",)


def test_strict_needs_every_request_answered(tmp_path):
    h = paid_final(populated().req("checkout", ["o1"]).req("find_item", ["i1"], "error", expect="any"),
                   settle=SETTLED)
    assert check(tmp_path, h, min_availability=0.0).verdict.verdict == "CLEAN"
    rep = check(tmp_path, h, strict=True, min_availability=0.0)
    assert rep.verdict.decided_by == ("availability",) and "strict" in rep.verdict.reasons()[0]


@pytest.mark.parametrize("ok, indeterminate, status", [
    (3, 0, "met"), (4, 0, "unmet"),
    (4, 1, "unmet"),  # at most 3 successes holds whatever the indeterminate checkout did
    (2, 1, "not evaluated"),  # at least 3 does not
])
def test_proven_checkout_bound(tmp_path, ok, indeterminate, status):
    h = History(expect={})
    h.trace_header["expect_range"] = {"checkout_ok": [3, 3]}
    h.req("create_item", [1]).req("add_stock", ["i1", 3]).req("create_user", []).req("add_funds", ["u1", 10])
    n = ok + indeterminate
    for k in range(n):
        h.req("create_order", ["u1"]).req("add_item", [f"o{k}", "i1", 1])
    for k in range(n):
        h.req("checkout", [f"o{k}"], "ok" if k < ok else "timeout", expect="any")
    h.set_final(items={"i1": (3 - ok, 1)}, users={"u1": 10 - ok},
                orders={f"o{k}": (k < ok, [["i1", 1]], "u1", 1) for k in range(n)}, settle=SETTLED)
    rep = check(tmp_path, h)
    assert rep.bounds[0].status == status
    assert (rep.anomaly_counts["expectation_not_met"] == 1) == (status == "unmet")


@pytest.mark.parametrize("quantity, expected", [
    (1, {}), (3, {}),  # the indeterminate add_item of 2 happened all or nothing
    (2, {"lost_order_line": 1}),  # half of it: no all-or-nothing combination
    (0, {"lost_order_line": 1}),  # the answered one is gone
    (4, {"phantom_order_line": 1}),
])
def test_order_lines_against_history(tmp_path, quantity, expected):
    h = History()
    h.req("create_item", [2]).req("create_user", []).req("create_order", ["u1"])
    h.req("add_item", ["o1", "i1", 1]).req("add_item", ["o1", "i1", 2], "timeout", expect="any")
    h.set_final(items={"i1": (0, 2)}, users={"u1": 0}, orders={"o1": (False, [["i1", quantity]] if quantity else [],
                                                                     "u1", 2 * quantity)}, settle=SETTLED)
    rep = check(tmp_path, h)
    assert {k: v for k, v in rep.anomaly_counts.items() if v} == expected
    if expected:
        assert rep.anomalies[0].id == "o1" and len(rep.anomalies[0].requests) == 2


def test_item_never_added_is_a_phantom_line(tmp_path):
    h = History().req("create_item", [2]).req("create_item", [2]).req("create_user", []).req("create_order", ["u1"])
    h.req("add_item", ["o1", "i1", 1])
    h.set_final(items={"i1": (0, 2), "i2": (0, 2)}, users={"u1": 0},
                orders={"o1": (False, [["i1", 1], ["i2", 1]], "u1", 4)})
    (a,) = check(tmp_path, h).anomalies
    assert (a.kind, a.id, a.actual) == ("phantom_order_line", "o1", 1) and "no add_item" in a.detail


def test_batch_init_orders_lines_are_the_servers_total_is_checked(tmp_path):
    h = History().req("batch_init_stock", [3, 10, 2]).req("batch_init_users", [2, 100])
    h.req("batch_init_orders", [2, 3, 2, 2])
    h.set_final(items={"0": (10, 2), "1": (10, 2), "2": (10, 2)}, users={"0": 100, "1": 100},
                orders={"0": (False, [["1", 1], ["2", 1]], "0", 4), "1": (False, [["0", 1], ["2", 1]], "1", 3)})
    (a,) = check(tmp_path, h).anomalies
    assert (a.kind, a.id, a.expected, a.actual) == ("wrong_total", "1", 4, 3)


def test_recheckout_charging_again_names_the_policy(tmp_path):
    h = populated().req("checkout", ["o1"]).req("checkout", ["o1"])
    h.set_final(items={"i1": (3, 2)}, users={"u1": 6}, orders={"o1": (True, [O1], "u1", 2)})
    rep = check(tmp_path, h)
    assert len(rep.anomalies) == 2  # one per entity: the item and the user
    assert all("--recheckout charge" in a.detail for a in rep.anomalies)
    assert check(tmp_path, h, recheckout="charge").verdict.verdict == "CLEAN"


def test_cli_json_verdict_and_exit_codes(tmp_path, capsys):
    clean = paid_final(populated().req("checkout", ["o1"])).write(tmp_path / "clean.wdmr")
    broken = populated().req("checkout", ["o1"])
    broken.set_final(items={"i1": (4, 2)}, users={"u1": 8}, orders={"o1": (True, [O1], "u1", 3)})
    unread = populated().req("checkout", ["o1"])
    for path, verdict, code in ((clean, "CLEAN", 0), (broken.write(tmp_path / "b.wdmr"), "NOT CLEAN", 1),
                                (unread.write(tmp_path / "u.wdmr"), "INCONCLUSIVE", 3)):
        with pytest.raises(SystemExit) as e:
            main(["check", str(path), "--json"])
        out = capsys.readouterr()
        d = json.loads(out.out)
        assert (e.value.code, out.err) == (code, "")
        assert (d["schema"], d["verdict"], d["exit_code"]) == ("wdm-check/3", verdict, code)
        assert set(d["sections"]) == {"correctness", "consistency", "availability", "coverage"}
        assert set(d) >= {"decided_by", "availability", "coverage", "consistency", "expectations", "min_availability"}
