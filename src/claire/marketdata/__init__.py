"""Market data readers: files in, typed events (Bar, TradeTick, QuoteTick) out in time order.

- :func:`read_bars_feather` / :func:`load_bars_feather`: freqtrade feather 1m bars;
- :func:`load_bars_csv`: Binance kline CSVs (``.csv``, ``.csv.gz``, ``.zip``) and plain OHLCV CSVs;
- :class:`BarTable` / :func:`iter_bars`: bars held as Arrow columns, events built while iterating;
- :func:`iter_binance_capture`: raw Binance websocket captures (trades and bookTicker quotes);
- :func:`iter_parquet_trades` / :func:`iter_parquet_quotes`: parquet tick files;
- :func:`open_market_data`: any mix of the above, merged in event-time order;
- :func:`symbol_from_path`, :func:`normalize_symbol`: symbols in exchange form (``BTCUSDT``);
- :func:`synthetic_bars`: a deterministic random walk, for tests and demos without data.

A file that cannot be read raises :class:`DataFileError` (a ``ValueError``), one line naming
the file and what was expected.
"""

from claire.marketdata.bars import (
    BarFile,
    BarTable,
    infer_interval_s,
    iter_bars,
    load_bars_feather,
    read_bars_feather,
)
from claire.marketdata.binance_capture import (
    BinanceCaptureReader,
    CaptureStats,
    estimate_clock_offset,
    iter_binance_capture,
)
from claire.marketdata.csv_bars import load_bars_csv
from claire.marketdata.errors import DataFileError, DataFileNotFoundError
from claire.marketdata.parquet_ticks import (
    ParquetTickReader,
    iter_parquet_quotes,
    iter_parquet_trades,
    parquet_kind,
)
from claire.marketdata.reorder import ReorderBuffer
from claire.marketdata.source import MarketData, Source, detect_format, load_bars, open_market_data
from claire.marketdata.symbols import normalize_symbol, symbol_from_path
from claire.marketdata.synthetic import synthetic_bars

__all__ = [
    "BarFile",
    "BarTable",
    "BinanceCaptureReader",
    "CaptureStats",
    "DataFileError",
    "DataFileNotFoundError",
    "MarketData",
    "ParquetTickReader",
    "ReorderBuffer",
    "Source",
    "detect_format",
    "estimate_clock_offset",
    "infer_interval_s",
    "iter_bars",
    "iter_binance_capture",
    "iter_parquet_quotes",
    "iter_parquet_trades",
    "load_bars",
    "load_bars_csv",
    "load_bars_feather",
    "normalize_symbol",
    "open_market_data",
    "parquet_kind",
    "read_bars_feather",
    "symbol_from_path",
    "synthetic_bars",
]
