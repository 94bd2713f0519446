"""The composition root: one place that builds the core from one configuration, for every runtime.

The backtest, the one-process paper runtime and every distributed service call :func:`build_core`
with the same :class:`RunConfig`, so they run the same strategy, risk limits, fills and portfolio
(as NautilusTrader's kernel is shared by its backtest and live nodes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from claire.engine.core import EventClock, TradingCore
from claire.events import Event, IdFactory
from claire.execution import ExchangeSimulator, ExecutionConfig, FillMode
from claire.portfolio import Portfolio
from claire.risk import RiskConfig, RiskManager
from claire.strategy.registry import load_strategy
from claire.strategy.signal_engine import SignalEngine


@dataclass
class RunConfig:
    data: list[str | Path] = field(default_factory=list)
    symbol: str | None = None
    strategy: str = "sma_cross"
    params: dict[str, Any] = field(default_factory=dict)
    quantity: Decimal | None = None
    fee_bps: Decimal = Decimal(10)  # taker fee
    maker_fee_bps: Decimal | None = None  # default: same as fee_bps
    slippage_bps: Decimal = Decimal(0)
    fill: str = "next_open"
    risk: str = "default"  # "default" (limits from env / flags) or "none"
    risk_config: RiskConfig | None = None  # limits; `quantity` and `risk` above override
    start_cash: Decimal = Decimal(100_000)
    max_volume_share: Decimal | None = Decimal("0.25")
    max_quote_share: Decimal | None = Decimal(1)
    out: str | Path | None = None
    run_id: str | None = None
    db_url: str | None = None

    def run_key(self) -> str:
        if self.run_id:
            return self.run_id
        names = ",".join(Path(p).name for p in self.data)
        key = f"{self.strategy}:{sorted(self.params.items())}:{names}:{self.quantity}:{self.fill}:{self.risk}"
        return f"run-{hashlib.sha1(key.encode()).hexdigest()[:12]}"



def build_core(cfg: RunConfig, emit: Callable[[Event], Any], ids: IdFactory | None = None) -> TradingCore:
    """The same core for every runtime, configured from one config object."""
    ids = ids or IdFactory(cfg.run_key())
    clock = EventClock()
    strategy_cls = load_strategy(cfg.strategy)
    signals = SignalEngine(strategy_cls, cfg.params, ids)
    portfolio = Portfolio(cfg.start_cash, ids)
    ex_cfg = ExecutionConfig(
        fill=FillMode(cfg.fill), slippage_bps=cfg.slippage_bps, taker_fee_bps=cfg.fee_bps,
        maker_fee_bps=cfg.maker_fee_bps if cfg.maker_fee_bps is not None else cfg.fee_bps,
        max_volume_share=cfg.max_volume_share, max_quote_share=cfg.max_quote_share,
    )
    execution = ExchangeSimulator(ex_cfg, ids, clock)
    base = cfg.risk_config or RiskConfig()
    overrides: dict[str, Any] = {"enabled": cfg.risk != "none", "expected_slippage_bps": cfg.slippage_bps,
                                 "fee_bps": cfg.fee_bps}
    if cfg.quantity is not None:
        overrides["quantity"] = cfg.quantity
    risk_cfg = msgspec.structs.replace(base, **overrides)
    risk = RiskManager(risk_cfg, portfolio, ids, clock)
    return TradingCore(signals, risk, execution, portfolio, clock, emit)
