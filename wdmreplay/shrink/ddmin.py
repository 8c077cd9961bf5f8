"""Delta debugging (Zeller's ddmin): a 1-minimal sublist of units that still passes a test.

Pure: the test is a callable, no clock, no I/O. ``test`` returning True means "the failure still
reproduces with only these units". The caller bounds the cost by raising from ``test`` (budget
spent, Ctrl-C); it keeps the best candidate seen itself, since ddmin is abandoned mid-way then.
"""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

T = TypeVar("T")


def split(units: Sequence[T], n: int) -> list[list[T]]:
    """``units`` cut into ``n`` contiguous chunks of near-equal size (the first ones one longer)."""
    n = max(1, min(n, len(units)))
    size, extra = divmod(len(units), n)
    chunks, start = [], 0
    for i in range(n):
        end = start + size + (i < extra)
        chunks.append(list(units[start:end]))
        start = end
    return chunks


def ddmin(units: Sequence[T], test: Callable[[list[T]], bool]) -> list[T]:
    """The smallest sublist ddmin finds for which ``test`` holds (``units`` itself is assumed to pass).

    At granularity n, tries removing each of n chunks (the complements) first, then keeping each
    chunk alone; doubles n when neither passes; ends when every single unit is needed
    (1-minimal) or one unit is left. Complements first because a reproduction usually needs a
    few units spread over the trace (a create, an order, two checkouts): a chunk alone then
    rarely passes, and each failing test costs up to ``--runs`` replays. Units keep their order;
    an empty list is never tested.
    """
    current = list(units)
    n = 2
    while len(current) >= 2:
        chunks = split(current, n)
        reduced = False
        for i in range(len(chunks)):
            complement = [u for j, c in enumerate(chunks) if j != i for u in c]
            if complement and test(complement):
                current, n, reduced = complement, max(n - 1, 2), True
                break
        if not reduced and len(chunks) > 2:  # with two chunks each chunk alone is a complement, tried already
            for chunk in chunks:
                if test(chunk):
                    current, n, reduced = chunk, 2, True
                    break
        if not reduced:
            if n >= len(current):
                break
            n = min(len(current), 2 * n)
    return current
