"""``check``, ``explain``, ``report`` and ``compare``: the commands that read results files."""

from __future__ import annotations

import os
import sys

import click

from .options import DAY, SEED, Finite


@click.command("check")
@click.argument("results", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print the verdict as JSON (schema wdm-check/3, stable keys)")
@click.option("-v", "--verbose", is_flag=True, help="every section's details, not only those of sections that did "
                                                    "not pass (the terms: docs/glossary.md)")
@click.option("--recheckout", type=click.Choice(["refuse", "charge"]), default="refuse", show_default=True,
              help="policy for checking out an already-paid order: refuse (no second effect) or charge again")
@click.option("--min-availability", "min_availability", type=Finite(0.0, 100.0), default=99.0, show_default=True,
              metavar="PCT", help="per operation, the least share (%) of requests (every one, whatever its step "
                                  "expects) that must get an answer (2xx/4xx); below it the run is NOT CLEAN")
@click.option("--strict", is_flag=True, help="every request must be answered (no 5xx, timeout, connection error, skip)")
@click.option("--max-recovery", "max_recovery", type=Finite(0, DAY), default=10.0, show_default=True, metavar="S",
              help="runs with fault windows: a recovery (back to the pre-fault success rate) longer than S "
                   "seconds, or none, makes the run NOT CLEAN; requests in a window or its recovery (at most S) "
                   "are counted apart from --min-availability (docs/faults.md)")
@click.option("--strict-faults", "strict_faults", is_flag=True,
              help="runs with fault windows: a wrong answer during a fault (a contradicted expectation in a window "
                   "or its recovery, counted apart by default) makes the run NOT CLEAN")
def check_cmd(results: str, as_json: bool, verbose: bool, recheckout: str, min_availability: float, strict: bool,
              max_recovery: float, strict_faults: bool) -> None:
    """Check a run: CLEAN (exit 0), NOT CLEAN (exit 1) or INCONCLUSIVE (exit 3).

    Four sections decide: correctness (responses against the trace's expectations), consistency
    (every order's lines and total, item's stock and user's credit recomputed from the history and
    compared with the final state; the trace's proven bounds), availability (share of answered
    requests per operation) and coverage (complete run, every entity read back from a settled
    state, not a lone shard). The first and last lines give the verdict and the sections that decided
    it; the second which bug classes the run covered ("covered: 8 of 13 bug classes (not exercised:
    …)"; JSON: bug_classes): a class the trace never exercised is not judged by a CLEAN. One line per
    section gives its mark (pass, FAIL, INCONCLUSIVE) and the figure that decided it; the details of
    every section that did not pass follow (--verbose: of every section). Exit 2: usage or file
    error. Anomaly kinds and sections: docs/analysis.md; bug classes: docs/bug-classes.md; every
    term printed: docs/glossary.md.

    \b
    Examples:
      wdm-replay check a.wdmr
      wdm-replay check a.wdmr --verbose          # every section's details
      wdm-replay check a.wdmr --json > verdict.json
      wdm-replay check a.wdmr --recheckout charge --min-availability 95
      wdm-replay check a.wdmr --strict
      wdm-replay check faulty.wdmr --max-recovery 5
      wdm-replay check faulty.wdmr --strict-faults
    """
    from ..analysis import check_results, render_check_text, render_json
    from ..analysis.check import paused_gc
    from ..traces import load_results

    with paused_gc():
        run = load_results(results, with_args=True)
    report = check_results(run, recheckout=recheckout, strict=strict, min_availability=min_availability,
                           max_recovery=max_recovery, strict_faults=strict_faults)
    click.echo(render_json(report.as_dict()) if as_json else render_check_text(report, verbose=verbose), nl=False)
    sys.exit(report.verdict.exit_code)


@click.command("explain")
@click.argument("results", type=click.Path(dir_okay=False))
@click.argument("ids", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--recheckout", type=click.Choice(["refuse", "charge"]), default="refuse", show_default=True,
              help="re-checkout policy of the consistency check (see check --help)")
@click.option("--trace", type=click.Path(exists=True, dir_okay=False), default=None,
              help="the run's trace file, to name each entity's create request [default: the path the run "
                   "recorded, or that name beside RESULTS]")
def explain_cmd(results: str, ids: tuple[str, ...], fmt: str, recheckout: str, trace: str | None) -> None:
    """Tell an entity's story: every request that touched it, and the arithmetic of its anomaly.

    For each ID (an item, user or order id — item:ID, user:ID or order:ID when one id names several
    — or an anomaly kind such as lost_update for its first anomaly; none given: the first anomaly of
    each kind), the requests that touched
    it in send order — session, operation, amount, intended/sent/done (ms on the run's clock),
    status and answer; those whose [sent, done] overlap are marked concurrent — then what it
    started with, what the 2xx answers took, and what the final read found. Exit 0; exit 2 for
    an id the run does not know, or a --trace that is not the run's trace.

    \b
    Examples:
      wdm-replay explain a.wdmr                      # the first anomaly of each kind
      wdm-replay explain a.wdmr item-12 user-7       # these entities
      wdm-replay explain a.wdmr lost_update          # the first lost update
      wdm-replay explain a.wdmr user:0               # user 0 (batch_init ids name items and orders too)
      wdm-replay explain a.wdmr --format json > story.json
    """
    from ..analysis import check_results, render_json
    from ..analysis.check import paused_gc
    from ..analysis.story import explain_json, explain_run, render_explain_text
    from ..traces import load_results

    with paused_gc():
        run = load_results(results, with_args=True)
    check = check_results(run, recheckout=recheckout)
    stories = explain_run(run, ids, check.anomalies, trace=trace)
    verdict = check.verdict.verdict
    if fmt == "json":
        click.echo(render_json(explain_json(stories, run=os.path.basename(results), verdict=verdict)), nl=False)
    else:
        by = check.verdict.decided_by
        decided = f", decided by {', '.join(by)}: see wdm-replay check" if by else ""
        click.echo(render_explain_text(stories, verdict=verdict + decided), nl=False)


@click.command("report")
@click.argument("results", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "json", "html"]), default="text", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="write to this file instead of stdout")
@click.option("--recheckout", type=click.Choice(["refuse", "charge"]), default="refuse", show_default=True,
              help="re-checkout policy of the consistency check (see check --help)")
@click.option("--bucket", type=Finite(0, DAY, min_open=True), default=1.0, show_default=True,
              help="seconds per timeline bucket (widened when the run would need more than 10,000)")
@click.option("--no-check", is_flag=True, help="statistics only: skip decoding args and the consistency check (fast)")
def report_cmd(results: str, fmt: str, output: str | None, recheckout: str, bucket: float, no_check: bool) -> None:
    """Report a run: per-operation counts, rates, outcome shares, latency percentiles, the check.

    Text by default: the verdict first and last, outcomes in words (accepted 2xx, refused 4xx,
    unanswered 5xx/timeout/connection error, skipped), latency tables, the check in full (as
    check --verbose); terms: docs/glossary.md. --format json has stable documented keys;
    --format html writes one self-contained page: the verdict in a coloured banner, the sections
    and operations tables, each anomaly's timeline (the story `explain` tells), charts over time
    (the charts need matplotlib: pip install 'wdm-replay[html]'; without it the page says so and
    keeps every table).

    \b
    Examples:
      wdm-replay report a.wdmr
      wdm-replay report a.wdmr --format json -o a.json
      wdm-replay report a.wdmr --format html -o a.html
      wdm-replay report short.wdmr --format html --bucket 0.1 -o short.html   # a run of seconds
      wdm-replay report huge.wdmr --no-check            # statistics of millions of rows in seconds
    """
    from ..analysis import build_report, render_html, render_json, render_text
    from ..traces import load_results, refuse_inputs

    if output:
        refuse_inputs(output, [results])  # `report a.wdmr -o a.wdmr` must not overwrite the run
    data = build_report(load_results(results, with_args=not no_check), recheckout=recheckout, bucket=bucket)
    emit({"text": render_text, "json": render_json, "html": render_html}[fmt](data), output)


def emit(text: str, output: str | None) -> None:
    """A rendered report: to ``output`` (one line on stderr says so) or to stdout."""
    from ..analysis.consistency import AnalysisError
    from ..traces.stream import write_text_atomically

    if output:
        try:
            write_text_atomically(output, text)
        except OSError as e:
            raise AnalysisError(f"{output}: cannot write: {e.strerror}") from None
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


def compare_options(f):
    """Options of the comparison shared by ``compare`` and ``ab``."""
    f = click.option("--no-check", is_flag=True, help="skip the consistency check (no anomaly deltas; faster)")(f)
    f = click.option("--seed", type=SEED, default=0, show_default=True,
                     help="seed of the bootstrap resampling")(f)
    f = click.option("--alpha", type=Finite(0, 1, min_open=True, max_open=True), default=0.05, show_default=True,
                     help="significance level (intervals are 1-alpha); at least 1e-6")(f)
    f = click.option("-o", "--output", type=click.Path(dir_okay=False), help="write to this file instead of stdout")(f)
    f = click.option("--format", "fmt", type=click.Choice(["text", "json", "html"]), default="text",
                     show_default=True, help="html: one self-contained page with charts "
                                             "(needs matplotlib and jinja2: pip install 'wdm-replay[html]')")(f)
    f = click.option("--error-threshold", type=Finite(0, 100), default=1.0, show_default=True,
                     help="percentage points an error share must significantly rise by to count as a regression")(f)
    f = click.option("--threshold", type=Finite(0, 1000), default=10.0, show_default=True,
                     help="percent a significant slow-down (or, at --speed max, drop in rate) must exceed "
                          "to count as a regression")(f)
    return f


def compare_and_exit(paths: list[str], threshold: float, error_threshold: float, fmt: str, output: str | None,
                      alpha: float, seed: int, no_check: bool) -> None:
    from ..analysis.compare import compare_files
    from ..analysis.compare_text import render_compare
    from ..traces import refuse_inputs

    if output:
        refuse_inputs(output, paths)  # `compare A B -o B` must not overwrite a run
    res = compare_files(paths, check=not no_check, threshold=threshold / 100.0,
                        error_threshold=error_threshold / 100.0, alpha=alpha, seed=seed)
    emit(render_compare(res, fmt), output)
    sys.exit(1 if res.regression else 0)


@click.command("compare")
@click.argument("base", type=click.Path(dir_okay=False))
@click.argument("new", nargs=-1, required=True, type=click.Path(dir_okay=False))
@compare_options
def compare_cmd(base: str, new: tuple[str, ...], threshold: float, error_threshold: float, fmt: str,
                output: str | None, alpha: float, seed: int, no_check: bool) -> None:
    """Compare builds replayed with the same trace; exit 1 on a regression.

    Files are grouped by their build label (replay --label); the first group is the base, every
    other group is compared with it. A file without a label is a build of its own. Per operation:
    p50/p90/p99 of answered requests with an interval that includes run-to-run variation
    (two-level bootstrap), error shares, errors' latency apart, anomalies per run; the run rate
    at --speed max. A regression: p50 or p99 significantly slower by more than --threshold, an error
    share significantly higher by more than --error-threshold points, more anomalies of a kind, or
    (--speed max) a significantly lower rate. With one run a side the intervals are widened by a
    calibrated noise floor: compare 3+ runs per build (see ab) for a stronger verdict. The output
    starts with the verdict and lists the gates these runs cannot fire (too few runs or answers,
    a build without answered requests, paced runs for throughput). --format html writes a page
    (verdict banner, tables, interval and latency charts; needs the html extra). Terms:
    docs/glossary.md.

    \b
    Examples:
      wdm-replay compare a.wdmr b.wdmr
      wdm-replay compare a1.wdmr a2.wdmr a3.wdmr b1.wdmr b2.wdmr b3.wdmr   # labelled A, B
      wdm-replay compare a.wdmr b.wdmr --threshold 5 --format json > cmp.json
      wdm-replay compare runs/*.wdmr --format html -o compare.html
    """
    compare_and_exit([base, *new], threshold, error_threshold, fmt, output, alpha, seed, no_check)
