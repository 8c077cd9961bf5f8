"""CPU per request row of the results rows' path, from a worker's row buffer to the results file, in-process.

What a replay does with its rows after the engine has packed them: the worker's side (columns from
the packed rows, the packed args, the arg columns, the record, the bindings record, the messages
pickled as the pipe sends them) and the coordinator's (the messages unpickled, the frames written
with their checksums, the tally the summary and the live view read). The rows are a stress trace's
steps as a replay records them: every symbol replaced by a string id, one binding per create. No
network, no engine, no event loop: only this path, per chunk of ``--chunk`` rows (a worker sends one
every 0.5 s: about 30,000 rows at replay-1's rate), timed by CPU (``time.process_time``), best of
``--rounds``. Compare two versions of the code in one session with ``PYTHONPATH=<other checkout>``
(the script runs the code it imports: the earlier message layout, columns and record side by side,
is taken when the code has it).

    python bench/rows_path.py                       # ~5 s: 200,000 rows in chunks of 30,000
    python bench/rows_path.py --chunk 600           # the chunks of a run under callgrind
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import stress_trace  # noqa: E402


def trace_rows(path: Path) -> tuple[list, list, list]:
    """(row tuples for ``pack_row``, each row's resolved args, each row's binding or None) of a trace."""
    from wdmreplay.operations import OP_CODES
    from wdmreplay.traces.trace import TraceReader

    rows, args, binds = [], [], []
    t = 0.0
    with TraceReader(str(path)) as r:
        for s in r.sessions():
            for i, st in enumerate(s["steps"]):
                t += 1e-5
                a = tuple(f"id-{v[1:]}" if isinstance(v, str) and v[:1] == "$" else v for v in st["args"])
                rows.append((s["sid"], i, s["phase"], OP_CODES[st["op"]], 1, 0, 0, 200, t, t + 1e-6, t + 4e-4))
                args.append(a)
                binds.append((st["bind"], f"id-{st['bind'][1:]}") if st.get("bind") else None)
    return rows, args, binds


def run(rows: list, args: list, binds: list, chunk: int, out: Path) -> tuple[float, float, int]:
    """(worker CPU s, coordinator CPU s, rows) of every row through the path once."""
    from multiprocessing.reduction import ForkingPickler

    from wdmreplay.replayer import messages
    from wdmreplay.replayer.summary import Tally
    from wdmreplay.traces import results
    from wdmreplay.traces.stream import packer

    pack = packer()
    in_place = "at" in {f.name for f in fields(messages.Chunk)}  # the record alone, columns read in place
    packed_bindings = "record" in {f.name for f in fields(messages.Bindings)}
    writer = results.ResultsWriter(out, results.results_header())
    tally = Tally()
    worker = coordinator = 0.0
    pack_row = results.pack_row
    for start in range(0, len(rows), chunk):
        t0 = time.process_time()
        buf = bytearray()
        for r in rows[start:start + chunk]:
            buf += pack_row(*r)
        chunk_args = args[start:start + chunk]
        bound = dict(b for b in binds[start:start + chunk] if b)
        t1 = time.process_time()
        # The worker: RowBuffer.flush's columns, then what workers.py sends.
        cols = results.row_columns(buf)
        if in_place:
            record, at = results.requests_record_at(cols, chunk_args, [], pack)
            msg = messages.Chunk(record, len(chunk_args), at)
        else:
            msg = messages.Chunk(cols, results.requests_record(cols, chunk_args, [], pack))
        bmsg = messages.Bindings(results.bindings_record(bound, pack) if packed_bindings else bound)
        sent = [bytes(ForkingPickler.dumps(msg)), bytes(ForkingPickler.dumps(bmsg))]
        t2 = time.process_time()
        # The coordinator: Coordinator._handle.
        got, gotb = (ForkingPickler.loads(p) for p in sent)
        got_cols = got.columns() if in_place else got.cols
        writer.write_packed_requests(got_cols, got.record)
        tally.add_chunk(got_cols)
        if packed_bindings:
            writer.write_packed_bindings(gotb.record)
        else:
            writer.write_bindings(gotb.mapping)
        t3 = time.process_time()
        worker += t2 - t1
        coordinator += t3 - t2
        del t0
    writer.close(complete=True, wall=0.0)
    return worker, coordinator, tally.rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=200000, help="requests in the stress trace (default 200000)")
    ap.add_argument("--chunk", type=int, default=30000, help="rows per chunk (default 30000)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; the best is printed (default 3)")
    a = ap.parse_args()
    if a.requests < 1000:
        ap.error("--requests must be at least 1000")
    if a.chunk < 2 or a.rounds < 1:
        ap.error("--chunk must be at least 2 and --rounds at least 1")
    import wdmreplay
    from wdmreplay.traces import load_results

    with tempfile.TemporaryDirectory(prefix="wdm-bench-rows-") as d:
        trace = Path(d) / "s.wdmt"
        stress_trace(trace, a.requests)
        rows, args, binds = trace_rows(trace)
        best = None
        for _ in range(a.rounds):
            w, c, n = run(rows, args, binds, a.chunk, Path(d) / "r.wdmr")
            if n != len(rows) or load_results(Path(d) / "r.wdmr").n != n:  # every row tallied and in the file
                raise SystemExit(f"rows_path: {n} of {len(rows)} rows tallied")
            if best is None or w + c < best[0] + best[1]:
                best = (w, c, n)
        w, c, n = best
        print(f"code: {Path(wdmreplay.__file__).parent.parent}")
        print(f"{n:,} rows in chunks of {a.chunk:,}, best of {a.rounds}: worker {w / n * 1e9:.0f} ns per row, "
              f"coordinator {c / n * 1e9:.0f} ns per row, both {(w + c) / n * 1e9:.0f} ns per row")


if __name__ == "__main__":
    main()
