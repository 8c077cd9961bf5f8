"""``generate-trace``, ``inspect`` and ``record``: the commands that write or read traces."""

from __future__ import annotations

import sys

import click

from .options import DURATION, DAY, FORCE_HELP, RATE, SEED, Finite, Listen


def _trace_options(workload: str):
    """Options every generate-trace workload takes: --seed, --dialect, -o, --quiet."""
    def deco(f):
        f = click.option("-q", "--quiet", is_flag=True, help="No progress bar.")(f)
        f = click.option("--force", is_flag=True, help=FORCE_HELP[0].upper() + FORCE_HELP[1:] + ".")(f)
        f = click.option("-o", "--output", type=click.Path(dir_okay=False), default=f"{workload}.wdmt",
                         show_default=True, help="Trace file to write.")(f)
        f = click.option("--dialect", type=click.Choice(["2024", "2023"]), default="2024", show_default=True,
                         help="API dialect the trace is meant for (2023 has remove_item, 2024 batch_init).")(f)
        f = click.option("--seed", type=SEED, default=0, show_default=True,
                         help="Seed of the generator's RNG: same seed and options, same bytes.")(f)
        return f
    return deco


def _open_options(f):
    f = click.option("--requests", type=click.IntRange(1), default=None, help="Stop once this many requests are generated.")(f)
    f = click.option("--sessions", type=click.IntRange(1), default=None, help="Stop after this many sessions.")(f)
    f = click.option("--duration", type=DURATION, default=None, help="Seconds of schedule (default 60).")(f)
    f = click.option("--arrival", type=click.Choice(["poisson", "constant"]), default=None,
                     help="Open-model arrival process (default poisson).")(f)
    return f


def _run_generate(workload: str, seed: int, dialect: str, output: str, quiet: bool, force: bool, **options) -> None:
    from ..workloads import generate, summary_line
    from ..traces.trace import refuse_replacing

    refuse_replacing(output, force)

    header = generate(workload, output, seed=seed, dialect=dialect,
                      progress=not quiet and sys.stderr.isatty(),
                      notify=lambda msg: click.echo(msg, err=True),
                      **{k: v for k, v in options.items() if v is not None})
    click.echo(summary_line(header, output))


@click.group("generate-trace")
def generate_trace() -> None:
    """Write a deterministic request trace (same seed and options → same bytes).

    \b
    Examples:
      wdm-replay generate-trace stress --rate 50 --duration 60 -o stress.wdmt
      wdm-replay generate-trace stress --users 100 --spawn-rate 10 --wait 1,15 --duration 300
      wdm-replay generate-trace consistency --seed 7 -o consistency.wdmt
      wdm-replay generate-trace checkout --rate 500 --duration 60
      wdm-replay generate-trace consistency --preset course -o course.wdmt
      wdm-replay generate-trace contention -o contention.wdmt
    """


@generate_trace.command("stress")
@_trace_options("stress")
@_open_options
@click.option("--rate", type=RATE, default=None, help="Open model: sessions per second (default 10).")
@click.option("--users", type=click.IntRange(1), default=None, help="Closed model (Locust-like): number of users.")
@click.option("--spawn-rate", type=RATE, default=None, help="Closed model: users started per second (default 1).")
@click.option("--wait", default=None, metavar="MIN,MAX",
              help="Closed model: think time between scenario runs, seconds (default 1,15).")
@click.option("--weights", default=None, metavar="W1,..,W6",
              help="Weights of the six seed scenarios (default 5,30,25,20,10,10; scenario 4 only under "
                   "--dialect 2023); they share the runs s7 and s8 leave.")
@click.option("--repeat-share", type=Finite(0, 1), default=None, metavar="P",
              help="Share of runs that are s7_repeat_item: one item added twice to an order, then checkout "
                   "(default 0.05).")
@click.option("--recheckout-share", type=Finite(0, 1), default=None, metavar="P",
              help="Share of runs that are s8_checkout_twice: an order checked out twice (default 0.05).")
@click.option("--seed-scenarios-only", is_flag=True, default=False,
              help="Only the seed benchmark's six scenarios (no s7, no s8), as the course's Locust test runs them.")
@click.option("--price-range", default=None, metavar="LO,HI", help="Item price range (default 1,10).")
@click.option("--stock-range", default=None, metavar="LO,HI", help="Stock added per item (default 100,1000).")
@click.option("--funds-range", default=None, metavar="LO,HI", help="Funds added per user (default 10000,100000).")
def generate_stress(**kw) -> None:
    """The seed stress test's six weighted scenarios, open or closed model.

    \b
    Scenarios: s1_admin_stock, s2_checkout_one, s3_checkout_two, s4_remove_readd,
    s5_fail_no_stock, s6_fail_no_credit (the seed benchmark's, by --weights), and at 5 % of the
    runs each s7_repeat_item and s8_checkout_twice (bug classes the six never exercise:
    docs/bug-classes.md). Open model: --rate, --arrival, and one of
    --duration/--sessions/--requests. Closed model: --users, --spawn-rate, --wait, --duration.

    \b
    Examples:
      wdm-replay generate-trace stress --rate 50 --duration 60 -o stress.wdmt
      wdm-replay generate-trace stress --rate 50 --duration 60 --seed-scenarios-only -o seed6.wdmt
      wdm-replay generate-trace stress --repeat-share 0.2 --recheckout-share 0 -o repeats.wdmt
      wdm-replay generate-trace stress --requests 1000000 --rate 5000 -o big.wdmt
      wdm-replay generate-trace stress --dialect 2023 --users 50 --spawn-rate 5 --wait 1,15 --duration 120
    """
    _run_generate("stress", **kw)


@generate_trace.command("consistency")
@_trace_options("consistency")
@click.option("--preset", type=click.Choice(["readme", "course"]), default=None,
              help="The course benchmark's test: 'readme' (its README: 100 items x 1 stock) or 'course' "
                   "(its code: 1 item x 100 stock); both 1000 users x credit 1, 1000 checkouts. "
                   "Options given too override it (and drop the header's benchmark mark).")
@click.option("--items", type=click.IntRange(1), default=None, help="Items to create [default: 100].")
@click.option("--stock", type=click.IntRange(0), default=None, help="Stock of each item [default: 1].")
@click.option("--price", type=click.IntRange(1), default=None, help="Price of each item [default: 1].")
@click.option("--users", type=click.IntRange(1), default=None, help="Users to create [default: 1000].")
@click.option("--credit", type=click.IntRange(0), default=None, help="Credit of each user [default: 1].")
@click.option("--orders", type=click.IntRange(0), default=None,
              help="Orders (random user, one random item), all checked out at once [default: 1000].")
@click.option("--repeat-orders", type=click.IntRange(0), default=None,
              help="Extra orders (own item and user) that add their item twice, checked out with the others "
                   "[default: 0].")
@click.option("--recheckout-orders", type=click.IntRange(0), default=None,
              help="Extra orders (own item and user) checked out twice in a row [default: 0].")
def generate_consistency(**kw) -> None:
    """The seed consistency test: populate, create orders, then every checkout at once.

    \b
    Examples:
      wdm-replay generate-trace consistency --items 100 --users 1000 --orders 1000 -o c.wdmt
      wdm-replay generate-trace consistency --preset course -o course.wdmt   # the benchmark's code
      wdm-replay generate-trace consistency --preset readme -o readme.wdmt   # the benchmark's README
      wdm-replay generate-trace consistency --preset course --repeat-orders 20 --recheckout-orders 20
    """
    _run_generate("consistency", **kw)


@generate_trace.command("checkout")
@_trace_options("checkout")
@_open_options
@click.option("--rate", type=RATE, default=100.0, show_default=True, help="Checkouts per second.")
@click.option("--items", type=click.IntRange(1), default=100_000, show_default=True, help="batch_init items.")
@click.option("--stock", type=click.IntRange(0), default=1_000_000, show_default=True, help="Starting stock per item.")
@click.option("--price", type=click.IntRange(0), default=1, show_default=True, help="Item price.")
@click.option("--users", type=click.IntRange(1), default=100_000, show_default=True, help="batch_init users.")
@click.option("--credit", type=click.IntRange(0), default=1_000_000, show_default=True, help="Starting credit per user.")
@click.option("--orders", type=click.IntRange(1), default=100_000, show_default=True, help="batch_init orders.")
def generate_checkout(**kw) -> None:
    """The 2024 course variant: batch_init a population, then checkouts of random orders.

    \b
    Example:
      wdm-replay generate-trace checkout --rate 500 --duration 60 -o checkout.wdmt
    """
    _run_generate("checkout", **kw)


@generate_trace.command("contention")
@_trace_options("contention")
@click.option("--orders", type=click.IntRange(0), default=None, help="Contended orders [default: 4].")
@click.option("--adders", type=click.IntRange(1), default=None,
              help="Concurrent add_item (one unit each) per order [default: 25].")
@click.option("--items-per-order", type=click.IntRange(1), default=None,
              help="Distinct items the adders of an order take in turn [default: 2].")
@click.option("--price", type=click.IntRange(1), default=None, help="Price of each item [default: 3].")
@click.option("--users", type=click.IntRange(0), default=None, help="Contended users [default: 4].")
@click.option("--funders", type=click.IntRange(0), default=None,
              help="Concurrent add_funds per user [default: 25].")
@click.option("--payers", type=click.IntRange(0), default=None, help="Concurrent pay per user [default: 25].")
@click.option("--amount", type=click.IntRange(1), default=None, help="Amount of each add_funds and pay [default: 1].")
@click.option("--credit", type=click.IntRange(0), default=None,
              help="Starting credit of a contended user [default: half of what the pays take].")
def generate_contention(**kw) -> None:
    """Concurrent add_item to one order and concurrent add_funds/pay on one user.

    Catches lost order lines, wrong totals and lost credit updates; the header's `expect` and
    `proves` say what a correct shop must end with. Do not --shard it (sessions share entities).

    \b
    Examples:
      wdm-replay generate-trace contention -o contention.wdmt
      wdm-replay generate-trace contention --dialect 2023 --orders 1 --adders 50 --users 0
    """
    _run_generate("contention", **kw)


@click.command("inspect")
@click.argument("trace", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (stable keys).")
def inspect_cmd(trace: str, as_json: bool) -> None:
    """Summarize a trace: header, phases, scenario mix vs weights, operations, expectations,
    and the bug classes it exercises (how often it contains the behaviour exposing each, and what
    it would need for the others: docs/bug-classes.md).

    \b
    Examples:
      wdm-replay inspect stress.wdmt
      wdm-replay inspect stress.wdmt --json | jq .scenario_mix
    """
    import json

    from ..workloads import inspect_trace, render_inspect

    found = inspect_trace(trace)
    click.echo(json.dumps(found.to_json(), indent=2, allow_nan=False, default=str) if as_json else render_inspect(found))


# --- record (capture proxy) -------------------------------------------------------------------


@click.command("record")
@click.option("--listen", type=Listen(), default="127.0.0.1:8080", show_default=True, metavar="HOST:PORT",
              help="Where the proxy listens (port 0 picks a free one; the URL is printed).")
@click.option("--urls", "urls_path", type=click.Path(dir_okay=False), help="urls.json of the shop to forward to.")
@click.option("--upstream", help="One gateway base URL to forward everything to (e.g. http://127.0.0.1:8000).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="recorded.wdmt", show_default=True,
              help="Trace file to write when the capture stops.")
@click.option("--duration", type=DURATION, default=None, metavar="S", help="Stop after S seconds.")
@click.option("--requests", "max_requests", type=click.IntRange(1), default=None, metavar="N",
              help="Stop after N requests (later ones are answered 503, not forwarded).")
@click.option("--phase-gap", type=Finite(0, DAY, min_open=True), default=None, metavar="S",
              help="Start a new phase after every idle gap (nothing in flight) of at least S seconds.")
@click.option("--dialect", type=click.Choice(["auto", "2024", "2023"]), default="auto", show_default=True,
              help="Dialect to match requests with (auto: the one matching most requests).")
@click.option("--grace", type=Finite(0, DAY), default=30.0, show_default=True, metavar="S",
              help="On stop, seconds to let requests in flight finish (a second Ctrl-C ends the wait).")
@click.option("--force", is_flag=True, help=FORCE_HELP[0].upper() + FORCE_HELP[1:] + ".")
def record_cmd(listen: tuple[str, int], urls_path: str | None, upstream: str | None, output: str, duration: float | None,
               max_requests: int | None, phase_gap: float | None, dialect: str, grace: float, force: bool) -> None:
    """Capture real traffic through a reverse proxy and write it as a replayable trace.

    Runs until Ctrl-C, SIGTERM, --duration or --requests; then writes OUT with workload
    "recorded": requests matched to operations, created ids turned into symbols, sessions per
    client connection joined by id use (see docs/record.md).

    \b
    Examples:
      wdm-replay record --upstream http://127.0.0.1:8000 -o mine.wdmt       # proxy on :8080
      wdm-replay record --urls urls.json --listen 127.0.0.1:9000 --duration 60
      wdm-replay record --upstream http://127.0.0.1:8000 --requests 10000 --phase-gap 2
      wdm-replay inspect mine.wdmt && wdm-replay replay mine.wdmt --url http://127.0.0.1:8000
    """
    from ..targets import choose_target
    from ..capture import record
    from ..terms import plural
    from ..eventloop import run_async  # uvloop's event loop when importable
    from ..traces import refuse_inputs, refuse_unwritable
    from ..traces.trace import refuse_replacing

    target = choose_target(urls_path, upstream, url_option="--upstream", default=False)
    if urls_path:
        refuse_inputs(output, [urls_path])
    refuse_replacing(output, force)
    refuse_unwritable(output)  # before the capture: what it captured would be lost at the end
    host, port = listen

    def ready(url: str) -> None:
        click.echo(f"recording on {url} -> {target.order_url}; Ctrl-C to stop")

    header = run_async(record(target, output, host=host, port=port, duration=duration, max_requests=max_requests,
                                phase_gap=phase_gap, dialect=None if dialect == "auto" else dialect,
                                on_ready=ready, grace=grace))
    f = header["params"]
    click.echo(f"{output}: {plural(header['requests'], 'request')} in {plural(header['sessions'], 'session')}, "
               f"{len(header['phases'])} phase(s), dialect {header['dialect']}; "
               f"{f['unmatched']} unmatched (not in the trace), {f['refused']} refused")
