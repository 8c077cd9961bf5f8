"""``serve``, ``demo``, ``capacity`` and ``grade``: the reference shop and the course's composition roots."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from ..bugclasses import DURABLE_BUGS, INJECT_KINDS
from .options import DAY, DURATION, RATE, SEED, SPEED_RANGE, Finite, replay_options


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65533),
              help="Port (with --split: port, port+1, port+2). 0 picks a free port and prints it.")
@click.option("--split", is_flag=True, help="Order, stock and payment as three services on three ports; "
              "the order service calls the others over HTTP.")
@click.option("--inject", "inject", multiple=True, metavar="KIND[:RATE]",
              help="A deliberate bug (lost-update, oversell, no-rollback, double-charge, lost-line, "
                   "wrong-total, repeat-collapse; at most one) or a fault of a correct shop at a share of requests "
                   "(apply-then-500, apply-then-hang, slow-saga; e.g. slow-saga:0.3). Repeatable. "
                   "See docs/shop.md.")
@click.option("--hang", "hang_s", default=30.0, show_default=True, type=Finite(0, DAY, min_open=True), metavar="S",
              help="apply-then-hang: seconds an answer is held (make it longer than the replay's --timeout).")
@click.option("--saga-delay", "saga_delay_s", default=2.0, show_default=True, type=Finite(0, DAY), metavar="S",
              help="slow-saga: seconds between a checkout's stock leg and its payment leg.")
@click.option("--latency", "latency_ms", default=0.0, show_default=True, type=Finite(0, 3_600_000),
              metavar="MS", help="Added delay per request, in milliseconds.")
@click.option("--error-rate", default=0.0, show_default=True, type=Finite(0, 1), metavar="P",
              help="Share of requests answered 500 without any effect (nothing changes).")
@click.option("--seed", default=0, show_default=True, type=SEED,
              help="Seed of the --error-rate and --inject draws and of batch_init's order contents.")
@click.option("--dialect", "dialects", default="both", show_default=True,
              type=click.Choice(["both", "2023", "2024"]), help="Which API dialect(s) to serve.")
@click.option("--data", "data", type=click.Path(file_okay=False), metavar="DIR",
              help="Keep the state in SQLite files under DIR (durable: every answer is committed first; "
                   "a restart with the same DIR continues). With --split, checkouts are logged sagas.")
@click.option("--only", type=click.Choice(["orders", "stock", "payment"]),
              help="With --split: serve just this service, on --port (one process per service).")
@click.option("--stock-url", metavar="URL", help="With --only orders: the stock service's base URL.")
@click.option("--payment-url", metavar="URL", help="With --only orders: the payment service's base URL.")
@click.option("--leg-delay", "leg_delay_s", default=0.0, show_default=True, type=Finite(0, DAY), metavar="S",
              help="Test hook (with --data): seconds the order service waits before each leg of a checkout "
                   "saga, to widen the window a kill can hit.")
def serve_cmd(host: str, port: int, split: bool, inject: tuple[str, ...], hang_s: float, saga_delay_s: float,
              latency_ms: float, error_rate: float, seed: int, dialects: str, data: str | None, only: str | None,
              stock_url: str | None, payment_url: str | None, leg_delay_s: float) -> None:
    """Run the reference shop (API.md, both dialects) until Ctrl-C or SIGTERM.

    \b
    Examples:
      wdm-replay serve                                  # gateway on http://127.0.0.1:8000
      wdm-replay serve --split --port 8000              # order :8000, stock :8001, payment :8002
      wdm-replay serve --inject lost-update             # a deliberately racy shop
      wdm-replay serve --inject lost-line               # concurrent add_item lose order lines
      wdm-replay serve --inject apply-then-500:0.2      # correct, but 20% of writes answer 500
      wdm-replay serve --inject apply-then-hang:0.1 --hang 30   # effect now, answer after 30 s
      wdm-replay serve --split --inject slow-saga:0.5 --saga-delay 3
      wdm-replay serve --port 0 --latency 5 --error-rate 0.01 --seed 7
      wdm-replay serve --data shop-data                 # durable: survives kill -9 + restart
      wdm-replay serve --split --data d --only stock --port 8001      # one service per process
      wdm-replay serve --split --data d --only orders --port 8000 \\
          --stock-url http://127.0.0.1:8001 --payment-url http://127.0.0.1:8002
    """
    from ..shop import Peers, ShopConfig, serve

    config = ShopConfig(",".join(inject) or None, latency_ms, error_rate, seed, dialects,  # type: ignore[arg-type]
                        hang_s=hang_s, saga_delay_s=saga_delay_s, leg_delay_s=leg_delay_s)
    peers = Peers(stock_url, payment_url) if (stock_url or payment_url) else None
    if peers and only != "orders":
        raise click.UsageError("--stock-url and --payment-url go with --split --only orders")
    serve(config, host, port, split, announce=lambda text: click.echo(text), data=data, only=only,
          peers=peers)



@click.command("demo")
@click.option("--seed", type=SEED, default=0, show_default=True, help="seed of both generated traces")
@click.option("--duration", type=Finite(0, DAY, min_open=True), default=None,
              help="seconds of the stress trace's schedule (replayed at speed 1) [default: 10; 20 with --faults]")
@click.option("--rate", type=Finite(0, 10_000, min_open=True), default=20.0, show_default=True, help="stress sessions per second")
@click.option("--inject", type=click.Choice(INJECT_KINDS + DURABLE_BUGS),
              help="run against a deliberately buggy shop, to see what the checker reports (docs/shop.md); "
                   "no-recovery only with --faults")
@click.option("--split", is_flag=True, help="run the shop as three services on three ports")
@click.option("--faults", "faults", is_flag=True,
              help="the fault-tolerance demo instead: the durable split shop as three processes, one service "
                   "killed -9 mid-run and restarted by a fault schedule (docs/faults.md)")
@click.option("--faults-service", type=click.Choice(["order", "stock", "payment", "shop"]), default=None,
              help="with --faults: the split service to kill, or shop: the one-port durable shop as one "
                   "process [default: stock; order with --inject no-recovery]")
@click.option("--keep", type=click.Path(file_okay=False), help="keep traces and results in this directory")
@click.option("--quiet", is_flag=True, help="no progress bars")
def demo_cmd(seed: int, duration: float | None, rate: float, inject: str | None, split: bool, faults: bool,
             faults_service: str | None, keep: str | None, quiet: bool) -> None:
    """Run the whole job on the embedded reference shop: generate, serve, replay, check, report.

    Starts the reference shop on a free loopback port, generates a stress trace (paced), the
    consistency trace and the contention trace (as fast as possible), replays each, prints each
    run's summary and check (at most ~40 lines a part), and stops the shop. Files go to a
    temporary directory deleted at the end unless --keep DIR. Exit 0 when every check is CLEAN,
    1 otherwise; Ctrl-C or SIGTERM stops it (exit 130; a replay it stopped is kept partial with
    --keep). Terms printed: docs/glossary.md.

    With --faults: starts the durable split shop as three `serve --split --only` processes, generates
    a stress trace, writes a fault schedule (kill -9 one service at 40 % of the run, restart it 3 s
    later and wait until it listens) into the work directory and prints it, replays the trace with
    it, then checks (--max-recovery 5) and prints the report's faults section: the fault window, the
    recovery time and the verdict. The split shop runs with --leg-delay 0.5 (a pause between a
    checkout's stock and payment legs, so the kill lands mid-checkout): checkouts take ~1 s. Requests overlapping the window or its recovery are counted apart,
    so the outage itself does not fail availability. Exit 0 CLEAN, 1 NOT CLEAN, 3 INCONCLUSIVE.

    \b
    Examples:
      wdm-replay demo
      wdm-replay demo --inject lost-update      # watch the checker catch a race
      wdm-replay demo --inject lost-line        # concurrent add_item lose order lines
      wdm-replay demo --keep demo-out && wdm-replay report demo-out/stress.wdmr --format html -o r.html
      wdm-replay demo --faults                  # kill -9 the stock service mid-run: CLEAN
      wdm-replay demo --faults --faults-service order --keep fault-out
      wdm-replay demo --faults --inject no-recovery   # a checkout lost in the kill: NOT CLEAN
    """
    import contextlib
    import tempfile

    from ..errors import WdmError
    from ..demo import fault_plan, run_demo, run_fault_demo

    if inject == "no-recovery" and not faults:
        raise WdmError("--inject no-recovery is a bug of the durable shop under a kill: use it with --faults")
    if faults and inject not in (None, "no-recovery"):
        raise WdmError(f"--faults runs the durable shop; its only injectable bug is no-recovery, not {inject}")
    if faults_service and not faults:
        raise WdmError("--faults-service needs --faults")
    if faults and split:
        raise WdmError("--faults runs the split shop (three processes) by itself: leave out --split")
    if faults and duration is not None and duration < 5:
        raise WdmError(f"--faults needs --duration 5 or more (the kill comes at 40 % of the run and the restarted "
                       f"shop must be seen serving), not {duration:g}")
    if inject == "no-recovery" and faults_service == "shop":
        raise WdmError("--inject no-recovery is a bug of the split checkout: the one-port shop has no saga to lose")
    progress = not quiet and sys.stderr.isatty()
    workdir = contextlib.nullcontext(keep) if keep else tempfile.TemporaryDirectory(prefix="wdm-demo-")
    with workdir as path:
        if faults:
            plan = fault_plan(faults_service, 20.0 if duration is None else duration, rate, inject)
            verdict = run_fault_demo(path, plan, seed=seed, progress=progress, kept=bool(keep), echo=click.echo).verdict
        else:
            clean = run_demo(path, seed=seed, duration=10.0 if duration is None else duration, rate=rate,
                             inject=inject, split=split, progress=progress, kept=bool(keep), echo=click.echo)
            verdict = "CLEAN" if clean else "NOT CLEAN"
    if not faults:
        click.echo("")
    if keep:
        click.echo(f"kept in {keep}: traces (*.wdmt), results (*.wdmr){', the fault schedule' if faults else ''}; "
                   f"see them with `wdm-replay report {keep}/{'faults' if faults else 'stress'}.wdmr`")
    else:
        click.echo("the traces and results were in a temporary directory, now deleted (--keep DIR keeps them)")
    if verdict == "CLEAN":
        click.echo("demo: every check CLEAN")
    elif verdict == "INCONCLUSIVE":
        click.echo("demo: the check is INCONCLUSIVE (see above)")
    else:
        click.echo("demo: the checks found anomalies (see above; `wdm-replay check FILE --verbose` for every detail)")
    sys.exit(0 if verdict == "CLEAN" else 3 if verdict == "INCONCLUSIVE" else 1)



# --- capacity, grade (composition roots: capacity.py, grade.py) ----------------------------------


@click.command("capacity")
@click.argument("trace", type=click.Path(dir_okay=False))
@click.option("--urls", "urls_path", type=click.Path(dir_okay=False),
              help="urls.json of the shop [default: ./urls.json if present]")
@click.option("--url", "base_url", help="one gateway base URL [default: http://localhost:8000]")
@click.option("--slo", default="p99<500ms,unanswered<1%", show_default=True,
              help="what a step must meet: p50|p90|p99|p99.9<N(ms|s) and unanswered<N%, comma-separated")
@click.option("--start", type=SPEED_RANGE, default=1.0, show_default=True,
              help="first speed tried")
@click.option("--max", "max_speed", type=SPEED_RANGE, default=64.0, show_default=True,
              help="highest speed tried")
@click.option("--factor", type=Finite(1.0, 100.0, min_open=True), default=2.0, show_default=True,
              help="speed multiple between steps of the climb")
@click.option("--bisect", "bisect_steps", type=click.IntRange(0, 20), default=3, show_default=True,
              help="bisection steps between the last passing and the first failing speed")
@click.option("--step-seconds", type=Finite(0, DAY, min_open=True), default=None, metavar="S",
              help="cut each step's trace to S seconds at its speed [default: the whole trace at each speed]")
@replay_options("dialect", "concurrency", "timeout")
@click.option("-d", "--dir", "outdir", type=click.Path(file_okay=False), default="capacity-runs", show_default=True,
              help="directory that keeps every step's results file (and cut traces)")
@click.option("-o", "--output", "plot", type=click.Path(dir_okay=False), metavar="PLOT",
              help="write the plot (achieved vs offered rate, p99 vs offered rate): .png or .svg; needs matplotlib")
@click.option("--json", "as_json", is_flag=True, help='print {"speed", "rate", "slo", "steps": [...]} (stable keys)')
@click.option("--quiet", "-q", is_flag=True, help="no per-step lines or progress bars")
def capacity_cmd(trace: str, urls_path: str | None, base_url: str | None, slo: str, start: float, max_speed: float,
                 factor: float, bisect_steps: int, step_seconds: float | None, config: Any, outdir: str,
                 plot: str | None, as_json: bool, quiet: bool) -> None:
    """Find the highest speed at which the shop still meets an SLO.

    Replays TRACE at --start, then geometrically faster (x --factor) until a step misses the SLO or
    --max is reached, bisects between the last passing and the first failing speed, and repeats the
    knee to confirm it. Every step is also checked: a step that is NOT CLEAN ends the search (no
    capacity for a wrong shop), as does a first failing step that got no answer at all (a shop that
    is down, not slow). Exit 0: knee found; 1: a step NOT CLEAN; 3: no speed met the SLO;
    2: usage or file error. Use a paced trace (generate-trace stress) long enough to be stable.

    \b
    Examples:
      wdm-replay generate-trace stress --rate 50 --duration 30 -o stress.wdmt
      wdm-replay capacity stress.wdmt --url http://127.0.0.1:8000 -o capacity.png
      wdm-replay capacity stress.wdmt --urls urls.json --slo "p99<200ms,unanswered<0.5%" --max 32
      wdm-replay capacity stress.wdmt --start 4 --step-seconds 20 -d cap-runs --json > capacity.json
    """
    from ..targets import choose_target
    from ..capacity import (ReplayOptions, SearchPlan, find_capacity, matplotlib_missing, parse_slo,
                           plot_capacity, render_capacity_text)

    slo_value = parse_slo(slo)
    if plot:  # before the search: a plot it cannot write must not cost the whole search
        from ..traces import refuse_unwritable
        from ..traces.trace import refuse_replacing

        if os.path.splitext(plot)[1].lower() not in (".png", ".svg", ".pdf"):
            raise click.BadParameter(f"{plot}: the plot is written as .png, .svg or .pdf", param_hint="-o")
        refuse_replacing(plot, False)
        refuse_unwritable(plot)
    plan = SearchPlan(start, max_speed, factor, bisect_steps)
    target = choose_target(urls_path, base_url)
    no_plot = matplotlib_missing() if plot else None
    if no_plot:
        click.echo(f"wdm-replay: {no_plot}; the search runs, the table is printed", err=True)

    def step_line(st) -> None:
        if not quiet:
            click.echo(f"capacity: step {st.index} {st.kind} x{st.speed:g}: "
                       f"p99 {st.latency_ms['p99']} ms, {100 * st.unanswered:.2f}% unanswered, {st.verdict}, "
                       f"{'pass' if st.passed else 'fail'} ({st.results})", err=True)

    res = find_capacity(trace, outdir, slo=slo_value, plan=plan,
                        opts=ReplayOptions(target, config), step_seconds=step_seconds,
                        progress=not quiet and sys.stderr.isatty(), notify=step_line)
    if plot and not no_plot:
        plot_capacity(res, plot)
        click.echo(f"wrote {plot}", err=True)
    if as_json:
        from ..analysis import render_json

        click.echo(render_json(res.as_dict()), nl=False)
    else:
        click.echo(render_capacity_text(res), nl=False)
    sys.exit(res.exit_code)


@click.command("grade")
@click.argument("teams_toml", metavar="TEAMS.toml", type=click.Path(dir_okay=False))
@click.option("-d", "--dir", "outdir", required=True, type=click.Path(file_okay=False),
              help="directory of the session: traces, every team's results and reports, the leaderboard")
@click.option("--suite", default="consistency,stress,capacity,faults", show_default=True,
              help="suites to run, comma-separated (faults only for teams with a `faults` schedule)")
@click.option("--parallel", type=click.IntRange(1, 64), default=1, show_default=True,
              help="teams graded at once (only when the machines allow: teams then share this one's CPU)")
@click.option("--force", is_flag=True, help="regrade teams already graded in --dir (default: skip them, resume)")
@click.option("--consistency-trace", type=click.Path(dir_okay=False), metavar="FILE",
              help="consistency trace to use [default: generate-trace consistency --preset PRESET]")
@click.option("--stress-trace", type=click.Path(dir_okay=False), metavar="FILE",
              help="stress trace (fixed rate, capacity, faults) [default: generate-trace stress --rate RATE "
                   "--duration DURATION]")
@click.option("--preset", type=click.Choice(["course", "readme"]), default="course", show_default=True,
              help="consistency preset of the generated trace")
@click.option("--rate", type=RATE, default=20.0, show_default=True, help="sessions/s of the generated stress trace")
@click.option("--duration", type=DURATION, default=30.0, show_default=True, help="seconds of the generated stress trace")
@click.option("--seed", type=SEED, default=0, show_default=True, help="seed of the generated traces")
@click.option("--slo", default="p99<500ms,unanswered<1%", show_default=True, help="the capacity SLO (see capacity --help)")
@click.option("--capacity-start", type=SPEED_RANGE, default=1.0, show_default=True,
              help="first speed of the capacity search")
@click.option("--capacity-max", type=SPEED_RANGE, default=64.0, show_default=True,
              help="highest speed of the capacity search")
@click.option("--bisect", type=click.IntRange(0, 20), default=3, show_default=True, help="capacity bisection steps")
@click.option("--step-seconds", type=Finite(0, DAY, min_open=True), default=None, metavar="S",
              help="cut each capacity step to S seconds")
@replay_options("concurrency", "timeout")
@click.option("--max-recovery", type=Finite(0, DAY), default=10.0, show_default=True, metavar="S",
              help="fault runs: a slower recovery is NOT CLEAN (see check --help)")
@click.option("--no-html", is_flag=True, help="text reports per run instead of HTML (faster; no matplotlib needed)")
@click.option("--json", "as_json", is_flag=True, help="print leaderboard.json instead of the table")
@click.option("--quiet", "-q", is_flag=True, help="no progress lines or bar")
def grade_cmd(teams_toml: str, outdir: str, suite: str, parallel: int, force: bool, consistency_trace: str | None,
              stress_trace: str | None, preset: str, rate: float, duration: float, seed: int, slo: str,
              capacity_start: float, capacity_max: float, bisect: int, step_seconds: float | None, config: Any,
              max_recovery: float, no_html: bool, as_json: bool, quiet: bool) -> None:
    """Grade every team of TEAMS.toml on the same traces and write a leaderboard.

    TEAMS.toml has one table per team: url = "http://…" (one gateway) or urls = "urls.json", and
    optional reset (shell command run before each replay), before / after (once around the team's
    runs) and faults (a fault schedule file, see docs/faults.md). Every team gets the same trace
    bytes: the consistency workload at full speed, the stress trace at its own fixed rate, the
    capacity search on it, and its fault schedule on it. Writes --dir/teams/NAME/ (every results
    file and report), and --dir/leaderboard.{json,csv,html}. A rerun skips graded teams (--force
    regrades). Unreachable, crashed and NOT CLEAN teams are marked and come last. Exit 0 when the
    leaderboard is written; 2 for bad input.

    \b
    Example TEAMS.toml:
      [teams.alpha]
      url = "http://10.0.0.11:8000"
      reset = "ssh alpha ./reset.sh"
      [teams.beta]
      urls = "beta/urls.json"
      faults = "beta/kill-stock.json"

    \b
    Examples:
      wdm-replay grade teams.toml -d grading
      wdm-replay grade teams.toml -d grading --suite consistency,stress --rate 50 --duration 60
      wdm-replay grade teams.toml -d grading --slo "p99<200ms,unanswered<1%" --capacity-max 32
      wdm-replay grade teams.toml -d grading --force --parallel 2
    """
    from pathlib import Path

    from ..capacity import SearchPlan, parse_slo
    from ..grade import GradeConfig, load_teams, parse_suites, prepare_traces, run_grade
    from ..leaderboard import render_leaderboard_json, render_leaderboard_text

    suites = parse_suites(suite)
    slo_text = parse_slo(slo).text
    SearchPlan(capacity_start, capacity_max, bisect_steps=bisect)  # validated before anything runs
    teams = load_teams(teams_toml)
    out = Path(outdir)
    notify = (lambda _: None) if quiet else (lambda line: click.echo(line, err=True))
    paths, digests = prepare_traces(out, suites, consistency=consistency_trace, stress=stress_trace, preset=preset,
                                    rate=rate, duration=duration, seed=seed, force=force)
    cfg = GradeConfig(out, suites, paths, digests, slo=slo_text, capacity_start=capacity_start,
                      capacity_max=capacity_max, bisect=bisect, step_seconds=step_seconds, replay=config,
                      max_recovery=max_recovery, reports=not no_html,
                      commands_cwd=str(Path(teams_toml).resolve().parent))
    outcome = run_grade(teams, cfg, parallel=parallel, force=force, progress=not quiet and sys.stderr.isatty(),
                        notify=notify)
    for path in outcome.files:
        notify(f"wrote {path}")
    click.echo(render_leaderboard_json(outcome.leaderboard) if as_json else
               render_leaderboard_text(outcome.leaderboard), nl=False)
