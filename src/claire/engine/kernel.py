"""The composition root: one place that builds the core from one configuration, for every runtime.

The backtest, the one-process paper runtime and every distributed service call :func:`build_core`
with the same configuration tree (:class:`claire.config.RunConfig`), so they run the same
strategy, risk limits, fills and portfolio (as NautilusTrader's kernel is shared by its backtest
and live nodes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from claire.config import RunConfig
from claire.engine.core import EventClock, TradingCore
from claire.events import Event, IdFactory
from claire.execution import ExchangeSimulator, FillMode
from claire.portfolio import Portfolio
from claire.risk import RiskManager
from claire.strategy.registry import load_strategy
from claire.strategy.signal_engine import SignalEngine

__all__ = ["RunConfig", "build_core"]


def build_core(cfg: RunConfig, emit: Callable[[Event], Any], ids: IdFactory | None = None) -> TradingCore:
    """The same core for every runtime, configured from one configuration tree."""
    ids = ids or IdFactory(cfg.run_key())
    clock = EventClock()
    strategy_cls = load_strategy(cfg.strategy.name)
    signals = SignalEngine(strategy_cls, cfg.strategy.params, ids)
    portfolio = Portfolio(cfg.portfolio.start_cash, ids)
    ex_cfg = msgspec.structs.replace(cfg.execution, fill=FillMode(cfg.execution.fill))
    # the exchange's trading rules per symbol (empty: the global qty_step / min_notional only)
    rules = cfg.rules or None
    execution = ExchangeSimulator(ex_cfg, ids, clock, rules=rules)
    # the gate's fee and slippage are the execution model's (one value each, in `execution`)
    risk_cfg = msgspec.structs.replace(cfg.risk, expected_slippage_bps=ex_cfg.slippage_bps, fee_bps=ex_cfg.taker_fee_bps)
    risk = RiskManager(risk_cfg, portfolio, ids, clock, rules=rules)
    return TradingCore(signals, risk, execution, portfolio, clock, emit)
