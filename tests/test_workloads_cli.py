"""generate-trace and inspect on the command line (the installed console script and CliRunner)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from wdmreplay.cli import cli
from wdmreplay.workloads import generate


def _exe() -> str:
    exe = shutil.which("wdm-replay", path=os.path.dirname(sys.executable)) or str(Path(sys.executable).with_name("wdm-replay"))
    assert Path(exe).exists()
    return exe


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([_exe(), *args], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.mark.parametrize("cmd", [["generate-trace"], ["generate-trace", "stress"], ["generate-trace", "consistency"],
                                 ["generate-trace", "checkout"], ["inspect"]])
def test_every_help_shows_an_example(cmd: list[str]) -> None:
    res = CliRunner().invoke(cli, [*cmd, "--help"])
    assert res.exit_code == 0
    assert "Example" in res.output and "wdm-replay " + cmd[0] in res.output


def test_generate_trace_matches_library_and_prints_summary(tmp_path: Path) -> None:
    proc = _run("generate-trace", "stress", "--sessions", "500", "--seed", "9", "-o", "t.wdmt", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wrote t.wdmt: stress seed 9, 500 sessions, ")
    assert lines[0].endswith("; exercises 10 of 13 bug classes, 2 of them only when replayed with --faults (inspect lists them)")
    assert "requests, schedule" in lines[0]
    # Not a TTY: no progress bar, only the one-line scenario-4 notice.
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("notice:") and "s4_remove_readd" in err[0]
    generate("stress", tmp_path / "lib.wdmt", seed=9, sessions=500)
    assert (tmp_path / "t.wdmt").read_bytes() == (tmp_path / "lib.wdmt").read_bytes()


def test_default_output_name_and_quiet(tmp_path: Path) -> None:
    proc = _run("generate-trace", "consistency", "--items", "5", "--users", "7", "--orders", "9", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "consistency.wdmt").exists() and proc.stderr == ""


@pytest.mark.parametrize("args,match", [
    (["stress", "--weights", "5,30,25,20,10,10"], "needs remove_item"),
    (["stress", "--users", "3", "--rate", "5"], "--rate applies only to the open model"),
    (["checkout", "--dialect", "2023"], "needs batch_init"),
    (["stress", "--wait", "1,2,3"], "--wait"),
])
def test_generate_errors_are_one_line_exit_2(tmp_path: Path, args: list[str], match: str) -> None:
    proc = _run("generate-trace", *args, "-o", "x.wdmt", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wdm-replay: error: ") and match in lines[0], proc.stderr
    assert not list(tmp_path.iterdir())  # nothing written, no temp files


INSPECT_KEYS = {"file", "format", "version", "generator", "workload", "seed", "dialect", "params", "sessions",
                "requests", "duration", "expect", "expect_range", "phases", "scenario_runs", "scenario_mix", "mix_test", "ops",
                "expects", "expects_by_op", "symbols", "trailer", "exercises", "shrink"}


def test_inspect_json_and_text(tmp_path: Path) -> None:
    path = tmp_path / "c.wdmt"
    h = generate("consistency", path, items=10, users=30, orders=50, seed=1)
    res = CliRunner().invoke(cli, ["inspect", str(path), "--json"])
    assert res.exit_code == 0
    info = json.loads(res.output)
    assert set(info) == INSPECT_KEYS
    assert [p["name"] for p in info["phases"]] == ["populate", "orders", "checkout"]
    assert [p["sessions"] for p in info["phases"]] == [40, 50, 50]
    assert info["ops"]["checkout"] == 50 and info["requests"] == h["requests"]
    assert sum(info["expects"].values()) == h["requests"]
    assert info["symbols"]["problems"] == 0 and info["symbols"]["bound"] == 10 + 30 + 50
    assert info["expect_range"] == h["expect_range"]
    text = CliRunner().invoke(cli, ["inspect", str(path)])
    assert text.exit_code == 0
    for word in ("workload consistency", "phases", "scenario mix", "operations", "checkout", "symbols"):
        assert word in text.output


def test_inspect_stress_reports_mix_vs_weights(tmp_path: Path) -> None:
    path = tmp_path / "s.wdmt"
    generate("stress", path, sessions=400, dialect="2023", weights="1,0,0,0,0,1", seed_scenarios_only=True)
    info = json.loads(CliRunner().invoke(cli, ["inspect", str(path), "--json"]).output)
    mix = info["scenario_mix"]
    assert mix["s1_admin_stock"]["runs"] + mix["s6_fail_no_credit"]["runs"] == 400
    assert mix["s2_checkout_one"]["runs"] == 0 and mix["s1_admin_stock"]["weight_share"] == 0.5
    assert info["ops"] == {"create_item": 400, "add_stock": 400, "create_user": mix["s6_fail_no_credit"]["runs"],
                           "create_order": mix["s6_fail_no_credit"]["runs"],
                           "add_item": mix["s6_fail_no_credit"]["runs"], "checkout": mix["s6_fail_no_credit"]["runs"]}
    assert info["expects_by_op"]["checkout"]["fail"] == mix["s6_fail_no_credit"]["runs"]


def test_progress_bar_goes_to_stderr_and_does_not_change_bytes(tmp_path: Path, capsys) -> None:
    generate("stress", tmp_path / "a.wdmt", sessions=5000, progress=True)
    err = capsys.readouterr().err
    assert "generating a.wdmt" in err
    generate("stress", tmp_path / "b.wdmt", sessions=5000)
    assert (tmp_path / "a.wdmt").read_bytes() == (tmp_path / "b.wdmt").read_bytes()


def test_sigterm_mid_generation_stops_as_ctrl_c_does_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    # SIGTERM (what a supervisor or `timeout` sends) used to kill the process outright: no message,
    # exit -15, and the trace body's temporary file (tens of MB for a big trace) left behind.
    import signal
    import time

    before = b"an earlier trace, kept whole"
    (tmp_path / "big.wdmt").write_bytes(before)
    proc = subprocess.Popen([sys.executable, "-m", "wdmreplay", "generate-trace", "stress", "--requests", "5000000",
                             "--rate", "5000", "-q", "--force", "-o", "big.wdmt"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".wdm-trace-body-*")):  # the body is being written
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() is not None else ""
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "wdm-replay: interrupted" and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.wdmt"]  # no body, no .part
    assert (tmp_path / "big.wdmt").read_bytes() == before
