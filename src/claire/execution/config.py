"""How the simulated exchange fills: fill mode, fees, slippage and the partial-fill limits."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

import msgspec

ZERO = Decimal(0)


class FillMode(StrEnum):
    """At which price a market order fills on bars (see claire.execution.simulator)."""
    NEXT_OPEN = "next_open"
    CLOSE = "close"


class ExecutionConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The paper exchange's fill model: fill mode, fees, slippage and the volume caps."""
    fill: FillMode = FillMode.NEXT_OPEN
    slippage_bps: Decimal = ZERO
    taker_fee_bps: Decimal = Decimal(10)
    maker_fee_bps: Decimal = Decimal(10)
    max_volume_share: Decimal | None = Decimal("0.25")  # None: no volume limit on bars
    max_quote_share: Decimal | None = Decimal(1)  # None: no size limit on quotes

    def __post_init__(self) -> None:
        for name in ("slippage_bps", "taker_fee_bps", "maker_fee_bps"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0")
        for name in ("max_volume_share", "max_quote_share"):
            v = getattr(self, name)
            if v is not None and not (0 < v <= 1):
                raise ValueError(f"`{name}` must be within (0, 1], got {v}")
