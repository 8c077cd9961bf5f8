"""Framed msgpack streams: a header map, records, a trailer map — shared by both file kinds.

Every wdm-replay file is a stream of msgpack objects: first a header map carrying ``format`` and
``version``, then records (maps), last a trailer map whose ``trailer`` key names the format. The
trailer is what tells a complete file from a truncated one: msgpack's ``Unpacker`` stops silently
at a cut-off object, so a reader that has not seen the trailer at end of file reports truncation
with the byte offset, instead of returning a prefix as if it were the whole.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

import msgpack

from ..api import WdmError


class FormatError(WdmError):
    """A file that is missing, of another kind or version, truncated or corrupt."""


def packer() -> msgpack.Packer:
    """The packer every writer uses (binary-safe, deterministic for equal inputs)."""
    return msgpack.Packer(use_bin_type=True)


def _unpacker(f: BinaryIO) -> msgpack.Unpacker:
    return msgpack.Unpacker(
        f, raw=False, use_list=True, strict_map_key=False, max_buffer_size=512 * 1024 * 1024
    )


class RecordReader:
    """Streams one framed file: validates the header, yields records, checks the trailer.

    ``fmt`` is the expected ``format`` value and ``version`` the newest version this reader knows.
    Iterating yields each record (a dict) between header and trailer; after iteration
    :attr:`trailer` holds the trailer map. Every problem is a :class:`FormatError` whose message
    names the file (and the byte offset where it applies).
    """

    def __init__(self, path: str | Path, fmt: str, version: int):
        self.path = str(path)
        self.fmt = fmt
        try:
            self._f = open(self.path, "rb")
        except FileNotFoundError:
            raise FormatError(f"{self.path}: no such file") from None
        except IsADirectoryError:
            raise FormatError(f"{self.path}: is a directory, not a {fmt} file") from None
        except OSError as e:
            raise FormatError(f"{self.path}: cannot open: {e.strerror}") from None
        self.size = os.fstat(self._f.fileno()).st_size
        self._u = _unpacker(self._f)
        self.trailer: dict | None = None
        self.header = self._read_header(version)

    def close(self) -> None:
        """Close the underlying file."""
        self._f.close()

    def __enter__(self) -> "RecordReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _next(self) -> Any:
        offset = self._u.tell()
        try:
            return next(self._u)
        except StopIteration:
            raise
        except (msgpack.UnpackException, ValueError, TypeError) as e:
            # msgpack raises some errors (e.g. a reserved type byte) with an empty message.
            why = str(e) or f"invalid msgpack ({type(e).__name__})"
            raise FormatError(f"{self.path}: corrupt at byte {offset}: {why}") from None

    def _read_header(self, version: int) -> dict:
        if self.size == 0:
            raise FormatError(f"{self.path}: empty file, not a {self.fmt} file")
        try:
            h = self._next()
        except StopIteration:
            raise FormatError(f"{self.path}: truncated at byte {self._u.tell()}: header incomplete") from None
        except FormatError:
            raise FormatError(f"{self.path}: not a {self.fmt} file (unreadable header)") from None
        if not isinstance(h, dict) or h.get("format") != self.fmt:
            got = h.get("format") if isinstance(h, dict) else None
            what = f"a {got!r} file" if isinstance(got, str) else "not msgpack of this kind"
            raise FormatError(f"{self.path}: not a {self.fmt} file ({what})")
        v = h.get("version")
        if not isinstance(v, int) or v < 1:
            raise FormatError(f"{self.path}: {self.fmt} header has no valid version ({v!r})")
        if v > version:
            raise FormatError(
                f"{self.path}: {self.fmt} version {v} is newer than this wdm-replay reads (up to {version}); upgrade wdm-replay"
            )
        return h

    def _truncated(self, offset: int) -> FormatError:
        return FormatError(
            f"{self.path}: truncated at byte {offset} of {self.size}: no trailer (file cut short or still being written)"
        )

    def _is_trailer(self, rec: dict, offset: int) -> bool:
        """Whether ``rec`` (read from ``offset``) is the trailer; if so it is checked and kept."""
        if "trailer" not in rec:
            return False
        if rec["trailer"] != self.fmt:
            raise FormatError(f"{self.path}: corrupt at byte {offset}: trailer of another format")
        end = self._u.tell()
        if end != self.size:
            raise FormatError(f"{self.path}: corrupt at byte {end}: data after the trailer")
        self.trailer = rec
        return True

    def __iter__(self) -> Iterator[dict]:
        while True:
            offset = self._u.tell()
            try:
                rec = self._next()
            except StopIteration:
                raise self._truncated(offset) from None
            if not isinstance(rec, dict):
                raise FormatError(f"{self.path}: corrupt at byte {offset}: expected a map, got {type(rec).__name__}")
            if self._is_trailer(rec, offset):
                return
            yield rec

    def iter_skipping(self, key: str, keep: Callable[[Any], bool], count: str) -> Iterator[dict | int]:
        """Records as iteration yields them, except that a record whose ``key`` value fails ``keep``
        is skipped without being built: in its place comes the length of its ``count`` array (an int).

        What lets a replay worker pass over the other workers' sessions at a fraction of their
        decoding cost; the file is read and checked (framing, trailer) as by plain iteration.
        """
        u = self._u
        while True:
            offset = u.tell()
            rec: dict | None = {}
            skipped = 0
            try:
                n = u.read_map_header()
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
                    if k == key and not keep(v):
                        skipped = len(rec[count]) if isinstance(rec.get(count), list) else 0
                        rec = None
                        continue
                    rec[k] = v
            except msgpack.OutOfData:
                raise self._truncated(offset) from None
            except (msgpack.UnpackException, ValueError, TypeError) as e:
                why = "expected a map" if u.tell() == offset else (str(e) or f"invalid msgpack ({type(e).__name__})")
                raise FormatError(f"{self.path}: corrupt at byte {offset}: {why}") from None
            if rec is None:
                yield skipped
                continue
            if self._is_trailer(rec, offset):
                return
            yield rec


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
