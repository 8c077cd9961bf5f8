"""bench/peers.py: reading wrk, hey and autocannon's output, the ratios, and its refusals of bad options.

The outputs below are the tools' real output (wrk 4.1.0, hey 0.1.4, autocannon 7 ``--json``,
trimmed), captured against bench/static_target.py on 127.0.0.1; the runs themselves are the
bench's job (docs/performance.md), these tests pin how their figures are read.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import peers  # noqa: E402
from compare_generators import Row  # noqa: E402

WRK = """Running 1s test @ http://127.0.0.1:45075/stock/find/1
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   846.30us    1.62ms  14.50ms   87.44%
    Req/Sec    18.44k     3.69k   25.03k    70.00%
  18408 requests in 1.01s, 3.39MB read
Requests/sec:  18290.30
Transfer/sec:      3.37MB
"""

WRK_BAD = """Running 2s test @ http://127.0.0.1:45075/stock/find/1
  1 threads and 2 connections
  1203 requests in 2.00m, 0.22MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:     10.02
"""

HEY = """
Summary:
  Total:\t1.0016 secs
  Slowest:\t0.0159 secs
  Requests/sec:\t14603.4992

Status code distribution:
  [200]\t14627 responses



"""

HEY_BAD = """
Summary:
  Total:\t2.0031 secs
  Requests/sec:\t99.0000

Status code distribution:
  [200]\t190 responses
  [503]\t8 responses

Error distribution:
  [2]\tGet "http://127.0.0.1:45075/stock/find/1": dial tcp 127.0.0.1:45075: connect: connection refused
"""

AUTOCANNON = json.dumps({"url": "http://127.0.0.1:45075/stock/find/1", "connections": 2, "duration": 1.02,
                         "errors": 0, "timeouts": 0, "non2xx": 0, "2xx": 7281,
                         "requests": {"average": 7282, "total": 7281, "sent": 7283}})


def test_wrk_hey_and_autocannon_figures_are_read_from_their_output():
    assert peers.parse_wrk(WRK) == (18408, 1.01, 0)
    assert peers.parse_hey(HEY) == (14627, 1.0016, 0)
    assert peers.parse_autocannon("Running 1s test\n" + AUTOCANNON + "\n") == (7281, 1.02, 0)


def test_errors_and_non_2xx_answers_are_counted_not_hidden():
    n, seconds, bad = peers.parse_wrk(WRK_BAD)
    assert (n, seconds, bad) == (1203, 120.0, 7 + 3 + 2)
    assert peers.parse_hey(HEY_BAD) == (190 + 8 + 2, 2.0031, 8 + 2)
    failing = json.loads(AUTOCANNON)
    failing.update(non2xx=4, errors=1, timeouts=2)
    assert peers.parse_autocannon(json.dumps(failing))[2] == 7


@pytest.mark.parametrize("parse,text", [(peers.parse_wrk, "unable to connect to 127.0.0.1:1 Connection refused\n"),
                                        (peers.parse_hey, "Error: connection refused\n"),
                                        (peers.parse_autocannon, "Error: connect ECONNREFUSED\n")])
def test_an_output_without_figures_is_an_error_not_a_zero(parse, text):
    with pytest.raises(ValueError):
        parse(text)


def test_ratios_are_against_autocannon_and_wrk_per_cpu_second_and_per_second():
    rows = [Row("wrk", 100_000, 10.0, 1.0, 0, 0), Row("autocannon", 50_000, 10.0, 2.0, 0, 0),
            Row("replay-1", 30_000, 10.0, 1.5, 0, 0)]
    table = peers.ratios(rows)
    line = next(ln for ln in table.splitlines() if ln.startswith("replay-1"))
    # per CPU-second 20,000 vs 25,000 (autocannon) and 100,000 (wrk); req/s 3,000 vs 5,000 and 10,000
    assert line.split() == ["replay-1", "0.80x", "0.60x", "0.20x", "0.30x"]
    assert "n/a" in peers.ratios(rows[2:])  # no baseline measured: said, not made up
    assert "autocannon" not in peers.ratios([rows[0], rows[2]]).splitlines()[0]


def test_ratios_round_by_round_compare_each_tool_with_the_baseline_run_beside_it():
    # Round 2 ran in a slow minute for both: by round, replay-1 is 1.00x, 1.25x and 1.00x autocannon,
    # while each tool's best round alone would say 70/70 = 1.00x.
    per_round = {"autocannon": [60_000.0, 40_000.0, 70_000.0], "wrk": [120_000.0, None, 140_000.0],
                 "replay-1": [60_000.0, 50_000.0, 70_000.0]}
    text = peers.paired(per_round)
    line = next(ln for ln in text.splitlines() if ln.startswith("replay-1"))
    assert "1.00x median, 1.00-1.25x in 3" in line
    assert "0.50x median, 0.50-0.50x in 2" in line  # the round wrk was skipped is left out
    assert peers.paired({"autocannon": [1.0], "replay-1": [1.0]}) == ""  # one round: nothing to pair
    assert peers.paired({"replay-1": [1.0, 2.0]}) == ""  # no baseline measured


def test_replay_rows_show_start_up_apart_while_the_headline_keeps_it():
    rows = [Row("wrk", 100_000, 10.0, 1.0, 0, 0), Row("replay-1", 30_000, 10.0, 1.5, 0, 0),
            Row("replay-2", 30_000, 8.0, 0.4, 0, 0)]
    table = peers.render(rows, {}, {"replay-1": 0.3, "replay-2": 0.5})
    head, _, wrk, replay1, replay2 = table.splitlines()
    assert "req/CPU-s start-up s w/o start-up target %" in " ".join(head.split())
    # headline 30,000 / 1.5 = 20,000 start-up included; without it 30,000 / 1.2 = 25,000
    assert replay1.split()[5:8] == ["20,000", "0.30", "25,000"]
    assert replay2.split()[5:8] == ["75,000", "0.50", "n/a"]  # start-up above the whole run: no figure made up
    assert wrk.split()[5:7] == ["100,000", "0%"]  # tools without a start-up run: blank, not zero
    assert peers.ratios(rows).splitlines()[3].split()[1] == "0.20x"  # ratios: start-up included


@pytest.mark.parametrize("argv,why", [(["--only", "wrk,nonsense"], "unknown tool(s) in --only: nonsense"),
                                      (["--seconds", "0"], "must be >= 1")])
def test_bad_options_are_one_line_and_exit_2(argv, why):
    r = subprocess.run([sys.executable, str(BENCH / "peers.py"), *argv], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and why in r.stderr.strip().splitlines()[-1]
    assert "Traceback" not in r.stderr


def test_help_names_every_tool_and_how_to_install_them():
    r = subprocess.run([sys.executable, str(BENCH / "peers.py"), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    for word in (*peers.TOOLS, "apt-get install -y nginx wrk hey", "python bench/peers.py"):
        assert word in r.stdout
