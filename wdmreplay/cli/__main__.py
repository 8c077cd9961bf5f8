"""``python -m wdmreplay.cli``: the same command line as ``python -m wdmreplay``."""

from . import entry

entry()
