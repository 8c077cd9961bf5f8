"""Every example a user can copy — from any command's --help, the README or docs/ — names real options.

The commands are walked from ``cli.cli``, so a command or example added later is covered without
editing this file. An example is a line starting ``wdm-replay `` (a trailing ``\\`` continues it on
the next line); its comment (`` # …``) and anything after a shell operator are dropped, and the rest
goes through click's own parser for that command: an option that does not exist, an option without
its value, a command that does not exist or a value outside a choice fails the test. Paths are not
opened (the examples name files the reader does not have).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from wdmreplay.cli import cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _commands(cmd: click.Command, path: tuple[str, ...] = ()):
    """(command path, command) of the root, every group and every command."""
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            yield from _commands(cmd.commands[name], (*path, name))


def _examples(lines: list[str]) -> list[str]:
    """The example command lines among ``lines``, continuation lines joined."""
    out, i = [], 0
    while i < len(lines):
        line = lines[i].strip().removeprefix("$ ")
        if line.startswith("wdm-replay "):
            while line.endswith("\\") and i + 1 < len(lines):
                i += 1
                line = line[:-1] + " " + lines[i].strip()
            out.append(line)
        i += 1
    return out


def _code(example: str) -> str:
    """The command of an example line: its comment and anything after a shell operator dropped."""
    return re.split(r"\s#|&&|\|\||[|;>]", example)[0].strip()


def _parse(argv: list[str]) -> None:
    """Parse ``argv`` as the CLI would, without running it: click.UsageError/BadParameter if it is wrong."""
    cmd: click.Command = cli
    ctx = None
    while True:
        ctx = click.Context(cmd, info_name=cmd.name, parent=ctx)
        opts, rest, _ = cmd.make_parser(ctx).parse_args(args=list(argv))
        if not isinstance(cmd, click.Group):
            for p in cmd.params:
                if isinstance(p.type, click.Choice) and opts.get(p.name) is not None:
                    for v in opts[p.name] if p.multiple else [opts[p.name]]:
                        p.type.convert(v, p, ctx)
            return
        if not rest or rest[0] not in cmd.commands:
            raise click.UsageError(f"no command {rest[0] if rest else '(none)'!r} in {cmd.name}")
        cmd, argv = cmd.commands[rest[0]], rest[1:]


HELP = [(" ".join(path) or "wdm-replay", cmd) for path, cmd in _commands(cli)]


@pytest.mark.parametrize("name,cmd", HELP, ids=[n for n, _ in HELP])
def test_every_help_has_examples_that_parse_and_print_as_written(name, cmd):
    examples = _examples((cmd.help or "").splitlines())
    assert examples, f"{name} --help has no example"
    for ex in examples:
        _parse(shlex.split(_code(ex))[1:])
        # A backslash-newline inside a docstring joins two lines of the example with the second's
        # indentation in between: the help then shows one line with a gap, not the continuation.
        assert not re.search(r"\S {3,}-", _code(ex)), f"{name} --help: an example joined across lines: {ex!r}"


def _fenced(text: str) -> list[str]:
    """The lines inside the ``` code blocks of a Markdown text."""
    out, inside = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
        elif inside:
            out.append(line)
    return out


def _doc_examples():
    for path in DOCS:
        for ex in _examples(_fenced(path.read_text(encoding="utf-8"))):
            code = _code(ex)
            # not a synopsis (`wdm-replay check RUN [--json]`) nor a caption in a diagram ("wdm-replay shop:")
            if not re.search(r"\.\.\.|…|<|\[|:$", code):
                yield path.name, code


DOC_EXAMPLES = list(_doc_examples())


def test_the_docs_have_examples_to_check():
    assert len(DOC_EXAMPLES) >= 50 and {"README.md", "replay.md", "analysis.md", "grade.md"} <= {f for f, _ in DOC_EXAMPLES}


@pytest.mark.parametrize("doc,code", DOC_EXAMPLES, ids=[f"{d}:{i}" for i, (d, _) in enumerate(DOC_EXAMPLES)])
def test_every_command_in_the_readme_and_docs_parses(doc, code):
    _parse(shlex.split(code)[1:])
