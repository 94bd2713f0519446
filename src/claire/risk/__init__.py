"""Risk manager: checks R1-R7 on every signal, sizes orders, keeps the trading state."""

from claire.risk.config import RiskConfig
from claire.risk.manager import RiskManager

__all__ = ["RiskConfig", "RiskManager"]
