"""Exchange adapters: live market data from real venues (market data only, no trading)."""
