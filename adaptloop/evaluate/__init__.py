"""Metrics and per-example predictions; never trains."""
