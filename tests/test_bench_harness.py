"""The measuring harness of bench/: static target, child runs, stand-in trace, bare loop (loopback only)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import harness  # noqa: E402
import seed_scenarios  # noqa: E402
import static_target  # noqa: E402

import wdmreplay  # noqa: E402
from wdmreplay.operations import get_dialect  # noqa: E402
from wdmreplay.traces import TraceReader  # noqa: E402

KINDS = ["aiohttp", "raw"] + (["nginx"] if shutil.which("nginx") or Path("/usr/sbin/nginx").exists() else [])


@pytest.mark.parametrize("kind", KINDS)
def test_static_target_answers_every_route_and_stops(kind):
    with static_target.StaticTarget(prefer=kind) as t:
        assert t.kind.startswith(kind)
        for method, path in (("POST", "/stock/item/create/5"), ("GET", "/orders/find/1"),
                             ("POST", "/payment/pay/1/10")):
            with urllib.request.urlopen(urllib.request.Request(t.url + path, method=method), timeout=5) as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("application/json")
                assert json.loads(r.read()) == static_target.BODY
        assert t.serving_pids()
        port = t.port
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_benches_run_the_wdm_replay_this_python_imports_not_one_on_path(tmp_path, monkeypatch):
    # Another install's console script first on PATH (other code, maybe another event loop) must not
    # be what a bench measures.
    other = tmp_path / "wdm-replay"
    other.write_text("#!/bin/sh\necho other install\n")
    other.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    argv = harness.wdm_replay()
    assert str(other) not in argv
    r = subprocess.run(argv + ["--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith(f"wdm-replay, version {wdmreplay.__version__}\nreplay hot path: "), r.stdout


def test_a_bench_names_the_python_build_it_ran_on():
    # The figures depend on the interpreter's build, not only its version: the header names the
    # real executable (not the venv's link to it) and how libpython is linked, as ldd sees it.
    line = harness.machine()
    real = os.path.realpath(sys.executable)
    assert f"{platform.python_implementation()} {platform.python_version()} ({real}; " in line
    ldd = subprocess.run(["ldd", real], capture_output=True, text=True, timeout=30).stdout
    shared = "libpython" in ldd
    assert ("libpython shared (libpython" in line) is shared, (line, ldd)
    assert ("libpython in the executable" in line) is not shared, (line, ldd)
    # ... and says when every start compiles the modules again (no bytecode cache written).
    for value, said in (("1", True), (None, False)):
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        if value:
            env["PYTHONDONTWRITEBYTECODE"] = value
        out = subprocess.run([sys.executable, "-c", "import harness; print(harness.machine())"], cwd=BENCH,
                             env=env, capture_output=True, text=True, timeout=60).stdout
        assert ("PYTHONDONTWRITEBYTECODE is set" in out) is said, out
    # ... and whether the replay's hot path it measures is the compiled one.
    for pure, said in (("1", "replay hot path pure Python (WDM_PURE is set)"), (None, "replay hot path compiled")):
        env = {k: v for k, v in os.environ.items() if k != "WDM_PURE"}
        if pure:
            env["WDM_PURE"] = pure
        out = subprocess.run([sys.executable, "-c", "import harness; print(harness.machine())"], cwd=BENCH,
                             env=env, capture_output=True, text=True, timeout=60).stdout
        assert out.rstrip().endswith(said), out


def test_run_child_measures_cpu_and_kills_on_timeout():
    busy = harness.run_child([sys.executable, "-c", "import time\nt=time.process_time()\n"
                              "while time.process_time()-t<0.3: pass\nprint('done')"], timeout=20)
    assert busy.returncode == 0 and busy.stdout.strip() == "done"
    assert busy.cpu >= 0.25 and busy.maxrss_mb > 1
    stuck = harness.run_child([sys.executable, "-c", "import time; time.sleep(60)"], timeout=0.5)
    assert stuck.timed_out and stuck.wall < 5


@pytest.mark.parametrize("dialect,has_s4", [("2024", False), ("2023", True)])
def test_seed_trace_is_valid_and_follows_the_dialect(tmp_path, dialect, has_s4):
    path = tmp_path / "t.wdmt"
    h = seed_scenarios.write_seed_trace(str(path), 2000, get_dialect(dialect))
    assert 2000 <= h["requests"] < 2000 + 13
    with TraceReader(path) as r:
        sessions = list(r)
    scenarios = {st["scenario"] for s in sessions for st in s["steps"]}
    assert (seed_scenarios.NAMES[4] in scenarios) is has_s4
    bound = set()
    for s in sessions:
        for st in s["steps"]:
            assert all(a in bound for a in st["args"] if isinstance(a, str) and a.startswith("$"))
            if st["bind"]:
                bound.add(st["bind"])


@pytest.mark.parametrize("client", ["aiohttp", "lean"])
def test_bare_loop_sends_every_request_of_a_trace(tmp_path, client):
    path = tmp_path / "t.wdmt"
    h = seed_scenarios.write_seed_trace(str(path), 300, get_dialect("2024"))
    with static_target.StaticTarget(prefer="raw") as t:
        out = subprocess.run([sys.executable, str(BENCH / "bare_loop.py"), "--trace", str(path), "--url", t.url,
                              "--concurrency", "8", "--client", client], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["requests"] == r["ok"] == h["requests"] and r["errors"] == 0 and r["client"] == client


def test_bare_loop_counts_a_refused_connection_as_an_error(tmp_path):
    path = tmp_path / "t.wdmt"
    seed_scenarios.write_seed_trace(str(path), 20, get_dialect("2024"))
    port = static_target.free_port()  # nothing listens there
    for client in ("aiohttp", "lean"):
        out = subprocess.run([sys.executable, str(BENCH / "bare_loop.py"), "--trace", str(path),
                              "--url", f"http://127.0.0.1:{port}", "--concurrency", "2", "--client", client],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        r = json.loads(out.stdout)
        assert r["ok"] == 0 and r["errors"] == r["requests"] > 0, (client, r)


@pytest.mark.parametrize("client_cpu,target_cpu,other_cpu,expected", [
    (5.0, 1.0, 0.0, "client 1.0 cores"),                           # client saturated, target idle
    (2.0, 4.6, 0.0, "TARGET 0.9 cores"),                           # target saturated
    (5.0, 4.6, 0.0, "TARGET 0.9 cores, client 1.0 cores, all 2 cores busy"),
    (2.0, 1.0, 0.0, "no side near a core"),
    (2.0, 1.0, 6.5, "all 2 cores busy"),                         # others' work fills the machine
])
def test_row_names_the_limiting_side(monkeypatch, client_cpu, target_cpu, other_cpu, expected):
    import compare_generators

    monkeypatch.setattr(compare_generators.os, "cpu_count", lambda: 2)
    row = compare_generators.Row("t", 1000, 5.0, client_cpu, target_cpu, other_cpu)
    assert row.limit == expected


_FORKS = """
import os
import platform
x = sum(range(2_000_000))          # the parent's work before it forks
pids = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        sum(range(200_000))        # each child's own, much smaller, work
        os._exit(0)
    pids.append(pid)
for p in pids:
    os.waitpid(p, 0)
"""


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind not installed")
def test_worker_cost_counts_each_forked_child_only_for_its_own_work(tmp_path):
    import worker_cost
    prog = tmp_path / "forks.py"
    prog.write_text(_FORKS)
    r = subprocess.run(worker_cost.callgrind(tmp_path) + [sys.executable, str(prog)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-500:]
    parts = worker_cost.profile_parts(tmp_path)
    parent = min(pid for pid, _, _ in parts)
    before_fork = next(n for pid, part, n in parts if pid == parent and part == 1)
    children = [n for pid, _, n in parts if pid != parent]
    assert len(children) == 2
    # Inherited counters would put each child above the parent's pre-fork count (start-up + 2M sum).
    assert all(0 < n < before_fork / 3 for n in children), (before_fork, children)


def test_worker_cost_per_request_takes_out_the_start_up():
    import worker_cost
    small = {"requests": 1000, "before fork": 5_000_000 + 1000 * 20, "worker 0": 9_000_000 + 500 * 80}
    large = {"requests": 3000, "before fork": 5_000_000 + 3000 * 20, "worker 0": 9_000_000 + 1500 * 80}
    assert worker_cost.per_request(small, large) == {"before fork": 20.0, "worker 0": 40.0}


_BUSY_PAIR = """
import os, time
pid = os.fork()                      # a "worker": the bench must give it a cap of its own
t = time.monotonic()
while time.monotonic() - t < 1.5:
    pass
if pid:
    os.waitpid(pid, 0)
"""


def _cpu_caps(cores: float):
    try:
        return harness.CpuCaps(cores)
    except RuntimeError as e:
        pytest.skip(f"no CPU caps here: {e}")


def test_capped_run_caps_the_process_and_each_child_it_forks():
    caps = _cpu_caps(0.2)
    run, procs, throttled = harness.capped_run(caps, [sys.executable, "-c", _BUSY_PAIR], timeout=30)
    assert run.returncode == 0, run.stderr
    assert procs == 2  # the process's group and one of the forked child's own
    assert throttled > 0  # both spin: the 0.2-core quota stopped them in some periods
    # Uncapped, two spinning processes would use up to 2 CPU-seconds per wall second here.
    assert run.cpu <= (2 * 0.2 + 0.3) * run.wall, (run.cpu, run.wall)
    assert not any(p.name.startswith(f"wdm-bench-{os.getpid()}-") for p in caps.root.iterdir())
