"""``wdm-replay demo``: the whole job on the embedded reference shop, with no setup.

The composition root of the tool: the one module that wires every layer together (recorder →
trace → replayer → results → analysis, with the shop as the target), so no layer has to reach
another. Starts the reference shop on a free loopback port, generates a small stress trace and the
consistency and contention traces, replays each, checks and reports each, and stops the shop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .analysis import build_report, check_results, render_text
from .recorder import generate, summary_line
from .replayer import format_summary, replay_trace
from .shop import ShopThread, banner
from .traces import load_results


@dataclass(frozen=True, slots=True)
class DemoRun:
    """One workload of the demo: how to generate it and how fast to replay it."""

    name: str
    workload: str
    options: dict
    speed: float | None  # None = as fast as possible


def demo_runs(duration: float, rate: float) -> list[DemoRun]:
    """The demo's workloads: a paced stress trace, then the consistency and contention tests at full speed."""
    return [
        DemoRun("stress", "stress", {"rate": rate, "duration": duration}, 1.0),
        DemoRun("consistency", "consistency", {}, None),
        # Concurrent add_item to one order and add_funds/pay on one user: what lost-line and
        # wrong-total get wrong, which the other two never exercise.
        DemoRun("contention", "contention", {}, None),
    ]


def run_demo(workdir: str | Path, *, seed: int = 0, duration: float = 10.0, rate: float = 20.0,
             inject: str | None = None, split: bool = False, progress: bool = False,
             echo: Callable[[str], None] = print) -> bool:
    """Run the demo in ``workdir`` (traces and results stay there); True when every check is clean."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    clean = True
    with ShopThread(split=split, inject=inject, seed=seed) as shop:
        echo(banner(shop.running))
        for run in demo_runs(duration, rate):
            trace = workdir / f"{run.name}.wdmt"
            out = workdir / f"{run.name}.wdmr"
            echo(f"\n=== {run.name}: generate, replay, check ===")
            header = generate(run.workload, trace, seed=seed, **run.options)
            echo(summary_line(header, trace))
            summary = replay_trace(str(trace), str(out), target=shop.target, speed=run.speed,
                                   label=f"demo-{run.name}", progress=progress)
            echo(format_summary(summary))
            results = load_results(out, with_args=True)
            check = check_results(results)
            echo(render_text(build_report(results, check=check)))
            clean = clean and check.clean
    return clean
