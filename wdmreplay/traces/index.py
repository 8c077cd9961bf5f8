"""What a replay needs to know of a whole trace before it sends: counted once, by the trace's writer.

A replay checks the trace's operations against the dialect, hands its workers the symbols shared
across sessions, and (for the final read) the literal entity ids and ``batch_init`` ranges its
requests touch. :class:`TraceIndex` collects those facts session by session — the one definition,
used by :class:`~.trace.TraceWriter` (which stores them in the trailer as ``index``) and by the
replayer's scan of traces written before that (``wdmreplay.replayer.final.scan_trace``).
:func:`read_index` reads a trace's stored index without decoding its sessions: it checks every
frame's sums on the way to the last frame, the trailer, and decodes only that.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import msgpack

from ..operations import ENTITY_KINDS, OPERATIONS
from .stream import FRAME_HEAD, prologue

# Which entity ranges a batch_init operation creates or relies on: (kind, index of the count arg).
BATCH_RANGES: dict[str, tuple[tuple[str, int], ...]] = {
    "batch_init_stock": (("item", 0),),
    "batch_init_users": (("user", 0),),
    "batch_init_orders": (("order", 0), ("item", 1), ("user", 2)),
}

INDEX_KEY = "index"  # the trailer key holding the index (traces of wdm-replay with this module)

_HEAD = struct.Struct(">BBIBIBIBI")
_MARKERS = (0x94, 0xCE, 0xCE, 0xCE, 0xC6)


class TraceIndex:
    """Accumulates, session by session: operations used, shared symbols, literal ids, batch ranges, counts.

    ``literals`` (the ids a request names literally) are kept only with ``final_read``. An
    operation the API does not know is recorded in ``unknown`` (name → first session using it)
    and contributes nothing else.
    """

    __slots__ = ("ops", "shared", "literals", "ranges", "sessions", "requests", "kept", "unknown", "final_read",
                 "_per_op")

    def __init__(self, final_read: bool = True) -> None:
        self.ops: set[str] = set()
        self.shared: set[str] = set()
        self.literals: dict[str, set[str]] = {k: set() for k in ENTITY_KINDS}
        self.ranges: dict[str, int] = {k: 0 for k in ENTITY_KINDS}
        self.sessions = self.requests = self.kept = 0
        self.unknown: dict[str, int] = {}
        self.final_read = final_read
        # What the loop needs of each operation, looked up once per name instead of once per step:
        # (known, creates, (index, kind) of the entity-id parameters, batch ranges).
        self._per_op: dict[Any, tuple[bool, bool, tuple[tuple[int, str], ...], tuple[tuple[str, int], ...]]] = {}

    def add(self, sid: Any, steps: Any, mine: bool = True) -> None:
        """Account one session's steps; ``mine`` False: only its operations and symbols (another shard's)."""
        self.sessions += 1
        self.requests += len(steps)
        ops, shared, literals, ranges, per_op = self.ops, self.shared, self.literals, self.ranges, self._per_op
        final_read = self.final_read
        own: set[str] = set()  # symbols bound so far in this session (dropped with it)
        for st in steps:
            name = st["op"]
            info = per_op.get(name)
            if info is None:
                op = OPERATIONS.get(name)
                if op is None:
                    self.unknown.setdefault(name, sid)
                    info = per_op[name] = (False, False, (), ())
                else:
                    ops.add(name)
                    info = per_op[name] = (True, bool(op.creates),
                                           tuple((i, k) for i, k in enumerate(op.kinds) if k != "int"),
                                           BATCH_RANGES.get(name, ()))
            known, creates, id_params, batch = info
            if not known:
                continue
            args = st["args"]
            # Shared symbols are found over every session (another shard's session may use one
            # bound in ours only if the trace shards badly; then it is simply kept).
            for a in args:
                if a.__class__ is str and a[:1] == "$" and a not in own:
                    shared.add(a)
            if creates:
                b = st.get("bind")
                if b:
                    own.add(b)
            if not mine:
                continue
            self.kept += 1
            if final_read:
                n_args = len(args)
                for i, kind in id_params:
                    if i < n_args:
                        a = args[i]
                        if a is not None and not (isinstance(a, str) and a.startswith("$")):
                            literals[kind].add(str(a))
            for kind, i in batch:
                if i < len(args) and isinstance(args[i], int) and args[i] > ranges[kind]:
                    ranges[kind] = args[i]

    def record(self) -> dict:
        """The index as the trailer stores it (lists sorted, so equal traces give equal bytes)."""
        return {"ops": sorted(self.ops), "shared": sorted(self.shared),
                "literals": {k: sorted(v) for k, v in self.literals.items()},
                "ranges": dict(self.ranges), "unknown": sorted(self.unknown)}

    @classmethod
    def from_record(cls, rec: Any, sessions: int, requests: int) -> TraceIndex | None:
        """The index a trailer stored (with the trailer's counts), or None when ``rec`` is not one."""
        try:
            idx = cls(final_read=True)
            if rec.get("unknown") or not all(isinstance(x, str) for x in rec["ops"]):
                return None  # an unknown operation: the scan finds the session that names it
            idx.ops = set(rec["ops"])
            idx.shared = {str(x) for x in rec["shared"]}
            for kind in ENTITY_KINDS:
                idx.literals[kind] = {str(x) for x in rec["literals"][kind]}
                n = rec["ranges"][kind]
                if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                    return None
                idx.ranges[kind] = n
        except (AttributeError, KeyError, TypeError):
            return None
        if not (isinstance(sessions, int) and isinstance(requests, int)) or idx.ops - set(OPERATIONS):
            return None
        idx.sessions, idx.requests, idx.kept = sessions, requests, requests
        return idx


def read_index(path: str | Path, fmt: str, version: int) -> TraceIndex | None:
    """The index stored in a (framed, version ≥ 2) trace's trailer; None when it has none or cannot be read.

    Reads the file frame by frame and checks every frame's sums (as the session reader would: a
    corrupt trace is still refused before anything is sent) without decoding the sessions; only
    the last frame, the trailer, is decoded. None for a version-1 file, a trailer without
    ``index`` (traces written before it), or any irregularity: the caller then scans the sessions,
    which reports what is wrong.
    """
    try:
        f = open(path, "rb")
    except OSError:
        return None
    try:
        with f:
            pro = prologue(fmt, version)
            if f.read(len(pro)) != pro:
                return None
            payload = None
            crc32, read, unpack = zlib.crc32, f.read, _HEAD.unpack
            while head := read(FRAME_HEAD):
                if len(head) < FRAME_HEAD:
                    return None
                m0, m1, n, m2, crc, m3, hcrc, m4, n2 = unpack(head)
                if (m0, m1, m2, m3, m4) != _MARKERS or n != n2 or crc32(head[:11]) != hcrc:
                    return None
                payload = read(n)
                if len(payload) != n or crc32(payload) != crc:
                    return None
            if payload is None:
                return None
            trailer = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except (OSError, ValueError, msgpack.UnpackException):
        return None
    if not isinstance(trailer, dict) or trailer.get("trailer") != fmt or not isinstance(trailer.get(INDEX_KEY), dict):
        return None
    return TraceIndex.from_record(trailer[INDEX_KEY], trailer.get("sessions"), trailer.get("requests"))
