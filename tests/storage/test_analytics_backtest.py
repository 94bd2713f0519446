"""Issue 12, acceptance 1: the analytics rows of `claire backtest --db` are complete, checked
against an independent computation from the data file (SQLite and PostgreSQL).

Two and a half days of BTC and ETH one-minute bars: every fill has its price after (the close of
the symbol's next bar) and market impact; every signal of the strategy has its 24h volume (the
sum of the bars that closed in the 24 hours up to it), 1h volatility (stdev of the last 60 log
returns) and trend, and says why spread and depth are NULL (bars carry no quotes); day, week and
run performance rows exist, days with Sharpe."""

from __future__ import annotations

import math
import statistics
from bisect import bisect_right
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.feather as feather
import pytest
import sqlalchemy as sa

from claire.config import DataSettings, RunConfig, RuntimeSettings, StrategySettings
from claire.runtime.backtest import run_backtest_cli
from claire.storage.analytics import NO_PRICE_AFTER
from claire.storage.types import json_loads

NS = 1_000_000_000
DAY = 86_400 * NS
BARS = int(2.5 * 1440)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: Any, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/bt.db"
    return request.getfixturevalue("pg_database")


def _bars(path: Path) -> dict[str, list[Any]]:
    """The file's bars: close time (ns), close and volume as the reader makes them (Decimal of the text)."""
    t = feather.read_table(path).to_pydict()
    ts = [int(d.timestamp()) * NS + 60 * NS for d in t["date"]]
    return {"ts": ts, "close": [Decimal(str(c)) for c in t["close"]], "volume": [Decimal(str(v)) for v in t["volume"]]}


def _ns(value: Any) -> int:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp()) * NS + value.microsecond * 1000


def _meta(v: Any) -> dict[str, Any]:
    return json_loads(v) if isinstance(v, str | bytes) else (v or {})


def test_backtest_rows_are_complete_and_agree_with_the_file(db_url: str, data_dir: Path, tmp_path: Path) -> None:
    files = []
    for sym in ("BTC", "ETH"):
        f = tmp_path / f"{sym}_USDT-1m.feather"
        feather.write_feather(feather.read_table(data_dir / f"{sym}_USDT-1m.feather").slice(0, BARS), f)
        files.append(f)
    cfg = RunConfig(data=DataSettings(paths=[str(f) for f in files]), strategy=StrategySettings(name="momentum"),
                    runtime=RuntimeSettings(database_url=db_url, out=str(tmp_path / "out"), run_id="analytics-bt"))
    run_backtest_cli(cfg, progress=False)
    bars = {"BTCUSDT": _bars(files[0]), "ETHUSDT": _bars(files[1])}
    eng = sa.create_engine(db_url)
    with eng.connect() as c:
        ea = c.execute(sa.text(
            "SELECT symbol, side, execution_ts, execution_price, price_after, market_impact_bps, "
            "execution_quality_score, slippage_bps, signal_to_order_ms, total_latency_ms, metadata "
            "FROM execution_analysis")).all()
        mc = c.execute(sa.text(
            "SELECT symbol, ts, volume_24h, volatility_1h, trend_direction, trend_strength, spread_bps, "
            "order_book_depth, rsi_14, metadata FROM market_conditions")).all()
        perf = c.execute(sa.text(
            "SELECT period_type, period_start, sharpe_ratio, sortino_ratio, total_trades, total_volume, metadata "
            "FROM performance_metrics ORDER BY period_type, period_start")).all()
    eng.dispose()

    # --- execution_analysis: price after = the close of the symbol's next bar after the fill ---
    assert len(ea) > 20
    no_after = 0
    for sym, side, ts, px, after, impact, quality, slip, s2o, total, meta in ea:
        b = bars[sym]
        i = bisect_right(b["ts"], _ns(ts))  # the first bar closing after the fill
        assert quality is not None and slip is not None and s2o is not None and total is not None
        assert "slippage_cause" in _meta(meta)
        if i == len(b["ts"]):  # the data ended after the fill: NULL, and why
            assert after is None and _meta(meta)["unavailable"]["price_after"] == NO_PRICE_AFTER
            no_after += 1
            continue
        assert Decimal(str(after)) == b["close"][i], (sym, ts)
        move = (b["close"][i] - Decimal(str(px))) / Decimal(str(px)) * 10_000
        assert Decimal(str(impact)) == (move if side == "buy" else -move).quantize(Decimal("0.0001"))
    assert no_after <= 2

    # --- market_conditions: 24h volume, 1h volatility and trend from the bars -----------------
    strategy_rows = [r for r in mc if r[8] is not None]  # (the risk manager's own have no RSI)
    assert len(strategy_rows) > 50
    for sym, ts, vol24, vol1h, trend, strength, spread, depth, _rsi, meta in strategy_rows:
        b = bars[sym]
        t = _ns(ts)
        j = bisect_right(b["ts"], t)  # bars closed up to the signal
        lo = bisect_right(b["ts"], t - DAY)
        assert Decimal(str(vol24)) == sum(b["volume"][lo:j], Decimal(0)), (sym, ts)
        closes = [float(x) for x in b["close"][max(0, j - 61):j]]
        rets = [math.log(closes[k + 1]) - math.log(closes[k]) for k in range(len(closes) - 1)]
        assert float(vol1h) == pytest.approx(statistics.stdev(rets), rel=1e-8)
        er = abs(sum(rets)) / sum(abs(r) for r in rets)
        assert float(strength) == pytest.approx(er, abs=2e-6)
        assert trend == ("sideways" if er < 0.2 else "up" if sum(rets) > 0 else "down")
        m = _meta(meta)
        assert spread is None and depth is None
        assert m["unavailable"] == {"spread_bps": "bars carry no quotes", "order_book_depth": "bars carry no order book"}
    # only the risk manager's own signals (a flatten at a trip: no RSI) lack the market context
    assert all(row[2] is not None for row in mc if row[8] is not None)

    # --- performance_metrics: days, weeks, run --------------------------------------------
    kinds = [r[0] for r in perf]
    utc_days = {(t - 1) // DAY for t in bars["BTCUSDT"]["ts"]}  # a bar's time: the minute it closes
    assert kinds.count("day") == len(utc_days) == 4 and kinds.count("run") == 1 and kinds.count("week") >= 1
    days = [r for r in perf if r[0] == "day"]
    assert all(r[2] is not None and r[3] is not None for r in days[:2])  # hourly returns, annualised
    assert all(_meta(r[6])["periods_per_year"] == 8760 for r in days)
    run = next(r for r in perf if r[0] == "run")
    assert run[4] == sum(r[4] for r in days) and Decimal(str(run[5])) == sum((Decimal(str(r[5])) for r in days), Decimal(0))
