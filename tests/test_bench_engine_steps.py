"""bench/engine_steps.py: the engine's per-step cost in-process (no network); its output and bad options."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "engine_steps.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=300)


def test_engine_steps_replays_every_request_and_reports_cpu_per_request():
    run = _run("--requests", "1500")
    assert run.returncode == 0, run.stderr
    m = re.fullmatch(r"([\d,]+) requests, ([\d,]+) rows: ([\d.]+) µs CPU per request\n", run.stdout)
    assert m, run.stdout
    requests, rows, us = int(m[1].replace(",", "")), int(m[2].replace(",", "")), float(m[3])
    assert requests >= 1000 and rows == requests and us > 0


def test_engine_steps_records_packs_every_row_into_results_records():
    run = _run("--requests", "1500", "--records")
    assert run.returncode == 0, run.stderr
    m = re.fullmatch(r"([\d,]+) requests, ([\d,]+) rows: ([\d.]+) µs CPU per request\n", run.stdout)
    assert m and int(m[2].replace(",", "")) == int(m[1].replace(",", "")) >= 1000, run.stdout


def test_engine_steps_bad_options_exit_2_with_one_line():
    run = _run("--requests", "10")
    assert run.returncode == 2 and "--requests must be at least 1000" in run.stderr
    assert "Traceback" not in run.stderr
    run = _run("--help")
    assert run.returncode == 0 and "--callgrind" in run.stdout and "--records" in run.stdout and "python bench/engine_steps.py" in run.stdout
