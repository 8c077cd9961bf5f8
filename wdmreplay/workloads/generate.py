"""The generator: a workload's plan streamed into a trace file, deterministically.

Same workload, seed and options → the same bytes: nothing time- or host-dependent goes into the
file, all randomness comes from ``random.Random(seed)``, and ``params`` records every normalized
option so ``generate(h["workload"], path, seed=h["seed"], **h["params"])`` rewrites the same file.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import Any, Callable

from ..operations import BUILTIN_ROUTES
from ..bugclasses import BUG_CLASSES
from ..traces import TraceWriter
from ..traces.trace import TraceHeader
from . import checkout, consistency, contention, stress
from .options import WorkloadError

WORKLOADS = {"stress": stress, "consistency": consistency, "checkout": checkout, "contention": contention}

_PROGRESS_EVERY = 2048  # sessions between progress-bar updates (keeps the hot loop lean)


def generate(workload: str, path: str | Path, *, seed: int = 0, dialect: str = "2024",
             progress: bool = False, notify: Callable[[str], None] | None = None,
             **options: Any) -> dict:
    """Write the trace of ``workload`` with ``options`` to ``path``; return the header written.

    ``progress`` shows a tqdm bar on stderr; ``notify`` receives notices for the user (e.g. that
    scenario 4 was left out under dialect 2024). Neither affects the file's bytes.
    """
    if workload not in WORKLOADS:
        raise WorkloadError(f"unknown workload {workload!r}; choose one of: {', '.join(WORKLOADS)}")
    if dialect not in BUILTIN_ROUTES:
        raise WorkloadError(f"--dialect: unknown dialect {dialect!r}; choose one of: {', '.join(BUILTIN_ROUTES)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise WorkloadError(f"--seed: expected a non-negative integer, got {seed!r}")
    module = WORKLOADS[workload]
    params, notices = module.resolve(options, dialect)
    for n in notices:
        if notify is not None:
            notify(n)
    plan = module.plan(params, seed)
    bar = _bar(plan.estimate, path) if progress else None
    writer = TraceWriter(path, workload=workload, seed=seed, params=params, phases=plan.phases,
                         scenarios=plan.scenarios, dialect=dialect, expect=plan.expect)
    writer.header.update(plan.extra_header)
    # Steps are acyclic dicts and lists freed by reference counting; the cyclic collector would
    # only rescan the long-lived objects every few hundred allocations (~30 % of generation time).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        write = writer.write_session
        sid = 0
        if bar is None:
            for phase, at, steps in plan.sessions:
                write(sid, phase, at, steps)
                sid += 1
        else:
            done = 0
            for phase, at, steps in plan.sessions:
                write(sid, phase, at, steps)
                sid += 1
                if sid % _PROGRESS_EVERY == 0:
                    n = writer.header["requests"]
                    bar.update(n - done)
                    done = n
            bar.update(writer.header["requests"] - done)
        if plan.final_expect is not None:
            writer.set_expect(plan.final_expect())
        if plan.final_header is not None:
            writer.header.update(plan.final_header())
        header = writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        if gc_was_enabled:
            gc.enable()
        if bar is not None:
            bar.close()
    return header


def _bar(total: int | None, path: str | Path) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="req", unit_scale=True, desc=f"generating {Path(path).name}",
                file=sys.stderr, leave=False, dynamic_ncols=True)


def summary_line(header: dict | TraceHeader, path: str | Path) -> str:
    """The one line ``generate-trace`` prints when done (``header``: what :func:`generate` returned)."""
    h = header if isinstance(header, TraceHeader) else TraceHeader.from_record(header, str(path))
    exercised = {name for name, count in (h.exercises or {}).items() if count}
    n = sum(1 for c in BUG_CLASSES if c.name in exercised)
    faulted = sum(1 for c in BUG_CLASSES if c.needs_fault and c.name in exercised)
    also = f", {faulted} of them only when replayed with --faults" if faulted else ""
    return (f"wrote {path}: {h.workload} seed {h.seed}, {h.sessions:,} sessions, "
            f"{h.requests:,} requests, schedule {h.duration:.1f} s at speed 1; "
            f"exercises {n} of {len(BUG_CLASSES)} bug classes{also} (inspect lists them)")
