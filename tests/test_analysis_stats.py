"""Expectation diff and statistics on hand-built results: table-driven, no clock."""

from __future__ import annotations

import numpy as np
import pytest

from wdmreplay.analysis import compute_stats, diff_expectations
from wdmreplay.analysis.stats import grouped_quantiles
from synthetic import History
from wdmreplay.traces import load_results


@pytest.mark.parametrize("seed, n_groups, n", [(0, 1, 1), (1, 3, 50), (2, 7, 1000), (3, 20, 5000)])
def test_grouped_quantiles_match_numpy(seed, n_groups, n):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, n_groups, n)
    values = rng.lognormal(-4, 1.5, n)
    qs = (0.0, 0.5, 0.9, 0.99, 0.999, 1.0)
    q, mx, counts = grouped_quantiles(groups, values, n_groups + 1, qs)  # one extra, empty group
    for g in range(n_groups):
        v = values[groups == g]
        assert counts[g] == v.size
        if v.size:
            np.testing.assert_allclose(q[g], np.quantile(v, qs), rtol=1e-9, atol=1e-12)
            assert mx[g] == pytest.approx(v.max())
    assert counts[n_groups] == 0 and np.isnan(q[n_groups]).all() and np.isnan(mx[n_groups])


def history_with_latencies() -> History:
    h = History(scenarios=["a", "b"])
    # 100 find_item at 10..109 ms (1 ms lag), 10 checkouts at 200 ms, one skipped checkout.
    for k in range(100):
        h.req("find_item", ["i"], at=k * 0.05, latency=0.010 + k * 0.001, lag=0.001, scenario="a")
    for k in range(10):
        h.req("checkout", ["o"], "fail" if k < 2 else "ok", at=1.0 + k * 0.1, latency=0.2, scenario="b")
    h.req("checkout", ["o"], "skipped", expect="ok", at=3.0, scenario="b")
    return h


def test_stats_per_operation(tmp_path):
    r = load_results(history_with_latencies().write(tmp_path / "r.wdmr", wall=4.0))
    s = compute_stats(r)
    fi, co, ov = s.by_op["find_item"], s.by_op["checkout"], s.overall
    assert (fi.count, co.count, ov.count) == (100, 11, 111)
    # Rates run over the send window: first send (find_item 0: 0 + 1 ms lag) to last answer (find_item
    # 99: 4.95 s + 1 ms lag + 109 ms); the skipped checkout is not a request sent, and wall=4 is not used.
    first_send, last_answer = 0.001, 4.95 + 0.001 + 0.109
    assert s.span == pytest.approx(last_answer - first_send, abs=1e-6)
    assert fi.rate == pytest.approx(100 / (last_answer - first_send), abs=1e-3)
    assert co.rate == pytest.approx(10 / (last_answer - first_send), abs=1e-3)
    assert ov.rate == pytest.approx(110 / (last_answer - first_send), abs=1e-3)
    lat = 0.010 + np.arange(100) * 0.001
    assert fi.response_ms["p50"] == pytest.approx(np.quantile(lat + 0.001, 0.5) * 1e3, abs=1e-3)
    assert fi.service_ms["p99"] == pytest.approx(np.quantile(lat, 0.99) * 1e3, abs=1e-3)
    assert fi.service_ms["max"] == pytest.approx(109.0, abs=1e-3)
    assert fi.lag_ms["p99"] == pytest.approx(1.0, abs=1e-3)
    assert co.outcomes == {"ok": 8, "fail": 2, "error": 0, "timeout": 0, "conn_error": 0, "skipped": 1}
    assert co.shares["fail"] == pytest.approx(2 / 11, abs=1e-6)
    assert co.response_ms["p50"] == pytest.approx(200.0, abs=1e-3)  # the skipped row has no latency
    assert ov.response_ms["max"] == pytest.approx(200.0, abs=1e-3)
    assert set(s.cdf) == {"find_item", "checkout"}
    assert s.cdf["find_item"].ms[-1] == pytest.approx(110.0, abs=1e-3)
    assert list(s.cdf["find_item"].q) == sorted(s.cdf["find_item"].q)


def test_timeline_buckets(tmp_path):
    r = load_results(history_with_latencies().write(tmp_path / "r.wdmr"))
    tl = compute_stats(r).timeline
    assert list(tl.t) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # find_item k is done at 0.051 k + 0.011 s
    assert sum(tl.count) == 110  # sent requests only
    assert tl.count[0] == 20 and tl.ok[0] == 20
    assert tl.p50_ms[0] == pytest.approx(20.5, abs=1e-3)  # response times 11..30 ms
    assert list(tl.errors) == [0] * 6


def test_expectation_diff_groups_and_examples(tmp_path):
    h = History(scenarios=["s1", "s2"])
    h.req("checkout", ["o1"], "ok", expect="fail", scenario="s1", sid=7, step=3)
    h.req("checkout", ["o2"], "ok", expect="fail", scenario="s1", sid=2, step=3)
    h.req("add_stock", ["i", 1], "fail", expect="ok", scenario="s2", sid=4, step=1, error="no such item")
    h.req("add_stock", ["i", 1], "error", expect="ok", scenario="s2", sid=5, step=1, error="boom")
    h.req("checkout", ["o3"], "timeout", expect="any", scenario="s1", sid=6)  # any never differs
    h.req("checkout", ["o4"], "fail", expect="any", scenario="s1", sid=8)
    h.req("add_item", ["$o", "$i", 1], "skipped", expect="ok", scenario="s2", sid=9, step=2)
    h.req("find_item", ["i"], "ok", expect="ok", scenario="s2", sid=10)
    d = diff_expectations(load_results(h.write(tmp_path / "r.wdmr")))
    assert d.checked == 6
    assert d.by_category == {"unexpected_ok": 2, "unexpected_fail": 1, "indeterminate": 1, "skipped": 1,
                             "after_indeterminate": 0, "during_fault": 0}
    assert d.mismatches == 3 and d.differences == 5
    g = d.groups[0]
    assert (g.category, g.scenario, g.op, g.count, g.expect) == ("unexpected_ok", "s1", "checkout", 2, "fail")
    assert [(e.sid, e.step, e.status) for e in g.examples] == [(2, 3, 200), (7, 3, 200)]  # sorted by session
    fail = d.groups[1]
    assert (fail.category, fail.op, fail.examples[0].error) == ("unexpected_fail", "add_stock", "no such item")
    assert [g.category for g in d.groups] == ["unexpected_ok", "unexpected_fail", "indeterminate", "skipped"]
    assert d.as_dict()["groups"][3]["examples"][0] == {"sid": 9, "step": 2, "outcome": "skipped", "status": 0, "error": ""}


def test_examples_are_capped(tmp_path):
    h = History()
    for k in range(10):
        h.req("pay", ["u", "o", 1], "fail", expect="ok", sid=k)
    d = diff_expectations(load_results(h.write(tmp_path / "r.wdmr")), examples=3)
    assert d.groups[0].count == 10 and len(d.groups[0].examples) == 3


def test_contradictions_after_an_indeterminate_step_prove_nothing(tmp_path):
    h = History()
    h.req("add_funds", ["u", 5], "error", expect="ok", sid=1, step=0)
    h.req("checkout", ["o"], "fail", expect="ok", sid=1, step=1)  # the funds may be missing
    h.req("checkout", ["p"], "fail", expect="ok", sid=2, step=1)  # another session: a real mismatch
    d = diff_expectations(load_results(h.write(tmp_path / "r.wdmr")))
    assert d.by_category == {"unexpected_ok": 0, "unexpected_fail": 1, "indeterminate": 1, "skipped": 0,
                             "after_indeterminate": 1, "during_fault": 0}
    assert d.mismatches == 1
    assert [(g.category, g.examples[0].sid) for g in d.groups] == [
        ("unexpected_fail", 2), ("indeterminate", 1), ("after_indeterminate", 1)]


def test_a_contradiction_counts_after_an_unanswered_step_it_does_not_depend_on(tmp_path):
    # A 4xx "does not exist" to an operation that needs only its entities to exist depends on no
    # earlier step; a 4xx to add_item depends only on unanswered requests on the same order.
    h = History()
    h.req("add_stock", ["i", 5], "error", expect="ok", sid=1, step=0)
    h.req("find_item", ["i"], "fail", expect="ok", sid=1, step=1, error="Item does not exist")  # counts
    h.req("add_item", ["o", "i", 1], "fail", expect="ok", sid=1, step=2)  # nothing unanswered on order o: counts
    h.req("checkout", ["p"], "timeout", expect="ok", sid=2, step=0)
    h.req("add_item", ["p", "i", 1], "fail", expect="ok", sid=2, step=1)  # p may be paid already: proves nothing
    h.req("checkout", ["q"], "fail", expect="ok", sid=1, step=3)  # may depend on the stock: proves nothing
    d = diff_expectations(load_results(h.write(tmp_path / "r.wdmr"), with_args=True))
    assert d.by_category["unexpected_fail"] == 2 and d.by_category["after_indeterminate"] == 2
    fails = {(g.op, e.sid) for g in d.groups if g.category == "unexpected_fail" for e in g.examples}
    assert fails == {("find_item", 1), ("add_item", 1)}
