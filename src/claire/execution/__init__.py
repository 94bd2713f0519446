"""Execution: the simulated exchange (a deterministic state machine) that fills paper orders
against market data, and its configuration."""

from claire.execution.config import ExecutionConfig, FillMode
from claire.execution.simulator import ExchangeSimulator

__all__ = ["ExchangeSimulator", "ExecutionConfig", "FillMode"]
