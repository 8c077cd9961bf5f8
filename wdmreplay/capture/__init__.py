"""Real traffic → traces: the ``record`` proxy (:mod:`.proxy`) and the sessionizer that turns what it saw into a trace."""

from .proxy import CaptureError, record

__all__ = ["CaptureError", "record"]
