"""Issue 12, acceptance 1, in the distributed runtime: every service as a thread over Redis, into
PostgreSQL. The writer completes the fills' prices after from the pipeline's stream and writes
performance rows at the day boundaries; the analytics rows equal those of `claire backtest --db`
on the same data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.feather as feather
import sqlalchemy as sa

from claire.bus import RedisStreamsBus
from claire.config import DataSettings, RunConfig, RuntimeSettings, StrategySettings
from claire.runtime.backtest import run_backtest_cli
from claire.runtime.distributed.app import spec_from_config
from claire.runtime.distributed.threads import run_services_threads

BARS = 2 * 1440

EA = ("SELECT trade_id, price_before, price_after, market_impact_bps, slippage_bps, execution_quality_score, "
      "total_latency_ms FROM execution_analysis ORDER BY trade_id")
MC = ("SELECT signal_id, volume_24h, volatility_1h, trend_direction, trend_strength, spread_bps "
      "FROM market_conditions ORDER BY signal_id")


def _rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    eng = sa.create_engine(url)
    with eng.connect() as c:
        out = [tuple(str(v) if v is not None else None for v in r) for r in c.execute(sa.text(sql))]
    eng.dispose()
    return out


def test_up_completes_the_analytics_rows(data_dir: Path, tmp_path: Path, redis_url: str, redis_prefix: str,
                                         pg_database: str) -> None:
    files = []
    for sym in ("BTC", "ETH"):
        f = tmp_path / f"{sym}_USDT-1m.feather"
        feather.write_feather(feather.read_table(data_dir / f"{sym}_USDT-1m.feather").slice(0, BARS), f)
        files.append(str(f))
    cfg = RunConfig(data=DataSettings(paths=files), strategy=StrategySettings(name="momentum"),
                    runtime=RuntimeSettings(run_id="analytics-up"))
    spec = spec_from_config(cfg, bus_url=redis_url, prefix=redis_prefix, database_url=pg_database)
    services = run_services_threads(spec, lambda: RedisStreamsBus(redis_url, redis_prefix), timeout=240)
    assert services["writer"].loop.analytics.refreshed >= 2  # at the day boundaries, and at the end

    bt_url = f"sqlite:///{tmp_path}/bt.db"
    run_backtest_cli(RunConfig(data=DataSettings(paths=files), strategy=StrategySettings(name="momentum"),
                               runtime=RuntimeSettings(database_url=bt_url, run_id="analytics-up")), progress=False)
    up_ea, bt_ea = _rows(pg_database, EA), _rows(bt_url, EA)
    assert len(up_ea) > 10 and sum(r[2] is not None for r in up_ea) >= len(up_ea) - 2

    def num(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:  # NUMERIC vs SQLite text: compare values
        return [tuple(float(v) if v is not None and k else v for k, v in enumerate(r)) for r in rows]

    assert num(up_ea) == num(bt_ea)
    up_mc, bt_mc = _rows(pg_database, MC), _rows(bt_url, MC)
    assert [(r[0], float(r[1]) if r[1] else None, float(r[2]) if r[2] else None, r[3]) for r in up_mc] == \
        [(r[0], float(r[1]) if r[1] else None, float(r[2]) if r[2] else None, r[3]) for r in bt_mc]
    perf = _rows(pg_database, "SELECT period_type, sharpe_ratio FROM performance_metrics")
    assert sorted({p[0] for p in perf}) == ["day", "run", "week"]
    assert [p[0] for p in perf].count("day") == 3 and any(p[0] == "day" and p[1] is not None for p in perf)
