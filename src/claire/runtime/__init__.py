"""Runtimes around the one core: backtest (replay), paper (one process), distributed (a process per service)."""
