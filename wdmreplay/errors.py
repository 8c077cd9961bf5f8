"""The root error of the library, and reading a user's JSON or TOML file with a one-line error.

Every error meant for the user derives from :class:`WdmError`: the CLI prints its message on one line
and exits with its ``exit_code`` (2: bad input).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class WdmError(Exception):
    """An error with a one-line message for the user; the CLI prints it and exits non-zero."""

    exit_code = 2


class ApiError(WdmError):
    """A dialect, route override or urls.json that cannot be used."""



def load_json_file(path: str | Path, what: str) -> Any:
    """The JSON value in ``path``; a missing, unreadable or invalid file is an :class:`ApiError` naming ``what``."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ApiError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ApiError(f"{path}: cannot read {what}: {e}") from None
    except json.JSONDecodeError as e:
        raise ApiError(f"{path}: {what} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None


def parse_toml(raw: bytes) -> dict[str, Any]:
    """The table of a TOML document; ``ValueError`` when the bytes are not UTF-8 or not TOML.

    Callers wrap the ``ValueError`` (``tomllib.TOMLDecodeError`` or ``UnicodeDecodeError``) in their
    own one-line error naming the file. (The parser is imported here, not at the top: every command
    imports this module, few read TOML.)
    """
    try:
        import tomllib
    except ImportError:  # Python 3.10: the same parser, installed as tomli (setup.cfg)
        import tomli as tomllib  # type: ignore[no-redef]
    return tomllib.loads(raw.decode("utf-8"))
