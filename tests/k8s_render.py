"""A small kustomize for the tests: renders ``deploy/k8s`` exactly as far as it uses kustomize.

kustomize is not installed where the tests run, so this implements the kustomization features the
manifests use — ``resources`` (files), ``configMapGenerator`` (literals, files; binary files go to
``binaryData`` as kustomize does), ``generatorOptions.disableNameSuffixHash``, ``replacements``
(ConfigMap/Job sources and targets by kind and name, dotted field paths; a scalar target keeps its
type, as kustomize's replacement filter does), ``images`` — and refuses any other key, so a
kustomization that grows a feature this renderer does not know fails the tests instead of being
validated half-rendered.
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import yaml

KNOWN_KEYS = {"apiVersion", "kind", "resources", "generatorOptions", "configMapGenerator", "replacements", "images"}


class RenderError(Exception):
    """A kustomization this renderer cannot render faithfully."""


def render(directory: str | Path, overrides: dict[str, str] | None = None) -> list[dict]:
    """The resources ``kustomize build directory`` would print, as dicts (``overrides``: params literals)."""
    d = Path(directory)
    k = yaml.safe_load((d / "kustomization.yaml").read_text())
    unknown = set(k) - KNOWN_KEYS
    if unknown:
        raise RenderError(f"kustomization keys this renderer does not implement: {sorted(unknown)}")
    docs: list[dict] = []
    for res in k.get("resources") or []:
        path = d / res
        if not path.is_file():
            raise RenderError(f"resource {res} is not a file")
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    if k.get("configMapGenerator") and not (k.get("generatorOptions") or {}).get("disableNameSuffixHash"):
        raise RenderError("generated names with a hash suffix are not rendered")
    for gen in k.get("configMapGenerator") or []:
        docs.append(_config_map(d, gen, overrides or {}))
    for rep in k.get("replacements") or []:
        _replace(docs, rep)
    for image in k.get("images") or []:
        _set_image(docs, image)
    return docs


def find(docs: list[dict], kind: str, name: str) -> dict:
    """The one rendered resource of ``kind`` named ``name``."""
    hits = [doc for doc in docs if doc.get("kind") == kind and doc["metadata"]["name"] == name]
    if len(hits) != 1:
        raise RenderError(f"{len(hits)} resources {kind}/{name}")
    return hits[0]


def _config_map(d: Path, gen: dict, overrides: dict[str, str]) -> dict:
    unknown = set(gen) - {"name", "literals", "files"}
    if unknown:
        raise RenderError(f"configMapGenerator keys not implemented: {sorted(unknown)}")
    data: dict[str, str] = {}
    binary: dict[str, str] = {}
    for lit in gen.get("literals") or []:
        key, sep, value = str(lit).partition("=")
        if not sep:
            raise RenderError(f"literal without '=': {lit!r}")
        data[key] = overrides.get(key, value)
    for spec in gen.get("files") or []:
        key, sep, rel = str(spec).partition("=")
        if not sep:
            key, rel = Path(spec).name, spec
        raw = (d / rel).read_bytes()
        try:
            data[key] = raw.decode("utf-8")
        except UnicodeDecodeError:
            binary[key] = base64.b64encode(raw).decode("ascii")
    cm: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}}
    if data:
        cm["data"] = data
    if binary:
        cm["binaryData"] = binary
    return cm


def _get(doc: dict, path: str) -> Any:
    node: Any = doc
    for part in path.split("."):
        node = node[part]
    return node


def _set(doc: dict, path: str, value: str) -> None:
    *parents, last = path.split(".")
    node: Any = doc
    for part in parents:
        node = node[part]
    old = node[last]  # kustomize refuses a missing target field unless options.create
    if isinstance(old, bool) or not isinstance(old, (int, float, str)):
        raise RenderError(f"replacement target {path} is not a plain scalar")
    node[last] = type(old)(value)  # a scalar target keeps its type ("4" into an int field is 4)


def _replace(docs: list[dict], rep: dict) -> None:
    src = rep["source"]
    if set(src) - {"kind", "name", "fieldPath"}:
        raise RenderError(f"replacement source keys not implemented: {sorted(src)}")
    value = str(_get(find(docs, src["kind"], src["name"]), src["fieldPath"]))
    for target in rep["targets"]:
        if set(target) - {"select", "fieldPaths"} or set(target["select"]) - {"kind", "name"}:
            raise RenderError(f"replacement target keys not implemented: {sorted(target)}")
        doc = find(docs, target["select"]["kind"], target["select"]["name"])
        for path in target["fieldPaths"]:
            _set(doc, path, value)


def _set_image(docs: list[dict], image: dict) -> None:
    for doc in docs:
        spec = ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
        for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
            if c["image"].split(":")[0] == image["name"]:
                c["image"] = f"{image.get('newName', image['name'])}:{image.get('newTag', 'latest')}"


def pod_containers(job: dict) -> dict[str, dict]:
    """A Job's containers and init containers by name (copies)."""
    spec = job["spec"]["template"]["spec"]
    return {c["name"]: copy.deepcopy(c) for c in (spec.get("initContainers") or []) + spec["containers"]}
