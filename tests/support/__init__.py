"""Test infrastructure shared by the end-to-end tests and the benchmarks (not shipped)."""
