"""Market data readers: files in, typed events (Bar, TradeTick, QuoteTick) out in time order.

- :func:`read_bars_feather` / :func:`load_bars_feather`: freqtrade feather 1m bars;
- :func:`iter_binance_capture`: raw Binance websocket captures (trades and bookTicker quotes);
- :func:`iter_parquet_trades` / :func:`iter_parquet_quotes`: parquet tick files;
- :func:`open_market_data`: any mix of the above, merged in event-time order;
- :func:`symbol_from_path`, :func:`normalize_symbol`: symbols in exchange form (``BTCUSDT``);
- :func:`synthetic_bars`: a deterministic random walk, for tests and demos without data.
"""

from claire.marketdata.bars import BarFile, infer_interval_s, load_bars_feather, read_bars_feather
from claire.marketdata.binance_capture import (
    BinanceCaptureReader,
    CaptureStats,
    estimate_clock_offset,
    iter_binance_capture,
)
from claire.marketdata.parquet_ticks import (
    ParquetTickReader,
    iter_parquet_quotes,
    iter_parquet_trades,
    parquet_kind,
)
from claire.marketdata.reorder import ReorderBuffer
from claire.marketdata.source import MarketData, Source, detect_format, open_market_data
from claire.marketdata.symbols import normalize_symbol, symbol_from_path
from claire.marketdata.synthetic import synthetic_bars

__all__ = [
    "BarFile",
    "BinanceCaptureReader",
    "CaptureStats",
    "MarketData",
    "ParquetTickReader",
    "ReorderBuffer",
    "Source",
    "detect_format",
    "estimate_clock_offset",
    "infer_interval_s",
    "iter_binance_capture",
    "iter_parquet_quotes",
    "iter_parquet_trades",
    "load_bars_feather",
    "normalize_symbol",
    "open_market_data",
    "parquet_kind",
    "read_bars_feather",
    "symbol_from_path",
    "synthetic_bars",
]
