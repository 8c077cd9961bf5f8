"""``wdm-replay demo``: the whole job on the embedded reference shop, with no setup.

The composition root of the tool: the one module that wires every layer together (workloads →
trace → replayer → results → analysis, with the shop as the target), so no layer has to reach
another. Starts the reference shop on a free loopback port, generates a small stress trace and the
consistency and contention traces, replays each, checks and reports each, and stops the shop.

:func:`run_fault_demo` (``demo --faults``) does the fault-tolerance job the same way: the durable
split shop as three processes, a stress trace, a fault schedule file that kills one service with ``kill -9``
mid-run and restarts it, the replay, then ``check`` and the report's faults section.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from .analysis import build_report, check_results, render_check_text
from .analysis.recovery import fault_lines
from .analysis.report import Report
from .bugclasses import BUG_CLASSES
from .errors import WdmError
from .workloads import generate, summary_line
from .replayer import ReplaySummary, format_summary, replay_trace
from .replayer.fault_schedule import format_fault_summary
from .shop import INJECT_EFFECTS, ShopThread
from .shop.processes import ShopProcess, SplitProcesses
from .traces import load_results


class DemoInterrupted(WdmError):
    """Ctrl-C or SIGTERM stopped one of the demo's replays: the demo stops there (exit 130, like ``replay``)."""

    exit_code = 130


def stop_if_interrupted(summary: ReplaySummary, name: str, out: Path, kept: bool) -> None:
    """Raise :class:`DemoInterrupted` when ``summary``'s replay was stopped by a signal, saying what is kept.

    The replay stops at the signal and writes its partial file; the demo used to go on with its
    next workloads and end "found anomalies" (exit 1) or INCONCLUSIVE (exit 3) for a run the user
    had stopped.
    """
    if summary.complete or summary.reason != "interrupted":
        return
    where = (f"its partial results are kept in {out}" if kept else
             "the temporary directory is deleted (--keep DIR keeps a partial run)")
    raise DemoInterrupted(f"demo: interrupted during the {name} replay; {where}")


@dataclass(frozen=True, slots=True)
class DemoRun:
    """One workload of the demo: how to generate it and how fast to replay it."""

    name: str
    workload: str
    options: dict
    speed: float | None  # None = as fast as possible


def demo_runs(duration: float, rate: float) -> list[DemoRun]:
    """The demo's workloads: a paced stress trace, then the consistency and contention tests at full speed.

    Their union exercises every bug class that needs no fault (``docs/bug-classes.md``; a test
    checks it on the shortest demo).
    """
    return [
        # The seed scenarios plus s7 (an item added twice) and s8 (an order checked out twice):
        # oversell, non-atomic checkout, double charge, wrong total, repeated item, re-checkout,
        # paid flag, phantom success. A run of 20 sessions or more has s7 and s8 whatever the seed.
        DemoRun("stress", "stress", {"rate": rate, "duration": duration}, 1.0),
        # Concurrent checkouts of scarce stock and of users with several orders: lost updates of
        # stock and credit, oversell under concurrency.
        DemoRun("consistency", "consistency", {}, None),
        # Concurrent add_item to one order and add_funds/pay on one user: what lost-line and
        # wrong-total get wrong, which the other two never exercise.
        DemoRun("contention", "contention", {}, None),
    ]


def shop_line(shop: object, inject: str | None) -> list[str]:
    """The demo's lines about its shop: where the reference shop listens, and the bug injected (if any)."""
    urls = sorted(set(shop.running.urls.values()))  # type: ignore[attr-defined]
    where = urls[0] if len(urls) == 1 else ", ".join(f"{s} {u}" for s, u in sorted(shop.running.urls.items()))  # type: ignore[attr-defined]
    lines = [f"shop: the built-in reference shop at {where} (`wdm-replay serve` runs it alone)"]
    if inject:
        lines.append(f"!!! BUG INJECTED: --inject {inject}: this shop is deliberately wrong: {INJECT_EFFECTS[inject]}")
    return lines


def files_line(workdir: Path, kept: bool) -> str:
    """Where the demo's files are: kept in ``workdir``, or in a temporary directory deleted at the end."""
    if kept:
        return f"files: traces (*.wdmt) and results (*.wdmr) are kept in {workdir}"
    return ("files: traces and results go to a temporary directory, deleted at the end "
            "(--keep DIR keeps them, for `wdm-replay report DIR/stress.wdmr`)")


def run_demo(workdir: str | Path, *, seed: int = 0, duration: float = 10.0, rate: float = 20.0,
             inject: str | None = None, split: bool = False, progress: bool = False, kept: bool = True,
             echo: Callable[[str], None] = print) -> bool:
    """Run the demo in ``workdir`` (traces and results stay there); True when every check is clean.

    Each part (one workload) prints at most ~40 lines: the trace, the replay's summary and the
    check's short form; ``kept`` says whether ``workdir`` survives the demo (False: a temporary one).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    clean = True
    covered: set[str] = set()
    with ShopThread(split=split, inject=inject, seed=seed) as shop:
        for line in shop_line(shop, inject):
            echo(line)
        echo(files_line(workdir, kept))
        for run in demo_runs(duration, rate):
            trace = workdir / f"{run.name}.wdmt"
            out = workdir / f"{run.name}.wdmr"
            pace = "as fast as possible (--speed max)" if run.speed is None else f"at speed {run.speed:g}"
            echo(f"\n=== {run.name}: generate, replay {pace}, check ===")
            header = generate(run.workload, trace, seed=seed, **run.options)
            echo(summary_line(header, trace.name))
            summary = replay_trace(str(trace), str(out), target=shop.target, speed=run.speed,
                                   label=f"demo-{run.name}", progress=progress)
            echo(format_summary(replace(summary, path=out.name)))
            stop_if_interrupted(summary, run.name, out, kept)
            results = load_results(out, with_args=True)
            check = check_results(results)
            echo(render_check_text(check).rstrip("\n"))
            clean = clean and check.clean
            covered.update(check.bug_classes.covered)
    echo("\n" + suite_coverage_line(covered))
    return clean


def suite_coverage_line(covered: set[str]) -> str:
    """What the demo's workloads covered together: every bug class that needs no fault, or which not."""
    no_fault = [c for c in BUG_CLASSES if not c.needs_fault]
    missing = [c.title for c in no_fault if c.name not in covered]
    tail = f" (not exercised: {', '.join(missing)})" if missing else ""
    return (f"together: covered {len(no_fault) - len(missing)} of the {len(no_fault)} bug classes that need no fault"
            f"{tail}; `wdm-replay demo --faults` covers the other {len(BUG_CLASSES) - len(no_fault)}")


# --- demo --faults ------------------------------------------------------------------------------

# --faults-service -> the process killed: a service of the split shop, or the one-port shop itself.
FAULT_SERVICES = {"order": "orders", "stock": "stock", "payment": "payment", "shop": "shop"}
# The shop's test hook that waits before each leg of a split checkout: at ~20 sessions/s it keeps a
# handful of checkouts between their stock and payment legs at any instant, so a kill of the order
# service lands mid-checkout (what --inject no-recovery cannot survive) on every run, not by luck.
FAULT_LEG_DELAY_S = 0.5
FAULT_MAX_RECOVERY_S = 5.0  # the demo's check --max-recovery
FAULT_DEMO_ANOMALIES = 1  # anomalies its check lists (the closing line names every order): the part stays within 40 lines


@dataclass(frozen=True, slots=True)
class FaultDemoPlan:
    """What ``demo --faults`` runs: the trace's shape and when, which service and how long it kills."""

    service: str  # "order", "stock", "payment" (a split service) or "shop" (the one-port durable shop)
    duration: float  # seconds of stress schedule (replayed at speed 1)
    rate: float  # sessions per second
    at: float  # seconds into the run the kill happens
    down: float  # seconds the service stays down before its restart begins
    inject: str | None  # None (the correct durable shop) or "no-recovery"
    leg_delay: float = FAULT_LEG_DELAY_S
    max_recovery: float = FAULT_MAX_RECOVERY_S
    undo_waits: bool = True  # the restart returns once the service listens (False: at once, like `docker compose start`)


def fault_plan(service: str | None, duration: float, rate: float, inject: str | None,
               down: float = 3.0) -> FaultDemoPlan:
    """The demo's plan: the kill in the middle of the run (the default victim: stock; order with no-recovery).

    ``--inject no-recovery`` loses a checkout only when the kill lands between its legs at the order
    service (or a stock kill outlasts a give-back), so without an explicit service it kills the
    order service, the kill that variant reliably does not survive.
    """
    if service is None:
        service = "order" if inject == "no-recovery" else "stock"
    at = max(1.0, 0.4 * duration)
    return FaultDemoPlan(service, duration, rate, at, min(down, max(0.5, duration - at - 1.0)), inject)


def fault_schedule(plan: FaultDemoPlan, shop: SplitProcesses) -> dict:
    """The schedule file's document: ``kill -9`` the service's pid at ``at``, restart it ``down`` s later."""
    svc = FAULT_SERVICES[plan.service]
    return {"faults": [{"name": f"kill-{plan.service}", "at": plan.at, "for": plan.down,
                        "do": shop.kill_command(svc), "undo": shop.restart_command(svc, plan.undo_waits),
                        "timeout": 60}]}


@dataclass(frozen=True, slots=True)
class FaultDemoResult:
    """What a ``demo --faults`` run ended with: the verdict, the report (with its ``faults`` section), named orders."""

    verdict: str
    report: Report
    orders: tuple[str, ...]  # orders named by consistency anomalies
    results_path: str
    schedule_path: str


def fault_shop(plan: FaultDemoPlan, data: str) -> SplitProcesses:
    """The durable shop the plan kills (not started): three split processes, or one for ``shop``."""
    if plan.service == "shop":
        return ShopProcess(data, ("--inject", plan.inject) if plan.inject else ())
    extra = ("--leg-delay", f"{plan.leg_delay:g}") + (("--inject", plan.inject) if plan.inject else ())
    return SplitProcesses(data, extra)


def run_fault_demo(workdir: str | Path, plan: FaultDemoPlan, *, seed: int = 0, progress: bool = False,
                   kept: bool = True, echo: Callable[[str], None] = print) -> FaultDemoResult:
    """Run ``demo --faults`` in ``workdir`` (shop data, trace, schedule, results stay there).

    Prints at most ~40 lines; where the files are is said by the caller's last lines.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    shop = fault_shop(plan, str(workdir / "shop-data"))
    what = (f"the one-port durable shop: one `serve --data {Path(shop.data).name}` process" if plan.service == "shop"
            else f"the durable split shop: three `serve --split --only … --data {Path(shop.data).name}` processes")
    echo(f"[1/5] starting {what}" + (f" (BUG INJECTED: {plan.inject})" if plan.inject else ""))
    if plan.service != "shop":
        echo(f"      a split checkout waits {plan.leg_delay:g} s between its stock and payment legs (--leg-delay "
             f"{plan.leg_delay:g}, a test hook of the shop) so the kill lands mid-checkout: checkouts take about "
             f"{2 * plan.leg_delay:g} s longer than they would")
    with shop:
        echo("      " + "; ".join(f"{svc} {shop.url(svc)} pid {shop.pid(svc)}" for svc in shop.services))
        trace, out, sched = workdir / "stress.wdmt", workdir / "faults.wdmr", workdir / "faults.json"
        echo(f"[2/5] generating a stress trace ({plan.rate:g} sessions/s for {plan.duration:g} s)")
        header = generate("stress", trace, seed=seed, rate=plan.rate, duration=plan.duration)
        echo("      " + summary_line(header, trace.name))
        doc = fault_schedule(plan, shop)
        sched.write_text(json.dumps(doc, indent=2) + "\n")
        echo(f"[3/5] fault schedule {sched.name} (the `replay --faults` file a user writes):")
        echo("      " + json.dumps(doc))  # the file is indented for a person to edit; here one line keeps it short
        echo(f"[4/5] replaying at speed 1 with --faults {sched.name}: the {plan.service} "
             f"{'process' if plan.service == 'shop' else 'service'} is killed -9 at {plan.at:g} s and "
             f"restarted {plan.down:g} s later")
        summary = replay_trace(str(trace), str(out), target=shop.target, speed=1.0, timeout=5.0, settle=3.0,
                               label=f"demo-faults-{plan.service}", progress=progress, faults=str(sched))
        echo(format_summary(replace(summary, path=out.name)))
        assert summary.faults is not None  # the run had the schedule written above
        echo(format_fault_summary(summary.faults))
        for line in summary.faults.failures:
            echo(f"      {line}")
        stop_if_interrupted(summary, "faults", out, kept)
    echo(f"[5/5] check --max-recovery {plan.max_recovery:g}, and the report's faults section")
    results = load_results(out, with_args=True)
    check = check_results(results, max_recovery=plan.max_recovery)
    report = build_report(results, check=check)
    # Each window's line (its requests and unanswered share); its recovery is in the closing line.
    echo("\n".join(ln for ln in fault_lines(report.faults, timeline=False)[1:] if ln.strip() and not ln.startswith("    ")))
    echo(render_check_text(check, anomalies=FAULT_DEMO_ANOMALIES).rstrip("\n"))
    orders = tuple(sorted({o for a in check.consistency.anomalies for o in a.orders}, key=_natural))
    echo(fault_outcome_line(report, check.verdict.verdict, orders))
    return FaultDemoResult(check.verdict.verdict, report, orders, str(out), str(sched))


def _natural(name: str) -> tuple:
    head, _, num = name.rpartition("-")
    return (head, int(num)) if num.isdigit() else (name, 0)


def fault_outcome_line(report: Report, verdict: str, orders: tuple[str, ...] = ()) -> str:
    """The demo's closing line: each fault window, its recovery, the verdict, and the orders anomalies name."""
    parts = []
    for w in report.faults.windows:  # a fault demo's report always has the section (see run_fault_demo)
        end = "open" if math.isinf(w.end) else f"{w.end:.2f} s"
        rec = "not recovered" if w.recovery_s is None else f"{w.recovery_s:.2f} s"
        first = "-" if w.first_success_s is None else f"{w.first_success_s:.2f} s"
        parts.append(f"{w.name} window {w.start:.2f} s -> {end}, first success {first}, recovery {rec}")
    line = "demo --faults: " + ("; ".join(parts) or "no fault window") + f"; verdict {verdict}"
    if orders:
        line += f"; anomalies name {len(orders)} order(s): {', '.join(orders[:20])}" + (" …" if len(orders) > 20 else "")
    return line
