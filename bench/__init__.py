"""Benchmarks: `make bench-cluster` (takeover, key movement, lost writes)."""
