"""`wdm-replay demo` end to end, as a user runs it: the installed console script in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from wdmreplay.traces import load_results, read_header

EXE = shutil.which("wdm-replay", path=os.path.dirname(sys.executable)) or ""


def _demo(*args: str, cwd) -> subprocess.CompletedProcess:
    cmd = [EXE] if EXE else [sys.executable, "-m", "wdmreplay"]
    return subprocess.run([*cmd, "demo", "--duration", "2", "--quiet", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_demo_is_clean_on_the_reference_shop(tmp_path):
    p = _demo("--keep", str(tmp_path / "out"), cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr
    assert p.stderr == ""
    assert p.stdout.count("verdict: CLEAN") == 6  # the first and the last line of each of the three checks
    assert "demo: every check CLEAN" in p.stdout
    # The three workloads together cover every bug class that needs no fault, and the demo says so.
    assert "together: covered 11 of the 11 bug classes that need no fault;" in p.stdout
    # What it kept is a real trace and a real, complete run of it.
    for name in ("stress", "consistency", "contention"):
        header = read_header(tmp_path / "out" / f"{name}.wdmt")
        results = load_results(tmp_path / "out" / f"{name}.wdmr")
        assert results.complete and results.n == header["requests"]
        assert results.header["label"] == f"demo-{name}"


@pytest.mark.parametrize("inject, kind", [("oversell", "oversell"), ("double-charge", "double_charge"),
                                          ("lost-line", "lost_order_line"), ("wrong-total", "wrong_total"),
                                          ("repeat-collapse", "lost_checkout")])
def test_demo_against_a_buggy_shop_fails_and_names_the_anomaly(tmp_path, inject, kind):
    p = _demo("--inject", inject, cwd=tmp_path)
    assert p.returncode == 1, p.stdout[-2000:] + p.stderr
    assert "BUG INJECTED" in p.stdout
    assert kind in p.stdout
    assert "the checks found anomalies" in p.stdout
    assert list(tmp_path.iterdir()) == []  # without --keep nothing is left behind


def test_suite_coverage_line_names_what_is_missing():
    from wdmreplay.demo import suite_coverage_line

    line = suite_coverage_line({"oversell", "double_charge"})
    assert line.startswith("together: covered 2 of the 11 bug classes that need no fault (not exercised: ")
    assert "repeated item collapsed" in line and "oversell" not in line.split("(")[1]


def test_demo_offers_every_bug_of_the_shop():
    from wdmreplay.cli import cli
    from wdmreplay.shop import DURABLE_BUGS, INJECT_KINDS

    inject = next(p for p in cli.commands["demo"].params if p.name == "inject")
    assert sorted(inject.type.choices) == sorted(INJECT_KINDS + DURABLE_BUGS)


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_during_a_replay_stops_the_demo_with_130_and_keeps_the_partial_run(tmp_path, sig):
    # The replay stopped at the signal, but the demo went on with the next workloads and ended
    # "the checks found anomalies" (exit 1): a stopped run reported as a wrong shop.
    import signal
    import time

    cmd = [EXE] if EXE else [sys.executable, "-m", "wdmreplay"]
    keep = tmp_path / "kept"
    proc = subprocess.Popen([*cmd, "demo", "--duration", "60", "--quiet", "--keep", str(keep)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (keep / "stress.wdmr.part").exists():  # the paced stress replay is under way
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(getattr(signal, sig))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"wdm-replay: error: demo: interrupted during the stress replay; "
                                           f"its partial results are kept in {keep / 'stress.wdmr'}")
    assert "PARTIAL (interrupted)" in out and "=== consistency" not in out and "found anomalies" not in out
    assert not (keep / "consistency.wdmt").exists()
    r = load_results(keep / "stress.wdmr")
    assert r.trailer_record.complete is False
