"""The one replay driver: worker processes run the sessions, this process coordinates and writes.

Every replay — ``--workers 1`` too — forks worker processes (:mod:`.workers`) and drives them phase
by phase: phases stay barriers, and the symbols bound in a phase reach every worker before the next
starts. The coordinator writes the one results file from the chunks the workers send, waits for
abandoned requests to land (quiesce), and runs the final read over the workers, re-reading until the
state settles. It owns the signals: the first SIGINT/SIGTERM stops the run within a second (the
file is then partial); a second stops at once, killing the workers.
"""

from __future__ import annotations

import multiprocessing
import os
import selectors
import signal
import sys
import threading
import time
from dataclasses import replace
from typing import Any

from ..traces.results import (EVENT_FINAL_READ, EVENT_FINAL_READ_DONE, EVENT_INTERRUPT, EVENT_PHASE_END,
                              EVENT_PHASE_START, Event, FinalRecord, ResultsWriter)
from .checks import ReplayError
from .config import WorkerSetup
from .engine import split_concurrency
from .final import (TraceScan, answered_any, bound_not_found, entity_count, id_sets, next_snapshot_at, stopped_of,
                    plan_final_read, quiesce_until, referenced_ids, settle_plan, settle_record, sort_ids)
from .messages import (Bindings, Bye, Chunk, End, Failed, FinalDone, FinalProgress, PhaseDone,
                       Progress, ReadFinal, Ready, RunPhase, Stop)
from .summary import FinalReadInfo, ReadSample, ReadStopped, Tally

STOP_GRACE = 0.5  # seconds in-flight requests get after Ctrl-C / SIGTERM before they are cut off
STOP_WAIT = 1.0  # seconds the coordinator waits for stopped workers to report before giving up on them
START_WAIT = 120.0  # seconds the workers get to open the trace and their clients
# Seconds a wait for the workers lasts at most: a signal wakes it at once (the handler writes to a
# pipe the wait watches), so this only bounds how late a deadline is checked. It was 50 ms while
# the wait had no other way to notice a signal: 20 wake-ups a second cost ~1.5 ms of CPU a second
# on the development machine, most of an idle coordinator's. With a fault schedule the wait stays
# at FAULT_POLL: the fault runner's events are written (and its actions noticed done) on wake-ups.
POLL = 0.5
FAULT_POLL = 0.05


def _slices(entities: dict[str, list[str]], workers: list[int]) -> dict[int, dict[str, list[str]]]:
    """Each worker's share of the entities to read: every len(workers)-th id of each kind."""
    return {i: {k: v[j::len(workers)] for k, v in entities.items()} for j, i in enumerate(workers)}


def _sample_total(sample: dict[str, dict]) -> ReadSample | None:
    """The batch_init sample over all kinds, or None when every entity was read."""
    if not sample:
        return None
    seed = next(iter(sample.values()))["seed"]
    return ReadSample(sum(v["read"] for v in sample.values()), sum(v["of"] for v in sample.values()), seed, sample)


class _HardStop(Exception):
    """A second signal: stop at once."""


# The coordinators running in this process, in any thread: what interrupt_replays() stops.
_RUNNING: set["Coordinator"] = set()
_RUNNING_LOCK = threading.Lock()


def interrupt_replays(*, hard: bool = False) -> int:
    """Stop every replay running in this process as a first SIGINT would (``hard``: as a second one); how many.

    Signals reach the main thread only, so a replay run in another thread (``grade --parallel``)
    never saw the user's Ctrl-C; the caller that got it stops them with this. A replay already
    stopping is left to stop (called again, this never turns a clean stop into a hard one).
    """
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for coordinator in running:
        while coordinator.signals < (2 if hard else 1):
            coordinator.on_signal()
    return len(running)


class Coordinator:
    """Drives ``workers`` worker processes through a trace's phases and the final read; writes the results."""

    def __init__(self, *, setup: WorkerSetup, writer: ResultsWriter, tally: Tally, phases: list[str],
                 scan: TraceScan, total_requests: int, faults: Any = None, sample_seed: int = 0, live: Any = None):
        config = setup.config
        self.setup = replace(setup, grace=STOP_GRACE)
        self.n = config.workers
        final_read, settle, timeout, concurrency = config.final_read, config.settle, config.timeout, config.concurrency
        progress, start_at, final_sample = setup.progress, config.start_at, config.final_sample
        self.writer = writer
        self.tally = tally
        self.phases = phases
        self.scan = scan
        self.final_read = final_read
        self.settle = settle
        self.timeout = timeout
        self.concurrency = concurrency
        self.progress = progress
        self.total_requests = total_requests
        self.faults = faults  # a .faults.FaultRunner, or None
        self.final_sample = final_sample  # batch_init entities not touched read back per kind (None: all)
        self.sample_seed = sample_seed
        self.live = live  # a .live.LiveView (replay --ui) to start once the workers are forked, or None
        self.start_at = start_at  # unix time the schedule starts at (--start-at), or None: at once
        self.bindings: dict[str, str] = {}  # shared symbols only (what later phases need)
        self.bound = 0  # symbols bound in the whole run (every one is in the results file)
        # Ids of every bound entity, compact, only for the final read (nothing grows without one).
        self.bound_ids = id_sets() if final_read else None
        self.final_reads = 0
        self.final_read_info: FinalReadInfo | None = None  # what the final read covered and how long it took
        self.conn_waits = 0  # replayed requests that waited for a connection (all --concurrency busy)
        self.signals = 0
        self.t0 = 0.0
        self._procs: list[Any] = []
        self._conns: list[Any] = []
        self._gone: set[int] = set()  # workers that closed their pipe (or were given up on)
        self._stop_sent_at: float | None = None
        self._progress = [(0, 0)] * self.n
        self._final_progress = [0] * self.n
        self._bar: Any = None
        self._final_bar: Any = None
        self._sel: selectors.BaseSelector | None = None  # the pipes of the workers still alive, while running
        self._watched: set[int] = set()  # the workers whose pipes _sel watches
        self._wake: tuple[int, int] | None = None  # (read, write) ends of the pipe a signal wakes _sel with
        self.poll = POLL if self.faults is None else FAULT_POLL

    @property
    def interrupted(self) -> bool:
        """Whether a SIGINT/SIGTERM arrived."""
        return self.signals > 0

    def clock(self) -> float:
        """Seconds since the run's start clock (shared with the workers)."""
        return time.perf_counter() - self.t0

    # --- signals ----------------------------------------------------------------------------------

    def on_signal(self, *_: Any) -> None:
        """SIGINT/SIGTERM: the first stops the run (within a second); a second kills the workers at once."""
        self.signals += 1
        if self._wake is not None:  # wake the wait in _pump now (select resumes after a handler)
            try:
                os.write(self._wake[1], b"\0")
            except OSError:  # full (it was woken already) or closed
                pass
        if self.signals >= 2:
            for p in self._procs:
                if p.pid is not None and p.exitcode is None:
                    try:
                        os.kill(p.pid, signal.SIGKILL)
                    except OSError:
                        pass

    def _install_signals(self) -> dict:
        saved = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                saved[sig] = signal.signal(sig, self.on_signal)
        return saved

    # --- the run ----------------------------------------------------------------------------------

    def run(self) -> tuple[bool, str | None]:
        """Start the workers, run every phase, the quiesce wait and the final read; (complete, reason)."""
        saved = self._install_signals()
        with _RUNNING_LOCK:
            _RUNNING.add(self)
        try:
            self._start_bars()
            self._start_workers()
            if self.live is not None:  # its server thread starts after the fork, never before
                self.live.start()
            if not self._wait_ready():
                return self._stopped("signal before the workers started")
            if not self._wait_start():
                return self._stopped("signal before --start-at")
            if not self._run_phases():
                return self._stopped("signal")
            if not self._heal_faults():
                return self._stopped("signal while a fault was active")
            final = None
            if self.final_read:
                final = self._final_read()
                if final is None:
                    return self._stopped("signal during the final read")
            self._close_workers()
            if self.interrupted:  # a signal after the final read: its record stands, the run is still partial
                return self._stopped("signal")
            if final is not None:
                self.writer.write_final(final)
                s = final.settling
                self.writer.write_event_record(Event(
                    self.clock(), EVENT_FINAL_READ_DONE, snapshots=s.snapshots if s else 1,
                    settled=s.settled if s else None, reads=self.final_reads, read_at=final.read_at))
            return True, None
        except _HardStop:
            self.writer.write_event_record(Event(self.clock(), EVENT_INTERRUPT, reason="second signal: stopped at once"))
            return False, "interrupted"
        finally:
            with _RUNNING_LOCK:
                _RUNNING.discard(self)
            for sig, handler in saved.items():
                signal.signal(sig, handler)
            self._reap()
            if self.faults is not None:  # a signal or an error: pending undos run now (bounded)
                self.faults.stop()
                self.faults.drain(self.writer.write_event)
            for bar in (self._bar, self._final_bar):
                if bar is not None:
                    bar.close()

    def _stopped(self, reason: str) -> tuple[bool, str]:
        self.writer.write_event_record(Event(self.clock(), EVENT_INTERRUPT, reason=reason))
        self._close_workers()
        return False, "interrupted"

    def _start_workers(self) -> None:
        from .workers import worker_main

        # fork: workers start at once and do not re-import the caller's __main__ (which spawn
        # would, breaking scripts without a main guard); no event loop runs here while forking.
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        forked = ctx.get_start_method() == "fork"
        for i in range(self.n):
            parent, child = ctx.Pipe()
            # A forked worker inherits the coordinator's ends of every pipe made so far, its own
            # too: it closes them, so that it sees EOF when the coordinator dies (even by kill -9).
            inherited = [*self._conns, parent] if forked else []
            cfg = replace(self.setup, index=i, concurrency=split_concurrency(self.concurrency, self.n)[i])
            p = ctx.Process(target=worker_main, args=(child, cfg, inherited), daemon=True,
                            name=f"wdm-replay-worker-{i}")
            p.start()
            child.close()
            self._procs.append(p)
            self._conns.append(parent)

    def _wait_ready(self) -> bool:
        got = self._collect(Ready, set(range(self.n)), deadline=time.monotonic() + START_WAIT)
        if self.interrupted:
            return False
        if len(got) < self.n:
            raise ReplayError(f"replay workers did not start within {START_WAIT:g} s")
        return True

    def _run_phases(self) -> bool:
        """Every phase, each a barrier; False when a signal stopped the run."""
        self.t0 = time.perf_counter()
        if self.start_at is not None:  # the schedule starts at --start-at itself, not at the wake-up
            self.t0 -= time.time() - self.start_at
        new: dict[str, str] = {}
        for p, name in enumerate(self.phases):
            start = self.clock()
            if p == 0 and self.start_at is not None:
                start = 0.0  # sessions already due at the wake-up are sent late (lag recorded), not shifted
            # wall: the unix time of this instant, so that merge can put shards on one clock.
            self.writer.write_event_record(Event(start, EVENT_PHASE_START, phase=p, name=name,
                                                 wall=time.time() - (self.clock() - start)))
            if p == 0 and self.faults is not None:
                self.faults.start(self.clock)
            self._send_all(RunPhase(p, start, self.t0, new))
            new = {}
            for msg in self._collect(PhaseDone, self._alive()).values():
                new.update(msg.shared)
                self.bound += msg.bound
                if self.bound_ids is not None:
                    for kind, ids in msg.ids.items():
                        self.bound_ids[kind].update(ids)
            self.bindings.update(new)
            self.writer.write_event_record(Event(self.clock(), EVENT_PHASE_END, phase=p, name=name))
            if self.interrupted:
                return False
        self._update_bar()
        return True

    def _heal_faults(self) -> bool:
        """After the last phase: skip faults not yet due, wait for the started ones' undos; False on a signal."""
        if self.faults is None:
            return True
        self.faults.end_of_phases()
        while self.faults.busy():
            if self.interrupted:
                return False
            self._pump(self.poll)
        self.faults.drain(self.writer.write_event)
        return True

    def _wait_start(self) -> bool:
        """Wait until the wall clock reaches ``start_at`` (a signal ends the wait at once); False on a signal."""
        if self.start_at is None:
            return True
        while not self.interrupted:
            left = self.start_at - time.time()
            if left <= 0:
                return True
            self._pump(min(left, self.poll))
        return False

    # --- the final read ---------------------------------------------------------------------------

    def _final_read(self) -> FinalRecord | None:
        """Quiesce, then snapshots until the state settles; the ``final`` record, or None if interrupted."""
        until = quiesce_until(self.tally.last_abandoned, self.timeout)
        began = self.clock()
        if until is not None and not self._idle(until):
            return None
        if until is None:  # nothing was abandoned: nothing to wait for
            quiesce = {"waited": 0.0, "until": began}
        else:
            quiesce = {"waited": max(0.0, self.clock() - began), "until": max(began, until)}
        entities, sample = plan_final_read(self.scan, self.bound_ids or id_sets(), self.final_sample,
                                           self.sample_seed)
        alive = sorted(self._alive())
        shares = dict(zip(alive, split_concurrency(self.concurrency, len(alive)))) if alive else {}
        named = sort_ids(self.scan.literals["order"])  # orders a request named by id: batch_init ones
        if self.scan.ranges["order"] > 0 and named:
            # A batch_init order's lines and user are the shop's choice: read the orders the history
            # touched first, so that the items and users they name (what a checkout of them touched)
            # are read back too. The sampled orders' are not: they had no request.
            if self.progress:
                self._final_bar_for(len(named))
                self._final_bar.set_description("final read: orders first")
            pre = self._snapshot(_slices({"order": named}, alive), shares)
            if pre is None:
                return None
            for kind, ids in referenced_ids(pre[0]["orders"]).items():
                entities[kind] = sort_ids(set(entities[kind]) | ids)
        total = entity_count(entities)
        settle, why = settle_plan(self.settle, self.tally.indeterminate)
        self.writer.write_event_record(Event(self.clock(), EVENT_FINAL_READ,
                                             entities={k: len(v) for k, v in entities.items()},
                                             quiesce=quiesce, settle=settle, why=why, sample=sample))
        slices = _slices(entities, alive)
        started = self.clock()
        snapshots: list[tuple[float, float]] = []
        state = missing = None
        settled = False
        while True:
            # The settle window opens when the first snapshot ends (however long that read took).
            window = snapshots[0][1] if snapshots else started
            at = next_snapshot_at(window, settle, snapshots[-1][1] if snapshots else started, len(snapshots))
            if at is None or (why is None and snapshots):
                break
            if not self._idle(at):
                return None
            if self.progress:
                self._final_bar_for(total)
                self._final_bar.set_description(f"final read {len(snapshots) + 1}" if snapshots else "final read")
            a = self.clock()
            snap = self._snapshot(slices, shares)
            if snap is None:
                return None
            snapshots.append((a, self.clock()))
            same = state is not None and snap[0] == state and snap[1] == missing
            state, missing = snap[0], snap[1]
            if same:
                settled = True
                break
            if not answered_any(state, missing):
                break  # not one read answered (the target is gone): another snapshot has nothing to compare
        assert state is not None and missing is not None
        stopped = stopped_of(missing)
        self.final_read_info = FinalReadInfo(self.clock() - began, quiesce["waited"], len(snapshots), total,
                                             _sample_total(sample), ReadStopped.of(stopped))
        return FinalRecord.from_record({  # the snapshots as parsed from the shop's answers (the HTTP edge)
            **state, "missing": missing, "bound_not_found": bound_not_found(missing, self.bound_ids),
            "settle": settle_record(settle, why, settled, snapshots), "quiesce": quiesce, "read_at": snapshots[-1][0],
            "stopped": stopped})

    def _snapshot(self, slices: dict[int, dict], shares: dict[int, int]) -> tuple[dict, dict] | None:
        """One snapshot read by the workers, each its slice; None when interrupted."""
        self._final_progress = [0] * self.n
        for i, part in slices.items():
            self._send(i, ReadFinal(part, shares[i]))
        got = self._collect(FinalDone, set(slices))
        for i, part in slices.items():  # a worker without a slice read none
            self._final_progress[i] = sum(map(len, part.values()))
        self._update_final_bar()
        if self.interrupted or len(got) < len(slices) or any(m.cancelled for m in got.values()):
            return None
        state: dict[str, dict] = {"items": {}, "users": {}, "orders": {}}
        missing: dict[str, dict] = {}
        for msg in got.values():
            for section, part in msg.state.items():
                state[section].update(part)
            for kind, part in msg.missing.items():
                missing.setdefault(kind, {}).update(part)
            self.final_reads += msg.reads
        return state, missing

    def _idle(self, until: float) -> bool:
        """Wait until ``until`` (run clock), handling worker messages; False when a signal came first."""
        while True:
            if self.interrupted:
                return False
            left = until - self.clock()
            if left <= 0:
                return True
            self._pump(min(left, self.poll))

    # --- messages ---------------------------------------------------------------------------------

    def _alive(self) -> set[int]:
        return set(range(self.n)) - self._gone

    def _send(self, i: int, msg: Any) -> None:
        if i in self._gone:
            return
        try:
            self._conns[i].send(msg)
        except OSError:
            self._gone.add(i)

    def _send_all(self, msg: Any) -> None:
        for i in range(self.n):
            self._send(i, msg)

    def _collect(self, kind: type, workers: set[int], deadline: float | None = None) -> dict[int, Any]:
        """Handle messages until each of ``workers`` sent one of ``kind``; {worker: that message}.

        A signal sends :class:`Stop` to every worker; workers that then stay silent for
        :data:`STOP_WAIT` seconds (or past ``deadline``) are given up on (left out of the result).
        """
        got: dict[int, Any] = {}
        pending = set(workers) - self._gone
        called = time.monotonic()
        while pending:
            if self.signals >= 2:
                raise _HardStop()
            if self.interrupted and self._stop_sent_at is None:
                self._stop_sent_at = time.monotonic()
                self._send_all(Stop())
            now = time.monotonic()
            ends = [e for e in (deadline, None if self._stop_sent_at is None else max(self._stop_sent_at, called) + STOP_WAIT)
                    if e is not None]
            if ends and now > min(ends):
                break
            for i, msg in self._pump(min([self.poll, *(e - now for e in ends)])):
                if isinstance(msg, kind) and i in pending:
                    got[i] = msg
                    pending.discard(i)
            pending -= self._gone
        if self.signals >= 2:
            raise _HardStop()
        return got

    def _pump(self, timeout: float) -> list[tuple[int, Any]]:
        """Receive what the workers sent within ``timeout``; handle data records; return [(worker, message)].

        One selector over the workers' pipes for the whole run (``multiprocessing.connection.wait``
        builds and closes one per call: most of an idle coordinator's CPU at 20 calls a second).
        """
        if self.faults is not None:
            self.faults.drain(self.writer.write_event)
        sel = self._selector()
        if not sel.get_map():
            time.sleep(timeout)
            return []
        out = []
        for key, _ in sel.select(max(timeout, 0.0)):
            i = key.data
            if i is None:  # a signal's wake-up: the callers check the flags
                self._drain_wake()
                continue
            if i in self._gone:  # said bye earlier in this batch
                continue
            c = self._conns[i]
            try:
                msg = c.recv()
            except (EOFError, OSError):
                self._gone.add(i)
                if self.interrupted:
                    continue
                raise ReplayError(f"replay worker {i} died (exit code {self._procs[i].exitcode})") from None
            self._handle(i, msg)
            out.append((i, msg))
        return out

    def _selector(self) -> selectors.BaseSelector:
        """The selector over the pipes of the workers still alive."""
        if self._sel is None:
            self._sel = selectors.DefaultSelector()
            # Made here, after the fork: the workers hold no copy of it.
            self._wake = os.pipe()
            for fd in self._wake:
                os.set_blocking(fd, False)
            self._sel.register(self._wake[0], selectors.EVENT_READ, None)
        alive = self._alive()
        for i in alive - self._watched:
            self._sel.register(self._conns[i].fileno(), selectors.EVENT_READ, i)
        for i in self._watched - alive:  # gone (bye, closed pipe, given up on): an EOF would wake every wait
            self._forget(i)
        self._watched = alive
        return self._sel

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake[0], 64):  # type: ignore[index]
                pass
        except OSError:  # empty
            pass

    def _forget(self, i: int) -> None:
        """Stop watching worker ``i``'s pipe."""
        try:
            self._sel.unregister(self._conns[i].fileno())  # type: ignore[union-attr]
        except (KeyError, ValueError, OSError):
            pass

    def _handle(self, i: int, msg: Any) -> None:
        if isinstance(msg, Chunk):
            cols = msg.columns()
            self.writer.write_packed_requests(cols, msg.record)
            self.tally.add_chunk(cols)
        elif isinstance(msg, Bindings):
            self.writer.write_packed_bindings(msg.record)
        elif isinstance(msg, Progress):
            self._progress[i] = (msg.done, msg.errors)
            self._update_bar()
        elif isinstance(msg, FinalProgress):
            self._final_progress[i] = msg.read
            self._update_final_bar()
        elif isinstance(msg, Bye):
            self._progress[i] = (msg.done, msg.errors)
            self.conn_waits += msg.conn_waits
            self._gone.add(i)
        elif isinstance(msg, Failed):
            raise ReplayError(f"replay worker {i} failed: {msg.text}")

    def _close_workers(self) -> None:
        """Tell every worker to end; take its last rows until it says bye — not after a signal.

        A stopped worker flushed its rows and bindings before its :class:`PhaseDone`; nothing is
        left to wait for, and a signal is answered within a second.
        """
        self._send_all(End())
        if not self.interrupted:
            self._collect(Bye, self._alive())
        self._update_bar()

    def _reap(self) -> None:
        stopped = self.interrupted
        if self._sel is not None:
            self._sel.close()
            self._sel = None
        if self._wake is not None:
            wake, self._wake = self._wake, None
            for fd in wake:
                os.close(fd)
        for c in self._conns:
            c.close()
        for p in self._procs:
            p.join(timeout=0.2 if stopped else 5)
            if p.is_alive():
                p.kill()
                p.join(timeout=2)

    # --- progress ---------------------------------------------------------------------------------

    def _start_bars(self) -> None:
        if not self.progress:
            return
        from tqdm import tqdm

        self._bar = tqdm(total=self.total_requests, unit="req", file=sys.stderr, dynamic_ncols=True,
                         smoothing=0.1, desc="replay",
                         bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]")

    def _update_bar(self) -> None:
        bar = self._bar
        done, errors = sum(d for d, _ in self._progress), sum(e for _, e in self._progress)
        if bar is not None and done > bar.n:
            bar.set_postfix_str(f"errors={errors}", refresh=False)
            bar.update(done - bar.n)

    def _final_bar_for(self, total: int) -> None:
        if self._final_bar is None:
            from tqdm import tqdm

            self._final_bar = tqdm(total=total, unit="entity", file=sys.stderr, dynamic_ncols=True,
                                   desc="final read")
        else:
            self._final_bar.reset(total=total)

    def _update_final_bar(self) -> None:
        bar = self._final_bar
        read = sum(self._final_progress)
        if bar is not None and read > bar.n:
            bar.update(read - bar.n)

