"""The ``wdm-replay replay`` console script as a user runs it (subprocess): exit codes, stderr, interrupts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from replay_support import closed_port, populate_and_order_trace, write_trace
from wdmreplay.traces import load_results, step

EXE = shutil.which("wdm-replay") or ""
pytestmark = pytest.mark.skipif(not EXE, reason="wdm-replay console script not installed")


def _run(args, cwd, timeout=60):
    return subprocess.run([EXE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_replay_writes_default_output_and_prints_summary(shop, tmp_path):
    populate_and_order_trace(tmp_path / "t.wdmt", 5)
    (tmp_path / "urls.json").write_text(json.dumps(shop.target.as_dict()))
    p = _run(["replay", "t.wdmt", "--label", "build-a", "--speed", "max"], tmp_path)  # ./urls.json by default
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    assert "replayed: 35 requests" in p.stdout and "ok 35" in p.stdout and "p99" in p.stdout
    r = load_results(tmp_path / "t.wdmr")
    assert r.complete and r.label == "build-a" and r.n == 35 and r.header["speed"] is None


def test_quiet_prints_nothing(shop, tmp_path):
    write_trace(tmp_path / "t.wdmt", [[(0.0, [step("create_user", [], bind="$u")])]])
    p = _run(["replay", "t.wdmt", "--url", shop.url, "-q", "-o", "x.wdmr", "--no-final-read"], tmp_path)
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    r = load_results(tmp_path / "x.wdmr")
    assert r.final is None and r.n == 1


def test_unreachable_target_is_one_line_error(tmp_path):
    write_trace(tmp_path / "t.wdmt", [[(0.0, [step("create_user", [], bind="$u")])]])
    p = _run(["replay", "t.wdmt", "--url", f"http://127.0.0.1:{closed_port()}"], tmp_path)
    assert p.returncode == 2
    assert p.stderr.startswith("wdm-replay: error: cannot reach target http://127.0.0.1:")
    assert p.stderr.count("\n") == 1 and p.stdout == ""
    assert not (tmp_path / "t.wdmr").exists()


@pytest.mark.parametrize("args, message", [
    (["--dialect", "2023", "--url", "{url}"], "lacks: batch_init_stock"),
    (["--speed", "fast", "--url", "{url}"], "speed must be a positive number"),
    (["--shard", "3/2", "--url", "{url}"], "shard '3/2'"),
    (["--urls", "nope.json"], "nope.json: urls file not found"),
    (["--urls", "nope.json", "--url", "{url}"], "either --urls or --url"),
    (["--url", "localhost:8000"], "--url must start with http://"),
])
def test_bad_input_is_one_line_error(shop, tmp_path, args, message):
    write_trace(tmp_path / "t.wdmt", [[(0.0, [step("batch_init_stock", [2, 1, 1])])]])
    p = _run(["replay", "t.wdmt", *[a.format(url=shop.url) for a in args]], tmp_path)
    assert p.returncode == 2 and message in p.stderr and p.stderr.count("\n") == 1, p.stderr


@pytest.mark.parametrize("sig, workers", [(signal.SIGINT, 1), (signal.SIGTERM, 2)])
def test_interrupt_writes_partial_results_and_exits_130(shop, tmp_path, sig, workers):
    # 400 one-step sessions spread over 8 s: interrupted after about 1.5 s.
    write_trace(tmp_path / "t.wdmt", [[(i * 0.02, [step("create_user", [], bind=f"$s{i}")]) for i in range(400)]])
    proc = subprocess.Popen([EXE, "replay", "t.wdmt", "--url", shop.url, "--workers", str(workers)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while shop.stats()["by_op"].get("create_user", 0) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert time.monotonic() - started < 5
    assert "PARTIAL (interrupted)" in err
    r = load_results(tmp_path / "t.wdmr")
    assert not r.complete and r.trailer["reason"] == "interrupted"
    assert 0 < r.n < 400
    assert r.n == shop.stats()["by_op"]["create_user"]  # every request sent was recorded
    assert any(e["kind"] == "interrupt" for e in r.events)
    assert r.final is None


def test_help_shows_an_example():
    p = subprocess.run([sys.executable, "-m", "wdmreplay", "replay", "--help"], capture_output=True, text=True,
                       env={**os.environ, "COLUMNS": "100"})
    assert p.returncode == 0 and "wdm-replay replay stress.wdmt --urls urls.json" in p.stdout
    for option in ("--speed", "--concurrency", "--workers", "--settle", "--no-final-read", "--shard", "--routes"):
        assert option in p.stdout
