"""Issue 23's last typed edges: the trace header a results header copies (TraceHeaderCopy), the final
record's ``stopped`` (ReadStop), the consistency check's tallies (Checked, CheckoutTally, Totals), the
final state's per-kind maps and the shop's peers — each built once, older or partial input loading as
before, a value of the wrong type a one-line error (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from synthetic import History
from wdmreplay.analysis import check_results
from wdmreplay.analysis.consistency import Checked, CheckoutTally, TotalFigures, Totals
from wdmreplay.analysis.final_state import final_state
from wdmreplay.replayer import replay_trace
from wdmreplay.shop import Peers, ShopConfig, ShopError, ShopThread
from wdmreplay.shop.runner import start_shop
from wdmreplay.eventloop import run_async
from wdmreplay.traces import FormatError, load_results, read_trace_header
from wdmreplay.traces.records import FinalRecord, ReadStop, TraceHeaderCopy, TraceRef
from wdmreplay.workloads import generate
from wdmreplay.workloads.checkout import CheckoutParams
from wdmreplay.workloads.contention import ContentionParams
from wdmreplay.workloads.stress import StressParams, effective_weights

WDM = [sys.executable, "-m", "wdmreplay"]


def _populated(**kw) -> History:
    """Item i1 (price 2, stock 5), user u1 (credit 10), order o1 = [i1 x1] checked out; final state read."""
    h = History(**kw)
    h.req("create_item", [2]).req("add_stock", ["i1", 5]).req("create_user", []).req("add_funds", ["u1", 10])
    h.req("create_order", ["u1"]).req("add_item", ["o1", "i1", 1]).req("checkout", ["o1"])
    return h.set_final(items={"i1": (4, 2)}, users={"u1": 8}, orders={"o1": (True, [["i1", 1]], "u1", 2)})


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*WDM, *args], capture_output=True, text=True, timeout=120)


# --- the copied trace header -------------------------------------------------------------------


def test_a_real_runs_copied_header_reads_as_the_trace_header_says(tmp_path):
    trace, out = tmp_path / "c.wdmt", tmp_path / "c.wdmr"
    generate("consistency", trace, seed=3, preset="readme")
    with ShopThread() as shop:
        replay_trace(str(trace), str(out), target=shop.target)
    th, r = read_trace_header(trace), load_results(out)
    copy = r.header_record.trace_header
    assert (copy.workload, copy.seed, copy.requests, copy.duration) == (th.workload, th.seed, th.requests, th.duration)
    assert dict(copy.params) == dict(th.params) and copy.scenarios == th.scenarios
    assert dict(copy.expect) == dict(th.expect) and dict(copy.expect_range) == dict(th.expect_range or {})
    assert copy.benchmark == th.extra["benchmark"] == "readme" and dict(copy.exercises) == dict(th.exercises)
    assert copy.extra == {k: v for k, v in r.header["trace"]["header"].items()
                          if k not in TraceHeaderCopy.__dataclass_fields__}
    # the stored map is what is written back, byte for byte
    assert r.header_record.to_record()["trace"] == r.header["trace"]
    rep = check_results(load_results(out, with_args=True))
    assert rep.clean and rep.figures.comparable and rep.bug_classes.source == "header"


def test_a_partial_or_older_copied_header_reads_as_the_defaults(tmp_path):
    h = _populated(expect={"checkout_ok": 1})
    h.trace_header = {"workload": "hand-built", "expect": {"checkout_ok": 1}, "expect_range": None,
                      "proves": "a key this version does not read"}
    path = h.write(tmp_path / "p.wdmr")
    copy = load_results(path).header_record.trace_header
    assert (copy.seed, copy.requests, copy.duration, copy.benchmark, copy.exercises) == (None,) * 5
    assert copy.params == {} and copy.scenarios == () and copy.expect_range == {}
    assert copy.extra == {"proves": "a key this version does not read"}
    rep = check_results(load_results(path, with_args=True))
    assert [(b.key, b.status) for b in rep.bounds] == [("checkout_ok", "met")]
    assert not rep.figures.comparable and "hand-built" in rep.figures.why
    report = json.loads(_cli("report", str(path), "--format", "json").stdout)
    assert report["run"]["trace"]["workload"] == "hand-built" and report["run"]["trace"]["requests"] is None
    # no trace header at all: every field at its default
    empty = TraceRef.from_record({"path": None, "digest": None}).typed_header
    assert empty == TraceHeaderCopy() and empty.expect == {} and empty.workload is None


@pytest.mark.parametrize("key,value", [("requests", "many"), ("params", [1, 2]), ("benchmark", 1),
                                       ("exercises", ["x"]), ("scenarios", "default"), ("expect", 3),
                                       ("seed", 1.5), ("workload", None)])
def test_a_copied_header_field_of_the_wrong_type_is_one_line_exit_2(tmp_path, key, value):
    if value is None:  # null is every field's "absent": it loads
        assert TraceHeaderCopy.from_record({key: value}).workload is None
        return
    h = _populated()
    h.trace_header[key] = value
    path = h.write(tmp_path / "w.wdmr")
    with pytest.raises(FormatError) as e:
        load_results(path)
    assert "\n" not in str(e.value) and "trace header" in str(e.value) and repr(key) in str(e.value)
    for cmd in ("report", "check"):
        p = _cli(cmd, str(path))
        assert p.returncode == 2 and "Traceback" not in p.stderr and p.stderr.count("\n") == 1, p.stderr
        assert repr(key) in p.stderr


# --- the final record's stopped ----------------------------------------------------------------


def test_read_stop_from_record_keeps_the_record_and_reads_older_shapes():
    rec = {"why": ["final read stopped after 5 connection failures in a row"], "not_read": {"item": 3},
           "note": "kept"}
    s = ReadStop.from_record(rec)
    assert s.why == ("final read stopped after 5 connection failures in a row",) and s.not_read == {"item": 3}
    assert s.to_record() == rec and list(s.to_record()) == ["why", "not_read", "note"]
    assert ReadStop.from_record({"why": "one reason"}).why == ("one reason",)  # hand-made: one string
    assert ReadStop.from_record({}).why == () and ReadStop.from_record({}).not_read == {}
    fin = {"items": {}, "users": {}, "orders": {}, "missing": {}, "settle": None, "stopped": rec}
    f = FinalRecord.from_record(fin)
    assert f.stopped == s and f.stopped_why == s.why and f.to_record()["stopped"] == rec
    assert FinalRecord.from_record({**fin, "stopped": None}).stopped_why == ()


@pytest.mark.parametrize("stopped,key", [({"why": 5}, "'why'"), ({"why": [], "not_read": [1]}, "'not_read'"),
                                         ("broken", "'stopped'")])
def test_a_stopped_of_the_wrong_type_is_one_line_exit_2(tmp_path, stopped, key):
    h = _populated()
    h.final["stopped"] = stopped
    path = h.write(tmp_path / "s.wdmr")
    with pytest.raises(FormatError) as e:
        load_results(path).final_record
    assert "\n" not in str(e.value) and key in str(e.value)
    p = _cli("check", str(path))
    assert p.returncode == 2 and "Traceback" not in p.stderr and p.stderr.count("\n") == 1 and key in p.stderr


def test_a_stopped_read_shows_in_the_coverage(tmp_path):
    h = _populated()
    h.final["missing"] = {"user": {"u9": "not read: final read stopped after 5 connection failures in a row"}}
    h.final["stopped"] = {"why": ["final read stopped after 5 connection failures in a row"], "not_read": {"user": 1}}
    rep = check_results(load_results(h.write(tmp_path / "st.wdmr"), with_args=True))
    assert rep.coverage.stopped == ("final read stopped after 5 connection failures in a row",)


# --- the consistency check's tallies -----------------------------------------------------------


def test_the_tallies_are_typed_and_their_json_is_unchanged(tmp_path):
    path = _populated().write(tmp_path / "t.wdmr")
    c = check_results(load_results(path, with_args=True)).consistency
    assert c.checked == Checked(1, 1, 1) and (c.checked.items, c.checked.users, c.checked.orders) == (1, 1, 1)
    assert isinstance(c.checkouts, CheckoutTally) and (c.checkouts.ok, c.checkouts.paid_orders) == (1, 1)
    assert isinstance(c.totals.stock, TotalFigures) and c.totals.stock.final == 4 and c.totals.credit.final == 8
    assert [n for n, _ in c.totals.named()] == ["stock", "credit"]
    doc = json.loads(_cli("check", str(path), "--json").stdout)["consistency"]
    assert doc["checked"] == {"items": 1, "users": 1, "orders": 1}
    assert doc["checkouts"] == c.checkouts.as_dict() and doc["totals"] == c.totals.as_dict()
    assert list(c.checkouts.as_dict()) == ["ok", "fail", "indeterminate", "skipped", "paid_orders"]  # as before
    assert list(c.totals.as_dict()["stock"]) == ["history_allows", "implied_by_2xx", "final"]
    # the records also read as the maps they were (what callers compared them with)
    assert c.checked == {"items": 1, "users": 1, "orders": 1} and c.checkouts["ok"] == 1
    assert c.checked != {"items": 1, "users": 1, "orders": 2} and c.checked != Checked(1, 1, 2)


def test_without_a_final_state_the_tallies_are_empty(tmp_path):
    h = _populated()
    h.final = None
    c = check_results(load_results(h.write(tmp_path / "n.wdmr"), with_args=True)).consistency
    assert c.totals == Totals() and c.totals.as_dict() == {} and c.totals.named() == []
    assert c.checked == Checked() and c.checkouts.ok == 1 and c.checkouts.paid_orders == 0


# --- the final state's per-kind maps -----------------------------------------------------------


def test_the_final_state_holds_every_kind_whatever_the_record_holds():
    rec = {"items": {}, "users": {}, "orders": {}, "settle": None,
           "missing": {"items": {"7": "HTTP 404: gone"}}}  # an older hand-made record: by section
    fs = final_state(rec)
    assert set(fs.missing) == {"item", "user", "order"} and set(fs.answered_4xx) == {"item", "user", "order"}
    assert fs.not_found("item") == {"7": "HTTP 404: gone"} and fs.not_found("order") == {}
    assert (fs.missing_count("item"), fs.missing_count("user"), fs.unanswered_count("order")) == (1, 0, 0)
    assert FinalRecord.from_record(rec).to_record()["missing"] == {"item": {"7": "HTTP 404: gone"}}  # stored as read


def test_an_orders_quantities_sum_repeated_lines_and_read_0_for_an_item_it_lacks():
    rec = {"items": {"i1": {"stock": 3, "price": 2}}, "users": {"u1": {"credit": 5}}, "settle": None,
           "orders": {"o1": {"paid": True, "items": [["i1", 2], ["i2", 1], ["i1", 1]], "user_id": "u1",
                             "total_cost": 7}}}
    fs = final_state(rec)
    q = fs.orders["o1"].quantities
    assert (q["i1"], q["i2"], q["i9"]) == (3, 1, 0)
    assert set(fs.section("order")) == {"o1"} and set(fs.section("item")) == {"i1"} and "u1" in fs.section("user")


# --- the shop's peers --------------------------------------------------------------------------


@pytest.mark.parametrize("peers", [None, Peers("http://127.0.0.1:1", None), Peers(None, "http://127.0.0.1:1")])
def test_the_order_service_alone_needs_both_peers(peers):
    async def start():
        await start_shop(ShopConfig(), only="orders", split=True, peers=peers)

    with pytest.raises(ShopError, match="--only orders needs --stock-url and --payment-url"):
        run_async(start())



# --- the workloads' params ---------------------------------------------------------------------


@pytest.mark.parametrize("workload,options,record", [
    ("stress", {"rate": 20, "duration": 1.0}, StressParams),
    ("stress", {"users": 3, "duration": 2.0, "seed_scenarios_only": True}, StressParams),
    ("checkout", {"items": 5, "users": 5, "orders": 5, "sessions": 4}, CheckoutParams),
    ("contention", {"orders": 1, "adders": 2, "users": 1, "payers": 3}, ContentionParams),
])
def test_a_workloads_params_record_reads_and_writes_the_header_params(tmp_path, workload, options, record):
    generate(workload, tmp_path / "w.wdmt", seed=1, **options)
    stored = dict(read_trace_header(tmp_path / "w.wdmt").params)
    typed = record.from_record(stored)
    assert list(typed.to_record().items()) == list(stored.items())  # same keys, same order, same values
    assert typed.dialect == "2024"


def test_an_older_stress_headers_params_read_with_their_defaults():
    older = {"dialect": "2023", "model": "open", "rate": 5.0, "arrival": "poisson", "duration": 10.0,
             "sessions": None, "requests": None, "users": None, "spawn_rate": None, "wait": None,
             "weights": [1, 1, 1, 1, 1, 5], "price_range": [1, 10], "stock_range": [1, 10], "funds_range": [1, 10],
             "cut": {"from": "sha256:x", "until": 3.0}}  # before s7/s8; a capacity cut's key
    p = StressParams.from_record(older)
    assert (p.repeat_share, p.recheckout_share) == (None, None) and p.extra == {"cut": older["cut"]}
    assert effective_weights(p) == [0.1, 0.1, 0.1, 0.1, 0.1, 0.5]  # six scenarios, as the trace was made
    assert list(p.to_record().items()) == list(older.items())  # written back as read
    assert StressParams.from_record({}).weights is None  # a hand-edited header: inspect shows no weights
