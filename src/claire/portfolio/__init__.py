"""Portfolio: cash, positions, PnL, exposure, drawdown. A deterministic state machine."""

from claire.portfolio.portfolio import Portfolio, Position
from claire.portfolio.view import PortfolioView, PositionView

__all__ = ["Portfolio", "PortfolioView", "Position", "PositionView"]
