"""Runtimes that wire the deterministic core: replay/backtest, paper (one process)."""
