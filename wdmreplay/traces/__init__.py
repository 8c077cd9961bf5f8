"""File formats: the trace (``wdm-trace``) and the results (``wdm-results``), streamed and versioned."""

from .results import (COLUMNS, EXPECTS, OUTCOMES, Results, ResultsWriter, load_results,
                      results_header)
from .stream import FormatError, file_digest, part_path, refuse_inputs, refuse_unwritable
from .trace import (Session, Step, TraceHeader, TracePhase, TraceReader, TraceWriter, is_symbol, read_header,
                    read_trace_header, step, trace_digest)

__all__ = [
    "COLUMNS", "EXPECTS", "OUTCOMES", "FormatError", "Results", "ResultsWriter", "Session", "Step",
    "TraceHeader", "TracePhase", "TraceReader", "TraceWriter", "file_digest", "is_symbol", "load_results",
    "part_path", "read_header", "read_trace_header", "refuse_inputs", "refuse_unwritable", "results_header", "step",
    "trace_digest",
]
