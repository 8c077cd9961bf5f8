"""Option types and shared option sets of the command line (of the library, only the replay limits at import).

Every numeric option of every command uses :class:`Finite` or :class:`click.IntRange`; the replay's
options are defined once here (:func:`replay_options`) for every command that replays.
"""

from __future__ import annotations

import click

from ..replayer.config import CLIENT_NAMES, DIALECT_NAMES, MAX_CONCURRENCY, MAX_SECONDS, MAX_WORKERS


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
        from ..replayer.schedule import parse_speed

        if value is None:
            return None
        try:
            return parse_speed(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


class Listen(click.ParamType):
    """Where one of our servers listens (``replay --ui``, ``record --listen``): ``HOST:PORT``
    (``[::1]:PORT`` for IPv6) as (host, port), by :func:`targets.parse_listen`. Checked while parsing,
    so a trace taken for ``--ui``'s address by mistake is named in the error (not reported as a
    missing TRACE); ``misplaced`` is the advice added when the value is not even a port."""

    name = "host:port"

    def __init__(self, misplaced: str = "") -> None:
        self.misplaced = misplaced

    def convert(self, value, param, ctx):  # type: ignore[override]
        """(host, port), or a one-line usage error."""
        if isinstance(value, tuple):
            return value
        from ..targets import parse_listen

        option = param.opts[0] if param is not None else "address"
        try:
            return parse_listen(value, option)
        except ValueError as e:
            text = str(e).removeprefix(f"{option} takes ")
            if self.misplaced and "name the host" not in text:
                text += f"; {self.misplaced}"
            self.fail(text, param, ctx)


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

FORCE_HELP = ("replace an existing file at -o that no command could make again (a run's results, a recorded "
               "or shrunk trace, any file that is not a generated trace); a generated trace is replaced without it")



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
            from ..replayer.config import ReplayConfig

            kwargs["config"] = ReplayConfig(**{n: kwargs.pop(n) for n in names})
            return f(*args, **kwargs)

        for name in reversed(names):
            decls, attrs = _REPLAY_OPTIONS[name]
            command = click.option(*decls, name, **attrs)(command)
        return command

    return decorate
