"""Replay a trace against a target: the library entry :func:`replay_trace`.

It composes the parts: option checks and the probe (:mod:`.checks`), the trace scan
(:mod:`.final`), the results writer, the one driver (:mod:`.coordinator`, which always runs the
sessions in worker processes — ``workers=1`` is one worker) and the summary (:mod:`.summary`).
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from .. import __version__
from ..operations import Dialect, get_dialect
from ..targets import Target
from ..eventloop import run_async  # re-exported (its one definition is in wdmreplay.eventloop)
from ..traces import part_path, refuse_inputs
from ..traces.results import ResultsWriter, results_header
from ..traces.trace import TraceHeader, TraceReader, read_trace_header, trace_digest
from .checks import ReplayError, TargetUnreachable, probe_target, services_of
from .config import ReplayConfig, WorkerSetup
from .coordinator import Coordinator, interrupt_replays
from .final import check_dialect, scan_trace
from .schedule import shard_keep
from .start import check_start_at, host_clock
from .summary import ReplaySummary, Tally, build_summary, format_summary

__all__ = ["ReplayConfig", "ReplayError", "ReplaySummary", "TargetUnreachable", "check_output", "format_summary",
           "interrupt_replays", "preflight", "replay_trace", "run_async", "shard_keep"]


def replay_trace(trace_path: str, out_path: str, *, target: Target | str, config: ReplayConfig | None = None,
                 dialect: str | Dialect | None = None, progress: bool = False, live: Any = None,
                 **options: Any) -> ReplaySummary:
    """Replay ``trace_path`` against ``target`` with ``config``, write ``out_path``; return the run's summary.

    ``config`` is a :class:`.config.ReplayConfig` (what each option means is documented there);
    without it, the keyword ``options`` build one (``speed=``, ``concurrency=``, ``timeout=``,
    ``workers=``, ``client=``, ``settle=``, ``label=``, ``shard=``, ``start_at=``, ``faults=``,
    ``final_read=``, ``final_sample=``) — the same checks either way. ``dialect`` is a dialect name
    or a :class:`~wdmreplay.operations.Dialect` (custom routes), default the config's, else the trace
    header's. Raises :class:`~wdmreplay.errors.WdmError` for a bad option, a bad trace, a dialect
    lacking one of the trace's operations, or an unreachable target — before anything is sent.
    ``speed`` None runs as fast as ``concurrency`` allows. ``settle`` (seconds) re-reads the final
    state until two snapshots agree; None = a short settle only when the run had indeterminate
    requests (see :mod:`.final`). ``workers`` is the number of worker processes that send.
    The summary is a :class:`.summary.ReplaySummary` (attributes; ``as_dict()`` is its JSON map).
    Ctrl-C / SIGTERM stop the run; the file is then marked partial (``summary.complete is
    False``, ``summary.reason == "interrupted"``). ``start_at`` (unix time) makes the run wait
    until then and start its schedule there (:mod:`.start`; a start more than a second past is
    refused before anything is sent). ``faults`` is a fault schedule file (:mod:`.fault_schedule`); what its
    actions did is ``summary.faults``. ``final_sample``: of the ``batch_init`` entities no
    request touched, at most this many per kind are read back (None reads them all). ``live`` is a
    :class:`.live.LiveView` (``replay --ui``) fed with every chunk and event written, and shown the
    summary at the end.
    """
    if config is None:
        if isinstance(dialect, str):
            options["dialect"] = dialect
        config = ReplayConfig(**options)
    elif options:
        raise TypeError(f"replay_trace: give the options in config, not as keywords: {', '.join(sorted(options))}")
    trace_path, out_path = str(trace_path), str(out_path)
    if isinstance(target, str):
        target = Target.single(target)
    if config.start_at is not None:
        try:
            check_start_at(config.start_at, time.time())
        except ValueError as e:
            raise ReplayError(str(e)) from None
    schedule = None
    if config.faults is not None:
        # start-up cost: the fault runner's module (threads, subprocesses) loads only for a run with --faults
        from .fault_schedule import FaultRunner, check_schedule_fits, load_schedule, schedule_record

        schedule = load_schedule(config.faults)
    with TraceReader(trace_path) as r:  # the header as stored (what the results header copies) and typed
        header, th = r.header, r.trace_header
    if not isinstance(dialect, Dialect):
        dialect = get_dialect(config.dialect or th.dialect)
    if schedule:
        check_schedule_fits(schedule, run_length(th, config.speed), config.faults)
    scan = scan_trace(trace_path, keep=shard_keep(config.shard, None), final_read=config.final_read)
    check_dialect(scan, dialect, trace_path)
    probes = probe_target(target, dialect, services_of(scan.ops), config.timeout)

    scenarios = list(th.scenarios)
    run = config.run_fields()
    writer = ResultsWriter(out_path, results_header(
        trace={"path": trace_path, "digest": trace_digest(trace_path), "header": header},
        target=target.as_dict(), dialect=dialect.name, speed=run.pop("speed"), concurrency=run.pop("concurrency"),
        timeout=run.pop("timeout"), label=run.pop("label"), started=time.time(), tool=f"wdm-replay {__version__}",
        host=socket.gethostname(), **run, scenarios=scenarios, clock=host_clock(),
        **({"faults": schedule_record(schedule)} if schedule else {}),
    ), inputs=[trace_path, *([config.faults] if config.faults else [])])
    runner = FaultRunner(schedule) if schedule else None
    tally = Tally()
    if live is not None:
        live.set_total(scan.kept_requests)
    setup = WorkerSetup(config=config, trace_path=trace_path, target=target.as_dict(),
                        dialect=(dialect.name, {k: f"{r.method} {r.template}" for k, r in dialect.routes.items()}),
                        scenarios=tuple(scenarios), shared=frozenset(scan.shared), progress=progress)
    coordinator = Coordinator(
        setup=setup, writer=writer if live is None else live.tap(writer), tally=tally,
        phases=th.phase_names, scan=scan,
        total_requests=scan.kept_requests, faults=runner, sample_seed=max(th.seed, 0), live=live)
    wall_start = time.perf_counter()
    complete, reason = False, "error"
    try:
        complete, reason = coordinator.run()
    except KeyboardInterrupt:  # a signal outside the window where the run's own handlers are installed
        complete, reason = False, "interrupted"
    finally:
        wall = time.perf_counter() - wall_start
        writer.close(complete=complete, wall=wall, reason=reason)
    summary = build_summary(out_path, tally, duration=th.duration, kept_requests=scan.kept_requests,
                            speed=config.speed, wall=wall, complete=complete, reason=reason, probes=probes,
                            bound=coordinator.bound, final_reads=coordinator.final_reads, dialect=dialect.name,
                            conn_waits=coordinator.conn_waits, final_read=coordinator.final_read_info,
                            faults=runner.summary() if runner is not None else None)
    if live is not None:
        live.finish(summary)
    return summary


def run_length(header: TraceHeader, speed: float | None) -> float | None:
    """Seconds the trace's schedule lasts at ``speed`` (at max: its length at speed 1, an upper bound); None if unknown."""
    duration = float(header.duration)
    if not duration > 0:
        return None
    return duration / speed if speed is not None else duration


def check_output(out_path: str, inputs: list[str | None], force: bool) -> None:
    """Refuse a results path that is one of the run's inputs, or (without ``force``) that already exists.

    An existing results file is another run's record, and a ``.part`` one a killed run's: neither is
    replaced silently.
    """
    refuse_inputs(out_path, [i for i in inputs if i])
    if force:
        return
    for cand in (out_path, part_path(out_path)):
        if os.path.lexists(cand):
            what = "a killed run's partial results" if cand != out_path else "already exists"
            raise ReplayError(f"{cand}: {what}; give --force to replace it, or choose another -o")


def preflight(trace_path: str, target: Target, dialect: str | Dialect | None, timeout: float) -> int:
    """What a replay checks before it sends: the trace reads, the dialect has its operations, the target answers.

    Returns the number of probe requests sent. ``ab`` calls it for both builds before its first run,
    so a dead build B is found before build A's whole run.
    """
    if dialect is None:
        dialect = read_trace_header(trace_path).dialect
    if isinstance(dialect, str):
        dialect = get_dialect(dialect)
    scan = scan_trace(trace_path, final_read=False)
    check_dialect(scan, dialect, trace_path)
    return probe_target(target, dialect, services_of(scan.ops), timeout)
