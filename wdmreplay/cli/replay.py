"""``replay``, ``merge``, ``ab`` and ``shrink``: the commands that replay a trace against a shop."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from .analysis import compare_and_exit, compare_options
from .options import DAY, FORCE_HELP, UI_DEFAULT, Finite, Listen, replay_options


@click.command("replay")
@click.argument("trace", type=click.Path(dir_okay=False))
@click.option("--urls", "urls_path", type=click.Path(dir_okay=False),
              help="urls.json with ORDER_URL, PAYMENT_URL, STOCK_URL [default: ./urls.json if present]")
@click.option("--url", "base_url", help="one gateway base URL for all three services [default: http://localhost:8000]")
@replay_options("dialect", "speed", "concurrency", "timeout", "workers", "client", "label", "settle")
@click.option("--routes", "routes_path", type=click.Path(dir_okay=False),
              help="JSON file of route overrides: {\"checkout\": \"POST /orders/checkout/{order}\", ...}")
@click.option("--shard", help="replay only shard i of N (sessions with sid % N == i), e.g. 0/4; "
                                "auto/N takes i from $JOB_COMPLETION_INDEX (a Kubernetes Indexed Job)")
@click.option("--start-at", "start_at", metavar="TIME",
              help="wait until TIME (epoch seconds or ISO-8601 with zone, e.g. 2026-12-02T01:00:00Z) and start "
                   "the schedule there: every shard given the same TIME fires in step (docs/distributed.md)")
@click.option("--faults", "faults_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="fault schedule (JSON, or TOML): shell actions run at times of the run, "
                   "recorded as events (docs/faults.md)")
@click.option("--no-final-read", is_flag=True, help="skip reading the final state of every entity")
@click.option("--final-sample", type=click.IntRange(0), default=1000, show_default=True, metavar="N",
              help="the final read reads every entity the run touched, and of the batch_init entities no request "
                   "named at most N per kind (a sample seeded by the trace's seed); 0: none of them")
@click.option("--final-all", is_flag=True, help="read back every batch_init entity (no sample; slow for large ones)")
@click.option("--ui", "ui", type=Listen(misplaced="write --ui=HOST:PORT or put --ui after the trace"), is_flag=False,
              flag_value=UI_DEFAULT, default=None, metavar="[HOST:PORT]",
              help=f"serve a live view of the run at HOST:PORT [{UI_DEFAULT} when given alone; port 0: any "
                   "free port]: progress, req/s by outcome, p50/p99 over time, errors by operation, fault "
                   "windows; GET /stats.json gives the figures. Give --ui after the trace, or as --ui=HOST:PORT")
@click.option("--ui-linger", "ui_linger", type=Finite(0, DAY), default=None, metavar="S",
              help="with --ui: keep the live view up S seconds after the run [default: until Ctrl-C]")
@click.option("--quiet", "-q", is_flag=True, help="no progress bar and no summary")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="results file [default: <trace stem>.wdmr]")
@click.option("--force", is_flag=True, help="replace an existing results file (or a killed run's .part) at -o")
def replay_cmd(trace: str, urls_path: str | None, base_url: str | None, config: Any, routes_path: str | None,
               shard: str | None, start_at: str | None, faults_path: str | None, no_final_read: bool,
               final_sample: int, final_all: bool, ui: tuple[str, int] | None, ui_linger: float | None, quiet: bool,
               output: str | None, force: bool) -> None:
    """Replay a trace against a shop and record every request into a results file.

    Sessions start on the trace's schedule (divided by --speed); each step is sent after the
    previous response plus its think time, never before. Ctrl-C stops cleanly and writes a partial
    results file (exit code 130). An existing results file at -o is replaced only with --force.

    \b
    Examples:
      wdm-replay replay stress.wdmt                          # ./urls.json or localhost:8000
      wdm-replay replay stress.wdmt --urls urls.json --label build-a -o a.wdmr
      wdm-replay replay consistency.wdmt --url http://127.0.0.1:8000 --speed max --concurrency 512
      wdm-replay replay stress.wdmt --speed 10 --workers 2 --settle 5
      JOB_COMPLETION_INDEX=1 wdm-replay replay t.wdmt --shard auto/4 --start-at 2026-12-02T01:00:00Z -o shard-1.wdmr
      wdm-replay replay stress.wdmt --faults kill-stock.json --settle 5 -o faulty.wdmr
      wdm-replay replay stress.wdmt -o a.wdmr --force       # run again over a.wdmr
      wdm-replay replay checkout.wdmt --final-sample 5000   # a larger sample of untouched batch_init entities
      wdm-replay replay stress.wdmt --ui                     # live view at http://127.0.0.1:8089/
      wdm-replay replay stress.wdmt --speed 10 --ui=0.0.0.0:8089 --ui-linger 60
    """
    from pathlib import Path

    from ..operations import get_dialect, load_routes
    from ..targets import choose_target, urls_file_read
    from ..replayer import ReplayError, check_output, parse_shard, replay_trace
    from ..replayer.start import parse_start_at, resolve_shard
    from ..traces import read_trace_header

    target = choose_target(urls_path, base_url)
    try:
        shard_value = parse_shard(resolve_shard(shard))
        start_value = parse_start_at(start_at) if start_at is not None else None
    except ValueError as e:
        raise ReplayError(str(e)) from None
    header = read_trace_header(trace)
    config = config.replace(shard=shard_value, start_at=start_value, faults=faults_path, final_read=not no_final_read,
                            final_sample=None if final_all else final_sample)
    dialect_obj = get_dialect(config.dialect or header.dialect,
                              load_routes(routes_path) if routes_path else None)
    out = output or str(Path(trace).with_suffix(".wdmr"))
    check_output(out, [trace, urls_file_read(urls_path, base_url), routes_path, faults_path], force)
    if ui_linger is not None and ui is None:
        raise click.UsageError("--ui-linger goes with --ui")
    with _live_view(ui) as live:
        summary = replay_trace(trace, out, target=target, config=config, dialect=dialect_obj,
                               progress=not quiet and sys.stderr.isatty(), live=live)
        _print_replay_summary(summary, quiet)
        if live is not None and summary.reason != "interrupted":
            click.echo(f"live view: {live.url} stays up " +
                       ("until Ctrl-C" if ui_linger is None else f"for {ui_linger:g} s (Ctrl-C ends it)"), err=True)
            live.linger(ui_linger)
    if not summary.complete:
        if quiet:
            click.echo(f"wdm-replay: interrupted; partial results in {out}", err=True)
        if summary.reason == "interrupted":
            # The results file is closed and the output flushed: skip the interpreter's teardown,
            # which on a loaded machine alone can take most of the second a signal is promised.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        sys.exit(1)


def _live_view(ui: tuple[str, int] | None) -> Any:
    """The live view ``--ui`` asks for, its socket bound and its address on stderr; or a null context."""
    from contextlib import nullcontext

    if ui is None:
        return nullcontext()
    from ..replayer.live import LiveView

    view = LiveView(*ui)
    click.echo(f"live view: {view.url} (figures: {view.url}stats.json)", err=True)
    return view


def _print_replay_summary(summary: Any, quiet: bool) -> None:
    """Print ``summary`` (a :class:`~wdmreplay.replayer.summary.ReplaySummary`) and every failed fault action."""
    from ..replayer import format_summary

    if not quiet:
        click.echo(format_summary(summary), err=not summary.complete)
    if summary.faults is not None:  # the run had a fault schedule
        from ..replayer.fault_schedule import format_fault_summary

        if not quiet:
            click.echo(format_fault_summary(summary.faults), err=not summary.complete)
        for line in summary.faults.failures:
            click.echo(f"wdm-replay: {line}", err=True)  # a failing fault action is never silent


@click.command("merge")
@click.argument("shards", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="merged results file")
@click.option("--force", is_flag=True, help=FORCE_HELP)
def merge_cmd(shards: tuple[str, ...], output: str, force: bool) -> None:
    """Merge the results of every `replay --shard i/N` of one trace into one run's results.

    Rows, bindings, events (tagged with their shard) and the final state are merged exactly; the
    merged file checks and reports like a one-process run (docs/replay.md, "Merging shards").

    \b
    Examples:
      wdm-replay replay t.wdmt --shard 0/2 -o s0.wdmr &  wdm-replay replay t.wdmt --shard 1/2 -o s1.wdmr
      wdm-replay merge s0.wdmr s1.wdmr -o run.wdmr && wdm-replay check run.wdmr
    """
    from ..replayer.merge import merge_results
    from ..traces import refuse_inputs
    from ..traces.trace import refuse_replacing

    refuse_inputs(output, list(shards))  # an input named as -o: that error, not "already holds"
    refuse_replacing(output, force)
    click.echo(merge_results(list(shards), output).line())




@click.command("ab")
@click.argument("trace", type=click.Path(dir_okay=False))
@click.option("--a", "urls_a", required=True, metavar="URLS", help="build A (the base): urls.json or a base URL")
@click.option("--b", "urls_b", required=True, metavar="URLS", help="build B: urls.json or a base URL")
@click.option("--runs", type=click.IntRange(1, 1000), default=3, show_default=True, help="runs per build")
@click.option("--label-a", default="A", show_default=True, help="build label of A's runs")
@click.option("--label-b", default="B", show_default=True, help="build label of B's runs")
@click.option("--before-each", metavar="CMD", help="shell command run before every replay (e.g. reset the "
              "shops); env WDM_AB_RUN, WDM_AB_BUILD, WDM_AB_LABEL; a non-zero exit stops the session")
@click.option("-d", "--dir", "outdir", type=click.Path(file_okay=False), default="ab-runs", show_default=True,
              help="directory that keeps every results file")
@replay_options("dialect", "speed", "concurrency", "timeout")
@click.option("--quiet", "-q", is_flag=True, help="no progress lines or bars")
@compare_options
def ab_cmd(trace: str, urls_a: str, urls_b: str, runs: int, label_a: str, label_b: str, before_each: str | None,
           outdir: str, config: Any, quiet: bool,
           threshold: float, error_threshold: float, fmt: str, output: str | None, alpha: float, seed: int,
           no_check: bool) -> None:
    """Replay TRACE against builds A and B alternately (A B B A A B ...), then compare them.

    Interleaving spreads the machine's drift over both builds. Every results file stays in --dir;
    the comparison (A is the base) prints as `compare` does and sets the exit code: 0 no regression,
    1 regression, 2 error, 130 interrupted.

    \b
    Examples:
      wdm-replay ab stress.wdmt --a http://127.0.0.1:8000 --b http://127.0.0.1:9000 --runs 3
      wdm-replay ab stress.wdmt --a old.json --b new.json --label-a main --label-b pr-42 -d ab-out
      wdm-replay ab c.wdmt --a old.json --b new.json --speed max --before-each ./reset-shops.sh
    """
    from ..ab import run_ab
    from ..targets import parse_target
    from ..traces import refuse_inputs, refuse_unwritable

    if output:
        refuse_inputs(output, [trace, *(u for u in (urls_a, urls_b) if os.path.isfile(u))])
        refuse_unwritable(output)  # before the runs, not after them
    done = run_ab(trace, outdir, target_a=parse_target(urls_a, "--a"), target_b=parse_target(urls_b, "--b"),
                  runs=runs, label_a=label_a, label_b=label_b, before_each=before_each, config=config,
                  progress=not quiet and sys.stderr.isatty(),
                  notify=(lambda _: None) if quiet else (lambda line: click.echo(line, err=True)))
    paths = [str(r.path) for r in done if r.build == "A"] + [str(r.path) for r in done if r.build == "B"]
    compare_and_exit(paths, threshold, error_threshold, fmt, output, alpha, seed, no_check)



# --- shrink (composition root: replayer + analysis) ---------------------------------------------


@click.command("shrink")
@click.argument("run", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="the minimal trace [default: <run stem>.min.wdmt]")
@click.option("--urls", "urls_path", type=click.Path(dir_okay=False),
              help="urls.json of the shop to replay against [default: ./urls.json if present]")
@click.option("--url", "base_url", help="one gateway base URL [default: http://localhost:8000]")
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False),
              help="the trace RUN replayed [default: the path in RUN's header]; its digest must match")
@click.option("--anomaly", metavar="KIND[:ID]",
              help="the finding to reproduce: a kind (e.g. lost_update), or a kind and an entity id or trace "
                   "symbol (oversell:item-4, lost_update:$item3) [default: the run's first]")
@click.option("--runs", type=click.IntRange(1, 100), default=5, show_default=True,
              help="replays per candidate (kept if one reproduces); the final trace gets as many more")
@click.option("--budget", type=Finite(0, DAY, min_open=True), default=300.0, show_default=True, metavar="S",
              help="seconds of wall time for the whole shrink (the best trace so far is written then)")
@click.option("--before-each", metavar="CMD", help="shell command run before every replay (e.g. reset the "
              "shop's database); env WDM_SHRINK_REPLAY; a non-zero exit stops the search")
@click.option("--timeout", type=Finite(0, DAY, min_open=True), default=10.0, show_default=True,
              help="seconds per request")
@click.option("--concurrency", type=click.IntRange(1, 65536), default=256, show_default=True,
              help="max requests in flight per replay")
@click.option("--quiet", "-q", is_flag=True, help="no progress; print only the result")
@click.option("--force", is_flag=True, help=FORCE_HELP)
def shrink_cmd(run: str, output: str | None, urls_path: str | None, base_url: str | None, trace_path: str | None,
               anomaly: str | None, runs: int, budget: float, before_each: str | None, timeout: float,
               concurrency: int, quiet: bool, force: bool) -> None:
    """Shrink RUN's trace to a small one that still reproduces its finding against the shop.

    Keeps the requests of the entity at fault and those it depends on (its creates, funding,
    orders and their lines), then removes sessions, steps and smaller amounts by delta debugging
    while a replay at --speed max still shows the same kind of anomaly on the entity in the same
    role (each candidate up to --runs times: races are flaky). The output is an ordinary trace
    whose header names the finding, the source run and trace, and the reproduction rate over
    --runs fresh replays. Prints before/after sizes, replays spent, wall time and the trace as a
    short script. Ctrl-C writes the best trace so far. Exit 0 written, 2 bad input, 3 nothing to
    reproduce (a CLEAN run, no final state, or a finding that never recurs), 130 interrupted.

    \b
    Examples:
      wdm-replay shrink c.wdmr --url http://127.0.0.1:8000 -o min.wdmt
      wdm-replay shrink c.wdmr --urls urls.json --anomaly lost_update --runs 3 --budget 120
      wdm-replay shrink c.wdmr --anomaly oversell:item-4 --before-each ./flush-db.sh -o oversell.wdmt
      wdm-replay replay min.wdmt --speed max -o again.wdmr && wdm-replay check again.wdmr
    """
    from pathlib import Path

    from ..targets import choose_target
    from ..shrink import ShrinkError, format_result, shrink_run

    target = choose_target(urls_path, base_url)
    if not Path(run).name:  # "", ".", "/": no results file, and no name to derive the default -o from
        raise ShrinkError(f"{run!r}: not a results file; give the RUN.wdmr to shrink")
    out = output or str(Path(run).with_suffix(".min.wdmt"))
    result = shrink_run(run, out, target=target, trace=trace_path, anomaly=anomaly, runs=runs, budget=budget,
                        before_each=before_each, timeout=timeout, concurrency=concurrency, force=force,
                        progress=not quiet and sys.stderr.isatty(),
                        notify=(lambda _: None) if quiet else (lambda line: click.echo(line, err=True)))
    click.echo(format_result(result))
    if result.stopped == "interrupted":  # one line on stderr, as every command stopped by a signal says
        click.echo(f"wdm-replay: interrupted; the smallest trace found so far is in {result.output} "
                   f"(reproduction rate not measured)", err=True)
        sys.exit(130)
