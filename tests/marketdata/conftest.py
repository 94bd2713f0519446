"""Fixtures of the market data tests: the bundled files in data/, read once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from claire.marketdata import iter_binance_capture, load_bars_feather

BAR_FILES = ["BTC_USDT-1m.feather", "ETH_USDT-1m.feather", "BNB_USDT-1m.feather", "SOL_USDT-1m.feather",
             "XRP_USDT-1m.feather"]
CAPTURE_FILES = ["spot_btcusdt_20240808.gz", "spot_btcusdt_20240809.gz"]


@pytest.fixture(scope="session")
def bar_paths(data_dir: Path) -> list[Path]:
    return [data_dir / name for name in BAR_FILES]


@pytest.fixture(scope="session")
def capture_paths(data_dir: Path) -> list[Path]:
    return [data_dir / name for name in CAPTURE_FILES]


@pytest.fixture(scope="session")
def bar_files(bar_paths):
    """symbol -> BarFile for the five bundled feather files."""
    return {bf.symbol: bf for bf in (load_bars_feather(p) for p in bar_paths)}


@pytest.fixture(scope="session")
def capture_run(capture_paths):
    """(events, stats) of the two bundled capture files read as one stream."""
    reader = iter_binance_capture(capture_paths)
    events = list(reader)
    return events, reader.stats
