"""bench/rows_path.py: CPU per row of the results rows' path (worker and coordinator); its output and bad options."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "rows_path.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=300)


def test_rows_path_writes_every_row_and_reports_cpu_per_row_of_each_side():
    run = _run("--requests", "3000", "--chunk", "500", "--rounds", "1")
    assert run.returncode == 0, run.stderr
    m = re.search(r"([\d,]+) rows in chunks of 500, best of 1: worker (\d+) ns per row, coordinator (\d+) ns per row, "
                  r"both (\d+) ns per row\n$", run.stdout)
    assert m, run.stdout
    rows, worker, coordinator, both = (int(g.replace(",", "")) for g in m.groups())
    assert rows >= 3000 and worker > 0 and coordinator > 0 and abs(worker + coordinator - both) <= 1
    assert run.stdout.startswith("code: ")


def test_rows_path_bad_options_exit_2_with_the_reason():
    for args, reason in ((("--requests", "10"), "--requests must be at least 1000"),
                         (("--chunk", "1"), "--chunk must be at least 2")):
        run = _run(*args)
        assert run.returncode == 2 and reason in run.stderr and "Traceback" not in run.stderr
    run = _run("--help")
    assert run.returncode == 0 and "--chunk" in run.stdout and "python bench/rows_path.py" in run.stdout
