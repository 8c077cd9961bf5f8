"""Workloads → traces: the stress scenarios, the consistency and checkout workloads, arrival models."""
