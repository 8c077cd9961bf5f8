"""``wdm-replay ab``: replay one trace against two builds alternately (A B B A A B …), keep every run.

A composition root like :mod:`.demo`: it calls the public :func:`~wdmreplay.replayer.replay_trace`
for each run and leaves the comparison to :mod:`.analysis.compare`. Interleaving in ABBA order puts
the machine's drift (another process, CPU frequency, a warming cache) on both builds alike, so it
enters the between-run variation the comparison measures instead of biasing one build.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import WdmError
from .targets import Target
from .replayer.config import ReplayConfig


class AbError(WdmError):
    """An A/B run that cannot go on (bad target, failing --before-each, a replay that did not complete)."""


class AbInterrupted(AbError):
    """Ctrl-C or SIGTERM stopped a replay of the A/B session (exit 130, like ``replay``)."""

    exit_code = 130


@dataclass(frozen=True, slots=True)
class AbRun:
    """One replay of an A/B session: its position (1-based), build (``"A"``/``"B"``), label and file."""

    index: int
    build: str
    label: str
    path: Path


def ab_order(runs: int) -> list[str]:
    """The build of each of the 2·``runs`` replays: A B, then B A, A B … (ABBA counterbalancing)."""
    order: list[str] = []
    for k in range(runs):
        order += ["A", "B"] if k % 2 == 0 else ["B", "A"]
    return order


def _file_name(index: int, build: str, label: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", label)[:40] or build
    return f"{index:02d}-{build}-{safe}.wdmr"


def run_before_each(command: str, index: int, total: int, build: str, label: str) -> None:
    """Run ``command`` in a shell (env WDM_AB_RUN, WDM_AB_BUILD, WDM_AB_LABEL); :class:`AbError` if it fails."""
    env = {**os.environ, "WDM_AB_RUN": str(index), "WDM_AB_BUILD": build, "WDM_AB_LABEL": label}
    try:
        done = subprocess.run(command, shell=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, errors="replace")
    except OSError as e:
        raise AbError(f"--before-each could not start before run {index} of {total}: {e.strerror or e}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [""])[-1][:200]
        raise AbError(f"--before-each exited {done.returncode} before run {index} of {total} (build {build}): "
                      f"{command}" + (f": {last}" if last else ""))


def run_ab(trace: str | Path, outdir: str | Path, *, target_a: Target, target_b: Target, runs: int,
           label_a: str = "A", label_b: str = "B", before_each: str | None = None, speed: float | None = 1.0,
           dialect: str | None = None, concurrency: int = 256, timeout: float = 10.0, progress: bool = False,
           notify: Callable[[str], None] = print, config: ReplayConfig | None = None) -> list[AbRun]:
    """Replay ``trace`` 2·``runs`` times alternating builds A and B; every results file stays in ``outdir``.

    Returns the runs in the order they ran. ``notify`` receives one progress line per run
    ("run k of 2N: …"). Raises :class:`AbError` when the labels are equal, when an option is one
    ``replay`` refuses, when either build does not answer its probe (before the first run), when
    ``before_each`` fails, or when a replay does not complete (the files written so far stay).
    """
    from .replayer import ReplayError, preflight, replay_trace

    if runs < 1:
        raise AbError(f"--runs must be at least 1, got {runs}")
    if label_a == label_b:
        raise AbError(f"--label-a and --label-b must differ (both {label_a!r}): compare groups runs by label")
    outdir = Path(outdir)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AbError(f"{outdir}: cannot create directory: {e.strerror}") from None
    builds = {"A": (target_a, label_a), "B": (target_b, label_b)}
    # Before the first run: replay's own option checks, and both builds answer (a dead B is found
    # now, not after A's whole run).
    if config is None:  # the keyword form: the same checks as replay's
        config = ReplayConfig(speed=speed, dialect=dialect, concurrency=concurrency, timeout=timeout)
    for build, (target, label) in builds.items():
        try:
            preflight(str(trace), target, config.dialect, config.timeout)
        except ReplayError as e:
            raise AbError(f"build {build} ({label}): {e}") from None
    order = ab_order(runs)
    done: list[AbRun] = []
    for index, build in enumerate(order, start=1):
        target, label = builds[build]
        if before_each:
            run_before_each(before_each, index, len(order), build, label)
        path = outdir / _file_name(index, build, label)
        notify(f"ab: run {index} of {len(order)}: build {build} ({label}) -> {path}")
        summary = replay_trace(str(trace), str(path), target=target, config=config.replace(label=label),
                               progress=progress)
        done.append(AbRun(index, build, label, path))
        if not summary.complete:
            error = AbInterrupted if summary.reason == "interrupted" else AbError
            raise error(f"run {index} of {len(order)} (build {build}) did not complete "
                        f"({summary.reason or 'interrupted'}); results so far in {outdir}")
    return done
