"""Strategies: the interface users subclass, the signal engine, indicators and built-ins."""

from claire.strategy.base import Strategy, coerce_params
from claire.strategy.builtin import Momentum, SmaCross
from claire.strategy.params import Param, ParamError, Rule
from claire.strategy.registry import (
    BUILTINS,
    StrategyLoadError,
    load_strategy,
    parse_params,
    strategy_names,
    strategy_params,
)
from claire.strategy.signal_engine import SignalEngine

__all__ = [
    "BUILTINS",
    "Momentum",
    "Param",
    "ParamError",
    "Rule",
    "SignalEngine",
    "SmaCross",
    "Strategy",
    "StrategyLoadError",
    "coerce_params",
    "load_strategy",
    "parse_params",
    "strategy_names",
    "strategy_params",
]
