"""The replay's event loop: uvloop by default where it runs, asyncio's own when turned off or absent."""

from __future__ import annotations

import asyncio
import configparser
import importlib.metadata
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

from wdmreplay.eventloop import loop_name, run_async


def _loop_module() -> str:
    async def which() -> str:
        return type(asyncio.get_running_loop()).__module__
    return run_async(which())


def test_the_default_install_brings_uvloop_where_it_runs():
    # Not an extra: `pip install -e .` (the README's first command) installs it on CPython outside
    # Windows, so the replay a user runs is the one docs/performance.md measures.
    # Read from setup.cfg, what pip installs from (an installed copy's metadata can be older).
    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[1] / "setup.cfg", encoding="utf-8")
    reqs = [Requirement(line) for line in cfg["options"]["install_requires"].splitlines() if line.strip()]
    default = [r for r in reqs if r.name == "uvloop" and (r.marker is None or r.marker.evaluate({"extra": ""}))]
    assert default, [str(r) for r in reqs if r.name == "uvloop"]
    assert all(r.marker is not None and not r.marker.evaluate({"extra": "", "sys_platform": "win32"})
               for r in default), "uvloop has no Windows build: the requirement must leave Windows out"
    installed = importlib.metadata.version("uvloop")
    assert all(r.specifier.contains(installed, prereleases=True) for r in default), installed


def test_run_async_runs_on_uvloop_unless_turned_off(monkeypatch):
    # loop_name(), what the benches print, names the loop run_async really runs on.
    assert _loop_module().startswith("uvloop") and loop_name() == "uvloop"
    monkeypatch.setenv("WDM_REPLAY_UVLOOP", "0")
    assert _loop_module().startswith("asyncio") and loop_name() == "asyncio"


def test_without_uvloop_the_loop_is_asyncio_s_own():
    # A platform where uvloop does not install: the import fails and asyncio's loop runs the replay.
    code = ("import sys; sys.modules['uvloop'] = None\n"
            "import asyncio\nfrom wdmreplay.eventloop import loop_name, run_async\n"
            "async def which(): return type(asyncio.get_running_loop()).__module__\n"
            "print(run_async(which()), loop_name())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    module, name = r.stdout.split()
    assert module.startswith("asyncio") and name == "asyncio", r.stdout
