"""What the bench scripts share: running a measured child process, cleaning up, finding wdm-replay.

Every child runs in its own session (process group), so a bench can kill a child together with
everything it started (replay workers) — at the end, on error, on Ctrl-C or on SIGTERM. CPU and
peak RSS of a child come from ``os.wait4`` (its own rusage plus that of the descendants it waited
for, e.g. ``--workers`` processes).
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


@dataclass(frozen=True)
class ChildRun:
    """What one finished child process did: exit code, wall seconds, CPU seconds, peak RSS, output."""

    returncode: int
    wall: float
    cpu: float  # user + system, the child and its waited-for descendants
    maxrss_mb: float  # the largest single process among them
    stdout: str
    stderr: str
    timed_out: bool = False
    user: float = 0.0  # the user and system parts of ``cpu``
    system: float = 0.0


def install_cleanup() -> None:
    """Make Ctrl-C and SIGTERM unwind the bench, so every ``finally`` stops what it started."""
    # A shell without job control starts background commands with SIGINT ignored, and Python then
    # installs no KeyboardInterrupt handler: restore it, so an interrupt always cleans up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


@contextlib.contextmanager
def bench_run(name: str, prefix: str, keep: str | None = None) -> Iterator[Path]:
    """A bench's work directory and its common ending (with :func:`install_cleanup` installed first).

    The directory is ``keep`` (made if needed, left in place) or a new temporary one (``prefix``),
    removed at the end. Ctrl-C ends the bench with one line and exit 130 (the ``finally`` blocks it
    unwound have stopped every child and the target); a ``RuntimeError`` with ``name: message``.
    """
    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    try:
        yield work
    except KeyboardInterrupt:
        print("\ninterrupted: every child process and the target were stopped", file=sys.stderr)
        sys.exit(130)
    except RuntimeError as e:
        sys.exit(f"{name}: {e}")
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_child(argv: list[str], *, timeout: float, env: dict | None = None, cwd: str | None = None) -> ChildRun:
    """Run ``argv`` to completion (killed after ``timeout`` s) and measure it with ``os.wait4``.

    The child gets its own process group; whatever it leaves in that group is killed when it ends,
    and the whole group is killed if the bench is interrupted meanwhile.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                             start_new_session=True)
        status = ru = None
        timed_out = False
        try:
            while status is None:
                pid, st, r = os.wait4(p.pid, os.WNOHANG)
                if pid:
                    status, ru = st, r
                elif time.perf_counter() - t0 > timeout:
                    timed_out = True
                    _kill_group(p.pid)
                    _, status, ru = os.wait4(p.pid, 0)
                else:
                    time.sleep(0.02)
        finally:
            _kill_group(p.pid)
            if status is None:  # interrupted: reap the killed child
                os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status) if status is not None else -signal.SIGKILL
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        return ChildRun(p.returncode, wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024,
                        out.read(), err.read(), timed_out, ru.ru_utime, ru.ru_stime)


def python_build() -> str:
    """This interpreter, since every figure depends on it: version, executable, libpython linkage.

    The same replay costs measurably more CPU on some builds of one Python version than on others
    (on the machine of docs/performance.md, pyenv's default 3.11 build, libpython shared and no
    PGO/LTO, against Debian's 3.11 in its executable), so a bench names the one it ran on.
    """
    try:
        with open("/proc/self/maps") as f:
            libs = set(re.findall(r"\S*libpython[\w.]*\.so[\w.]*", f.read()))
        linkage = f"libpython shared ({Path(min(libs)).name})" if libs else "libpython in the executable"
    except OSError:  # not Linux: what the build says
        import sysconfig
        linkage = "libpython shared" if sysconfig.get_config_var("Py_ENABLE_SHARED") else "libpython static"
    return f"{platform.python_implementation()} {platform.python_version()} ({os.path.realpath(sys.executable)}; {linkage})"


def machine() -> str:
    """One line for a bench's header: CPUs, OS and the Python build (:func:`python_build`).

    Also names the replay's hot path, compiled or pure Python (wdmreplay/replayer/compiled.py), and
    says when Python may not write its bytecode cache (``PYTHONDONTWRITEBYTECODE``): then
    every start of an editable install compiles the package's modules again, about 50 ms of CPU
    more per replay's start-up than a machine with the cache pays (docs/performance.md).
    """
    nocache = "; PYTHONDONTWRITEBYTECODE is set" if sys.flags.dont_write_bytecode else ""
    from wdmreplay.replayer.compiled import state  # the replay's hot path: compiled or pure Python

    return f"{os.cpu_count()} CPUs, {platform.platform()}, {python_build()}{nocache}; replay hot path {state()}"


def wdm_replay() -> list[str]:
    """The command that runs the wdm-replay this Python imports: the console script beside
    ``sys.executable``, else ``python -m wdmreplay`` — never another install found on PATH, whose
    code and dependencies (its event loop) may not be the ones being measured."""
    exe = Path(sys.executable).with_name("wdm-replay")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "wdmreplay"]


def _help(words: tuple[str, ...]) -> str | None:
    """The output of ``wdm-replay WORDS... --help``, or None if that command does not exist."""
    try:
        r = subprocess.run(wdm_replay() + list(words) + ["--help"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout if r.returncode == 0 else None


def command_available(*words: str) -> bool:
    """Whether ``wdm-replay WORDS...`` exists in this build."""
    return _help(words) is not None


def option_available(words: tuple[str, ...], option: str) -> bool:
    """Whether ``wdm-replay WORDS... --help`` lists ``option``."""
    return option in (_help(words) or "")


def stress_trace(path: Path, requests: int, *, dialect: str = "2024", seed: int = 1) -> tuple[dict, str]:
    """Write a stress trace of about ``requests`` requests; its header and how it was made.

    ``wdm-replay generate-trace stress`` sized by ``--requests`` (or by ``--sessions``, from the
    requests per session of a small probe trace) when that command exists, else the bench's
    stand-in (bench/seed_scenarios.py). RuntimeError if generation fails.
    """
    from wdmreplay.traces import read_header

    words = ("generate-trace", "stress")
    sizing = next((o for o in ("--requests", "--sessions") if option_available(words, o)), None)
    if sizing is None:
        from seed_scenarios import write_seed_trace

        from wdmreplay.operations import get_dialect

        return write_seed_trace(str(path), requests, get_dialect(dialect), seed), \
            "bench stand-in (generate-trace stress not available yet)"

    def generate(out: Path, count: int) -> dict:
        # The rate only shapes the schedule, which --speed max ignores.
        argv = wdm_replay() + list(words) + [sizing, str(count), "--rate", "5000", "--seed", str(seed),
                                             "--dialect", dialect, "--quiet", "-o", str(out)]
        r = run_child(argv, timeout=max(60, requests / 20000))
        if r.returncode != 0:
            raise RuntimeError(f"generate-trace failed (exit {r.returncode}): {last_line(r.stderr)}")
        return read_header(out)

    how = f"wdm-replay generate-trace stress {sizing} N --rate 5000 --seed {seed}"
    if sizing == "--requests":
        return generate(path, requests), how
    # Requests per session depend on the scenario mix: measure them on a small trace first.
    probe = path.with_name(path.name + ".probe")
    h = generate(probe, 2000)
    probe.unlink()
    return generate(path, max(round(requests * h["sessions"] / h["requests"]), 1)), how


def last_line(text: str, n: int = 3) -> str:
    """The last ``n`` non-empty lines of ``text``, joined (for one-line error notes)."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:])


def replay_window(results: Path) -> tuple[int, float, dict[str, int]]:
    """A replay's results file: rows, its window in seconds (first send to last response) and the
    count of each outcome other than ok (empty when every request succeeded)."""
    import numpy as np

    from wdmreplay.traces import load_results

    res = load_results(results)
    c = res.cols
    sent = ~np.isnan(c["sent"])  # skipped rows were never sent
    seconds = float(c["done"][sent].max() - c["sent"][sent].min()) if sent.any() else 0.0
    names = res.header.get("outcomes", [])
    bad = {name: int((c["outcome"] == i).sum()) for i, name in enumerate(names) if name != "ok"}
    return res.n, seconds, {k: v for k, v in bad.items() if v}


# --- CPU caps (cgroups) -----------------------------------------------------------------------

PERIOD_US = 100_000


class CpuCaps:
    """Cgroups that each cap their processes at ``cores`` of CPU (v1 cpu controller, or v2 cpu.max)."""

    def __init__(self, cores: float):
        self.cores = cores
        self.quota = max(int(cores * PERIOD_US), 1000)
        v1, v2 = Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup")
        if (v1 / "cpu.cfs_quota_us").exists():
            self.root, self.version = v1, 1
        elif "cpu" in _read(v2 / "cgroup.controllers").split():
            self.root, self.version = v2, 2
            try:  # let child groups use the cpu controller
                (v2 / "cgroup.subtree_control").write_text("+cpu")
            except OSError as e:
                raise RuntimeError(f"cannot enable the cgroup v2 cpu controller: {e}") from None
        else:
            raise RuntimeError("no cgroup CPU controller found (/sys/fs/cgroup/cpu or cgroup v2 'cpu')")
        self.groups: list[Path] = []
        self._prefix = f"wdm-bench-{os.getpid()}-"

    def new(self) -> Path:
        """A new capped group (empty)."""
        g = self.root / f"{self._prefix}{len(self.groups)}"
        try:
            g.mkdir()
            if self.version == 1:
                (g / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (g / "cpu.cfs_quota_us").write_text(str(self.quota))
            else:
                (g / "cpu.max").write_text(f"{self.quota} {PERIOD_US}")
        except OSError as e:  # not root, or a read-only cgroup file system (a container)
            raise RuntimeError(f"cannot create a capped cgroup under {self.root} ({e.strerror}): "
                               "run as root, with a writable cgroup file system") from None
        self.groups.append(g)
        return g

    @staticmethod
    def procs(group: Path) -> list[int]:
        return [int(x) for x in _read(group / "cgroup.procs").split()]

    @staticmethod
    def move(pid: int, group: Path) -> None:
        try:
            (group / "cgroup.procs").write_text(str(pid))
        except (ProcessLookupError, OSError):
            pass  # it has exited already

    @staticmethod
    def throttled(group: Path) -> int:
        """Periods in which the group hit its quota."""
        for line in _read(group / "cpu.stat").splitlines():
            key, _, value = line.partition(" ")
            if key == "nr_throttled":
                return int(value)
        return 0

    def close(self) -> None:
        """Move any process left back to the root group and remove every group made."""
        for g in reversed(self.groups):
            for pid in self.procs(g):
                self.move(pid, self.root)
            try:
                g.rmdir()
            except OSError:
                pass
        self.groups.clear()


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def capped_run(caps: CpuCaps, argv: list[str], timeout: float) -> tuple[ChildRun, int, int]:
    """Run ``argv`` with its process in one capped group and each process it forks in a group of its
    own; (ChildRun, processes capped, throttled periods summed over them). The groups are removed after."""
    from static_target import child_pids

    first = caps.new()
    groups = [first]
    done = threading.Event()

    def adopt_children() -> None:  # the workers are forked by the coordinator: give each its own cap
        seen: set[int] = set()
        while not done.is_set():
            for parent in caps.procs(first):
                for pid in child_pids(parent):
                    if pid not in seen:
                        seen.add(pid)
                        g = caps.new()
                        groups.append(g)
                        caps.move(pid, g)
            time.sleep(0.002)

    watcher = threading.Thread(target=adopt_children, daemon=True)
    watcher.start()
    try:
        try:
            # The shell puts itself in the group, then becomes the replay (same pid): no uncapped moment.
            run = run_child(["sh", "-c", f'echo $$ > "{first}/cgroup.procs" && exec "$@"', "sh", *argv],
                            timeout=timeout)
        finally:
            done.set()
            watcher.join()
        return run, len(groups), sum(caps.throttled(g) for g in groups)
    finally:
        caps.close()

