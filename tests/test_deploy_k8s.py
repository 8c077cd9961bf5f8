"""``deploy/k8s`` without a cluster: rendered, validated against the Kubernetes schemas, and run.

The kustomization is rendered by :mod:`k8s_render` (kustomize is not installed here) and every
resource is validated offline with ``kubernetes-validate`` (it ships the schemas). Then the pods'
own command lines — taken from the rendered Jobs, ``$(VAR)`` expanded from the params ConfigMap
as the kubelet does, the mounts mapped to local directories — run as N local processes with
``JOB_COMPLETION_INDEX=0..N-1`` against the reference shop, the merge pod's script merges, checks
and reports, and the outcome is compared with one process replaying the whole trace.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import kubernetes_validate
import pytest

from k8s_render import RenderError, find, pod_containers, render
from wdmreplay.replayer.start import format_utc
from wdmreplay.traces import load_results

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
WDM = [sys.executable, "-m", "wdmreplay"]
K8S_VERSION = "1.30.0"  # a version kubernetes-validate ships schemas for; Indexed Jobs are GA since 1.24


def test_manifests_are_valid_kubernetes_resources():
    docs = render(K8S)
    assert {d["kind"] for d in docs} == {"PersistentVolumeClaim", "Job", "ConfigMap"}
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises on any schema violation


def test_validation_catches_a_broken_job():
    job = find(render(K8S), "Job", "wdm-replay-shards")
    job["spec"]["completions"] = "4"  # what a type-losing replacement would produce
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, K8S_VERSION, strict=True)


def test_indexed_job_takes_n_from_the_one_params_place(tmp_path):
    docs = render(K8S)
    params = find(docs, "ConfigMap", "wdm-replay-params")["data"]
    shards = find(docs, "Job", "wdm-replay-shards")
    n = int(params["SHARDS"])
    assert shards["spec"]["completionMode"] == "Indexed"
    assert shards["spec"]["completions"] == shards["spec"]["parallelism"] == n
    args = pod_containers(shards)["replay"]["args"]
    assert "auto/$(SHARDS)" in args and "$(START_AT)" in args and "$(URL)" in args and "$(SPEED)" in args
    # Edit N in the kustomization only: every place follows.
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    text = (copy / "kustomization.yaml").read_text()
    (copy / "kustomization.yaml").write_text(re.sub(r"SHARDS=\d+", "SHARDS=7", text, count=1))
    edited = find(render(copy), "Job", "wdm-replay-shards")
    assert edited["spec"]["completions"] == edited["spec"]["parallelism"] == 7


def test_trace_configmap_holds_the_trace_bytes():
    import base64

    cm = find(render(K8S), "ConfigMap", "wdm-replay-trace")
    assert base64.b64decode(cm["binaryData"]["trace.wdmt"]) == (K8S / "trace.wdmt").read_bytes()


def test_renderer_refuses_what_it_does_not_implement(tmp_path):
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    with open(copy / "kustomization.yaml", "a") as f:
        f.write("namePrefix: x-\n")
    with pytest.raises(RenderError, match="namePrefix"):
        render(copy)


def test_dockerfile_installs_this_project_on_a_slim_python():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+-slim$", text, re.M)
    for src in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for name in src.split():
            assert (ROOT / name).exists(), f"Dockerfile copies {name}, which is not in the repository"
    assert "pip install" in text and 'ENTRYPOINT ["wdm-replay"]' in text


def _expand(args: list[str], env: dict[str, str]) -> list[str]:
    """``$(VAR)`` references expanded as the kubelet does (an unknown one is left as written)."""
    return [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), a) for a in args]


def _local(args: list[str], mounts: dict[str, Path]) -> list[str]:
    out = []
    for a in args:
        for mount, local in mounts.items():
            a = a.replace(mount, str(local))
        out.append(a)
    return out


def _counts(path: Path) -> tuple[int, Counter]:
    r = load_results(path)
    assert r.complete
    outcomes = r.header["outcomes"]
    return r.n, Counter(outcomes[int(o)] for o in r.cols["outcome"])


def test_the_pods_command_lines_as_local_processes_match_one_process(shop_factory, tmp_path):
    trace = tmp_path / "trace.wdmt"
    gen = subprocess.run([*WDM, "generate-trace", "stress", "--rate", "40", "--duration", "3", "--arrival",
                          "constant", "--seed", "15", "-o", str(trace)], capture_output=True, text=True, timeout=120)
    assert gen.returncode == 0, gen.stderr

    # One process, the whole trace, its own fresh shop.
    single_shop = shop_factory()
    one = subprocess.run([*WDM, "replay", str(trace), "--url", single_shop.url, "-q", "-o", str(tmp_path / "one.wdmr")],
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    one_check = subprocess.run([*WDM, "check", str(tmp_path / "one.wdmr")], capture_output=True, text=True,
                               timeout=300)

    # N pods of the Indexed Job, as local processes; the params a user would set, this machine's values.
    shard_shop = shop_factory()
    n = 3
    start_at = time.time() + 15.0  # time for N interpreters to start on a loaded machine
    docs = render(K8S, overrides={"SHARDS": str(n), "URL": shard_shop.url, "START_AT": format_utc(start_at),
                                  "SPEED": "1"})
    params = find(docs, "ConfigMap", "wdm-replay-params")["data"]
    results = tmp_path / "results"
    results.mkdir()
    mounts = {"/trace/trace.wdmt": trace, "/results": results}
    replay = pod_containers(find(docs, "Job", "wdm-replay-shards"))["replay"]
    assert replay["command"] == ["wdm-replay"]
    env_base = {k: v for k, v in os.environ.items() if k != "JOB_COMPLETION_INDEX"}
    procs = []
    for i in range(n):
        pod_env = {**params, "JOB_COMPLETION_INDEX": str(i)}
        argv = _local(_expand(replay["args"], pod_env), mounts)
        procs.append(subprocess.Popen([*WDM, *argv], env={**env_base, **pod_env}, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and out == "" and err == "", err
    assert sorted(f.name for f in results.iterdir()) == [f"shard-{i}.wdmr" for i in range(n)]

    # The merge pod: its init container's wait, then its script, with wdm-replay on PATH.
    merge_pod = pod_containers(find(docs, "Job", "wdm-replay-merge"))
    path = os.pathsep.join([str(Path(sys.executable).parent), env_base.get("PATH", "")])
    merge_env = {**env_base, **params, "PATH": path}
    for name in ("wait-for-shards", "merge"):
        c = merge_pod[name]
        assert c["command"] == ["sh", "-c"]
        script = _local(c["args"], {"/results": results})[0]
        done = subprocess.run(["sh", "-c", script], env=merge_env, capture_output=True, text=True, timeout=300)
        if name == "merge":
            merged_rc, merged_out = done.returncode, done.stdout
        else:
            assert done.returncode == 0, done.stderr
    assert merged_rc == one_check.returncode == 0, merged_out  # the same verdict: CLEAN
    assert one_check.stdout.splitlines()[0] in merged_out
    for name in ("run.wdmr", "check.txt", "report.txt", "report.json"):
        assert (results / name).exists()

    # The same counts as one process.
    n_one, outcomes_one = _counts(tmp_path / "one.wdmr")
    n_merged, outcomes_merged = _counts(results / "run.wdmr")
    assert n_merged == n_one and outcomes_merged == outcomes_one
    # In step: every shard's schedule started at --start-at, their first sends close together.
    merged = load_results(results / "run.wdmr").header["merged"]
    for src in merged["sources"]:
        assert abs(src["zero"] - start_at) < 0.05 and src["start_at"] == pytest.approx(start_at, abs=1e-3)
    assert merged["zero_spread"] < 0.05
    assert merged["start_spread"] is not None and merged["start_spread"] < 0.5
    print(f"\nshards {n}: first sends {merged['start_spread'] * 1e3:.1f} ms apart, schedules "
          f"{merged['zero_spread'] * 1e3:.2f} ms; merged {n_merged} requests {dict(outcomes_merged)} "
          f"= one process {n_one} {dict(outcomes_one)}")
