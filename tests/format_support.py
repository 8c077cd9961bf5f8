"""Test support for the file-format tests: exhaustive single-bit corruption of a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from wdmreplay.traces import FormatError


def accepted_bit_flips(good: bytes, bad: Path, read: Callable[[Path], Any]) -> list[tuple[int, int]]:
    """Every (byte, bit) whose flip — the lowest and the highest bit of each byte — ``read(bad)`` accepts.

    Each flipped copy of ``good`` is written to ``bad`` and read; a :class:`FormatError` is the only
    right answer, so a sound reader gives ``[]``.
    """
    accepted = []
    for pos in range(len(good)):
        for bit in (0x01, 0x80):
            flipped = bytearray(good)
            flipped[pos] ^= bit
            bad.write_bytes(bytes(flipped))
            try:
                read(bad)
            except FormatError:
                continue
            accepted.append((pos, bit))
    return accepted
