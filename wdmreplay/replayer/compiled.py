"""The replayer's compiled twins: ``http.py`` and ``engine.py`` built by Cython, used only while they match their source.

``pip install -e .`` compiles the two hot modules of a replay, when Cython and a C compiler are at
hand, into twin extension modules beside them (``_http_c``, ``_engine_c``; see ``setup.py``): the
same source, with the classes typed by ``http.pxd`` and ``engine.pxd`` (C fields instead of
attribute lookups), about a sixth fewer instructions per replayed request (docs/performance.md).
Each twin carries the SHA-256 of the ``.py`` and ``.pxd`` it was built from, and a module takes its
twin's names only when that digest is its own source's: a twin left over from before an edit is
ignored, never run in place of the code on disk. Without a twin (no compiler at install time, an
edited source, ``WDM_PURE=1``) the module runs as the pure Python it is; both run the same tests.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path
from types import ModuleType

# The source modules that have a twin, and their twins' names (one place: setup.py reads it too).
TWINS = {"http": "_http_c", "engine": "_engine_c"}
# Set to anything but "" or "0" to run the pure Python even where the twins are fresh.
PURE_ENV = "WDM_PURE"


def source_digest(py: str | os.PathLike) -> str:
    """The SHA-256 of a module's source and its ``.pxd`` beside it: what its twin must carry."""
    py = Path(py)
    h = hashlib.sha256(py.read_bytes())
    h.update(b"\0")
    pxd = py.with_suffix(".pxd")
    if pxd.exists():
        h.update(pxd.read_bytes())
    return h.hexdigest()


def pure_forced() -> bool:
    """Whether ``WDM_PURE`` asks for the pure Python."""
    return os.getenv(PURE_ENV, "") not in ("", "0")


def twin(module: str, source: str) -> ModuleType | None:
    """The compiled twin of ``module`` (its ``__name__``; ``source`` its ``__file__``), or None.

    None when the pure Python is asked for, no twin was built, or the twin was built from other
    source (its digest differs: the ``.py`` or ``.pxd`` was edited since).
    """
    if pure_forced():
        return None
    package, _, name = module.rpartition(".")
    if name not in TWINS:  # the twin itself runs this module's code: it has no twin
        return None
    try:
        mod = importlib.import_module(f"{package}.{TWINS[name]}")
    except ImportError:
        return None
    if getattr(mod, "TWIN_OF", None) != source_digest(source):
        return None
    return mod


# The source modules (their names in TWINS) that took their twin's names in this process.
_ADOPTED: set[str] = set()


def adopt(namespace: dict, mod: ModuleType | None) -> bool:
    """Put the twin's module-level names into the source module's ``namespace``; whether there was one.

    Every name, exceptions and helpers included, so that whoever imports from the module gets the
    twin's objects (an ``except NotSent`` catches what the compiled code raises).
    """
    if mod is None:
        return False
    namespace.update({k: v for k, v in vars(mod).items() if not k.startswith("__") and k != "TWIN_OF"})
    _ADOPTED.add(namespace["__name__"].rpartition(".")[2])
    return True


def adopted(source: str) -> bool:
    """Whether the source module ``source`` (a name in TWINS) took its twin's names in this process.

    The source modules ask this, not for each other's ``COMPILED``: a name a module imports from the
    other is overwritten, when it adopts its twin, by the twin's own import of it (a twin's
    ``COMPILED`` is False: a twin has no twin).
    """
    return source in _ADOPTED


def state() -> str:
    """How this process runs the replay's hot path, in words (``wdm-replay --version``, the benches).

    Imports the hot path first (``engine`` imports ``http``): each module adopts its twin, or not, then.
    """
    importlib.import_module(f"{__package__}.engine")  # here, not at the top: both modules import this one
    if all(adopted(name) for name in TWINS):
        return "compiled"
    if pure_forced():
        return f"pure Python ({PURE_ENV} is set)"
    return "pure Python (no compiled twin matches the source)"
