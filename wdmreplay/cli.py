"""The ``wdm-replay`` command line: a click group of thin commands.

Each command parses options, opens files, calls the library and prints. Errors the user can act on
are :class:`~wdmreplay.errors.WdmError`; :func:`main` prints them as one line and exits non-zero.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from . import __version__
from .errors import WdmError
from .bugclasses import DURABLE_BUGS, INJECT_KINDS
from .replayer.config import CLIENT_NAMES, DIALECT_NAMES, MAX_CONCURRENCY, MAX_SECONDS, MAX_WORKERS


class Finite(click.FloatRange):
    """A float option that must be finite (nan and inf refused) and within optional bounds.

    click's FloatRange alone accepts ``nan`` (every comparison with it is false); every numeric
    option of every command uses this type or :class:`click.IntRange`.
    """

    name = "finite float"

    def convert(self, value, param, ctx):  # type: ignore[override]
        """The value as a float, refused (one-line usage error) when nan, inf or out of range."""
        import math

        v = click.types.FloatParamType.convert(self, value, param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(v, param, ctx)


class Speed(click.ParamType):
    """``--speed``: ``max`` (None: as fast as possible) or a finite multiple in [MIN_SPEED, MAX_SPEED].

    The one check is :func:`~wdmreplay.replayer.schedule.parse_speed` (the library's own), so
    ``replay``, ``ab`` and the library refuse the same values.
    """

    name = "speed"

    def convert(self, value, param, ctx):  # type: ignore[override]
        """The speed as a float, or None for max; a one-line usage error otherwise."""
        from .replayer.schedule import parse_speed

        if value is None:
            return None
        try:
            return parse_speed(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


class Listen(click.ParamType):
    """``--ui``: ``HOST:PORT`` (``[::1]:PORT`` for IPv6) as (host, port); checked while parsing, so a
    trace taken for the address by mistake is named in the error (not reported as a missing TRACE)."""

    name = "host:port"

    def convert(self, value, param, ctx):  # type: ignore[override]
        """(host, port), or a one-line usage error."""
        if isinstance(value, tuple):
            return value
        from .replayer.live import parse_listen

        try:
            return parse_listen(value)
        except ValueError as e:
            self.fail(str(e).removeprefix("--ui takes "), param, ctx)


# Seeds go into msgpack headers (at most an unsigned 64-bit integer).
SEED = click.IntRange(0, 2**64 - 1)
DAY = 86_400.0  # upper bound of the options given in seconds
UI_DEFAULT = "127.0.0.1:8089"  # replay --ui alone: Locust's web UI port, what the course's users know
# Sessions per second above 1e6 are a typo, not a workload (generation would run for hours);
# schedules longer than 1e7 s (~115 days) likewise.
RATE = Finite(0, 1e6, min_open=True)
# A numeric speed (capacity's --start/--max): the range replayer.schedule.parse_speed accepts
# (MIN_SPEED, MAX_SPEED), spelled here so the CLI does not import the replayer to parse options.
SPEED_RANGE = Finite(1e-6, 1e6)
DURATION = Finite(0, 1e7, min_open=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="wdm-replay")
def cli() -> None:
    """Deterministic load, latency and consistency testing for the WDM microservice shop.

    \b
    Typical flow:
      wdm-replay demo                                   # everything, on the built-in shop
      wdm-replay generate-trace stress --rate 50 --duration 60 -o stress.wdmt
      wdm-replay replay stress.wdmt --urls urls.json --label build-a -o a.wdmr
      wdm-replay check a.wdmr && wdm-replay report a.wdmr
      wdm-replay compare a.wdmr b.wdmr
      wdm-replay ab stress.wdmt --a old-urls.json --b new-urls.json --runs 3
    """


# --- generate-trace, inspect (workloads) -------------------------------------------------------

_FORCE_HELP = ("replace an existing file at -o that no command could make again (a run's results, a recorded "
               "or shrunk trace, any file that is not a generated trace); a generated trace is replaced without it")


def _trace_options(workload: str):
    """Options every generate-trace workload takes: --seed, --dialect, -o, --quiet."""
    def deco(f):
        f = click.option("-q", "--quiet", is_flag=True, help="No progress bar.")(f)
        f = click.option("--force", is_flag=True, help=_FORCE_HELP[0].upper() + _FORCE_HELP[1:] + ".")(f)
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
    from .workloads import generate, summary_line
    from .traces.trace import refuse_replacing

    refuse_replacing(output, force)

    header = generate(workload, output, seed=seed, dialect=dialect,
                      progress=not quiet and sys.stderr.isatty(),
                      notify=lambda msg: click.echo(msg, err=True),
                      **{k: v for k, v in options.items() if v is not None})
    click.echo(summary_line(header, output))


@cli.group("generate-trace")
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


@cli.command("inspect")
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

    from .workloads import inspect_trace, render_inspect

    info = inspect_trace(trace)
    click.echo(json.dumps(info, indent=2, allow_nan=False, default=str) if as_json else render_inspect(info))


# --- record (capture proxy) -------------------------------------------------------------------


@cli.command("record")
@click.option("--listen", default="127.0.0.1:8080", show_default=True, metavar="HOST:PORT",
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
              help="On stop, seconds to let requests in flight finish.")
@click.option("--force", is_flag=True, help=_FORCE_HELP[0].upper() + _FORCE_HELP[1:] + ".")
def record_cmd(listen: str, urls_path: str | None, upstream: str | None, output: str, duration: float | None,
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
    from .targets import Target, load_urls
    from .capture import CaptureError, parse_listen, record
    from .eventloop import run_async  # uvloop's event loop when importable

    if bool(urls_path) == bool(upstream):
        raise CaptureError("give exactly one of --urls or --upstream")
    from .traces.trace import refuse_replacing

    if urls_path:
        from .traces import refuse_inputs

        refuse_inputs(output, [urls_path])
    refuse_replacing(output, force)
    target = load_urls(urls_path) if urls_path else Target.single(upstream)  # type: ignore[arg-type]
    host, port = parse_listen(listen)

    def ready(url: str) -> None:
        click.echo(f"recording on {url} -> {target.order_url}; Ctrl-C to stop")

    header = run_async(record(target, output, host=host, port=port, duration=duration, max_requests=max_requests,
                                phase_gap=phase_gap, dialect=None if dialect == "auto" else dialect,
                                on_ready=ready, grace=grace))
    f = header["params"]
    click.echo(f"{output}: {header['requests']} requests in {header['sessions']} sessions, "
               f"{len(header['phases'])} phase(s), dialect {header['dialect']}; "
               f"{f['unmatched']} unmatched (not in the trace), {f['refused']} refused")


# --- serve (shop) -----------------------------------------------------------------------------


@cli.command("serve")
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
      wdm-replay serve --split --data d --only orders --port 8000 \
          --stock-url http://127.0.0.1:8001 --payment-url http://127.0.0.1:8002
    """
    from .shop import ShopConfig, serve

    config = ShopConfig(",".join(inject) or None, latency_ms, error_rate, seed, dialects,  # type: ignore[arg-type]
                        hang_s=hang_s, saga_delay_s=saga_delay_s, leg_delay_s=leg_delay_s)
    peers = {"stock": stock_url, "payment": payment_url} if (stock_url or payment_url) else None
    if peers and only != "orders":
        raise click.UsageError("--stock-url and --payment-url go with --split --only orders")
    serve(config, host, port, split, announce=lambda text: click.echo(text), data=data, only=only,
          peers=peers)  # type: ignore[arg-type]


# --- replay, demo (replayer) ------------------------------------------------------------------


# The replay's options, one definition for every command that replays (replay, ab, capacity, grade).
# The limits are ReplayConfig's (click shows them in --help and refuses early; ReplayConfig checks them again).
_REPLAY_OPTIONS: dict[str, tuple[tuple[str, ...], dict]] = {
    "dialect": (("--dialect",), dict(type=click.Choice(list(DIALECT_NAMES)), default=None,
                                     help="API dialect [default: the trace's]")),
    "speed": (("--speed",), dict(type=Speed(), default="1", show_default=True,
                                 help="multiple of the recorded pace (1e-06 to 1e+06), or 'max'")),
    "concurrency": (("--concurrency",), dict(type=click.IntRange(1, MAX_CONCURRENCY), default=256, show_default=True,
                                             help="max requests in flight and connections open, the final read's "
                                                  "included")),
    "timeout": (("--timeout",), dict(type=Finite(0, MAX_SECONDS, min_open=True), default=10.0, show_default=True,
                                     help="seconds per request")),
    "workers": (("--workers",), dict(type=click.IntRange(1, MAX_WORKERS), default=1, show_default=True,
                                     help="processes on this machine")),
    "client": (("--client",), dict(type=click.Choice(list(CLIENT_NAMES)), default="lean", show_default=True,
                                   help="HTTP client of the replayed requests: the built-in keep-alive client, or "
                                        "aiohttp (slower; for comparison, or a server the built-in client cannot "
                                        "talk to)")),
    "label": (("--label",), dict(default=None, help="build label stored in the results (e.g. a git sha)")),
    "settle": (("--settle",), dict(type=Finite(0, MAX_SECONDS), default=None,
                                   help="re-read the final state (spaced snapshots) until two agree, for up to this "
                                        "many seconds after the first read ends (a second snapshot is always taken) "
                                        "[default: 2 when the run had 5xx/timeouts/connection errors, else one "
                                        "snapshot]")),
}


def replay_options(*names: str):
    """Add the replay options ``names`` to a command and hand it one checked ``config`` (a ReplayConfig).

    The command function takes ``config`` instead of the options one by one; a value ReplayConfig
    refuses is a one-line error, exit 2. Options not named keep ReplayConfig's defaults.
    """
    import functools

    def decorate(f):
        @functools.wraps(f)
        def command(*args, **kwargs):
            from .replayer.config import ReplayConfig

            kwargs["config"] = ReplayConfig(**{n: kwargs.pop(n) for n in names})
            return f(*args, **kwargs)

        for name in reversed(names):
            decls, attrs = _REPLAY_OPTIONS[name]
            command = click.option(*decls, name, **attrs)(command)
        return command

    return decorate


@cli.command("replay")
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
              help="fault schedule (JSON, or TOML on Python 3.11+): shell actions run at times of the run, "
                   "recorded as events (docs/faults.md)")
@click.option("--no-final-read", is_flag=True, help="skip reading the final state of every entity")
@click.option("--final-sample", type=click.IntRange(0), default=1000, show_default=True, metavar="N",
              help="the final read reads every entity the run touched, and of the batch_init entities no request "
                   "named at most N per kind (a sample seeded by the trace's seed); 0: none of them")
@click.option("--final-all", is_flag=True, help="read back every batch_init entity (no sample; slow for large ones)")
@click.option("--ui", "ui", type=Listen(), is_flag=False, flag_value=UI_DEFAULT, default=None, metavar="[HOST:PORT]",
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

    from .operations import get_dialect, load_routes
    from .targets import choose_target
    from .replayer import ReplayError, check_output, parse_shard, replay_trace
    from .replayer.start import parse_start_at, resolve_shard
    from .traces import read_header

    target = choose_target(urls_path, base_url)
    try:
        shard_value = parse_shard(resolve_shard(shard))
        start_value = parse_start_at(start_at) if start_at is not None else None
    except ValueError as e:
        raise ReplayError(str(e)) from None
    header = read_header(trace)
    config = config.replace(shard=shard_value, start_at=start_value, faults=faults_path, final_read=not no_final_read,
                            final_sample=None if final_all else final_sample)
    dialect_obj = get_dialect(config.dialect or header.get("dialect") or "2024",
                              load_routes(routes_path) if routes_path else None)
    out = output or str(Path(trace).with_suffix(".wdmr"))
    check_output(out, [trace, urls_path, routes_path, faults_path], force)
    if ui_linger is not None and ui is None:
        raise click.UsageError("--ui-linger goes with --ui")
    with _live_view(ui) as live:
        summary = replay_trace(trace, out, target=target, config=config, dialect=dialect_obj,
                               progress=not quiet and sys.stderr.isatty(), live=live)
        _print_replay_summary(summary, quiet)
        if live is not None and summary["reason"] != "interrupted":
            click.echo(f"live view: {live.url} stays up " +
                       ("until Ctrl-C" if ui_linger is None else f"for {ui_linger:g} s (Ctrl-C ends it)"), err=True)
            live.linger(ui_linger)
    if not summary["complete"]:
        if quiet:
            click.echo(f"wdm-replay: interrupted; partial results in {out}", err=True)
        if summary["reason"] == "interrupted":
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
    from .replayer.live import LiveView

    view = LiveView(*ui)
    click.echo(f"live view: {view.url} (figures: {view.url}stats.json)", err=True)
    return view


def _print_replay_summary(summary: dict, quiet: bool) -> None:
    from .replayer import format_summary
    from .replayer.fault_schedule import format_fault_summary

    if not quiet:
        click.echo(format_summary(summary), err=not summary["complete"])
        if "faults" in summary:
            click.echo(format_fault_summary(summary), err=not summary["complete"])
    for line in (summary.get("faults") or {}).get("failures", []):
        click.echo(f"wdm-replay: {line}", err=True)  # a failing fault action is never silent

# --- demo (composition root: every layer at once) ---------------------------------------------


@cli.command("merge")
@click.argument("shards", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="merged results file")
@click.option("--force", is_flag=True, help=_FORCE_HELP)
def merge_cmd(shards: tuple[str, ...], output: str, force: bool) -> None:
    """Merge the results of every `replay --shard i/N` of one trace into one run's results.

    Rows, bindings, events (tagged with their shard) and the final state are merged exactly; the
    merged file checks and reports like a one-process run (docs/replay.md, "Merging shards").

    \b
    Examples:
      wdm-replay replay t.wdmt --shard 0/2 -o s0.wdmr &  wdm-replay replay t.wdmt --shard 1/2 -o s1.wdmr
      wdm-replay merge s0.wdmr s1.wdmr -o run.wdmr && wdm-replay check run.wdmr
    """
    from .replayer.merge import merge_results
    from .traces import refuse_inputs
    from .traces.trace import refuse_replacing

    refuse_inputs(output, list(shards))  # an input named as -o: that error, not "already holds"
    refuse_replacing(output, force)
    click.echo(merge_results(list(shards), output).line())




@cli.command("demo")
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
    1 otherwise. Terms printed: docs/glossary.md.

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

    from .errors import WdmError
    from .demo import fault_plan, run_demo, run_fault_demo

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
            verdict = run_fault_demo(path, plan, seed=seed, progress=progress, echo=click.echo).verdict
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
    sys.exit({"CLEAN": 0, "INCONCLUSIVE": 3}.get(verdict, 1))


# --- check, report, compare (analysis) --------------------------------------------------------


@cli.command("check")
@click.argument("results", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print the verdict as JSON (schema wdm-check/3, stable keys)")
@click.option("-v", "--verbose", is_flag=True, help="every section's details, not only those of sections that did "
                                                    "not pass (the terms: docs/glossary.md)")
@click.option("--recheckout", type=click.Choice(["refuse", "charge"]), default="refuse", show_default=True,
              help="policy for checking out an already-paid order: refuse (no second effect) or charge again")
@click.option("--min-availability", "min_availability", type=Finite(0.0, 100.0), default=99.0, show_default=True,
              metavar="PCT", help="per operation, the least share (%) of requests (every one, whatever its step "
                                  "expects) that must get an answer (2xx/4xx); below it the run is NOT CLEAN")
@click.option("--strict", is_flag=True, help="every request must be answered (no 5xx, timeout, connection error, skip)")
@click.option("--max-recovery", "max_recovery", type=Finite(0, DAY), default=10.0, show_default=True, metavar="S",
              help="runs with fault windows: a recovery (back to the pre-fault success rate) longer than S "
                   "seconds, or none, makes the run NOT CLEAN; requests in a window or its recovery (at most S) "
                   "are counted apart from --min-availability (docs/faults.md)")
@click.option("--strict-faults", "strict_faults", is_flag=True,
              help="runs with fault windows: a wrong answer during a fault (a contradicted expectation in a window "
                   "or its recovery, counted apart by default) makes the run NOT CLEAN")
def check_cmd(results: str, as_json: bool, verbose: bool, recheckout: str, min_availability: float, strict: bool,
              max_recovery: float, strict_faults: bool) -> None:
    """Check a run: CLEAN (exit 0), NOT CLEAN (exit 1) or INCONCLUSIVE (exit 3).

    Four sections decide: correctness (responses against the trace's expectations), consistency
    (every order's lines and total, item's stock and user's credit recomputed from the history and
    compared with the final state; the trace's proven bounds), availability (share of answered
    requests per operation) and coverage (complete run, every entity read back from a settled
    state, not a lone shard). The first and last lines give the verdict and the sections that decided
    it; the second which bug classes the run covered ("covered: 8 of 13 bug classes (not exercised:
    …)"; JSON: bug_classes): a class the trace never exercised is not judged by a CLEAN. One line per
    section gives its mark (pass, FAIL, INCONCLUSIVE) and the figure that decided it; the details of
    every section that did not pass follow (--verbose: of every section). Exit 2: usage or file
    error. Anomaly kinds and sections: docs/analysis.md; bug classes: docs/bug-classes.md; every
    term printed: docs/glossary.md.

    \b
    Examples:
      wdm-replay check a.wdmr
      wdm-replay check a.wdmr --verbose          # every section's details
      wdm-replay check a.wdmr --json > verdict.json
      wdm-replay check a.wdmr --recheckout charge --min-availability 95
      wdm-replay check a.wdmr --strict
      wdm-replay check faulty.wdmr --max-recovery 5
      wdm-replay check faulty.wdmr --strict-faults
    """
    from .analysis import check_results, render_check_text, render_json
    from .analysis.check import paused_gc
    from .traces import load_results

    with paused_gc():
        run = load_results(results, with_args=True)
    report = check_results(run, recheckout=recheckout, strict=strict, min_availability=min_availability,
                           max_recovery=max_recovery, strict_faults=strict_faults)
    click.echo(render_json(report.as_dict()) if as_json else render_check_text(report, verbose=verbose), nl=False)
    sys.exit(report.verdict.exit_code)


@cli.command("explain")
@click.argument("results", type=click.Path(dir_okay=False))
@click.argument("ids", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--recheckout", type=click.Choice(["refuse", "charge"]), default="refuse", show_default=True,
              help="re-checkout policy of the consistency check (see check --help)")
@click.option("--trace", type=click.Path(exists=True, dir_okay=False), default=None,
              help="the run's trace file, to name each entity's create request [default: the path the run "
                   "recorded, or that name beside RESULTS]")
def explain_cmd(results: str, ids: tuple[str, ...], fmt: str, recheckout: str, trace: str | None) -> None:
    """Tell an entity's story: every request that touched it, and the arithmetic of its anomaly.

    For each ID (an item, user or order id — item:ID, user:ID or order:ID when one id names several
    — or an anomaly kind such as lost_update for its first anomaly; none given: the first anomaly of
    each kind), the requests that touched
    it in send order — session, operation, amount, intended/sent/done (ms on the run's clock),
    status and answer; those whose [sent, done] overlap are marked concurrent — then what it
    started with, what the 2xx answers took, and what the final read found. Exit 0; exit 2 for
    an id the run does not know.

    \b
    Examples:
      wdm-replay explain a.wdmr                      # the first anomaly of each kind
      wdm-replay explain a.wdmr item-12 user-7       # these entities
      wdm-replay explain a.wdmr lost_update          # the first lost update
      wdm-replay explain a.wdmr user:0               # user 0 (batch_init ids name items and orders too)
      wdm-replay explain a.wdmr --format json > story.json
    """
    from .analysis import check_results, render_json
    from .analysis.check import paused_gc
    from .analysis.story import explain_json, explain_run, render_explain_text
    from .traces import load_results

    with paused_gc():
        run = load_results(results, with_args=True)
    check = check_results(run, recheckout=recheckout)
    stories = explain_run(run, ids, check.anomalies, trace=trace)
    verdict = check.verdict.verdict
    if fmt == "json":
        click.echo(render_json(explain_json(stories, run=os.path.basename(results), verdict=verdict)), nl=False)
    else:
        by = check.verdict.decided_by
        decided = f", decided by {', '.join(by)}: see wdm-replay check" if by else ""
        click.echo(render_explain_text(stories, verdict=verdict + decided), nl=False)


@cli.command("report")
@click.argument("results", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "json", "html"]), default="text", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="write to this file instead of stdout")
@click.option("--recheckout", type=click.Choice(["refuse", "charge"]), default="refuse", show_default=True,
              help="re-checkout policy of the consistency check (see check --help)")
@click.option("--bucket", type=Finite(0, DAY, min_open=True), default=1.0, show_default=True,
              help="seconds per timeline bucket (widened when the run would need more than 10,000)")
@click.option("--no-check", is_flag=True, help="statistics only: skip decoding args and the consistency check (fast)")
def report_cmd(results: str, fmt: str, output: str | None, recheckout: str, bucket: float, no_check: bool) -> None:
    """Report a run: per-operation counts, rates, outcome shares, latency percentiles, the check.

    Text by default: the verdict first and last, outcomes in words (accepted 2xx, refused 4xx,
    unanswered 5xx/timeout/connection error, skipped), latency tables, the check in full (as
    check --verbose); terms: docs/glossary.md. --format json has stable documented keys;
    --format html writes one self-contained page: the verdict in a coloured banner, the sections
    and operations tables, each anomaly's timeline (the story `explain` tells), charts over time
    (the charts need matplotlib: pip install 'wdm-replay[html]'; without it the page says so and
    keeps every table).

    \b
    Examples:
      wdm-replay report a.wdmr
      wdm-replay report a.wdmr --format json -o a.json
      wdm-replay report a.wdmr --format html -o a.html
      wdm-replay report short.wdmr --format html --bucket 0.1 -o short.html   # a run of seconds
      wdm-replay report huge.wdmr --no-check            # statistics of millions of rows in seconds
    """
    from .analysis import build_report, render_html, render_json, render_text
    from .traces import load_results, refuse_inputs

    if output:
        refuse_inputs(output, [results])  # `report a.wdmr -o a.wdmr` must not overwrite the run
    data = build_report(load_results(results, with_args=not no_check), recheckout=recheckout, bucket=bucket)
    _emit({"text": render_text, "json": render_json, "html": render_html}[fmt](data), output)


def _emit(text: str, output: str | None) -> None:
    """A rendered report: to ``output`` (one line on stderr says so) or to stdout."""
    from .analysis.consistency import AnalysisError

    if output:
        try:
            with open(output, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            raise AnalysisError(f"{output}: cannot write: {e.strerror}") from None
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


def _compare_options(f):
    """Options of the comparison shared by ``compare`` and ``ab``."""
    f = click.option("--no-check", is_flag=True, help="skip the consistency check (no anomaly deltas; faster)")(f)
    f = click.option("--seed", type=SEED, default=0, show_default=True,
                     help="seed of the bootstrap resampling")(f)
    f = click.option("--alpha", type=Finite(0, 1, min_open=True, max_open=True), default=0.05, show_default=True,
                     help="significance level (intervals are 1-alpha)")(f)
    f = click.option("-o", "--output", type=click.Path(dir_okay=False), help="write to this file instead of stdout")(f)
    f = click.option("--format", "fmt", type=click.Choice(["text", "json", "html"]), default="text",
                     show_default=True, help="html: one self-contained page with charts "
                                             "(needs matplotlib and jinja2: pip install 'wdm-replay[html]')")(f)
    f = click.option("--error-threshold", type=Finite(0, 100), default=1.0, show_default=True,
                     help="percentage points an error share must significantly rise by to count as a regression")(f)
    f = click.option("--threshold", type=Finite(0, 1000), default=10.0, show_default=True,
                     help="percent a significant slow-down (or, at --speed max, drop in rate) must exceed "
                          "to count as a regression")(f)
    return f


def _compare_and_exit(paths: list[str], threshold: float, error_threshold: float, fmt: str, output: str | None,
                      alpha: float, seed: int, no_check: bool) -> None:
    from .analysis.compare import compare_files
    from .analysis.compare_text import render_compare
    from .traces import refuse_inputs

    if output:
        refuse_inputs(output, paths)  # `compare A B -o B` must not overwrite a run
    res = compare_files(paths, check=not no_check, threshold=threshold / 100.0,
                        error_threshold=error_threshold / 100.0, alpha=alpha, seed=seed)
    _emit(render_compare(res, fmt), output)
    sys.exit(1 if res.regression else 0)


@cli.command("compare")
@click.argument("base", type=click.Path(dir_okay=False))
@click.argument("new", nargs=-1, required=True, type=click.Path(dir_okay=False))
@_compare_options
def compare_cmd(base: str, new: tuple[str, ...], threshold: float, error_threshold: float, fmt: str,
                output: str | None, alpha: float, seed: int, no_check: bool) -> None:
    """Compare builds replayed with the same trace; exit 1 on a regression.

    Files are grouped by their build label (replay --label); the first group is the base, every
    other group is compared with it. A file without a label is a build of its own. Per operation:
    p50/p90/p99 of answered requests with an interval that includes run-to-run variation
    (two-level bootstrap), error shares, errors' latency apart, anomalies per run; the run rate
    at --speed max. A regression: p50 or p99 significantly slower by more than --threshold, an error
    share significantly higher by more than --error-threshold points, more anomalies of a kind, or
    (--speed max) a significantly lower rate. With one run a side the intervals are widened by a
    calibrated noise floor: compare 3+ runs per build (see ab) for a stronger verdict. The output
    starts with the verdict and lists the gates these runs cannot fire (too few runs or answers,
    a build without answered requests, paced runs for throughput). --format html writes a page
    (verdict banner, tables, interval and latency charts; needs the html extra). Terms:
    docs/glossary.md.

    \b
    Examples:
      wdm-replay compare a.wdmr b.wdmr
      wdm-replay compare a1.wdmr a2.wdmr a3.wdmr b1.wdmr b2.wdmr b3.wdmr   # labelled A, B
      wdm-replay compare a.wdmr b.wdmr --threshold 5 --format json > cmp.json
      wdm-replay compare runs/*.wdmr --format html -o compare.html
    """
    _compare_and_exit([base, *new], threshold, error_threshold, fmt, output, alpha, seed, no_check)


@cli.command("ab")
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
@_compare_options
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
    from .ab import parse_target, run_ab
    from .traces import refuse_inputs

    if output:
        refuse_inputs(output, [trace, *(u for u in (urls_a, urls_b) if os.path.isfile(u))])
    done = run_ab(trace, outdir, target_a=parse_target(urls_a, "--a"), target_b=parse_target(urls_b, "--b"),
                  runs=runs, label_a=label_a, label_b=label_b, before_each=before_each, config=config,
                  progress=not quiet and sys.stderr.isatty(),
                  notify=(lambda _: None) if quiet else (lambda line: click.echo(line, err=True)))
    paths = [str(r.path) for r in done if r.build == "A"] + [str(r.path) for r in done if r.build == "B"]
    _compare_and_exit(paths, threshold, error_threshold, fmt, output, alpha, seed, no_check)


# --- capacity, grade (composition roots: capacity.py, grade.py) ----------------------------------


@cli.command("capacity")
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
    capacity for a wrong shop). Exit 0: knee found; 1: a step NOT CLEAN; 3: no speed met the SLO;
    2: usage or file error. Use a paced trace (generate-trace stress) long enough to be stable.

    \b
    Examples:
      wdm-replay generate-trace stress --rate 50 --duration 30 -o stress.wdmt
      wdm-replay capacity stress.wdmt --url http://127.0.0.1:8000 -o capacity.png
      wdm-replay capacity stress.wdmt --urls urls.json --slo "p99<200ms,unanswered<0.5%" --max 32
      wdm-replay capacity stress.wdmt --start 4 --step-seconds 20 -d cap-runs --json > capacity.json
    """
    from .targets import choose_target
    from .capacity import (ReplayOptions, SearchPlan, find_capacity, matplotlib_missing, parse_slo,
                           plot_capacity, render_capacity_text)

    slo_value = parse_slo(slo)
    if plot:  # before the search: a plot it cannot write must not cost the whole search
        from .traces.trace import refuse_replacing

        if os.path.splitext(plot)[1].lower() not in (".png", ".svg", ".pdf"):
            raise click.BadParameter(f"{plot}: the plot is written as .png, .svg or .pdf", param_hint="-o")
        refuse_replacing(plot, False)
    plan = SearchPlan(start, max_speed, factor, bisect_steps)
    target = choose_target(urls_path, base_url)
    no_plot = matplotlib_missing() if plot else None
    if no_plot:
        click.echo(f"wdm-replay: {no_plot}; the search runs, the table is printed", err=True)

    def step_line(st) -> None:
        if not quiet:
            click.echo(f"capacity: step {st.index} {st.kind} x{st.speed:g}: "
                       f"p99 {st.latency_ms.get('p99')} ms, {100 * st.unanswered:.2f}% unanswered, {st.verdict}, "
                       f"{'pass' if st.passed else 'fail'} ({st.results})", err=True)

    res = find_capacity(trace, outdir, slo=slo_value, plan=plan,
                        opts=ReplayOptions(target, config), step_seconds=step_seconds,
                        progress=not quiet and sys.stderr.isatty(), notify=step_line)
    if plot and not no_plot:
        plot_capacity(res, plot)
        click.echo(f"wrote {plot}", err=True)
    if as_json:
        from .analysis import render_json

        click.echo(render_json(res.as_dict()), nl=False)
    else:
        click.echo(render_capacity_text(res), nl=False)
    sys.exit(res.exit_code)


@cli.command("grade")
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

    from .capacity import SearchPlan, parse_slo
    from .grade import GradeConfig, load_teams, parse_suites, prepare_traces, run_grade
    from .leaderboard import render_leaderboard_json, render_leaderboard_text

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


# --- shrink (composition root: replayer + analysis) ---------------------------------------------


@cli.command("shrink")
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
@click.option("--force", is_flag=True, help=_FORCE_HELP)
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

    from .targets import choose_target
    from .shrink import ShrinkError, format_result, shrink_run

    target = choose_target(urls_path, base_url)
    if not Path(run).name:  # "", ".", "/": no results file, and no name to derive the default -o from
        raise ShrinkError(f"{run!r}: not a results file; give the RUN.wdmr to shrink")
    out = output or str(Path(run).with_suffix(".min.wdmt"))
    result = shrink_run(run, out, target=target, trace=trace_path, anomaly=anomaly, runs=runs, budget=budget,
                        before_each=before_each, timeout=timeout, concurrency=concurrency, force=force,
                        progress=not quiet and sys.stderr.isatty(),
                        notify=(lambda _: None) if quiet else (lambda line: click.echo(line, err=True)))
    click.echo(format_result(result))
    if result.stopped == "interrupted":
        sys.exit(130)


# click >= 8.2 raises this for a group run without a command (8.1 prints the help itself).
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def one_line_usage_error(e: click.ClickException) -> str:
    """A click error (bad option value, missing argument…) as one line, pointing at the command's --help."""
    text = " ".join(e.format_message().split())
    ctx = getattr(e, "ctx", None)
    return f"{text} (see {ctx.command_path} --help)" if ctx is not None else text


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the group, turning user errors into one line and an exit code."""
    # No command does linear algebra; an idle OpenBLAS thread pool still polls for work and took
    # 1–2 % of a fast replay's CPU. Set before anything imports numpy; the user's setting wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        cli.main(args=argv, prog_name="wdm-replay", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("wdm-replay: interrupted", err=True)
        sys.exit(130)
    except _NO_ARGS_IS_HELP as e:
        e.show()  # a group run without a command: its help, as click prints it
        sys.exit(e.exit_code)
    except click.ClickException as e:
        click.echo(f"wdm-replay: error: {one_line_usage_error(e)}", err=True)
        sys.exit(e.exit_code)
    except WdmError as e:
        click.echo(f"wdm-replay: error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("wdm-replay: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)


if __name__ == "__main__":
    main()
