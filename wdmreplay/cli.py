"""The ``wdm-replay`` command line: a click group of thin commands.

Each command parses options, opens files, calls the library and prints. Errors the user can act on
are :class:`~wdmreplay.api.WdmError`; :func:`main` prints them as one line and exits non-zero.
"""

from __future__ import annotations

import sys

import click

from . import __version__
from .api import WdmError


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
    """


# --- generate-trace, inspect (recorder) -------------------------------------------------------

# --- serve (shop) -----------------------------------------------------------------------------


@cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65533),
              help="Port (with --split: port, port+1, port+2). 0 picks a free port and prints it.")
@click.option("--split", is_flag=True, help="Order, stock and payment as three services on three ports; "
              "the order service calls the others over HTTP.")
@click.option("--inject", "inject", default=None,
              type=click.Choice(["lost-update", "oversell", "no-rollback", "double-charge"]),
              help="Turn on one deliberate bug (see docs/shop.md).")
@click.option("--latency", "latency_ms", default=0.0, show_default=True, type=click.FloatRange(0),
              metavar="MS", help="Added delay per request, in milliseconds.")
@click.option("--error-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1), metavar="P",
              help="Share of requests answered 500 without any effect.")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed of the --error-rate draws and of batch_init's order contents.")
@click.option("--dialect", "dialects", default="both", show_default=True,
              type=click.Choice(["both", "2023", "2024"]), help="Which API dialect(s) to serve.")
def serve_cmd(host: str, port: int, split: bool, inject: str | None, latency_ms: float,
              error_rate: float, seed: int, dialects: str) -> None:
    """Run the reference shop (API.md, both dialects) until Ctrl-C or SIGTERM.

    \b
    Examples:
      wdm-replay serve                                  # gateway on http://127.0.0.1:8000
      wdm-replay serve --split --port 8000              # order :8000, stock :8001, payment :8002
      wdm-replay serve --inject lost-update             # a deliberately racy shop
      wdm-replay serve --port 0 --latency 5 --error-rate 0.01 --seed 7
    """
    from .shop import ShopConfig, serve

    config = ShopConfig(inject, latency_ms, error_rate, seed, dialects)  # type: ignore[arg-type]
    serve(config, host, port, split, announce=lambda text: click.echo(text))


# --- replay, demo (replayer) ------------------------------------------------------------------

# --- check, report, compare (analysis) --------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the group, turning user errors into one line and an exit code."""
    try:
        cli.main(args=argv, prog_name="wdm-replay", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("wdm-replay: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
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
