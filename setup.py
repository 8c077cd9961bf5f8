"""Build of the replayer's compiled twins (wdmreplay/replayer/compiled.py explains them); metadata is in setup.cfg.

With Cython (a build requirement in pyproject.toml) and a C compiler, ``pip install`` (``-e`` too)
compiles ``wdmreplay/replayer/http.py`` and ``engine.py``, typed by their ``.pxd``, into
``_http_c`` and ``_engine_c`` beside them, each carrying the digest of the source it was built
from. Whatever fails here (no compiler, no Cython) only leaves the twins out, with a line saying so
(``pip install -v`` shows it): the replay then runs as pure Python, the same code.
"""

import importlib.util
import re
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
PKG = HERE / "wdmreplay" / "replayer"


def _compiled_module():
    spec = importlib.util.spec_from_file_location("_wdm_compiled", PKG / "compiled.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write(path: Path, text: str) -> None:
    """Write ``text`` unless ``path`` holds it already: pip runs this file several times per install,
    and cythonize translates again only what changed."""
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _twin_sources(build: Path) -> list:
    """Each twin's source: a copy of the module and its .pxd under the twin's name, its digest appended."""
    compiled = _compiled_module()
    pkg = build / "wdmreplay" / "replayer"
    pkg.mkdir(parents=True, exist_ok=True)
    for init in (build / "wdmreplay" / "__init__.py", pkg / "__init__.py"):
        _write(init, "")
    names = compiled.TWINS
    exts = []
    for src, twin in names.items():
        py = PKG / f"{src}.py"
        text = py.read_text() + f"\nTWIN_OF = {compiled.source_digest(py)!r}\n"
        pxd = (PKG / f"{src}.pxd").read_text()
        for other, other_twin in names.items():  # a twin imports the other twin, not its source
            text = re.sub(rf"^from \.{other} import", f"from .{other_twin} import", text, flags=re.M)
            pxd = re.sub(rf"^from \.{other} cimport", f"from .{other_twin} cimport", pxd, flags=re.M)
        _write(pkg / f"{twin}.py", text)
        _write(pkg / f"{twin}.pxd", pxd)
        exts.append((f"wdmreplay.replayer.{twin}", str(pkg / f"{twin}.py")))
    return exts


def _extensions() -> list:
    try:
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError:
        print("wdm-replay: Cython is not installed: the replay runs as pure Python")
        return []
    build = HERE / "build" / "twins"
    try:
        exts = [Extension(name, [path]) for name, path in _twin_sources(build)]
        return cythonize(exts, build_dir=str(build), quiet=True,
                         compiler_directives={"language_level": 3, "annotation_typing": False, "binding": False})
    except Exception as e:  # noqa: BLE001 — any failure leaves the pure Python, which is complete
        print(f"wdm-replay: could not translate the replayer with Cython ({e}): it runs as pure Python")
        return []


class OptionalBuildExt(build_ext):
    """build_ext where a failed compilation leaves that twin out instead of failing the install."""

    def run(self):
        try:
            super().run()
        except Exception as e:  # noqa: BLE001 — no compiler at all
            print(f"wdm-replay: could not compile the replayer ({e}): it runs as pure Python")

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as e:  # noqa: BLE001
            print(f"wdm-replay: could not compile {ext.name} ({e}): it runs as pure Python")


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
