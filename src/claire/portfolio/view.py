"""What the risk manager may read of the portfolio, and nothing it could write.

The risk manager decides on the portfolio's state but must never change it (fills change it, in
the order the core feeds them). ``PortfolioView`` is that read-only surface: ``RiskManager``
depends on it, not on ``Portfolio``, so a stage can hand it any portfolio-like state (e.g. one
rebuilt from snapshots) and the type checker catches a write from the risk side. ``Portfolio``
satisfies it structurally (no inheritance, no runtime cost).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Protocol


class PositionView(Protocol):
    """An open position as the risk manager sees it: its signed quantity."""

    @property
    def qty(self) -> Decimal:
        """Signed quantity: > 0 long, < 0 short."""
        ...


class PortfolioView(Protocol):
    """The read-only portfolio the risk checks use (equity, exposure, positions, losses)."""

    @property
    def cash(self) -> Decimal:
        """Free cash in the quote currency: caps what a buy may cost."""
        ...

    @property
    def day(self) -> int:
        """The UTC day (days since the epoch) the portfolio's ``day_start_equity`` belongs to:
        R3 only counts today's loss when the signal is of the same day."""
        ...

    @property
    def open(self) -> Mapping[str, PositionView]:
        """The non-flat positions by symbol: flattening at a trip closes each, and the decision
        record lists them."""
        ...

    @property
    def marks(self) -> Mapping[str, Decimal]:
        """The last mark price by symbol: the price of a flatten when no market data was seen."""
        ...

    def equity(self) -> Decimal:
        """Cash plus the positions marked to market (the circuit breaker's reference at a reset)."""
        ...

    def equity_and_exposure(self) -> tuple[Decimal, Decimal]:
        """``(equity, total exposure)`` in one pass: the basis of R2, R4 and sizing."""
        ...

    def position_qty(self, symbol: str) -> Decimal:
        """The signed quantity held of ``symbol`` (0 when flat): whether an order reduces it."""
        ...

    def daily_loss_pct(self, equity: Decimal | None = None) -> Decimal:
        """Today's loss as a share of the day's start equity (R3)."""
        ...

    def drawdown(self, equity: Decimal | None = None) -> Decimal:
        """How far ``equity`` is below the high-water mark, as a share of it (R5)."""
        ...
