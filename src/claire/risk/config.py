"""Risk limits. Defaults are the seeds' (conservative profile); each has an environment variable."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

import msgspec

from claire.events import OrderType, TimeInForce

#: field -> environment variable (the seeds' names where the seeds name one)
ENV_VARS: dict[str, str] = {
    "data_stale_timeout_sec": "DATA_STALE_TIMEOUT_SEC",
    "max_position_pct": "MAX_POSITION_PCT",
    "max_daily_drawdown_pct": "MAX_DAILY_DRAWDOWN_PCT",
    "max_total_exposure_pct": "MAX_TOTAL_EXPOSURE_PCT",
    "circuit_breaker_threshold_pct": "CIRCUIT_BREAKER_THRESHOLD_PCT",
    "max_slippage_pct": "MAX_SLIPPAGE_PCT",
    "max_spread_pct": "MAX_SPREAD_PCT",
    "spread_delay_sec": "SPREAD_DELAY_SEC",
    "min_notional": "MIN_NOTIONAL_USDT",
    "qty_step": "QTY_STEP",
    "allow_short": "ALLOW_SHORT",
    "circuit_breaker_action": "CIRCUIT_BREAKER_ACTION",
    "daily_drawdown_action": "DAILY_DRAWDOWN_ACTION",
}

#: what R5 (circuit breaker) and R3 (daily drawdown halt) do when they trip: ``reduce_only``
#: (no new exposure, orders that reduce a position still pass) or ``flatten`` (also close every
#: position at the trip)
ACTIONS: tuple[str, ...] = ("reduce_only", "flatten")
TripAction = Literal["reduce_only", "flatten"]


class RiskConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The risk limits of one run, validated once at construction: frozen, so a decision can never
    see limits change under it, and recorded with every ``RiskEvent`` (``as_dict``)."""

    enabled: bool = True  # False: `--risk none`, orders are sized but no limit is checked
    data_stale_timeout_sec: Decimal = Decimal(60)  # R1
    max_position_pct: Decimal = Decimal("0.10")  # R2
    max_daily_drawdown_pct: Decimal = Decimal("0.05")  # R3
    max_total_exposure_pct: Decimal = Decimal("0.30")  # R4
    circuit_breaker_threshold_pct: Decimal = Decimal("0.10")  # R5
    max_slippage_pct: Decimal = Decimal("0.02")  # R6
    max_spread_pct: Decimal = Decimal("0.005")  # R7: 50 bps
    spread_delay_sec: Decimal = Decimal(30)  # R7: how long a signal may wait for a narrower spread
    quantity: Decimal | None = None  # fixed order quantity; None: size from equity and limits
    allow_short: bool = False  # spot: a sell needs a position
    min_notional: Decimal = Decimal(5)  # USDT; smaller orders are not sent
    qty_step: Decimal = Decimal("0.000001")  # sized quantities are rounded down to this step
    expected_slippage_bps: Decimal = Decimal(0)  # the execution model's fixed slippage (R6)
    fee_bps: Decimal = Decimal(0)  # the taker fee: limits hold on equity after the order's fee
    circuit_breaker_action: TripAction = "reduce_only"  # R5 trip: reduce_only | flatten
    daily_drawdown_action: TripAction = "reduce_only"  # R3 halt: reduce_only | flatten
    order_type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.GTC

    def __post_init__(self) -> None:
        for name in ("max_position_pct", "max_daily_drawdown_pct", "max_total_exposure_pct",
                     "circuit_breaker_threshold_pct", "max_slippage_pct", "max_spread_pct"):
            v = getattr(self, name)
            if not (0 < v <= 1):
                raise ValueError(f"`{name}` ({ENV_VARS.get(name, name)}) must be a fraction in (0, 1], got {v}")
        for name in ("data_stale_timeout_sec", "qty_step"):
            if not getattr(self, name) > 0:
                raise ValueError(f"`{name}` ({ENV_VARS.get(name, name)}) must be > 0")
        for name in ("spread_delay_sec", "min_notional", "expected_slippage_bps", "fee_bps"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0")
        for name in ("circuit_breaker_action", "daily_drawdown_action"):
            if getattr(self, name) not in ACTIONS:
                raise ValueError(f"`{name}` ({ENV_VARS[name]}) must be one of {', '.join(ACTIONS)}, "
                                 f"got {getattr(self, name)!r}")
        if self.quantity is not None and not self.quantity > 0:
            raise ValueError(f"`quantity` must be > 0, got {self.quantity}")

    def as_dict(self) -> dict[str, Any]:
        """The limits as plain JSON values: every ``RiskEvent`` records the config it was decided under."""
        d: dict[str, Any] = msgspec.to_builtins(self)
        return d
