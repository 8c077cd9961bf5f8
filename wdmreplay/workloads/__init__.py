"""Workloads → traces: the stress scenarios, the consistency and checkout workloads, arrival models."""

from .generate import WORKLOADS, generate, summary_line
from .inspect import inspect_trace, render_inspect, validate_symbols
from .model import ShopModel
from .options import WorkloadError

__all__ = ["WORKLOADS", "WorkloadError", "ShopModel", "generate", "inspect_trace", "render_inspect", "summary_line",
           "validate_symbols"]
