"""wdm-replay: deterministic recorded-trace replay for the WDM microservice shop."""

__version__ = "0.1.0"
