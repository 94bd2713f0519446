"""Paper execution: a simulated exchange that fills orders against market data."""

from claire.execution.paper import ExecutionConfig, FillMode, PaperExecution

__all__ = ["ExecutionConfig", "FillMode", "PaperExecution"]
