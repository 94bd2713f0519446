"""Benchmarks (`claire bench ...`, `make bench`): figures of what a user runs, outside the runtime packages."""
