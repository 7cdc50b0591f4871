"""Policies and the loops that run them; no direct I/O (the store is passed in)."""
