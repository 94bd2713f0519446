"""`claire backtest --db` fills every table that applies, on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pyarrow.feather as feather
import pytest
import sqlalchemy as sa

from claire.config import DataSettings, RunConfig, RuntimeSettings, StrategySettings
from claire.risk import RiskConfig
from claire.runtime.backtest import run_backtest_cli

TABLES = ["runs", "signals", "orders", "trades", "positions", "portfolio_snapshots", "risk_events",
          "execution_analysis", "performance_metrics", "market_conditions", "alerts", "strategy_versions",
          "schema_version"]


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/bt.db"
    return request.getfixturevalue("pg_database")


def test_replay_fills_every_table(db_url: str, data_dir: Path, tmp_path: Path) -> None:
    f = tmp_path / "ETH_USDT-1m.feather"
    feather.write_feather(feather.read_table(data_dir / "ETH_USDT-1m.feather").slice(0, 6000), f)
    # a tight circuit breaker so that the run also raises an alert
    cfg = RunConfig(data=DataSettings(paths=[str(f)]), strategy=StrategySettings(name="momentum"),
                    risk=RiskConfig(circuit_breaker_threshold_pct=Decimal("0.004")),
                    runtime=RuntimeSettings(database_url=db_url, out=str(tmp_path / "out")))
    summary = run_backtest_cli(cfg, progress=False)
    eng = sa.create_engine(db_url)
    with eng.connect() as c:
        counts = {t: c.execute(sa.text(f"select count(*) from {t}")).scalar() for t in TABLES}
        bad = c.execute(sa.text("select count(*) from trades where price <= 0")).scalar()
        market_with_price = c.execute(sa.text(
            "select count(*) from orders where order_type = 'market' and price is not null")).scalar()
        modes = c.execute(sa.text("select mode from runs")).scalars().all()
        periods = dict(c.execute(sa.text(
            "select period_type, count(*) from performance_metrics group by period_type")).all())
        no_price_after = c.execute(sa.text(
            "select count(*) from execution_analysis where price_after is null")).scalar()
        no_volume = c.execute(sa.text("select count(*) from market_conditions where volume_24h is null")).scalar()
    eng.dispose()
    assert all(n > 0 for n in counts.values()), {t: n for t, n in counts.items() if not n}
    assert counts["signals"] == summary["signals"] and counts["orders"] == summary["orders"]
    assert counts["trades"] == summary["fills"]
    assert counts["alerts"] >= 1 and bad == 0 and market_with_price == 0 and modes == ["backtest"]
    # 6,000 minutes, Mon 2026-03-23 12:09 to Fri 03-27 16:08: 5 UTC days in one ISO week, and the run
    assert periods == {"day": summary["days"], "week": 1, "run": 1}
    assert no_price_after <= 1 and no_volume == 0  # only a fill at the very end has no price after
