"""The replayer's own per-step cost, in-process: the engine over a stress trace with a send that answers at once.

No network and no target: every step's send returns 200 and the static target's JSON body at once,
so what is measured is the engine's own per-request Python (trace reading, schedule, binding,
classifying, row packing), not the HTTP exchange. ``--records`` also packs every chunk of rows into
its results record (``requests_record``: the arg columns, the packed args), as a replay worker does
before it sends the chunk to the coordinator. ``--callgrind`` counts instructions instead of
the clock: the script runs itself under ``valgrind --tool=callgrind`` at two trace sizes and prints
the difference in instructions over the difference in requests (start-up taken out), which does
not depend on what else the machine is doing. Compare two versions of the code in one session with
``PYTHONPATH=/path/to/other/checkout``.

    python bench/engine_steps.py                        # CPU µs per request, 60,000 requests, ~5 s
    python bench/engine_steps.py --callgrind            # instructions per request (20k vs 60k), ~2 min
    python bench/engine_steps.py --requests 10000       # a smaller trace
    python bench/engine_steps.py --records              # with the worker's packing of each chunk
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import last_line, stress_trace  # noqa: E402

BODY = (b'{"item_id":"1","user_id":"1","order_id":"1","stock":100,"price":1,"credit":100000,"paid":false,'
        b'"items":[],"total_cost":0}')


async def _answer(method: str, path: str) -> tuple[int, bytes, float]:
    return 200, BODY, time.perf_counter()


async def _replay(trace: Path, records: bool = False) -> tuple[int, int, float]:
    from wdmreplay.operations import get_dialect
    from wdmreplay.targets import Target
    from wdmreplay.replayer.engine import Engine, RowBuffer
    from wdmreplay.traces import read_header

    hdr = read_header(trace)
    written = [0]
    if records:  # what a replay worker's sink does with each chunk (workers.py), the sending aside
        from wdmreplay.traces.results import requests_record
        from wdmreplay.traces.stream import packer

        pack = packer()

        def sink(cols: dict, args: list, errors: list) -> None:
            requests_record(cols, args, errors, pack)
            written[0] += len(args)
    else:
        def sink(cols: dict, args: list, errors: list) -> None:
            written[0] += len(args)
    rows = RowBuffer(sink)
    eng = Engine(str(trace), target=Target.single("http://127.0.0.1:9"), dialect=get_dialect(hdr.get("dialect", "2024")),
                 speed=None, concurrency=64, timeout=10, t0=time.perf_counter(), rows=rows,
                 scenarios=hdr.get("scenarios"))
    await eng.open()
    # Every operation answered at once instead of sent (the send is a route's last field; before
    # issue 24's per-step cuts the routes were a list by op code, so older checkouts compare too).
    routes = eng._routes
    if isinstance(routes, dict):
        eng._routes = {name: r[:-1] + (_answer,) for name, r in routes.items()}
    else:
        eng._routes = [None if r is None else r[:-1] + (_answer,) for r in routes]
    c0 = time.process_time()
    for phase in range(len(hdr["phases"])):
        await eng.run_phase(phase, 0.0)
    rows.flush()
    cpu = time.process_time() - c0
    await eng.close()
    return eng.done, written[0], cpu


def _instructions(trace: Path, work: Path, records: bool) -> int:
    out = work / f"cg.{trace.stem}"
    run = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__,
                          "--trace", str(trace), *(["--records"] if records else [])],
                         capture_output=True, text=True, timeout=1800)
    if run.returncode != 0:
        raise RuntimeError(f"the run under callgrind failed: {last_line(run.stderr)}")
    for line in out.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError("callgrind wrote no instruction total")


def main() -> None:
    """Time (or count) the engine's per-step work over a stress trace; print it per request."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--requests", type=int, default=60000, help="requests in the trace (default 60000)")
    ap.add_argument("--callgrind", action="store_true", help="count instructions per request (needs valgrind)")
    ap.add_argument("--records", action="store_true",
                    help="pack each chunk of rows into its results record, as a replay worker does")
    ap.add_argument("--trace", type=Path, help=argparse.SUPPRESS)  # one run on a given trace (--callgrind's child)
    a = ap.parse_args()
    if a.trace is not None:
        done, written, cpu = asyncio.run(_replay(a.trace, a.records))
        print(f"{done} requests, {written} rows, {1e6 * cpu / max(done, 1):.2f} us CPU per request")
        return
    if a.requests < 1000:
        ap.error("--requests must be at least 1000")
    if a.callgrind and not shutil.which("valgrind"):
        sys.exit("engine_steps: valgrind not found (apt-get install -y valgrind)")
    work = Path(tempfile.mkdtemp(prefix="wdm-bench-steps-"))
    try:
        if not a.callgrind:
            trace = work / "stress.wdmt"
            stress_trace(trace, a.requests)
            done, written, cpu = asyncio.run(_replay(trace, a.records))
            if written != done:
                sys.exit(f"engine_steps: {done} requests but {written} rows")
            print(f"{done:,} requests, {written:,} rows: {1e6 * cpu / done:.2f} µs CPU per request")
            return
        counts = []
        for n in (a.requests // 3, a.requests):
            trace = work / f"stress-{n}.wdmt"
            stress_trace(trace, n)
            print(f"callgrind: {n:,} requests ...", flush=True)
            counts.append(_instructions(trace, work, a.records))
        from wdmreplay.traces import read_header
        sizes = [read_header(work / f"stress-{n}.wdmt")["requests"] for n in (a.requests // 3, a.requests)]
        print(f"{(counts[1] - counts[0]) / (sizes[1] - sizes[0]) / 1e3:.2f}k instructions per request "
              f"(from {sizes[0]:,} and {sizes[1]:,} requests, start-up taken out)")
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        sys.exit(f"engine_steps: {e}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
