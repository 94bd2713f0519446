"""What a report is made from: one run's data as plain values (no database, no files).

Filled from the run files (:mod:`claire.reporting.report.load`) or, by the runtime, from the
database (``claire.storage.report_queries``); the sections and charts read only this."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import numpy as np

from claire.events import Side
from claire.reporting import metrics as M
from claire.reporting.recorder import Recorder, RoundTrip


@dataclass
class Trip:
    """A round trip (flat to flat on one symbol); ``exit_time`` None while open."""

    symbol: str
    side: str
    quantity: float
    entry_time: int
    entry_price: float
    exit_time: int | None
    exit_price: float | None
    fees: float
    pnl: float  # realised, after fees


@dataclass
class Fill:
    time: int
    symbol: str
    side: str
    quantity: float
    price: float
    fee: float
    signal_id: str | None = None
    reference_price: float | None = None
    slippage_bps: float | None = None
    latency_ms: float | None = None


@dataclass
class Execution:
    """Execution quality of one fill: from ``execution_analysis`` or from the fill itself."""

    time: int
    symbol: str
    side: str
    expected_price: float | None
    fill_price: float
    slippage_bps: float | None
    latency_ms: float | None
    quality_score: float | None = None
    reason: str | None = None


@dataclass
class RiskCount:
    check: str
    action: str
    count: int
    reason: str  # the most frequent reason


@dataclass
class RunData:
    run_id: str
    source: str  # "run files DIR" | "database URL"
    mode: str = "backtest"
    running: bool = False
    start_cash: float = 100_000.0
    symbols: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    #: the run's R3 and R5 limits (shares): max_daily_drawdown_pct, circuit_breaker_threshold_pct
    risk_limits: dict[str, float] = field(default_factory=dict)
    equity_ts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    equity: np.ndarray = field(default_factory=lambda: np.zeros(0))
    exposure: np.ndarray = field(default_factory=lambda: np.zeros(0))  # share of equity
    trips: list[Trip] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # signals, orders, fills
    risk: list[RiskCount] = field(default_factory=list)
    state_changes: list[tuple[int, str, str]] = field(default_factory=list)  # (time, state, reason)
    execution: list[Execution] = field(default_factory=list)
    execution_source: str = "fills"
    market_at_entries: list[dict[str, Any]] = field(default_factory=list)
    market_note: str = ""
    open_positions: list[dict[str, Any]] = field(default_factory=list)
    prices: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # for the benchmark
    prices_note: str = ""
    system: dict[str, Any] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def daily_closes(self) -> list[tuple[int, float]]:
        return daily_closes_arrays(self.equity_ts, self.equity)

    def daily_returns(self) -> list[float]:
        return M.returns_from_closes(self.start_cash, self.daily_closes())

    @property
    def closed_trips(self) -> list[Trip]:
        return [t for t in self.trips if t.exit_time is not None]


def daily_closes_arrays(ts: np.ndarray, eq: np.ndarray) -> list[tuple[int, float]]:
    """``metrics.daily_closes_of`` over arrays: the last equity of each UTC day."""
    if len(ts) == 0:
        return []
    days = ts // M.NS_PER_DAY
    last = np.flatnonzero(np.diff(days)) if len(days) > 1 else np.zeros(0, dtype=np.int64)
    idx = np.append(last, len(days) - 1)
    return [(int(days[i]), float(eq[i])) for i in idx]


def trips_from_fills(fills: list[Fill]) -> list[Trip]:
    """Round trips from fills in time order, paired as the run's recorder pairs them."""
    rec = Recorder(keep_events=False)
    for f in fills:
        rec._pair(SimpleNamespace(symbol=f.symbol, quantity=Decimal(repr(f.quantity)),
                                  price=Decimal(repr(f.price)), fee=Decimal(repr(f.fee)),
                                  side=Side.BUY if f.side == "buy" else Side.SELL, ts_event=f.time, id=""))  # type: ignore[arg-type]
    return [trip_of(t) for t in rec.round_trips]


def trip_of(t: RoundTrip) -> Trip:
    return Trip(symbol=t.symbol, side=t.side, quantity=float(t.quantity), entry_time=t.entry_time,
                entry_price=float(t.entry_price), exit_time=t.exit_time,
                exit_price=None if t.exit_price is None else float(t.exit_price), fees=float(t.fees),
                pnl=float(t.pnl))
