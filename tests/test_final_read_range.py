"""Numbers no signed 64-bit column holds, in the final read's answers or in a results file.

A shop that answers a stock of 2**70 or a total_cost of 2**64 answered garbage: the replay must still
finish and write every row (such an entity is "not read back": its answer is unreadable), and the check
must not call the run CLEAN. A results file holding such a number (an older version, or hand-made) is a
one-line error, never a traceback.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from replay_support import write_trace
from synthetic import History
from verdict_shops import TinyShop

from wdmreplay.traces import load_results, step


def small_trace(path):
    write_trace(path, [
        [(0.0, [step("create_item", [5], bind="$s0.item", scenario="populate"),
                step("add_stock", ["$s0.item", 3], scenario="populate"),
                step("create_user", [], bind="$s0.user", scenario="populate"),
                step("add_funds", ["$s0.user", 100], scenario="populate")])],
        [(0.0, [step("create_order", ["$s0.user"], bind="$s1.order", scenario="orders"),
                step("add_item", ["$s1.order", "$s0.item", 1], scenario="orders")])]])
    return path


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wdmreplay", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("mode", ["correct", "huge-figures"])
def test_a_final_read_answering_huge_numbers_is_survived_and_not_clean(tmp_path, mode):
    trace = small_trace(tmp_path / "t.wdmt")
    out = tmp_path / "r.wdmr"
    with TinyShop(mode) as shop:
        p = cli("replay", str(trace), "--url", shop.url, "-o", str(out), "--quiet")
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode == 0, p.stderr
    r = load_results(out)
    assert len(r.cols["sid"]) == 6  # every row written
    missing = r.final_record.missing
    chk = cli("check", str(out))
    assert "Traceback" not in chk.stderr
    if mode == "correct":
        assert not missing and chk.returncode == 0 and "CLEAN" in chk.stdout
    else:
        assert set(missing) == {"item", "order"}
        assert all("outside the signed 64-bit range" in why for k in missing for why in missing[k].values())
        assert chk.returncode != 0 and "verdict: CLEAN" not in chk.stdout


@pytest.mark.parametrize("orders", [{"o1": (True, [["i1", 1]], "u1", 1 << 63)},
                                    {"o1": (False, [["i1", 1 << 63]], "u1", 1)}])
def test_a_results_file_with_an_order_figure_beyond_64_bits_is_a_one_line_error(tmp_path, orders):
    h = History()
    h.req("create_item", [1])
    h.set_final(items={"i1": 5}, users={"u1": 100}, orders=orders)
    path = h.write(tmp_path / "old.wdmr")
    for cmd in ("check", "report", "explain"):
        p = cli(cmd, str(path))
        assert p.returncode == 2, (cmd, p.stdout, p.stderr)
        assert "Traceback" not in p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and "outside the signed 64-bit range" in lines[0], (cmd, p.stderr)
