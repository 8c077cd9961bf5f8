"""generate(): determinism, self-regeneration, scenario mix, stop conditions, symbol rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from wdmreplay.cli import cli
from wdmreplay.workloads import WorkloadError, generate, inspect_trace, validate_symbols
from wdmreplay.workloads.inspect import MixTest, mix_test
from wdmreplay.workloads.stress import (DEFAULT_RECHECKOUT_SHARE, DEFAULT_REPEAT_SHARE, DEFAULT_WEIGHTS, SCENARIOS,
                                       SEED_SCENARIOS, STEPS_PER_SCENARIO)
from wdmreplay.traces import TraceReader

CHI2_5DOF_P001 = 20.515  # chi-square critical value, 5 degrees of freedom, p = 0.001 (standard table)

CASES = [
    ("stress", {"sessions": 300}),
    ("stress", {"dialect": "2023", "rate": 40, "arrival": "constant", "duration": 5}),
    ("stress", {"dialect": "2023", "users": 12, "spawn_rate": 4, "wait": "0.5,3", "duration": 20}),
    ("stress", {"requests": 2000, "weights": "1,2,3,0,4,5", "price_range": "2,3"}),
    ("consistency", {}),
    ("consistency", {"items": 7, "stock": 3, "price": 2, "users": 9, "credit": 5, "orders": 40}),
    ("checkout", {"sessions": 500, "items": 10, "orders": 20}),
    ("checkout", {"duration": 3, "rate": 50, "arrival": "constant"}),
]


def _sessions(path: Path) -> list[dict]:
    with TraceReader(path) as r:
        return list(r)


@pytest.mark.parametrize("workload,options", CASES)
def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path, workload: str, options: dict) -> None:
    a, b, c = tmp_path / "a.wdmt", tmp_path / "b.wdmt", tmp_path / "c.wdmt"
    generate(workload, a, seed=3, **options)
    generate(workload, b, seed=3, **options)
    generate(workload, c, seed=4, **options)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


@pytest.mark.parametrize("workload,options", CASES)
def test_params_regenerate_the_same_file(tmp_path: Path, workload: str, options: dict) -> None:
    a, b = tmp_path / "a.wdmt", tmp_path / "b.wdmt"
    header = generate(workload, a, seed=11, **options)
    again = generate(header["workload"], b, seed=header["seed"], **header["params"])
    assert again == header
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("workload,options", CASES)
def test_every_symbol_is_bound_earlier_in_its_session_or_phase(tmp_path: Path, workload: str, options: dict) -> None:
    path = tmp_path / "t.wdmt"
    h = generate(workload, path, seed=5, **options)
    sessions = _sessions(path)
    # Walk independently of SymbolChecker: the rule itself, spelled out.
    earlier_phases: set[str] = set()
    this_phase: set[str] = set()
    phase = 0
    seen_binds: set[str] = set()
    for s in sessions:
        if s["phase"] != phase:
            assert s["phase"] > phase
            earlier_phases |= this_phase
            this_phase, phase = set(), s["phase"]
        local: set[str] = set()
        for st in s["steps"]:
            for a in st["args"]:
                if isinstance(a, str) and a.startswith("$"):
                    assert a in local or a in earlier_phases, (s["sid"], st)
            if st["bind"] is not None:
                assert st["bind"].startswith("$") and st["bind"] not in seen_binds
                seen_binds.add(st["bind"])
                local.add(st["bind"])
        this_phase |= local
    assert validate_symbols(sessions).problems == 0
    assert h["requests"] == sum(len(s["steps"]) for s in sessions)
    assert h["scenarios"] and {st["scenario"] for s in sessions for st in s["steps"]} <= set(h["scenarios"])
    assert h["dialect"] == h["params"]["dialect"]


def test_symbol_checker_catches_violations() -> None:
    def sess(sid, phase, steps):
        return {"sid": sid, "phase": phase, "at": 0.0, "steps": steps}

    def st(op, args, bind=None):
        return {"op": op, "args": args, "bind": bind, "expect": "ok", "think": 0.0, "scenario": ""}

    ok = [sess(0, 0, [st("create_user", [], "$u")]), sess(1, 1, [st("find_user", ["$u"])])]
    assert validate_symbols(ok).problems == 0
    same_phase = [sess(0, 0, [st("create_user", [], "$u")]), sess(1, 0, [st("find_user", ["$u"])])]
    r = validate_symbols(same_phase)
    assert r.problems == 1 and "by another session" in r.examples[0]
    before = [sess(0, 0, [st("find_user", ["$u"]), st("create_user", [], "$u")])]
    assert validate_symbols(before).problems == 1
    twice = [sess(0, 0, [st("create_user", [], "$u")]), sess(1, 1, [st("create_user", [], "$u")])]
    assert "bound twice" in validate_symbols(twice).examples[0]
    arity = [sess(0, 0, [st("find_user", [])])]
    assert "takes 1 args" in validate_symbols(arity).examples[0]


def test_stress_mix_matches_weights_over_10000_sessions(tmp_path: Path) -> None:
    path = tmp_path / "mix.wdmt"
    generate("stress", path, seed=2024, dialect="2023", sessions=10_000)
    res = CliRunner().invoke(cli, ["inspect", str(path), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    mix = info["scenario_mix"]
    assert list(mix) == list(SCENARIOS) and info["scenario_runs"] == 10_000
    # s7 and s8 come at exactly their default shares (5 % each, spread evenly from a seeded start)
    extra = {n: round(10_000 * share) for n, share in zip(SCENARIOS[6:], (DEFAULT_REPEAT_SHARE, DEFAULT_RECHECKOUT_SHARE))}
    assert {n: mix[n]["runs"] for n in SCENARIOS[6:]} == extra
    # the six seed scenarios share the other runs by their weights
    seed_runs = 10_000 - sum(extra.values())
    observed = [mix[n]["runs"] for n in SEED_SCENARIOS]
    assert sum(observed) == seed_runs
    total_w = sum(DEFAULT_WEIGHTS)
    expected = [seed_runs * w / total_w for w in DEFAULT_WEIGHTS]
    chi2 = sum((o - e) ** 2 / e for o, e in zip(observed, expected))
    assert chi2 < CHI2_5DOF_P001, chi2
    assert info["mix_test"]["dof"] == 7 and info["mix_test"]["p"] > 1e-3
    for n in SEED_SCENARIOS:  # each share within 4 binomial standard errors of its weight
        assert abs(mix[n]["z"]) < 4, (n, mix[n])
        assert mix[n]["weight_share"] == pytest.approx(
            DEFAULT_WEIGHTS[SCENARIOS.index(n)] / total_w * seed_runs / 10_000)
    # requests per scenario agree with each scenario's fixed step count
    for n, k in zip(SCENARIOS, STEPS_PER_SCENARIO):
        assert mix[n]["requests"] == k * mix[n]["runs"]


def test_seed_scenarios_only_leaves_out_s7_and_s8(tmp_path: Path) -> None:
    h = generate("stress", tmp_path / "t.wdmt", seed=3, dialect="2023", sessions=2000, seed_scenarios_only=True)
    info = inspect_trace(tmp_path / "t.wdmt").to_json()
    assert [info["scenario_mix"][n]["runs"] for n in SCENARIOS[6:]] == [0, 0]
    assert sum(info["scenario_mix"][n]["runs"] for n in SEED_SCENARIOS) == 2000
    assert info["mix_test"]["p"] > 1e-3
    assert h["params"]["repeat_share"] == h["params"]["recheckout_share"] == 0.0
    # without re-checkouts every aggregate is exact again
    assert set(h["expect"]) == {"checkout_ok", "stock_total", "credit_total"} and "expect_range" not in h
    with pytest.raises(WorkloadError, match="--seed-scenarios-only leaves out s7 and s8"):
        generate("stress", tmp_path / "u.wdmt", sessions=10, seed_scenarios_only=True, repeat_share=0.1)


def test_default_weights_under_2024_leave_out_scenario_4_with_notice(tmp_path: Path) -> None:
    notices: list[str] = []
    h = generate("stress", tmp_path / "t.wdmt", sessions=2000, notify=notices.append)
    assert len(notices) == 1 and "s4_remove_readd" in notices[0] and "\n" not in notices[0]
    assert h["params"]["weights"] == [5.0, 30.0, 25.0, 0.0, 10.0, 10.0]
    ops = {st["op"] for s in _sessions(tmp_path / "t.wdmt") for st in s["steps"]}
    assert "remove_item" not in ops
    info = inspect_trace(tmp_path / "t.wdmt").to_json()
    assert info["scenario_mix"]["s4_remove_readd"]["runs"] == 0
    assert info["scenario_mix"]["s2_checkout_one"]["weight_share"] == pytest.approx(30 / 80 * 0.9)


def test_explicit_weight_for_scenario_4_under_2024_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError, match="scenario 4 .* needs remove_item"):
        generate("stress", tmp_path / "t.wdmt", sessions=10, weights="5,30,25,20,10,10")
    assert not (tmp_path / "t.wdmt").exists()


@pytest.mark.parametrize("options,match", [
    ({"rate": 0}, "--rate: must be > 0"),
    ({"weights": "1,2,3"}, "expected 6 numbers"),
    ({"repeat_share": 0.6, "recheckout_share": 0.4}, "their sum must be below 1"),
    ({"repeat_share": -0.1}, "--repeat-share: must be >= 0"),
    ({"weights": "0,0,0,0,0,0"}, "not all zero"),
    ({"weights": "1,x,1,0,1,1"}, "--weights: expected a number"),
    ({"duration": 5, "sessions": 3}, "only one of --duration, --sessions"),
    ({"users": 3, "rate": 5}, "--rate applies only to the open model"),
    ({"wait": "1,2"}, "--wait applies only to the closed model"),
    ({"users": 3, "wait": "5,1"}, "--wait: minimum 5 is above maximum 1"),
    ({"price_range": "10,1"}, "--price-range: low end 10 is above high end 1"),
    ({"sessions": -1}, "--sessions: must be >= 0"),
    ({"bogus": 1}, "unknown option"),
])
def test_bad_stress_options_are_one_line_errors(tmp_path: Path, options: dict, match: str) -> None:
    with pytest.raises(WorkloadError, match=match) as e:
        generate("stress", tmp_path / "t.wdmt", **options)
    assert "\n" not in str(e.value)


def test_other_refusals(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError, match="needs batch_init"):
        generate("checkout", tmp_path / "t.wdmt", dialect="2023")
    with pytest.raises(WorkloadError, match="unknown workload"):
        generate("nope", tmp_path / "t.wdmt")
    with pytest.raises(WorkloadError, match="unknown dialect"):
        generate("stress", tmp_path / "t.wdmt", dialect="1999")
    with pytest.raises(WorkloadError, match="--price: must be >= 1"):
        generate("consistency", tmp_path / "t.wdmt", price=0)
    with pytest.raises(WorkloadError, match="must be <="):
        generate("consistency", tmp_path / "t.wdmt", items=10**30)


def test_open_model_stop_conditions(tmp_path: Path) -> None:
    p = tmp_path / "t.wdmt"
    h = generate("stress", p, sessions=123)
    assert h["sessions"] == 123
    h = generate("stress", p, requests=1000)
    assert 1000 <= h["requests"] < 1000 + max(STEPS_PER_SCENARIO)
    h = generate("stress", p, rate=20, arrival="constant", duration=10)
    assert h["sessions"] == 200
    ats = [s["at"] for s in _sessions(p)]
    assert ats == [round(k / 20, 6) for k in range(200)]
    h = generate("stress", p, rate=50, duration=40, seed=9)
    assert abs(h["sessions"] - 2000) < 5 * 2000 ** 0.5  # Poisson count: mean 2000, sd ~45
    ats = [s["at"] for s in _sessions(p)]
    assert ats == sorted(ats) and ats[-1] < 40


def test_closed_model_users_think_and_duration(tmp_path: Path) -> None:
    p = tmp_path / "t.wdmt"
    h = generate("stress", p, dialect="2023", users=10, spawn_rate=2, wait="1,3", duration=30, seed=1)
    sessions = _sessions(p)
    assert h["sessions"] == 10 and [s["at"] for s in sessions] == [k / 2 for k in range(10)]
    for s in sessions:
        firsts = [st for st in s["steps"] if st["op"] == "create_item" and st["bind"].endswith(".item0")]
        runs = len(firsts)
        assert firsts[0]["think"] == 0.0
        assert all(1 <= st["think"] <= 3 for st in firsts[1:])
        # every non-first step of a run has no think time
        assert sum(st["think"] for st in s["steps"]) == pytest.approx(sum(st["think"] for st in firsts))
        clock = s["at"] + sum(st["think"] for st in firsts)
        assert clock < 30 and runs >= 30 / 3 - s["at"] / 3 - 1
        binds = [st["bind"] for st in s["steps"] if st["bind"]]
        assert binds[0].startswith(f"$s{s['sid']}.r0.")
    assert h["duration"] < 30


def test_inspect_counts_closed_model_runs(tmp_path: Path) -> None:
    p = tmp_path / "t.wdmt"
    generate("stress", p, dialect="2023", users=6, spawn_rate=3, wait="0.1,0.5", duration=8, seed=2)
    runs = sum(1 for s in _sessions(p) for st in s["steps"]
               if st["op"] == "create_item" and st["bind"].endswith(".item0"))
    info = inspect_trace(p).to_json()
    assert info["scenario_runs"] == runs > 6 * 8 / 0.5 - 6
    assert sum(m["requests"] for m in info["scenario_mix"].values()) == info["requests"]


@pytest.mark.parametrize("runs, weights, chi2, p", [
    ([60, 40], [1, 1], 4.0, 0.0455002639),  # chi-square tables: P(X >= 4) with 1 degree of freedom
    ([30, 20, 10], [1, 1, 1], 10.0, 0.0067379470),  # 2 degrees of freedom: exp(-5), the closed form
    ([25, 50, 25], [1, 2, 1], 0.0, 1.0),
    ([30, 20, 20, 20, 10], [1, 1, 1, 1, 1], 10.0, 0.0404276819),  # 4 degrees of freedom: 6 exp(-5)
    ([90, 10], [1, 1], 64.0, 1.2442e-15),  # 1 degree of freedom: erfc(8 / sqrt(2))
])
def test_mix_test_p_values_against_tables(runs, weights, chi2, p) -> None:
    got = mix_test(runs, weights)
    assert got.chi2 == pytest.approx(chi2) and got.dof == len(runs) - 1
    assert got.p == pytest.approx(p, rel=1e-3, abs=1e-9)


def test_mix_test_table() -> None:
    assert mix_test([50, 50], [1, 1]) == MixTest(0.0, 1, 1.0)
    assert mix_test([10, 0, 30], [1, 0, 3]).dof == 1  # zero-weight scenarios are left out
    assert mix_test([10, 1, 30], [1, 0, 3]) == MixTest(None, 1, 0.0)
    assert mix_test([0, 0], [1, 1]) is None
    assert mix_test([90, 10], [1, 1]).p < 1e-10


def test_inspect_phase_span_matches_header_duration(tmp_path: Path) -> None:
    p = tmp_path / "t.wdmt"
    h = generate("stress", p, dialect="2023", users=5, spawn_rate=1, wait="1,2", duration=15, seed=3)
    info = inspect_trace(p).to_json()
    assert sum(ph["span"] for ph in info["phases"]) == pytest.approx(h["duration"], abs=1e-5)
    assert info["phases"][0]["last_start"] == 4.0
