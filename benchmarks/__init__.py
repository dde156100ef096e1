"""Benchmarks: scripts that print tables of medians and same-run ratios (never tests)."""
