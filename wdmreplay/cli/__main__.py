"""``python -m wdmreplay.cli``: the same command line as ``python -m wdmreplay``."""

from . import main

main()
