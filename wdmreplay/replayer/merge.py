"""Merging the results of ``replay --shard i/N`` runs into the results of one whole run.

Every shard of a trace replays the sessions with ``sid % N == i`` and reads back the entities its
own sessions bound (plus literal and batch_init ids it used). The merged file holds:

- every request row of every shard, its times moved onto one clock: the earliest shard's start
  (each shard's times are shifted by the difference of the wall-clock times at which the shards'
  schedules started — the ``wall`` of their first ``phase_start`` event; files without it fall
  back to the header's ``started``);
- the union of the bindings (a symbol bound to two different ids is refused);
- every event, shifted likewise and tagged with its ``shard``;
- one final state: the union of the shards' snapshots. An entity read by several shards (a literal
  or batch_init id) takes the snapshot of the shard whose final read started **last**, since it
  saw the most of the run; where snapshots disagree the merged header says which entities
  (``merged.disagreeing``), and whether every final read started after the last answer of every
  shard (``merged.reads_after_all_requests``). Missing entities are those no shard could read.
  A shard without a final read leaves the merged run without one (the run cannot be judged whole);
- a trailer that is complete only if every shard's was.

The header is the shards' common header with ``shard: None`` and ``merged`` recording the sources
and how far apart the shards started: ``start_spread`` is max − min of the shards' first-send wall
times (what ``replay --start-at`` aims to make small), ``zero_spread`` the same for the instants
their schedules started.
Refused, each with a one-line error: a file that is not a shard, shards of different traces,
dialects or builds (labels), mixed shard counts, a shard given twice or missing, an output that is
one of the inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import WdmError
from ..operations import ENTITY_KINDS
from ..traces import Results, ResultsWriter, load_results, refuse_inputs, results_header
from ..traces.records import FinalRecord, ReadStop, ResultsHeader
from ..traces.results import (COLUMNS, EVENT_PHASE_START, RESULTS_FORMAT, RESULTS_VERSION, is_fault_event,
                               send_window)
from ..traces.stream import RecordReader, packer
from .final import stopped_of

TIME_COLUMNS = ("intended", "sent", "done")
CHUNK_ROWS = 65536  # rows per written request chunk (bounded record size)


class MergeError(WdmError):
    """Shard results that cannot be merged (the message names the files and why)."""


@dataclass(frozen=True, slots=True)
class ShardSource:
    """One merged shard: its file, position, clock offset and how its run ended."""

    path: str
    index: int
    count: int
    started: float
    offset: float  # seconds added to this shard's times to put them on the merged clock
    requests: int
    complete: bool
    reason: str | None
    zero: float  # unix time at which the shard's schedule started (its clock's 0)
    first_send: float | None  # unix time of its first sent request (None: it sent nothing)
    start_at: float | None  # the --start-at it was given
    clock: dict | None  # its host's clock offset record, if known

    def as_dict(self) -> dict:
        """The header's ``merged.sources`` entry."""
        return {"path": self.path, "shard": f"{self.index}/{self.count}", "started": self.started,
                "offset": self.offset, "requests": self.requests, "complete": self.complete,
                "reason": self.reason, "zero": self.zero, "first_send": self.first_send,
                "start_at": self.start_at, "clock": self.clock}


@dataclass(frozen=True, slots=True)
class MergeSummary:
    """What :func:`merge_results` wrote."""

    path: str
    shards: int
    requests: int
    complete: bool
    has_final: bool
    disagreeing: int  # entities whose snapshots differ between the shards that read them
    start_spread: float | None = None  # max - min of the shards' first-send wall times (s)

    def line(self) -> str:
        """The one line ``merge`` prints."""
        state = "complete" if self.complete else "PARTIAL (a shard was incomplete)"
        final = "final state of every shard" if self.has_final else "NO final state (a shard had none)"
        extra = f"; {self.disagreeing} entities read differently by two shards" if self.disagreeing else ""
        if self.start_spread is not None:
            extra += f"; first sends {self.start_spread * 1e3:.1f} ms apart"
        return f"wrote {self.path}: {self.shards} shards, {self.requests:,} requests, {state}, {final}{extra}"


def parse_shard_field(value: Any, path: str) -> tuple[int, int]:
    """``(i, N)`` from a results header's ``shard`` (``"i/N"``); :class:`MergeError` if not a shard."""
    if not value:
        raise MergeError(f"{path}: not a shard (replayed without --shard); nothing to merge")
    try:
        i_text, n_text = str(value).split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise MergeError(f"{path}: unreadable shard field {value!r}") from None
    if not 0 <= i < n:
        raise MergeError(f"{path}: invalid shard {value!r}")
    return i, n


def _check_sources(loaded: list[Results]) -> list[ShardSource]:
    """The shards in index order, after refusing anything that is not one whole set of one run."""
    first = loaded[0]
    head0 = first.header_record
    seen: dict[int, str] = {}
    count = None
    for r in loaded:
        h = r.header_record
        i, n = parse_shard_field(h.shard, r.path)
        if h.trace.digest != head0.trace.digest:
            raise MergeError(f"{r.path} and {first.path} are results of different traces")
        for key, what in (("dialect", "dialects"), ("label", "builds (labels)")):
            if getattr(h, key) != getattr(head0, key):
                raise MergeError(f"{r.path} and {first.path} are of different {what}: "
                                 f"{getattr(h, key)!r} vs {getattr(head0, key)!r}")
        for key in ("ops", "columns"):
            if getattr(h, key) != getattr(head0, key):
                raise MergeError(f"{r.path} and {first.path} were written by incompatible versions ({key} differ)")
        if count is None:
            count = n
        elif n != count:
            raise MergeError(f"{r.path} is shard {i}/{n} but {first.path} is of {count} shards")
        if i in seen:
            raise MergeError(f"{r.path} and {seen[i]} are both shard {i}/{n}")
        seen[i] = r.path
    assert count is not None
    missing = [i for i in range(count) if i not in seen]
    if missing:
        raise MergeError(f"missing shard(s) {', '.join(f'{i}/{count}' for i in missing)} "
                         f"(given {len(seen)} of {count})")
    zeros = [schedule_zero(r) for r in loaded]
    if any(z is None for z in zeros):  # files written before the phase_start events carried wall times
        zeros = [float(r.header_record.started or 0.0) for r in loaded]
    t0 = min(zeros)  # type: ignore[type-var]
    out = []
    for r, zero in zip(loaded, zeros):
        h = r.header_record
        i, n = parse_shard_field(h.shard, r.path)
        started = float(h.started or 0.0)
        window = send_window(r.cols["sent"], r.cols["done"], r.cols["outcome"])
        out.append(ShardSource(r.path, i, n, started, zero - t0, r.n, r.complete, r.trailer_record.reason,
                               zero, None if window is None else zero + window[0], h.start_at, h.clock))
    return sorted(out, key=lambda s: s.index)


def schedule_zero(r: Results) -> float | None:
    """Unix time at which a run's clock read 0 (from its first ``phase_start`` event's ``wall``), or None."""
    for ev in r.event_records:
        if ev.kind == EVENT_PHASE_START and ev.wall is not None:
            return ev.wall - ev.at
    return None


def start_spread(sources: Sequence[ShardSource]) -> dict:
    """How far apart the shards started: ``start_spread`` (first sends) and ``zero_spread`` (schedules), in s."""
    firsts = [s.first_send for s in sources if s.first_send is not None]
    zeros = [s.zero for s in sources]
    return {"start_spread": max(firsts) - min(firsts) if firsts else None,
            "zero_spread": max(zeros) - min(zeros)}


def merge_final(finals: Sequence[FinalRecord | None], offsets: Sequence[float],
                        labels: Sequence[str]) -> tuple[FinalRecord | None, dict[str, list[str]]]:
    """The merged final record and, per section, the ids whose snapshots disagree between shards.

    The shard whose final read started last wins for an entity several shards read. ``None``
    when any shard has no final state. ``stopped`` says why a shard's circuit breaker stopped its
    read, counting only the entities it left unread that no other shard read back.
    """
    if any(f is None for f in finals):
        return None, {}
    fin: list[FinalRecord] = list(finals)  # type: ignore[arg-type]
    read_at = [offsets[k] + (f.read_at or 0.0) for k, f in enumerate(fin)]
    order = sorted(range(len(fin)), key=read_at.__getitem__)
    sections: dict[str, dict[str, Any]] = {}
    disagree: dict[str, list[str]] = {}
    missing: dict[str, dict[str, str]] = {}
    unread: dict[str, dict[str, str]] = {}  # the merged ``missing`` with each shard's own reason
    for kind in ENTITY_KINDS:
        state: dict[str, Any] = {}
        differ: set[str] = set()
        for k in order:
            for eid, snap in fin[k].section(kind).items():
                if eid in state and state[eid] != snap:
                    differ.add(eid)
                state[eid] = snap
        sections[kind] = state
        if differ:
            disagree[f"{kind}s"] = sorted(differ)
        lost: dict[str, str] = {}
        for k in order:
            for eid, why in fin[k].missing_of(kind).items():
                if eid not in state:
                    lost[eid] = f"shard {labels[k]}: {why}"
                    unread.setdefault(kind, {})[eid] = why
        if lost:
            missing[kind] = lost
    bound = None
    if all(f.bound_not_found is not None for f in fin):
        # ids a shard bound and found gone, unless another shard read them back (older shards: absent)
        gone = {kind: sorted({i for f in fin for i in f.bound_not_found_of(kind)} - set(sections[kind]))
                for kind in ENTITY_KINDS}
        bound = {k: tuple(v) for k, v in gone.items() if v}
    settles = [f.settling for f in fin]
    settle = None if all(s is None for s in settles) else {
        "requested": max(s.requested for s in settles if s),
        "settled": all(bool(s and s.settled) for s in settles),
        "shards": [{"shard": labels[k], **(dict(fin[k].settle) if fin[k].settle is not None else {"settled": None})}
                   for k in range(len(fin))],
    }
    shards = [{"shard": labels[k], "read_at": read_at[k]} for k in range(len(fin))]
    stop = stopped_of(unread)
    return FinalRecord(sections["item"], sections["user"], sections["order"], missing, bound, settle, None,
                       max(read_at), shards, stopped=None if stop is None else ReadStop.from_record(stop)), disagree


def _shifted(cols: dict[str, np.ndarray], offset: float) -> dict[str, np.ndarray]:
    if not offset:
        return cols
    return {name: (a + offset if name in TIME_COLUMNS else a) for name, a in cols.items()}


def _last_answer(r: Results, offset: float) -> float:
    done = r.cols["done"]
    done = done[~np.isnan(done)]
    return float(done.max()) + offset if len(done) else -math.inf


def merge_results(paths: Sequence[str | Path], out_path: str | Path) -> MergeSummary:
    """Merge the results files of every shard ``i/N`` of one replay into ``out_path``."""
    paths = [str(p) for p in paths]
    out_path = str(out_path)
    if not paths:
        raise MergeError("merge: no shard results given")
    refuse_inputs(out_path, paths)
    loaded = [load_results(p, with_args=True) for p in paths]
    sources = _check_sources(loaded)
    by_path = {r.path: r for r in loaded}
    shards = [by_path[s.path] for s in sources]
    labels = [f"{s.index}/{s.count}" for s in sources]

    bindings: dict[str, str] = {}
    for r, label in zip(shards, labels):
        for sym, ident in r.bindings.items():
            if bindings.get(sym, ident) != ident:
                raise MergeError(f"{r.path}: symbol {sym} is bound to {ident!r} here and to "
                                 f"{bindings[sym]!r} in another shard; these are not shards of one run")
            bindings[sym] = ident

    offsets = [s.offset for s in sources]
    finals = [r.final_record for r in shards]
    final, disagree = merge_final(finals, offsets, labels)
    last_answer = max(_last_answer(r, s.offset) for r, s in zip(shards, sources))
    first_read = (min(offsets[k] + (f.read_at or 0.0) for k, f in enumerate(finals))  # type: ignore[union-attr]
                  if final is not None else None)
    merged_info = {
        "shards": sources[0].count,
        "sources": [s.as_dict() for s in sources],
        "final": "union of the shards' snapshots; an entity read by several shards takes the latest read",
        "final_missing_from": [lab for f, lab in zip(finals, labels) if f is None],
        "disagreeing": {k: len(v) for k, v in disagree.items()},
        "disagreeing_ids": {k: v[:100] for k, v in disagree.items()},
        "reads_after_all_requests": None if first_read is None else bool(first_read >= last_answer),
        **start_spread(sources),
    }
    fresh = ResultsHeader.from_record(results_header())  # the format's fixed keys, as this version writes them
    base = shards[0].header_record.replace(
        format=fresh.format, version=fresh.version, ops=fresh.ops, outcomes=fresh.outcomes, expects=fresh.expects,
        columns=fresh.columns, shard=None, started=min(s.started for s in sources), merged=merged_info, clock=None,
        workers=sum(r.header_record.workers or 1 for r in shards))
    writer = ResultsWriter(out_path, base)
    complete = all(s.complete for s in sources)
    try:
        for r, s in zip(shards, sources):
            _write_rows(writer, r, s.offset)
        writer.write_bindings(bindings)
        events = []
        for r, s, label in zip(shards, sources, labels):
            for ev in r.event_records:
                end = ev.end + s.offset if is_fault_event(ev.kind) and ev.end is not None else ev.end
                events.append(ev.replace(at=ev.at + s.offset, end=end, shard=label))  # fault ends: the start's clock
        for ev in sorted(events, key=lambda e: e.at):
            writer.write_event_record(ev)
        if final is not None:
            writer.write_final(final)
    except BaseException:
        # A half-merged file must not pass for a run, nor replace the file already at out_path
        # (merge --force over an earlier merge): only the .part goes.
        writer.abort()
        raise
    reasons = [f"shard {lab}: {s.reason or 'incomplete'}" for s, lab in zip(sources, labels) if not s.complete]
    wall = max(s.offset + (r.trailer_record.wall or 0.0) for r, s in zip(shards, sources))
    writer.close(complete=complete, wall=wall, reason="; ".join(reasons) or None)
    return MergeSummary(out_path, len(sources), sum(s.requests for s in sources), complete,
                        final is not None, sum(len(v) for v in disagree.values()), merged_info["start_spread"])


def _write_rows(writer: ResultsWriter, r: Results, offset: float) -> None:
    """The shard's rows into the merged file, their times shifted by ``offset`` onto the merged clock."""
    records = _request_records(r)
    if records is None:  # a file of another layout (older columns): rewritten from the loaded rows
        _rewrite_rows(writer, r, offset)
        return
    pack = packer()
    for rec in records:
        cols = rec["cols"]
        if offset:
            cols = {**cols, **{name: (np.frombuffer(cols[name], "<f8") + offset).astype("<f8").tobytes()
                               for name in TIME_COLUMNS}}
        writer.write_packed_requests(cols, pack.pack({**rec, "cols": cols}))


def _request_records(r: Results) -> list[dict] | None:
    """The shard's ``requests`` records as written (args and arg columns still packed), or None when one
    is not of this version's column layout — copying those keeps every row without decoding it."""
    out, rows = [], 0
    with RecordReader(r.path, RESULTS_FORMAT, RESULTS_VERSION, partial_ok=True) as rd:
        for rec in rd:
            if rec.get("t") != "requests":
                continue
            cols, n = rec.get("cols"), rec.get("n")
            if not (isinstance(cols, dict) and isinstance(n, int) and set(cols) == _COLUMN_SET and all(
                    isinstance(cols[name], bytes) and len(cols[name]) == n * size for name, size in _COLUMN_SIZES)):
                return None
            out.append(rec)
            rows += n
    return out if rows == r.n else None


_COLUMN_SET = {name for name, _, _ in COLUMNS}
_COLUMN_SIZES = tuple((name, np.dtype(dtype).itemsize) for name, dtype, _ in COLUMNS)


def _rewrite_rows(writer: ResultsWriter, r: Results, offset: float) -> None:
    cols = _shifted(r.cols, offset)
    args = r.args or [None] * r.n
    errors = sorted(r.errors.items())
    e = 0
    for lo in range(0, r.n, CHUNK_ROWS):
        hi = min(lo + CHUNK_ROWS, r.n)
        chunk_errors = []
        while e < len(errors) and errors[e][0] < hi:
            chunk_errors.append((errors[e][0] - lo, errors[e][1]))
            e += 1
        writer.write_requests({name: a[lo:hi] for name, a in cols.items()}, list(args[lo:hi]), chunk_errors)
