"""The engine: the TradingCore and the one composition root (kernel) every runtime uses."""
