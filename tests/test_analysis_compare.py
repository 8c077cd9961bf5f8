"""compare on hand-built runs: same vs same, an injected latency regression, different traces refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from analysis_support import latency_run

from wdmreplay.analysis import CompareError, check_results, compare_runs, render_compare_text
from wdmreplay.traces import load_results


def load(path: Path):
    return load_results(path, with_args=True)


def compare(paths: list[Path], **kw):
    runs = [load(p) for p in paths]
    return compare_runs(runs, checks=[check_results(r) for r in runs], **kw)


def test_same_vs_same_is_no_regression(tmp_path):
    a = latency_run(tmp_path / "a.wdmr", seed=1, label="a")
    res = compare([a, a])
    assert not res.regression
    for op in res.runs[0].ops:
        for c in op.latency:
            assert c.ratio == 1.0 and not c.significant
            assert c.ci is None if op.op in ("create_item", "add_stock") else c.ci[0] <= 1.0 <= c.ci[1]
    assert "verdict: no regression" in render_compare_text(res)


def test_independent_runs_of_one_distribution_are_no_regression(tmp_path):
    a = latency_run(tmp_path / "a.wdmr", seed=1, label="a")
    b = latency_run(tmp_path / "b.wdmr", seed=2, label="b")
    assert not compare([a, b]).regression


def test_latency_regression_detected(tmp_path):
    a = latency_run(tmp_path / "a.wdmr", seed=1, label="a")
    b = latency_run(tmp_path / "b.wdmr", seed=2, slow=1.5, label="b")
    res = compare([a, b])
    assert res.regression
    regs = {(c.op, c.quantile) for c in res.runs[0].latency_regressions}
    assert ("checkout", "p50") in regs
    assert all(op == "checkout" for op, _ in regs)
    p50 = next(c for c in res.runs[0].ops[-1].latency if c.quantile == "p50")
    assert 1.3 < p50.ratio < 1.7 and p50.ci[0] > 1.1 and p50.p_value < 1e-6
    text = render_compare_text(res)
    assert "checkout p50: 1." in text and "x slower (significant, 95% CI" in text
    assert "REGRESSION" in text and "not significant: find_item p50" in text
    assert "too few samples (< 20) to test: create_item, add_stock" in text


def test_tail_only_regression_is_caught_by_p99(tmp_path):
    a = latency_run(tmp_path / "a.wdmr", seed=1, label="a", n=2000)
    b = latency_run(tmp_path / "b.wdmr", seed=1, tail=3.0, label="b", n=2000)
    res = compare([a, b])
    by = {(c.op, c.quantile): c for o in res.runs[0].ops for c in o.latency}
    assert by[("checkout", "p99")].regression
    assert not by[("checkout", "p50")].significant  # the median did not move


def test_threshold_hides_small_significant_changes(tmp_path):
    a = latency_run(tmp_path / "a.wdmr", seed=1, label="a", n=2000)
    b = latency_run(tmp_path / "b.wdmr", seed=1, slow=1.08, label="b", n=2000)
    res_10 = compare([a, b], threshold=0.10)
    res_5 = compare([a, b], threshold=0.05)
    assert not res_10.regression and res_5.regression


def test_new_anomalies_are_a_regression(tmp_path):
    a = latency_run(tmp_path / "a.wdmr", seed=1, label="a")
    b = latency_run(tmp_path / "b.wdmr", seed=1, label="b", anomaly=True)
    res = compare([a, b])
    assert res.regression and res.runs[0].anomaly_increase == {"lost_update": 1}
    assert not res.runs[0].latency_regressions


def test_several_new_runs(tmp_path):
    a = latency_run(tmp_path / "a.wdmr", seed=1, label="a")
    b = latency_run(tmp_path / "b.wdmr", seed=2, label="b")
    c = latency_run(tmp_path / "c.wdmr", seed=3, slow=2.0, label="c")
    res = compare([a, b, c])
    assert [r.regression for r in res.runs] == [False, True]
    assert res.as_dict()["runs"][1]["label"] == "c"


def test_different_traces_refused(tmp_path):
    a = latency_run(tmp_path / "a.wdmr", seed=1)
    b = latency_run(tmp_path / "b.wdmr", seed=1, digest="sha256:other-trace")
    with pytest.raises(CompareError, match="b.wdmr replays a different trace than a.wdmr"):
        compare([a, b])


def test_needs_two_runs(tmp_path):
    with pytest.raises(CompareError, match="at least two"):
        compare([latency_run(tmp_path / "a.wdmr", seed=1)])


def test_compare_is_deterministic(tmp_path):
    a = latency_run(tmp_path / "a.wdmr", seed=1, label="a")
    b = latency_run(tmp_path / "b.wdmr", seed=2, slow=1.2, label="b")
    assert compare([a, b]).as_dict() == compare([a, b]).as_dict()
