"""compare on hand-built runs: grouping by label, the two-level bootstrap, every gate, JSON and HTML."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from analysis_support import latency_run

from wdmreplay.analysis import CompareError, check_results, compare_runs, render_compare_text, render_json
from wdmreplay.analysis.bootstrap import (all_failing_significant, critical_value, fisher_greater, log_mean_replicates,
                                         log_quantile_replicates, ratio_interval)
from wdmreplay.analysis.compare import NOISE_FLOOR, group_by_label
from wdmreplay.analysis.compare_text import render_compare
from synthetic import History
from wdmreplay.traces import load_results


def load(path: Path):
    return load_results(path, with_args=True)


def compare(paths: list[Path], **kw):
    runs = [load(p) for p in paths]
    return compare_runs(runs, checks=[check_results(r) for r in runs], **kw)


def build(tmp_path: Path, label: str, seeds: range, **kw) -> list[Path]:
    return [latency_run(tmp_path / f"{label}{s}.wdmr", seed=s, label=label, **kw) for s in seeds]


def by(res, k: int = 0) -> dict:
    return {(o.op, c.name): c for o in res.builds[k].ops for c in o.latency}


# --- grouping ---------------------------------------------------------------------------------


def test_groups_by_label_first_group_is_base(tmp_path):
    paths = build(tmp_path, "a", range(2)) + build(tmp_path, "b", range(2, 4)) + build(tmp_path, "a", range(4, 5))
    unlabelled = latency_run(tmp_path / "u.wdmr", seed=9, label=None)
    runs = [load(p) for p in (*paths, unlabelled, unlabelled)]
    assert group_by_label(runs) == [[0, 1, 4], [2, 3], [5], [6]]
    res = compare_runs(runs)
    assert res.base_label == "a" and res.base_files == ("a0.wdmr", "a1.wdmr", "a4.wdmr")
    assert [b.label for b in res.builds] == ["b", "u.wdmr", "u.wdmr"]
    assert [b.noise_floor for b in res.builds] == [False, True, True]


def test_one_build_only_is_refused(tmp_path):
    paths = build(tmp_path, "a", range(3))
    with pytest.raises(CompareError, match="at least two builds; all 3 files have label 'a'"):
        compare(paths)


def test_different_traces_refused(tmp_path):
    a = latency_run(tmp_path / "a.wdmr", seed=1, label="a")
    b = latency_run(tmp_path / "b.wdmr", seed=1, label="b", digest="sha256:other-trace")
    with pytest.raises(CompareError, match="b.wdmr replays a different trace than a.wdmr"):
        compare([a, b])


# --- latency ----------------------------------------------------------------------------------


def test_aa_groups_are_no_regression(tmp_path):
    res = compare(build(tmp_path, "a", range(3)) + build(tmp_path, "b", range(3, 6)))
    assert not res.regression
    c = by(res)[("checkout", "p50")]
    assert c.ci[0] <= 1.0 <= c.ci[1] and not c.significant
    assert "verdict: no regression" in render_compare_text(res)


def test_slower_group_is_a_latency_regression(tmp_path):
    res = compare(build(tmp_path, "a", range(3)) + build(tmp_path, "b", range(3, 6), slow=1.5))
    assert res.regression and not res.builds[0].noise_floor
    regressed = {(op, c.name) for op, c in res.builds[0].latency_regressions}
    # checkout slowed (and so all operations together); find_item unchanged.
    assert ("checkout", "p50") in regressed and all(op in ("checkout", "all") for op, _ in regressed)
    c = by(res)[("checkout", "p50")]
    assert c.ci[0] > 1.0 and c.ci[0] < c.ratio < c.ci[1]
    assert not by(res)[("find_item", "p50")].significant


def test_between_run_variation_widens_the_interval(tmp_path):
    # Same request-level noise; in "wobbly" every run is shifted by its own factor (machine state).
    steady = build(tmp_path, "a", range(3)) + build(tmp_path, "b", range(3, 6))
    wobbly = build(tmp_path, "c", range(3)) + [latency_run(tmp_path / f"d{k}.wdmr", seed=3 + k, label="d", slow=f)
                                               for k, f in enumerate((0.8, 1.0, 1.25))]
    w_steady = np.diff(by(compare(steady))[("checkout", "p50")].ci)[0]
    w_wobbly = np.diff(by(compare(wobbly))[("checkout", "p50")].ci)[0]
    assert w_wobbly > 1.5 * w_steady


def test_single_run_uses_the_noise_floor(tmp_path):
    a = latency_run(tmp_path / "a.wdmr", seed=1, label="a")
    within = latency_run(tmp_path / "b.wdmr", seed=2, label="b", slow=1 + NOISE_FLOOR["p50"] / 2)
    beyond = latency_run(tmp_path / "c.wdmr", seed=3, label="c", slow=2 * (1 + NOISE_FLOOR["p50"]))
    res = compare([a, within, beyond])
    assert [b.noise_floor for b in res.builds] == [True, True]
    assert not res.builds[0].regression  # a shift inside the between-run noise one run cannot rule out
    assert ("checkout", "p50") in {(op, c.name) for op, c in res.builds[1].latency_regressions}
    c = by(res)[("checkout", "p50")]
    assert c.ci[1] / c.ci[0] > (1 + NOISE_FLOOR["p50"]) ** 2  # widened on both sides by the floor
    text = render_compare_text(res)
    assert "a weaker verdict" in text and f"p50 ±{NOISE_FLOOR['p50'] * 100:g}%" in text and "--runs 3" in text


def test_errors_latency_is_kept_apart(tmp_path):
    # The new build refuses connections instantly for half of the checkouts: they must not make it "faster".
    def run(path: Path, label: str, seed: int, broken: bool) -> Path:
        rng = np.random.default_rng(seed)
        h = History(label=label, digest="sha256:t")
        for k in range(400):
            if broken and k % 2:
                h.req("checkout", [f"o{k}"], "conn_error", expect="any", at=0.01 * k, latency=1e-4, sid=k)
            else:
                h.req("checkout", [f"o{k}"], "ok", expect="any", at=0.01 * k,
                      latency=float(rng.lognormal(np.log(0.02), 0.3)), sid=k)
        return h.write(path, wall=4.5)

    paths = [run(tmp_path / f"a{k}.wdmr", "a", k, False) for k in range(2)]
    paths += [run(tmp_path / f"b{k}.wdmr", "b", 5 + k, True) for k in range(2)]
    res = compare_runs([load(p) for p in paths])
    op = res.builds[0].ops[0]
    p50 = next(c for c in op.latency if c.name == "p50")
    assert not p50.significant and 0.8 < p50.ratio < 1.25
    assert op.new_error_ms is not None and op.new_error_ms < 1.0 and op.base_error_ms is None
    assert op.errors.regression and res.regression
    assert "errors' median latency" in render_compare_text(res)


# --- errors, anomalies, throughput --------------------------------------------------------------


def dead_run(path: Path, label: str) -> Path:
    """Every request answered 500 (a dead build)."""
    h = History(label=label, digest="sha256:same-trace")
    h.req("create_item", [1], "error", expect="ok", latency=0.001).req("add_stock", ["i1", 4000], "skipped", expect="ok")
    for k in range(400):
        h.req("find_item", ["i1"], "skipped", expect="ok", at=0.01 * k, sid=2 * k)
        h.req("checkout", [f"o{k}"], "error", expect="any", at=0.01 * k, latency=0.001, sid=2 * k + 1)
    return h.write(path, wall=4.5)


@pytest.mark.parametrize("threshold", [0.10, 25.0, 1e6])
def test_dead_build_is_a_regression_whatever_the_threshold(tmp_path, threshold):
    res = compare_runs([load(latency_run(tmp_path / "a.wdmr", seed=1, label="a")), load(dead_run(tmp_path / "b.wdmr", "b"))],
                       threshold=threshold)
    b = res.builds[0]
    # create_item: one request a side, 0 -> 1 error is no evidence (Fisher p = 0.5); checkout's 400 are.
    assert res.regression and b.error_regressions == ["checkout", "all"]
    assert b.errors.new_share == 1.0 and b.errors.base_share == 0.0
    text = render_compare_text(res)
    assert "checkout 0.0% -> 100.0% significant REGRESSION" in text
    assert "verdict: REGRESSION (" in text and "checkout error share 0.0% -> 100.0%" in text


def test_error_threshold_and_significance(tmp_path):
    def run(path: Path, label: str, errors: int) -> Path:
        h = History(label=label, digest="sha256:t")
        for k in range(1000):
            h.req("checkout", [f"o{k}"], "error" if k < errors else "ok", expect="any", at=0.01 * k, latency=0.01, sid=k)
        return h.write(path, wall=10.0)

    base = load(run(tmp_path / "a.wdmr", "a", 0))
    few = load(run(tmp_path / "b.wdmr", "b", 2))  # 0.2 %: neither significant nor above 1 point
    many = load(run(tmp_path / "c.wdmr", "c", 50))  # 5 %: significant, above 1 point
    res = compare_runs([base, few, many])
    assert [b.regression for b in res.builds] == [False, True]
    assert compare_runs([base, many], error_threshold=0.10).regression is False


def test_new_anomalies_are_a_regression(tmp_path):
    res = compare(build(tmp_path, "a", range(2)) + build(tmp_path, "b", range(2, 4), anomaly=True))
    assert res.regression and res.builds[0].anomaly_increase == {"lost_update": 1.0}
    assert not res.builds[0].latency_regressions


def test_paced_runs_show_achieved_vs_scheduled_not_a_throughput_ratio(tmp_path):
    res = compare(build(tmp_path, "a", range(2)) + build(tmp_path, "b", range(2, 4)))
    assert res.builds[0].throughput is None and all(r.speed == 1.0 and r.rate for r in res.runs)
    assert "throughput: not compared (paced runs measure the schedule); achieved req/s: a " in render_compare_text(res)


# --- the bootstrap, table-driven ------------------------------------------------------------------


def test_bootstrap_replicates_are_seeded_and_shaped():
    runs = [np.random.default_rng(k).lognormal(0, 0.5, 300) for k in range(3)]
    a = log_quantile_replicates(runs, (0.5, 0.99), np.random.default_rng(1), resamples=50)
    b = log_quantile_replicates(runs, (0.5, 0.99), np.random.default_rng(1), resamples=50)
    assert a.shape == (50, 2) and np.array_equal(a, b) and (a[:, 1] > a[:, 0]).all()
    assert log_mean_replicates(np.array([2.0]), np.random.default_rng(0), resamples=5).tolist() == [2.0] * 5


@pytest.mark.parametrize("log_ratio, se, floor, excludes_one", [
    (0.0, 0.05, 0.0, False), (0.5, 0.05, 0.0, True), (-0.5, 0.05, 0.0, True), (0.5, 0.05, 1.0, False),
    (0.5, 0.3, 0.0, False),
])
def test_ratio_interval(log_ratio, se, floor, excludes_one):
    lo, hi = ratio_interval(log_ratio, se, 1.96, floor)
    assert lo < np.exp(log_ratio) < hi and (lo > 1.0 or hi < 1.0) == excludes_one
    assert hi / lo == pytest.approx(np.exp(2 * 1.96 * se) * (1 + floor) ** 2)


@pytest.mark.parametrize("level, want", [(0.95, 1.959964), (0.99, 2.575829), (1 - 0.05 / 10, 2.807034)])
def test_critical_value(level, want):
    assert critical_value(level) == pytest.approx(want, rel=1e-5)


# --- output -----------------------------------------------------------------------------------------


def test_json_structure_and_determinism(tmp_path):
    paths = build(tmp_path, "a", range(2)) + build(tmp_path, "b", range(2, 4), slow=1.3)
    d = json.loads(render_json(compare(paths).as_dict()))
    assert d["schema"] == "wdm-compare/2" and d["base"] == {"label": "a", "files": ["a0.wdmr", "a1.wdmr"]}
    assert set(d) == {"schema", "trace_digest", "threshold", "error_threshold", "alpha", "regression", "noise_floor",
                      "base", "builds", "runs"}
    b = d["builds"][0]
    assert set(b) == {"label", "files", "regression", "noise_floor", "tests", "critical", "rates", "notes", "errors",
                      "throughput", "anomalies", "ops", "cannot_fire", "no_answered_requests"}
    op = next(o for o in b["ops"] if o["op"] == "checkout")
    assert [c["name"] for c in op["latency_ms"]] == ["p50", "p90", "p99"]
    assert [c["gated"] for c in op["latency_ms"]] == [True, False, True]
    assert len(d["runs"]) == 4 and set(d["runs"][0]["ops"]["checkout"]) == {
        "sent", "answered", "errors", "skipped", "p50", "p90", "p99", "error_p50_ms"}
    assert compare(paths).as_dict() == compare(paths).as_dict()


def test_html_page_has_plots_intervals_and_verdict(tmp_path):
    paths = build(tmp_path, "a", range(3)) + build(tmp_path, "b", range(3, 6), slow=2.0)
    page = render_compare(compare(paths), "html")
    body = page.split("<body>")[1]
    assert page.startswith("<!DOCTYPE html>") and body.count("<svg") == 2 and "<pre" not in body
    assert "<title>wdm-replay compare: REGRESSION</title>" in page and 'class="verdict-banner regression"' in page
    assert "b: checkout p50 2.00x slower" in page or "b: checkout p50" in page
    assert not any(ref in body for ref in ('src="http', "href=\"http", "url(http", "@import"))  # self-contained


@pytest.mark.parametrize("ne, ns, be, bs", [(0, 10, 0, 10), (5, 10, 0, 10), (2, 1000, 0, 1000), (50, 1000, 3, 900),
                                            (400, 400, 0, 400), (1, 1, 0, 1), (0, 50, 10, 50), (3, 7, 9, 12)])
def test_fisher_greater_is_the_exact_hypergeometric_tail(ne, ns, be, bs):
    # The oracle in exact arithmetic: P(X >= ne), X the events among ns draws from all ns + bs requests.
    total, events = ns + bs, ne + be
    want = sum(Fraction(math.comb(events, x) * math.comb(total - events, ns - x), math.comb(total, ns))
               for x in range(ne, min(events, ns) + 1))
    assert fisher_greater(ne, ns, be, bs) == pytest.approx(float(want), rel=1e-9, abs=1e-12)


def test_fisher_greater_on_a_million_requests_a_side():
    # The sizes of long runs: a clear rise is significant, equal shares are not.
    assert fisher_greater(1200, 1_000_000, 1000, 1_000_000) < 1e-4
    assert 0.4 < fisher_greater(1000, 1_000_000, 1000, 1_000_000) < 0.6


@pytest.mark.parametrize("ns, be, bs", [(1, 0, 1), (3, 0, 3), (2, 0, 3), (4, 0, 3), (5, 1, 10), (10, 3, 10),
                                        (1, 0, 30), (2, 0, 5), (60, 900, 1000), (20, 49, 50), (300, 949, 1000),
                                        (1000, 999_990, 1_000_000), (5000, 9_990, 10_000)])
@pytest.mark.parametrize("alpha", [0.05, 0.01, 0.2])
def test_the_gates_question_is_fishers_test_with_every_new_request_failing(ns, be, bs, alpha):
    # The exact one-term tail, C(be + ns, ns) / C(bs + ns, ns), decides as scipy's test does (the last
    # two cases take the scipy fallback after EXACT_TERMS factors; the first is the fallback's sizes too).
    p = Fraction(math.comb(be + ns, ns), math.comb(bs + ns, ns))
    assert all_failing_significant(ns, be, bs, alpha) == (p < Fraction(str(alpha)))
    if abs(float(p) - alpha) > 1e-9:  # away from the boundary, where float and exact may differ
        assert all_failing_significant(ns, be, bs, alpha) == (fisher_greater(ns, ns, be, bs) < alpha)


def test_at_exactly_alpha_every_failure_is_not_significant():
    # 3 requests a side, none failing in the base: every new one failing gives p = 1/20 exactly, and the
    # gate's strict p < alpha does not fire at 0.05 (the golden compare says so: "too few requests").
    assert not all_failing_significant(3, 0, 3, 0.05)
    assert all_failing_significant(4, 0, 4, 0.05)  # p = 1/70
    with pytest.raises(ValueError):
        all_failing_significant(3, 4, 3, 0.05)
