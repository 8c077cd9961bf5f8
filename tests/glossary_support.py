"""Test support: docs/glossary.md's terms, and the check that an output is one a person can read."""

from __future__ import annotations

import re
from pathlib import Path

from wdmreplay import terms

GLOSSARY = Path(__file__).resolve().parent.parent / "docs" / "glossary.md"
SNAKE = re.compile(r"(?<![\w./-])[a-z][a-z0-9]*(?:_[a-z0-9]+)+(?![\w./-])")


def glossary_terms() -> set[str]:
    """Every **bold** term of docs/glossary.md."""
    return set(re.findall(r"\*\*([^*]+)\*\*", GLOSSARY.read_text(encoding="utf-8")))


def assert_person_readable(out: str) -> None:
    """No retired jargon, and every snake_case word printed is a glossary term."""
    for phrase in terms.RETIRED:
        assert phrase not in out, f"retired jargon {phrase!r} printed"
    known = glossary_terms()
    unknown = sorted({w for w in SNAKE.findall(out)} - known)
    assert not unknown, f"printed but not in docs/glossary.md: {unknown}"
