"""Framed msgpack streams: a header, records, a trailer — shared by both file kinds, with checksums.

Every wdm-replay file is a stream of msgpack objects whose first object is a map carrying
``format`` and ``version``. Then come records (maps) and, last, a trailer map whose ``trailer`` key
names the format: the trailer is what tells a complete file from a truncated one (msgpack's
``Unpacker`` stops silently at a cut-off object).

Version 1 files are exactly that: header map, records, trailer, nothing checked. Version 2 files
(see ``docs/formats.md``) start with a fixed prologue ``{format, version}`` and put everything else
— the header, the records, the trailer — into **frames**: a frame is the msgpack array
``[n, crc, head_crc, payload]`` written with fixed-width integers (21 bytes before the payload):

    0x94 | 0xce n (u32) | 0xce crc32(payload) (u32) | 0xce crc32(bytes 0..10) (u32) | 0xc6 n (u32) | payload

``payload`` is ``n`` bytes of whole packed records. The header checksum covers the frame's length,
so a corrupt length is told from a cut-off file: a flipped byte anywhere is an error naming the
frame's byte offset, and a file cut short ends at its last whole frame.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Callable, Generator, Iterable, Iterator

import msgpack

from ..errors import WdmError


class FormatError(WdmError):
    """A file that is missing, of another kind or version, truncated or corrupt."""


FRAME_HEAD = 21  # bytes before a frame's payload
_HEAD = struct.Struct(">BBIBIBIBI")
_HEAD_CHECKED = 11  # the array marker, the length and the payload checksum are under head_crc
_MARKERS = (0x94, 0xCE, 0xCE, 0xCE, 0xC6)
MAX_FRAME = 2**32 - 1
_ONE_RECORD_FRAME = 1 << 20  # frames this large are tried as one record (results chunks are)


def packer() -> msgpack.Packer:
    """The packer every writer uses (binary-safe, deterministic for equal inputs)."""
    return msgpack.Packer(use_bin_type=True)


def prologue(fmt: str, version: int) -> bytes:
    """The first bytes of a framed (version ≥ 2) file: the map ``{format, version}``, nothing else."""
    return packer().pack({"format": fmt, "version": version})


def frame_head(payload: bytes | bytearray | memoryview) -> bytes:
    """The 21 bytes that go before ``payload`` in a frame (its length and checksums)."""
    n = len(payload)
    if n > MAX_FRAME:
        raise ValueError(f"frame of {n} bytes is larger than {MAX_FRAME}")
    first = struct.pack(">BBIBI", 0x94, 0xCE, n, 0xCE, zlib.crc32(payload))
    return first + struct.pack(">BIBI", 0xCE, zlib.crc32(first), 0xC6, n)


def write_frame(f: BinaryIO, payload: bytes | bytearray) -> int:
    """Write one frame holding ``payload`` (whole packed records) to ``f``; return the bytes written."""
    f.write(frame_head(payload))
    f.write(payload)
    return FRAME_HEAD + len(payload)


def part_path(path: str | Path) -> str:
    """The temporary name a file is written under until it is complete (``RUN.wdmr.part``)."""
    return f"{path}.part"


def remove_quietly(*paths: str | Path) -> None:
    """Delete each of ``paths`` that can be deleted: a writer's temporary files, on its way out."""
    for p in paths:
        try:
            os.unlink(p)
        except OSError:
            pass


def write_text_atomically(path: str | Path, text: str) -> None:
    """``text`` (UTF-8) to ``path`` through ``PATH.part`` renamed over it: a crash, a Ctrl-C or a full disk
    never leaves half a file, nor an earlier file half overwritten (the temporary file is removed).

    A path that names something other than a regular file (``/dev/stdout``, a pipe) is written
    directly; a symbolic link's target is replaced, not the link. OSError as raised.
    """
    try:
        special = not stat.S_ISREG(os.stat(path).st_mode)  # follows links: /dev/stdout is a pipe or a tty
    except FileNotFoundError:
        special = False
    if special:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return
    real = os.path.realpath(path)
    tmp = part_path(real)
    try:
        Path(tmp).write_text(text, encoding="utf-8")
        os.replace(tmp, real)
    except BaseException:
        remove_quietly(tmp)
        raise


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return os.path.realpath(a) == os.path.realpath(b)


def refuse_inputs(output: str | Path, inputs: Iterable[str | Path]) -> None:
    """Raise :class:`FormatError` when ``output`` — or its ``.part`` name — is the same file as an input.

    Called by the writers before they touch anything, so ``replay T.wdmt -o T.wdmt`` leaves the
    trace as it was.
    """
    out = str(output)
    for inp in inputs:
        for cand in (out, part_path(out)):
            if _same_file(cand, str(inp)):
                what = "" if cand == out else f" (its temporary file {cand})"
                raise FormatError(f"{out}: the output{what} is the input {inp}; refusing to overwrite it, "
                                  f"choose another output file")


def refuse_unwritable(output: str | Path) -> None:
    """Raise :class:`FormatError` when no file can be written at ``output``: an empty name, a directory
    that does not exist, is not a directory, or refuses a new file.

    Called before work whose result only ``output`` keeps (a capture, a shrink, a capacity search,
    an A/B session): a path it cannot write then fails in a second, not after the work is done.
    Probes the directory with a temporary file, removed at once; ``output`` itself is not touched.
    """
    out = str(output)
    if not out:
        raise FormatError("the output file name is empty")
    try:
        fd, probe = tempfile.mkstemp(prefix=".wdm-probe-", dir=os.path.dirname(out) or ".")
    except OSError as e:
        raise FormatError(f"{out}: cannot write here: {e.strerror}") from None
    os.close(fd)
    os.unlink(probe)


def _unpacker(f: BinaryIO | None = None, limit: int = 512 * 1024 * 1024, use_list: bool = True) -> msgpack.Unpacker:
    return msgpack.Unpacker(f, raw=False, use_list=use_list, strict_map_key=False, max_buffer_size=limit)


_DECODE_ERRORS = (msgpack.UnpackException, ValueError, TypeError)
# What a fast record decoder (RecordReader.decode_fast) raises for a record it does not take: msgspec's
# errors are ValueErrors (DecodeError, ValidationError); the general path then decides.
FAST_REFUSED = (ValueError,)


class RecordReader:
    """Streams one file: validates the header, yields records, checks frames and the trailer.

    ``fmt`` is the expected ``format`` value and ``version`` the newest version this reader knows
    (older ones are read too). Iterating yields each record (a dict) between header and trailer;
    after iteration :attr:`trailer` holds the trailer map. Every problem is a :class:`FormatError`
    whose message names the file (and the byte offset where it applies).

    With ``partial_ok`` a file that ends without a trailer (a killed writer) is not an error:
    iteration stops after the last whole record (version 1) or frame (version 2),
    :attr:`trailer` stays None and :attr:`truncated_at` holds the byte offset where it ended. A
    corrupt byte is an error either way, and the header must always be whole.

    Setting :attr:`use_list` to False before iterating decodes the records' arrays of a version-2
    file as tuples (msgpack's ``use_list=False``: one allocation instead of two per array, and
    ``tuple()`` of one is free); the header and version-1 files are always read with lists.

    Setting :attr:`decode_fast` (with ``use_list`` False) to a decoder of one packed record —
    raising :data:`FAST_REFUSED` for any record it does not take, a trailer always among them — has
    the records of a version-2 file's frames decoded by it: msgpack only finds where each record
    ends (``skip``), and a frame from its first refused record on is read as without it, so what it
    refuses (a trailer, any record of another shape, a corrupt one) is decided and reported exactly
    as before. Setting :attr:`skim_fast` too — a decoder of one packed record into ``(key value,
    count)``, refusing likewise — does the same for :meth:`iter_skipping`: each record is skimmed,
    and only one whose key value passes ``keep`` is decoded by ``decode_fast``. Setting
    :attr:`frame_fast` as well — a decoder of a whole frame's payload (and the filter of
    :meth:`iter_skipping`, or None) into what these would yield for its records, refusing likewise
    any frame it does not take whole — has each frame tried by it first.
    """

    def __init__(self, path: str | Path, fmt: str, version: int, *, partial_ok: bool = False):
        self.path = str(path)
        self.fmt = fmt
        self.partial_ok = partial_ok
        try:
            self._f = open(self.path, "rb")
        except FileNotFoundError:
            part = part_path(self.path)
            if os.path.isfile(part):  # a killed writer leaves only its temporary file
                raise FormatError(f"{self.path}: no such file, but {part} exists (a run that was killed "
                                  f"before it finished): pass that file to read what it recorded") from None
            raise FormatError(f"{self.path}: no such file") from None
        except IsADirectoryError:
            raise FormatError(f"{self.path}: is a directory, not a {fmt} file") from None
        except OSError as e:
            raise FormatError(f"{self.path}: cannot open: {e.strerror}") from None
        self.size = os.fstat(self._f.fileno()).st_size
        self._u = _unpacker(self._f)
        self._pos = 0  # version ≥ 2: offset of the next frame
        self.trailer: dict | None = None
        self.use_list = True  # False: records' arrays as tuples (version 2)
        self.decode_fast: Callable[[memoryview], Any] | None = None  # see the class docstring
        self.skim_fast: Callable[[memoryview], tuple[Any, int]] | None = None  # see the class docstring
        self.frame_fast: Callable[[bytes, Callable[[Any], bool] | None], Iterable] | None = None  # likewise
        self.truncated_at: int | None = None
        self.version = 0
        try:
            self.header = self._read_header(version)
        except BaseException:
            self._f.close()
            raise

    def close(self) -> None:
        """Close the underlying file."""
        self._f.close()

    def __enter__(self) -> "RecordReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- header --------------------------------------------------------------------------------

    def _read_header(self, version: int) -> dict:
        if self.size == 0:
            raise FormatError(f"{self.path}: empty file, not a {self.fmt} file")
        try:
            h = self._u.unpack()
        except msgpack.OutOfData:
            raise FormatError(f"{self.path}: truncated at byte {self.size}: header incomplete") from None
        except _DECODE_ERRORS:
            raise FormatError(f"{self.path}: not a {self.fmt} file (unreadable header)") from None
        got = h.get("format") if isinstance(h, dict) else None  # the raw first map: what kind of file is this?
        if got != self.fmt:
            what = f"a {got!r} file" if isinstance(got, str) else "not msgpack of this kind"
            raise FormatError(f"{self.path}: not a {self.fmt} file ({what})")
        v = h.get("version")
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise FormatError(f"{self.path}: {self.fmt} header has no valid version ({v!r})")
        if v > version:
            raise FormatError(
                f"{self.path}: {self.fmt} version {v} is newer than this wdm-replay reads (up to {version}); upgrade wdm-replay"
            )
        self.version = v
        if v == 1:
            return h
        # Framed: the prologue is exactly {format, version}; the header is the first frame's record.
        self._pos = self._u.tell()
        if len(h) != 2 or os.pread(self._f.fileno(), self._pos, 0) != prologue(self.fmt, v):
            raise FormatError(f"{self.path}: corrupt at byte 0: not the {self.fmt} {v} prologue")
        self._u = None  # frames are read from the file directly
        self._f.seek(self._pos)
        fr = self._frame()
        if fr is None or fr[0] is None:
            raise FormatError(f"{self.path}: truncated at byte {self._pos}: header incomplete")
        off, payload = fr
        u = _unpacker(limit=max(len(payload), 1))
        u.feed(payload)
        try:
            hdr = u.unpack()
        except (msgpack.OutOfData, *_DECODE_ERRORS):
            hdr = None
        if (not isinstance(hdr, dict) or hdr.get("format") != self.fmt or hdr.get("version") != v
                or u.tell() != len(payload)):
            raise FormatError(f"{self.path}: corrupt at byte {off}: the header frame holds no {self.fmt} {v} header")
        return hdr

    # --- frames (version ≥ 2) -------------------------------------------------------------------

    def _frame(self) -> tuple[int | None, bytes] | None:
        """The next frame as (offset, payload); None at end of file; (None, b"") when cut short."""
        off = self._pos
        head = self._f.read(FRAME_HEAD)
        if not head:
            return None
        if len(head) < FRAME_HEAD:
            return None, b""
        m0, m1, n, m2, crc, m3, hcrc, m4, n2 = _HEAD.unpack(head)
        if (m0, m1, m2, m3, m4) != _MARKERS:
            raise FormatError(f"{self.path}: corrupt at byte {off}: not a frame (bad marker bytes)")
        if zlib.crc32(head[:_HEAD_CHECKED]) != hcrc or n != n2:
            raise FormatError(f"{self.path}: corrupt at byte {off}: checksum mismatch in the frame header")
        payload = self._f.read(n)
        if len(payload) < n:
            return None, b""
        if zlib.crc32(payload) != crc:
            raise FormatError(f"{self.path}: corrupt at byte {off}: checksum mismatch (frame of {n} bytes)")
        self._pos = off + FRAME_HEAD + n
        return off, payload

    # --- records -------------------------------------------------------------------------------

    def _truncated(self, offset: int) -> FormatError:
        return FormatError(
            f"{self.path}: truncated at byte {offset} of {self.size}: no trailer (file cut short or still being written)"
        )

    def _ended(self, offset: int) -> None:
        """The file ended at ``offset`` without a trailer: fine with ``partial_ok``, else an error."""
        if not self.partial_ok:
            raise self._truncated(offset)
        self.truncated_at = offset

    def _decode(self, u: msgpack.Unpacker, offset: int, skip: tuple | None) -> dict | int:
        """One record from ``u`` (which starts at file offset ``offset``); an int for a skipped one."""
        if skip is None:
            rec = u.unpack()
            if not isinstance(rec, dict):
                raise FormatError(f"{self.path}: corrupt at byte {offset}: expected a map, got {type(rec).__name__}")
            return rec
        key, keep, count = skip
        start = u.tell()
        rec: dict | None = {}
        skipped = 0
        try:
            n = u.read_map_header()
        except msgpack.OutOfData:
            raise
        except _DECODE_ERRORS:
            if u.tell() == start:
                raise FormatError(f"{self.path}: corrupt at byte {offset}: expected a map") from None
            raise
        for _ in range(n):
            k = u.unpack()
            if rec is None:  # skipping: only the length of the counted array is read
                if k == count:
                    skipped = u.read_array_header()
                    for _ in range(skipped):
                        u.skip()
                else:
                    u.skip()
                continue
            v = u.unpack()
            if k == key and v.__class__ is int and not keep(v):
                skipped = len(rec[count]) if isinstance(rec.get(count), (list, tuple)) else 0
                rec = None
                continue
            rec[k] = v
        return skipped if rec is None else rec

    def _is_trailer(self, rec: dict | int, offset: int) -> bool:
        if rec.__class__ is int or "trailer" not in rec:  # type: ignore[operator]
            return False
        if rec["trailer"] != self.fmt:  # type: ignore[index]
            raise FormatError(f"{self.path}: corrupt at byte {offset}: trailer of another format")
        return True

    def _records_v1(self, skip: tuple | None) -> Iterator[dict | int]:
        u = self._u
        while True:
            offset = u.tell()
            try:
                rec = self._decode(u, offset, skip)
            except msgpack.OutOfData:
                self._ended(offset)
                return
            except _DECODE_ERRORS as e:
                # msgpack raises some errors (e.g. a reserved type byte) with an empty message.
                why = str(e) or f"invalid msgpack ({type(e).__name__})"
                raise FormatError(f"{self.path}: corrupt at byte {offset}: {why}") from None
            if self._is_trailer(rec, offset):
                end = u.tell()
                if end != self.size:
                    raise FormatError(f"{self.path}: corrupt at byte {end}: data after the trailer")
                self.trailer = rec  # type: ignore[assignment]
                return
            yield rec

    def _records_v2(self, skip: tuple | None) -> Iterator[dict | int]:
        while True:
            fr = self._frame()
            if fr is None or fr[0] is None:
                self._ended(self._pos)
                return
            off, payload = fr
            base = off + FRAME_HEAD
            end = len(payload)
            if skip is None and end >= _ONE_RECORD_FRAME:
                # A results chunk (a frame of its own): decoded in place, without copying it into
                # an Unpacker's buffer first. More than one record falls through to the general path.
                try:
                    rec = msgpack.unpackb(payload, raw=False, strict_map_key=False, use_list=self.use_list)
                except msgpack.ExtraData:
                    pass
                except (msgpack.OutOfData, *_DECODE_ERRORS) as e:
                    why = str(e) or f"invalid msgpack ({type(e).__name__})"
                    raise FormatError(f"{self.path}: corrupt at byte {base}: {why}") from None
                else:
                    if rec.__class__ is not dict:
                        raise FormatError(f"{self.path}: corrupt at byte {base}: expected a map, got {type(rec).__name__}")
                    if "trailer" in rec:
                        self._take_trailer(rec, base, True)
                        return
                    yield rec
                    continue
            if self.frame_fast is not None:
                try:
                    recs = self.frame_fast(payload, None if skip is None else skip[1])
                except FAST_REFUSED:  # read record by record, as without it
                    pass
                else:
                    yield from recs
                    continue
            if self.decode_fast is not None and (skip is None or self.skim_fast is not None):
                start = yield from self._fast_records(payload, None if skip is None else skip[1])
                if start == end:
                    continue
                # The rest of the frame, from the record the fast decoder refused, as without it.
                payload, base, end = payload[start:], base + start, end - start
            u = _unpacker(limit=max(end, 1), use_list=self.use_list)
            u.feed(payload)
            offset = base
            try:
                if skip is None:  # the hot path: msgpack's own iteration over the frame's records
                    for rec in u:
                        if rec.__class__ is not dict:
                            raise FormatError(f"{self.path}: corrupt at byte {offset}: expected a map, "
                                              f"got {type(rec).__name__}")
                        if "trailer" in rec:
                            self._take_trailer(rec, offset, u.tell() == end)
                            return
                        yield rec
                        offset = base + u.tell()
                    if u.tell() != end:
                        raise msgpack.OutOfData("a record cut short inside its frame")
                else:
                    while u.tell() < end:
                        offset = base + u.tell()
                        rec = self._decode(u, offset, skip)
                        if self._is_trailer(rec, offset):
                            self._take_trailer(rec, offset, u.tell() == end)  # type: ignore[arg-type]
                            return
                        yield rec
            except (msgpack.OutOfData, *_DECODE_ERRORS) as e:
                why = str(e) or f"invalid msgpack ({type(e).__name__})"
                raise FormatError(f"{self.path}: corrupt at byte {offset}: {why}") from None

    def _fast_records(self, payload: bytes, keep: Callable[[Any], bool] | None = None) -> Generator[Any, None, int]:
        """The frame's records decoded by :attr:`decode_fast`, up to the first it refuses; return
        where that one starts (``len(payload)`` when it took them all).

        msgpack's ``skip`` finds each record's end without building it; a record it cannot pass
        (cut short, corrupt) is left to the general loop too, which raises what it always raised.
        With ``keep`` (for :meth:`iter_skipping`), each record is first skimmed by
        :attr:`skim_fast`: one whose key value fails ``keep`` gives the count it read, the others
        are decoded by :attr:`decode_fast`.
        """
        fast, skim = self.decode_fast, self.skim_fast
        assert fast is not None and (keep is None or skim is not None)
        end = len(payload)
        u = _unpacker(limit=max(end, 1), use_list=False)
        u.feed(payload)
        view = memoryview(payload)
        start = 0
        while start < end:
            try:
                u.skip()
            except (msgpack.OutOfData, *_DECODE_ERRORS):
                return start
            stop = u.tell()
            rec = view[start:stop]
            try:
                if keep is None:
                    out = fast(rec)  # a trailer is refused: the general loop checks what follows it
                else:
                    key, out = skim(rec)  # type: ignore[misc]
                    if keep(key):
                        out = fast(rec)
            except FAST_REFUSED:
                return start
            yield out
            start = stop
        return end

    def _take_trailer(self, rec: dict, offset: int, frame_done: bool) -> None:
        """Keep the trailer read at ``offset``: it must be the file's last record."""
        if rec["trailer"] != self.fmt:
            raise FormatError(f"{self.path}: corrupt at byte {offset}: trailer of another format")
        if not frame_done or self._f.read(1):
            raise FormatError(f"{self.path}: corrupt at byte {offset}: data after the trailer")
        self.trailer = rec

    def _records(self, skip: tuple | None) -> Iterator[dict | int]:
        return self._records_v1(skip) if self.version == 1 else self._records_v2(skip)

    def __iter__(self) -> Iterator[dict]:
        return self._records(None)  # type: ignore[return-value]

    def iter_skipping(self, key: str, keep: Callable[[Any], bool], count: str) -> Iterator[dict | int]:
        """Records as iteration yields them, except that a record whose ``key`` value fails ``keep``
        is skipped without being built: in its place comes the length of its ``count`` array (an int).
        ``keep`` judges int values only: a record whose ``key`` holds anything else is yielded whole,
        for the caller to refuse (a session id of another type is no other worker's to skip).

        What lets a replay worker pass over the other workers' sessions at a fraction of their
        decoding cost; the file is read and checked (checksums, framing, trailer) as by plain
        iteration.
        """
        return self._records((key, keep, count))


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, as ``"sha256:<hex>"`` — the identity of a trace."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError as e:
        raise FormatError(f"{path}: cannot read: {e.strerror}") from None
    return "sha256:" + h.hexdigest()
