"""``shrink`` of a run without a final state says why it has none (QA sweep).

Before: a run cut short (a truncated file, a Ctrl-C'd replay) was reported as "replayed without
the final read", which sends the user to the wrong fix.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

WDM = [sys.executable, "-m", "wdmreplay"]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*WDM, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_no_final_state_names_its_cause(shop, tmp_path: Path) -> None:
    assert _run(["generate-trace", "stress", "--sessions", "20", "-q", "-o", "t.wdmt"], tmp_path).returncode == 0
    full = _run(["replay", "t.wdmt", "--url", shop.url, "--speed", "max", "-q", "-o", "run.wdmr"], tmp_path)
    bare = _run(["replay", "t.wdmt", "--url", shop.url, "--speed", "max", "-q", "--no-final-read", "-o", "bare.wdmr"],
                tmp_path)
    assert full.returncode == 0 and bare.returncode == 0, (full.stderr, bare.stderr)
    data = (tmp_path / "run.wdmr").read_bytes()
    (tmp_path / "cut.wdmr").write_bytes(data[: len(data) // 3])  # ends before the final state and the trailer

    p = _run(["shrink", "bare.wdmr", "--url", shop.url], tmp_path)
    assert p.returncode == 3 and p.stderr.count("\n") == 1, p.stderr
    assert "bare.wdmr: the run has no final state (replayed without the final read)" in p.stderr

    p = _run(["shrink", "cut.wdmr", "--url", shop.url], tmp_path)
    assert p.returncode == 3 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
    assert "cut.wdmr: the run has no final state (a partial run: ended without a trailer at byte " in p.stderr
    assert "replayed without the final read" not in p.stderr


def test_an_empty_run_path_is_a_one_line_error(shop, tmp_path: Path) -> None:
    """Before: ``shrink ""`` was a ValueError traceback (the default -o derived from an empty name)."""
    p = _run(["shrink", "", "--url", shop.url], tmp_path)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr == "wdm-replay: error: '': not a results file; give the RUN.wdmr to shrink\n"
    assert list(tmp_path.iterdir()) == []
