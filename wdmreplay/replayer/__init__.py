"""Replay a trace against a target: scheduler, session runner, HTTP client, results writer, workers."""
