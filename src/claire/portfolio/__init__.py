"""Portfolio: cash, positions, PnL, exposure, drawdown. A deterministic state machine."""

from claire.portfolio.portfolio import Portfolio, Position

__all__ = ["Portfolio", "Position"]
