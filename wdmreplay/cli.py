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
