"""Fault schedules during a replay: parse the ``--faults`` file, run each fault's ``do`` and ``undo``.

A schedule is a JSON (or TOML) file ``{"faults": [{"name", "at", "for", "do",
"undo"}, …]}``: ``do`` runs ``at`` seconds after the run's start (the coordinator's clock, phase 0
start) and ``undo`` ``for`` seconds after ``do`` began. An action is a shell command line (run by
``/bin/sh -c`` in the current directory) or an argv list; an optional ``timeout`` (seconds, default
:data:`DEFAULT_ACTION_TIMEOUT`) bounds each action, after which its process group is killed.

Each fault runs in its own thread (an action never blocks the coordinator's message pump); the
threads only queue events, the coordinator writes them (:meth:`FaultRunner.drain`) within its poll
interval, so they reach the results file as they happen: ``fault_start`` when ``do`` begins (so
a replay killed during the fault still shows the open window), ``fault_do`` / ``fault_undo``
(start, end, exit code, a bounded tail of the output) and, when ``undo`` ends, the window
``{"kind": "fault", "at": do start, "end": undo end, "name": …}`` that availability counts apart.
A fault whose ``do`` is not due before the last phase ends is skipped (event ``fault_skipped``);
one whose ``do`` ran has its ``undo`` at the scheduled time before the final read (the shop is
healed before its state is read, as Jepsen heals before its final read). Ctrl-C runs every pending
``undo`` at once, each bounded by :data:`STOP_UNDO_TIMEOUT`.
"""

from __future__ import annotations

import json
import math
import os
import queue
import shlex
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..errors import WdmError, parse_toml
from ..traces.records import EVENT_FAULT, EVENT_FAULT_SKIPPED, EVENT_FAULT_START, FAULT_ACTION_EVENTS, Event

DEFAULT_ACTION_TIMEOUT = 60.0  # seconds an action may run before its process group is killed
STOP_UNDO_TIMEOUT = 10.0  # seconds each pending undo gets after Ctrl-C
OUTPUT_TAIL = 2048  # bytes of an action's output (stdout and stderr) kept in its event
KEYS = ("name", "at", "for", "do", "undo")
OPTIONAL_KEYS = ("timeout",)


class FaultScheduleError(WdmError):
    """A fault schedule file that cannot be used (unreadable, malformed, invalid values)."""


class NamedFaultError(ValueError):
    """A schedule entry's bad value once its name is known (the message then names the fault, not its index)."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


@dataclass(frozen=True, slots=True)
class Fault:
    """One scheduled fault: ``do`` at ``at`` s, ``undo`` ``duration`` s later; actions are str (shell) or argv."""

    name: str
    at: float
    duration: float
    do: str | tuple[str, ...]
    undo: str | tuple[str, ...]
    timeout: float = DEFAULT_ACTION_TIMEOUT

    @classmethod
    def from_record(cls, rec: Any) -> Fault:
        """One fault of a schedule file, checked (ValueError with the reason, one line); ``timeout`` defaults here."""
        if not isinstance(rec, dict):
            raise ValueError("must be an object")
        missing = [k for k in KEYS if k not in rec]
        if missing:
            raise ValueError(f"missing {', '.join(repr(k) for k in missing)}")
        unknown = sorted(set(rec) - set(KEYS) - set(OPTIONAL_KEYS))
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(repr(k) for k in unknown)}")
        name = rec["name"]
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        try:
            return cls(name, _seconds(rec["at"], "'at'"), _seconds(rec["for"], "'for'"), _action(rec["do"], "'do'"),
                       _action(rec["undo"], "'undo'"),
                       _seconds(rec.get("timeout", DEFAULT_ACTION_TIMEOUT), "'timeout'", positive=True))
        except ValueError as e:
            raise NamedFaultError(name, str(e)) from None

    def to_record(self) -> dict:
        """The fault as the results header keeps it (JSON-ready; actions as one line of text)."""
        return {"name": self.name, "at": self.at, "for": self.duration, "do": describe(self.do),
                "undo": describe(self.undo), "timeout": self.timeout}


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What one action did: start/end on the run's clock, exit code (None: did not start), output tail."""

    start: float
    end: float
    exit_code: int | None
    timed_out: bool
    output: str
    error: str | None = None  # why it did not start (e.g. no such program)

    @property
    def ok(self) -> bool:
        """Whether the action exited 0 within its timeout."""
        return self.exit_code == 0 and not self.timed_out


# --- parsing ------------------------------------------------------------------------------------


UNKNOWN_RUN_LENGTH = 86_400.0  # seconds a fault may reach when the run's length is unknown (a trace without duration)


def check_schedule_fits(faults: tuple[Fault, ...], length: float | None, source: str = "faults") -> None:
    """Refuse faults outside the run: ``do`` after the schedule ends, or ``undo`` later than the run again.

    ``length`` is the run's scheduled seconds (None: unknown, then :data:`UNKNOWN_RUN_LENGTH`). A
    ``do`` due after the last phase would only be skipped; an ``undo`` more than one run length
    after the end keeps the replay waiting to heal it before the final read (``"at": 1e10`` once
    ended in a thread's traceback). One line, naming the fault and the bound.
    """
    known = length is not None
    bound = length if known else UNKNOWN_RUN_LENGTH
    run = f"the run's schedule lasts {bound:.6g} s" if known else f"the trace states no duration (bound {bound:g} s)"
    for i, f in enumerate(faults):
        where = f"{source}: fault {f.name!r}"
        if f.at >= bound:
            raise FaultScheduleError(f"{where}: 'at' {f.at:g} s is not within the run ({run})")
        # The undo may come after the load ends (restart once the load is over), but not later than
        # one more run length: the final read waits for it.
        if f.at + f.duration > 2 * bound:
            raise FaultScheduleError(f"{where}: 'at' + 'for' = {f.at + f.duration:g} s ends after twice the run "
                                     f"({run}); shorten 'for'")


def load_schedule(path: str) -> tuple[Fault, ...]:
    """The faults of a schedule file (JSON, or TOML by its ``.toml`` suffix); FaultScheduleError otherwise."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise FaultScheduleError(f"{path}: cannot read: {e.strerror}") from None
    if str(path).endswith(".toml"):
        try:
            doc = parse_toml(raw)
        except ValueError as e:  # not UTF-8, or not TOML
            raise FaultScheduleError(f"{path}: not valid TOML: {e}") from None
    else:
        try:
            doc = json.loads(raw.decode("utf-8"))  # JSON between systems is UTF-8 (RFC 8259)
        except (UnicodeDecodeError, ValueError) as e:
            raise FaultScheduleError(f"{path}: not valid JSON: {e}") from None
    return parse_schedule(doc, path)


def _seconds(v: Any, what: str, *, positive: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{what} must be a finite number of seconds, got {v!r}")
    if v < 0 or (positive and v == 0):
        raise ValueError(f"{what} must be {'positive' if positive else 'at least 0'}, got {v!r}")
    return float(v)


def _action(v: Any, what: str) -> str | tuple[str, ...]:
    if isinstance(v, str):
        if not v.strip():
            raise ValueError(f"{what} is an empty command")
        return v
    if isinstance(v, list) and v and all(isinstance(a, str) for a in v):
        return tuple(v)
    raise ValueError(f"{what} must be a shell command line or a non-empty list of strings, got {v!r}")


def parse_schedule(doc: Any, source: str = "faults") -> tuple[Fault, ...]:
    """Validate a decoded schedule document; the faults in start order, or one-line FaultScheduleError."""
    if not isinstance(doc, dict) or not isinstance(doc.get("faults"), list):
        raise FaultScheduleError(f'{source}: expected {{"faults": [{{"name", "at", "for", "do", "undo"}}, …]}}')
    unknown = sorted(set(doc) - {"faults"})
    if unknown:
        raise FaultScheduleError(f"{source}: unknown key(s) {', '.join(repr(k) for k in unknown)} "
                                 f'(a schedule is {{"faults": [...]}})')
    out: list[Fault] = []
    seen: set[str] = set()
    for i, rec in enumerate(doc["faults"]):
        try:
            fault = Fault.from_record(rec)
        except NamedFaultError as e:
            raise FaultScheduleError(f"{source}: fault {e.name!r}: {e}") from None
        except ValueError as e:
            raise FaultScheduleError(f"{source}: faults[{i}]: {e}") from None
        if fault.name in seen:
            raise FaultScheduleError(f"{source}: fault {fault.name!r}: name used twice (names identify the fault's "
                                     "events)")
        seen.add(fault.name)
        out.append(fault)
    if not out:
        raise FaultScheduleError(f"{source}: the schedule has no faults")
    return tuple(sorted(out, key=lambda x: x.at))


def schedule_record(faults: tuple[Fault, ...]) -> list[dict]:
    """The schedule as the results header keeps it (JSON-ready)."""
    return [f.to_record() for f in faults]


def describe(action: str | tuple[str, ...]) -> str:
    """An action as one line of text: an argv list as the shell command that runs the same argv
    (``shlex.join``: ``["sh", "-c", "a; b"]`` is ``sh -c 'a; b'``, not the ambiguous ``sh -c a; b``)."""
    return action if isinstance(action, str) else shlex.join(action)


# --- running ------------------------------------------------------------------------------------


def run_action(action: str | tuple[str, ...], timeout: float, clock: Callable[[], float]) -> ActionResult:
    """Run one action to its end (or its timeout, then kill its process group); its :class:`ActionResult`.

    The output goes to a temporary file, not a pipe: an action that leaves a process behind (a
    restarted server) would hold a pipe open forever. The action runs in its own session, so the
    terminal's Ctrl-C reaches the replay, not the action (its undo must still run).
    """
    argv = ["/bin/sh", "-c", action] if isinstance(action, str) else list(action)
    with tempfile.TemporaryFile() as out:
        start = clock()
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        except OSError as e:
            return ActionResult(start, clock(), None, False, "", f"cannot start: {e.strerror or e}")
        timed_out = False
        try:
            code: int | None = p.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            code = p.wait()
        end = clock()
        size = out.seek(0, os.SEEK_END)
        out.seek(max(0, size - OUTPUT_TAIL))
        tail = out.read().decode("utf-8", errors="replace")
    return ActionResult(start, end, code, timed_out, tail)


class FaultRunner:
    """Runs a schedule's faults in threads on the run's clock; queues their events for the coordinator."""

    def __init__(self, faults: tuple[Fault, ...]):
        self.faults = faults
        self.results: dict[str, dict[str, ActionResult]] = {}  # name -> {"do": …, "undo": …}
        self.skipped: list[str] = []
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._no_new = threading.Event()  # no more `do`: the run's phases ended, or a signal
        self._heal = threading.Event()  # run pending undos now: a signal
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._clock: Callable[[], float] = time.perf_counter

    def start(self, clock: Callable[[], float]) -> None:
        """Start one thread per fault; ``clock`` is the run's clock (seconds since phase 0 start)."""
        self._clock = clock
        for f in self.faults:
            t = threading.Thread(target=self._run_fault, args=(f,), name=f"wdm-replay-fault-{f.name}", daemon=True)
            t.start()
            self._threads.append(t)

    def _emit(self, event: Event) -> None:
        self._events.put(event)

    def _action_event(self, f: Fault, which: str, r: ActionResult, **extra: Any) -> None:
        self.results.setdefault(f.name, {})[which] = r
        self._emit(Event(r.start, FAULT_ACTION_EVENTS[which], name=f.name, end=r.end, exit=r.exit_code, ok=r.ok,
                         timed_out=r.timed_out, error=r.error, output=r.output,
                         command=describe(f.do if which == "do" else f.undo), **extra))

    def _run_fault(self, f: Fault) -> None:
        if self._no_new.wait(max(0.0, f.at - self._clock())):
            self._skip(f)
            return
        with self._lock:  # a signal or the end of the phases between the wait and here wins
            if self._no_new.is_set():
                self._skip(f)
                return
            self.results[f.name] = {}
        # Written before the action runs: a replay that dies during the fault still has the window's start.
        self._emit(Event(self._clock(), EVENT_FAULT_START, name=f.name, command=describe(f.do), duration=f.duration))
        do = run_action(f.do, f.timeout, self._clock)
        self._action_event(f, "do", do)
        self._heal.wait(max(0.0, do.start + f.duration - self._clock()))
        healing = self._heal.is_set()
        undo = run_action(f.undo, min(f.timeout, STOP_UNDO_TIMEOUT) if healing else f.timeout, self._clock)
        self._action_event(f, "undo", undo, early=healing)
        self._emit(Event(do.start, EVENT_FAULT, name=f.name, end=undo.end))

    def _skip(self, f: Fault) -> None:
        self.skipped.append(f.name)
        self._emit(Event(self._clock(), EVENT_FAULT_SKIPPED, name=f.name, scheduled=f.at,
                         reason="the run ended before it was due" if not self._heal.is_set() else "stopped by a signal"))

    def drain(self, write: Callable[..., None]) -> None:
        """Hand every queued event to ``write(at, kind, **fields)`` (the results writer's ``write_event``).

        ``fields`` are the typed :class:`~..traces.records.Event`'s, as its ``to_record`` writes them.
        """
        while True:
            try:
                event: Event = self._events.get_nowait()
            except queue.Empty:
                return
            write(event.at, event.kind, **event.payload())

    def end_of_phases(self) -> None:
        """The last phase ended: faults not yet due are skipped; started ones keep their undo time."""
        self._no_new.set()

    def busy(self) -> bool:
        """Whether a fault thread is still running (an action, or the wait before an undo)."""
        return any(t.is_alive() for t in self._threads)

    def stop(self) -> None:
        """A signal (or an error): skip what is not due, run pending undos now; returns within bounded time."""
        self._no_new.set()
        self._heal.set()
        deadline = time.monotonic() + max((f.timeout for f in self.faults), default=0) + STOP_UNDO_TIMEOUT + 1
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def failures(self) -> list[str]:
        """One line per action that failed (non-zero exit, timeout, could not start)."""
        out = []
        for name, acts in self.results.items():
            for which, r in acts.items():
                if r.ok:
                    continue
                why = (r.error or (f"timed out (killed after {r.end - r.start:.1f} s)" if r.timed_out
                                   else f"exit {r.exit_code}"))
                last = r.output.strip().splitlines()[-1:] if r.output.strip() else []
                out.append(f"fault {name}: {which} failed ({why})" + (f": {last[0][:200]}" if last else ""))
        return out

    def summary(self) -> FaultRunSummary:
        """What ran: per fault its actions' results, the skipped faults, and one line per failed action."""
        return FaultRunSummary({name: FaultActions(**acts) for name, acts in self.results.items()},  # "do", "undo"
                               tuple(self.skipped), tuple(self.failures()))


@dataclass(frozen=True, slots=True)
class FaultActions:
    """A started fault's actions: ``do`` and ``undo`` (None: not run, e.g. the replay stopped during ``do``)."""

    do: ActionResult | None = None
    undo: ActionResult | None = None

    def ran(self) -> dict[str, ActionResult]:
        """The actions that ran, by name (``"do"``, ``"undo"``), in that order."""
        return {w: r for w, r in (("do", self.do), ("undo", self.undo)) if r is not None}


@dataclass(frozen=True, slots=True)
class FaultRunSummary:
    """What a replay's fault schedule did: the part ``summary.faults`` of :class:`~.summary.ReplaySummary`.

    ``results``: per fault name (in the order they started), its :class:`FaultActions`; ``skipped``: faults not due before the run ended; ``failures``: one line per failed action.
    """

    results: Mapping[str, FaultActions]  # keyed by fault name (data)
    skipped: tuple[str, ...] = ()
    failures: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        """JSON-ready: per fault its actions (start, end, exit, ok), the skipped and the failures."""
        return {"faults": {name: {w: {"start": r.start, "end": r.end, "exit": r.exit_code, "ok": r.ok}
                                  for w, r in acts.ran().items()} for name, acts in self.results.items()},
                "skipped": list(self.skipped), "failures": list(self.failures)}


def format_fault_summary(f: FaultRunSummary | None) -> str:
    """Lines of the replay summary about the fault schedule (``summary.faults``; empty when there was none)."""
    if f is None:
        return ""
    lines = []
    for name, acts in f.results.items():
        do, undo = acts.do, acts.undo
        span = (f"{do.start:.2f} s -> {undo.end:.2f} s" if do and undo else
                f"{do.start:.2f} s -> (no undo)" if do else "not run")
        ran = acts.ran()
        state = "ok" if all(a.ok for a in ran.values()) and undo else "FAILED" if ran else "not run"
        lines.append(f"  fault {name}: {span} ({state})")
    for name in f.skipped:
        lines.append(f"  fault {name}: skipped (not due before the run ended)")
    return "\n".join(lines)
