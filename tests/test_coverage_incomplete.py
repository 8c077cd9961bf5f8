"""The "covered" line of a run that may not have sent its whole trace says "at most" (QA sweep).

Before: ``check`` of a results file cut short after 0 requests printed "covered: 8 of 13 bug
classes", the trace's count, as if the run had made the shop do all of it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

WDM = [sys.executable, "-m", "wdmreplay"]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*WDM, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def _covered(args: list[str], cwd: Path) -> tuple[str, dict]:
    lines = _run(["check", *args], cwd).stdout.splitlines()
    text = lines[1] if len(lines) > 1 else ""  # the line right after the verdict (the check's first line)
    bc = json.loads(_run(["check", *args, "--json"], cwd).stdout)["bug_classes"]
    return text, bc


def test_partial_run_and_lone_shard_say_at_most(shop, tmp_path: Path) -> None:
    assert _run(["generate-trace", "stress", "--sessions", "30", "-q", "-o", "t.wdmt"], tmp_path).returncode == 0
    for out, extra in (("run.wdmr", []), ("s0.wdmr", ["--shard", "0/2"])):
        p = _run(["replay", "t.wdmt", "--url", shop.url, "--speed", "max", "-q", "-o", out, *extra], tmp_path)
        assert p.returncode == 0, p.stderr
    data = (tmp_path / "run.wdmr").read_bytes()
    (tmp_path / "cut.wdmr").write_bytes(data[: len(data) // 2])

    whole, bc = _covered(["run.wdmr"], tmp_path)
    assert whole.startswith("covered: ") and "at most" not in whole and bc["incomplete"] is None
    n = len(bc["covered"])
    assert n > 0

    cut, bc = _covered(["cut.wdmr"], tmp_path)
    assert cut.startswith(f"covered: at most {n} of 13 bug classes — a partial run: some requests of the trace "
                          "may not have been sent"), cut
    assert bc["incomplete"] == "a partial run" and len(bc["covered"]) == n

    shard, bc = _covered(["s0.wdmr"], tmp_path)
    assert shard.startswith(f"covered: at most {n} of 13 bug classes — one shard (0/2) of the trace: "), shard
    assert bc["incomplete"] == "one shard (0/2) of the trace"
