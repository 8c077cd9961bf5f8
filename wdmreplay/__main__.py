"""``python -m wdmreplay``: the wdm-replay command line (what the tests and CI run; no PATH needed)."""

from .cli import entry

entry()
