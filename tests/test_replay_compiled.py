"""The replayer's compiled twins (wdmreplay/replayer/compiled.py): built by the install, used only while
they match their source, and recording what the pure Python records."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

import wdmreplay
from wdmreplay.replayer import compiled, engine, http
from wdmreplay.traces.results import load_results

ROOT = Path(wdmreplay.__file__).resolve().parent.parent
REPLAYER = ROOT / "wdmreplay" / "replayer"


def _env(pure: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != compiled.PURE_ENV}
    if pure:
        env[compiled.PURE_ENV] = "1"
    return env


def _cli(args: list[str], cwd: Path, pure: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wdmreplay", *args], cwd=cwd, env=_env(pure),
                          capture_output=True, text=True, timeout=180)


def test_the_install_compiled_the_replayer_and_the_modules_use_the_twins():
    # What `pip install -e .` (the README's and CI's install) builds. If this fails after an edit
    # of http.py, engine.py or their .pxd: the twins are stale, run `pip install -e .` again.
    assert http.COMPILED and engine.COMPILED, (
        f"the replay's hot path is {compiled.state()}: run `pip install -e .` to build its compiled twins")
    assert compiled.state() == "compiled"
    assert http.HttpClient.__module__ == "wdmreplay.replayer._http_c"
    assert engine.Engine.__module__ == "wdmreplay.replayer._engine_c"
    # Every name comes from the twin, so an `except NotSent` catches what the compiled code raises.
    assert http.NotSent is sys.modules["wdmreplay.replayer._http_c"].NotSent
    assert engine.NotSent is http.NotSent and engine.HttpClient is http.HttpClient


def test_a_twin_is_used_only_for_the_source_it_was_built_from(tmp_path):
    for name in compiled.TWINS:
        src = REPLAYER / f"{name}.py"
        assert compiled.twin(f"wdmreplay.replayer.{name}", str(src)) is not None
        # An edit of the module, or of its .pxd, makes the twin stale: it is not used.
        edited = tmp_path / name / f"{name}.py"
        edited.parent.mkdir()
        edited.write_bytes(src.read_bytes() + b"\n# an edit\n")
        shutil.copy(REPLAYER / f"{name}.pxd", edited.with_suffix(".pxd"))
        assert compiled.twin(f"wdmreplay.replayer.{name}", str(edited)) is None
        edited.write_bytes(src.read_bytes())
        assert compiled.twin(f"wdmreplay.replayer.{name}", str(edited)) is not None
        edited.with_suffix(".pxd").write_text((REPLAYER / f"{name}.pxd").read_text() + "\n")
        assert compiled.twin(f"wdmreplay.replayer.{name}", str(edited)) is None


def test_wdm_pure_runs_the_pure_python_and_version_says_which(tmp_path):
    pure = _cli(["--version"], tmp_path, pure=True)
    assert pure.returncode == 0, pure.stderr
    assert pure.stdout == (f"wdm-replay, version {wdmreplay.__version__}\n"
                           "replay hot path: pure Python (WDM_PURE is set)\n")
    built = _cli(["--version"], tmp_path)
    assert built.stdout == f"wdm-replay, version {wdmreplay.__version__}\nreplay hot path: compiled\n"


def _replay(shop_factory, trace: Path, out: Path, pure: bool) -> None:
    shop = shop_factory()  # a fresh shop each: the same ids handed out, the same stock and credit
    r = _cli(["replay", str(trace), "--url", shop.url, "--speed", "max", "--concurrency", "1", "-q", "-o", str(out)],
             trace.parent, pure)
    assert r.returncode == 0, r.stderr


def test_pure_and_compiled_replays_record_the_same_rows(tmp_path, shop_factory):
    # One connection, so both replays send the same requests in the same order to identical shops:
    # every row but its times, every binding and the final state must be the same.
    sizes = {"stress": ["--requests", "600"], "consistency": ["--items", "20", "--users", "100", "--orders", "300"]}
    for workload, size in sizes.items():
        trace = tmp_path / f"{workload}.wdmt"
        gen = _cli(["generate-trace", workload, *size, "--seed", "3", "-q", "-o", str(trace)], tmp_path)
        assert gen.returncode == 0, gen.stderr
        files = {}
        for pure in (False, True):
            files[pure] = tmp_path / f"{workload}-{'pure' if pure else 'compiled'}.wdmr"
            _replay(shop_factory, trace, files[pure], pure)
        a, b = (load_results(files[p], with_args=True) for p in (False, True))
        assert len(a.cols["sid"]) == len(b.cols["sid"]) > 500
        for col in ("sid", "step", "phase", "op", "scenario", "expect", "outcome", "status"):
            assert np.array_equal(a.cols[col], b.cols[col]), col
        assert list(map(list, a.args)) == list(map(list, b.args))
        assert a.errors == b.errors and a.bindings == b.bindings and a.bindings
        timing = {"quiesce", "read_at"}  # when the final read ran: the clock's, not the replay's
        assert {k: v for k, v in a.final.items() if k not in timing} == \
            {k: v for k, v in b.final.items() if k not in timing}
        assert a.final["items"] and a.final["users"]


def test_an_install_without_a_c_compiler_runs_the_pure_python(tmp_path):
    # setup.py's build with a compiler that fails: the build succeeds, says so, and leaves no twin.
    for part in ("setup.py", "setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, tmp_path / part)
    shutil.copytree(ROOT / "wdmreplay", tmp_path / "wdmreplay",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__", "*.c"))
    env = dict(os.environ, CC="false", LDSHARED="false")
    r = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "wdm-replay: could not compile wdmreplay.replayer._http_c" in r.stdout + r.stderr, r.stdout
    assert not list((tmp_path / "wdmreplay").rglob("*.so"))
    check = subprocess.run([sys.executable, "-c", "from wdmreplay.replayer import compiled; print(compiled.state())"],
                           cwd=tmp_path, env=_env(False), capture_output=True, text=True, timeout=60)
    assert check.stdout == "pure Python (no compiled twin matches the source)\n", check.stderr
