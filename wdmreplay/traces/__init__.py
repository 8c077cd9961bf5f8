"""File formats: the trace (``wdm-trace``) and the results (``wdm-results``), streamed and versioned."""

from .results import (COLUMNS, EXPECTS, OUTCOMES, Results, ResultsWriter, load_results,
                      results_header)
from .stream import FormatError, file_digest
from .trace import Session, Step, TraceReader, TraceWriter, is_symbol, read_header, step, trace_digest

__all__ = [
    "COLUMNS", "EXPECTS", "OUTCOMES", "FormatError", "Results", "ResultsWriter", "Session", "Step",
    "TraceReader", "TraceWriter", "file_digest", "is_symbol", "load_results", "read_header",
    "results_header", "step", "trace_digest",
]
