"""No writer replaces a run's results, a recorded trace or another file silently (found by the QA sweep).

Before: ``generate-trace stress -o run.wdmr`` (and ``shrink``, ``merge``, ``record`` with ``-o``
naming an existing results file) wrote over a recorded run with exit 0. Now each refuses with one
line and exit 2 unless ``--force``; a generated trace (remade from its header) is still replaced.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from wdmreplay.workloads.generate import WORKLOADS
from wdmreplay.traces import read_header
from wdmreplay.traces.trace import GENERATED_WORKLOADS

WDM = [sys.executable, "-m", "wdmreplay"]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*WDM, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _refused(p: subprocess.CompletedProcess, path: str, held: str) -> None:
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.startswith(f"wdm-replay: error: {path}: already holds {held}; give --force"), p.stderr
    assert p.stdout == ""


@pytest.fixture
def run_file(shop, tmp_path: Path) -> Path:
    """A real run's results: a small stress trace replayed over HTTP against the reference shop."""
    gen = _run(["generate-trace", "stress", "--sessions", "8", "-q", "-o", "t.wdmt"], tmp_path)
    assert gen.returncode == 0, gen.stderr
    rep = _run(["replay", "t.wdmt", "--url", shop.url, "--speed", "max", "-q", "-o", "run.wdmr"], tmp_path)
    assert rep.returncode == 0, rep.stderr
    return tmp_path / "run.wdmr"


def test_generate_trace_keeps_a_run_unless_forced(run_file: Path) -> None:
    cwd = run_file.parent
    before = _digest(run_file)
    _refused(_run(["generate-trace", "contention", "-o", "run.wdmr"], cwd), "run.wdmr", "the results of a run")
    assert _digest(run_file) == before
    forced = _run(["generate-trace", "contention", "--force", "-o", "run.wdmr"], cwd)
    assert forced.returncode == 0, forced.stderr
    assert read_header(run_file)["workload"] == "contention"


def test_generate_trace_replaces_a_generated_trace_but_not_another_file(tmp_path: Path) -> None:
    first = _run(["generate-trace", "stress", "--sessions", "5", "-q", "-o", "t.wdmt"], tmp_path)
    again = _run(["generate-trace", "contention", "-o", "t.wdmt"], tmp_path)
    assert first.returncode == 0 and again.returncode == 0, again.stderr
    assert read_header(tmp_path / "t.wdmt")["workload"] == "contention"
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    _refused(_run(["generate-trace", "contention", "-o", "notes.txt"], tmp_path), "notes.txt",
             "a file that is not a generated trace")
    assert notes.read_text() == "my notes\n"


def test_shrink_merge_record_keep_another_run(run_file: Path, shop) -> None:
    cwd = run_file.parent
    other = _run(["replay", "t.wdmt", "--url", shop.url, "--speed", "max", "-q", "-o", "other.wdmr"], cwd)
    assert other.returncode == 0, other.stderr
    before = _digest(cwd / "other.wdmr")
    # shrink refuses before it judges or replays anything (the run here is CLEAN: that check comes after)
    _refused(_run(["shrink", "run.wdmr", "--url", shop.url, "-o", "other.wdmr"], cwd), "other.wdmr",
             "the results of a run")
    _refused(_run(["merge", "run.wdmr", "-o", "other.wdmr"], cwd), "other.wdmr", "the results of a run")
    _refused(_run(["record", "--upstream", shop.url, "--listen", "127.0.0.1:0", "--duration", "1",
                   "-o", "other.wdmr"], cwd), "other.wdmr", "the results of a run")
    assert _digest(cwd / "other.wdmr") == before
    # an input named as -o is still that error, not "already holds"
    same = _run(["shrink", "run.wdmr", "--url", shop.url, "-o", "run.wdmr"], cwd)
    assert same.returncode == 2 and "is one of the inputs" in same.stderr


def test_generated_workloads_are_the_generators() -> None:
    assert GENERATED_WORKLOADS == frozenset(WORKLOADS)
