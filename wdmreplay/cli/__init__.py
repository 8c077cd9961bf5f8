"""The ``wdm-replay`` command line: a click group of thin commands.

Each command parses options, opens files, calls the library and prints. Errors the user can act on
are :class:`~wdmreplay.errors.WdmError`; :func:`main` prints them as one line and exits non-zero.

The commands live by family: :mod:`.traces` (generate-trace, inspect, record), :mod:`.replay`
(replay, merge, ab, shrink), :mod:`.analysis` (check, explain, report, compare) and :mod:`.course`
(serve, demo, capacity, grade); option types and the shared option sets in :mod:`.options`.
The library is imported inside the command functions, never at module level: start-up time
(``wdm-replay --help`` loads neither numpy nor aiohttp; tests/test_cli_package.py checks it).
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading

try:
    import click

    from .. import __version__
    from ..errors import WdmError
    from . import analysis, course, replay, traces
    from .options import SPEED_RANGE, Finite, Speed, replay_options
except KeyboardInterrupt:  # Ctrl-C while the command line loads (its first ~0.1 s): one line, no traceback
    sys.stderr.write("wdm-replay: interrupted\n")
    raise SystemExit(130) from None

# The option types and the shared replay options, for the library's and tests' users of ``wdmreplay.cli``.
__all__ = ["cli", "entry", "main", "one_line_usage_error", "quick_exit", "Finite", "Speed", "SPEED_RANGE", "replay_options"]


def _version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from ..replayer.compiled import state  # imports the hot path (and its twins): only for --version

    click.echo(f"wdm-replay, version {__version__}\nreplay hot path: {state()}")
    ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_version,
              help="Show the version, and whether the replay's hot path is compiled, and exit.")
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


for _command in (traces.generate_trace, traces.inspect_cmd, traces.record_cmd,
                 replay.replay_cmd, replay.merge_cmd, replay.ab_cmd, replay.shrink_cmd,
                 analysis.check_cmd, analysis.explain_cmd, analysis.report_cmd, analysis.compare_cmd,
                 course.serve_cmd, course.demo_cmd, course.capacity_cmd, course.grade_cmd):
    cli.add_command(_command)


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




def entry() -> None:
    """The console script and ``python -m wdmreplay``: :func:`main`, then :func:`quick_exit` with its exit code.

    :func:`main` stays a plain function that raises ``SystemExit`` (tests call it in-process). SIGTERM
    is Ctrl-C here: one line "interrupted", exit 130, cleanup done (see :func:`_terminate`).
    """
    signal.signal(signal.SIGTERM, _terminate)
    try:
        main()
    except SystemExit as e:
        code = e.code
    else:
        code = 0
    if code is not None and not isinstance(code, int):  # sys.exit("message"): printed, exit 1, as Python does
        print(code, file=sys.stderr)
        code = 1
    quick_exit(code or 0)


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM outside a command's own handling: stop as Ctrl-C does (``with``/``finally`` clean up, exit 130).

    Commands that stop in their own way on a signal (``replay``'s coordinator, ``record``,
    ``serve``) install their handlers while they run; everywhere else — a trace being generated, a
    merge, a check, ``demo``, ``ab``, ``grade`` or ``capacity`` between replays — SIGTERM was the
    default: the process vanished with no message, temporary files stayed and shop processes it
    had started were orphaned.
    """
    raise KeyboardInterrupt


def quick_exit(code: int) -> None:
    """End the process with ``code`` the quick way: exit handlers, then the standard streams, then ``os._exit``.

    Start-up cost: the interpreter's own teardown frees every object of every loaded module one by
    one (numpy, aiohttp, the replayer...): 60–160 ms of CPU for one ``replay``, a quarter of a short
    run's, for nothing the process still needs. Skipped as ``multiprocessing`` skips it for its forked
    children. What a normal exit does first is kept, in its order: the exit handlers registered with
    :mod:`atexit` (multiprocessing's, weakref finalizers, logging's flush), then stdout and stderr are
    flushed (a failed flush exits 120, as Python's own exit does). Files the program opened are closed
    by it (``with``); a non-daemon thread still running makes this a normal ``sys.exit`` (which waits
    for it).
    """
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            code = code or 120
    os._exit(code)
