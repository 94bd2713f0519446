"""Issue 12, acceptance 1, in `paper`: performance rows of a finished UTC day appear while the run
goes on (at the day boundary of event time), and at the end every fill has its price after and
every strategy signal its market context, the same figures as `claire backtest --db` stores
(SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.feather as feather
import pytest
import sqlalchemy as sa

from claire.config import DataSettings, RunConfig, RuntimeSettings, StrategySettings
from claire.marketdata import open_market_data
from claire.runtime.backtest import run_backtest_cli
from claire.runtime.paper import run_paper

NS = 1_000_000_000
DAY = 86_400 * NS
BARS = 2 * 1440


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: Any, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/paper.db"
    return request.getfixturevalue("pg_database")


def _day_rows(eng: sa.Engine) -> int:
    with eng.connect() as c:
        return c.execute(sa.text("SELECT count(*) FROM performance_metrics WHERE period_type = 'day'")).scalar() or 0


def test_paper_writes_day_rows_as_it_goes(db_url: str, data_dir: Path, tmp_path: Path) -> None:
    files = []
    for sym in ("BTC", "ETH"):
        f = tmp_path / f"{sym}_USDT-1m.feather"
        feather.write_feather(feather.read_table(data_dir / f"{sym}_USDT-1m.feather").slice(0, BARS), f)
        files.append(str(f))
    events = list(open_market_data(files, None))
    second_day = (events[0].ts_event // DAY + 1) * DAY
    eng = sa.create_engine(db_url)
    mid_run: list[int] = []

    def paced() -> Iterator[Any]:
        """The events; an hour into the second UTC day, wait until the first day's row is stored."""
        for ev in events:
            if not mid_run and ev.ts_event >= second_day + 3600 * NS:
                deadline = time.monotonic() + 30
                n = 0
                while time.monotonic() < deadline:
                    n = _day_rows(eng)
                    if n:
                        break
                    time.sleep(0.05)
                mid_run.append(n)
            yield ev

    cfg = RunConfig(data=DataSettings(paths=files), strategy=StrategySettings(name="momentum"),
                    runtime=RuntimeSettings(run_id="analytics-paper"))
    summary = run_paper(cfg, paced(), db_url=db_url, port=None, checkpoint_every_s=0.2,
                        spool_dir=tmp_path / "spool")
    assert summary["completed"]
    assert mid_run == [1]  # the first day's row, before the run went on past its second day
    with eng.connect() as c:
        ea = c.execute(sa.text("SELECT count(*), count(price_after), count(market_impact_bps) "
                               "FROM execution_analysis")).one()
        mc = c.execute(sa.text("SELECT signal_id, volume_24h, volatility_1h, trend_direction, trend_strength "
                               "FROM market_conditions WHERE rsi_14 IS NOT NULL ORDER BY signal_id")).all()
        perf = c.execute(sa.text("SELECT period_type, sharpe_ratio FROM performance_metrics ORDER BY 1, 2")).all()
    eng.dispose()
    assert ea[0] > 10 and ea[0] - ea[1] <= 2 and ea[1] == ea[2]  # (a fill at the very end has no price after)
    assert mc and all(r[1] is not None and r[2] is not None and r[3] is not None for r in mc)
    assert [p[0] for p in perf].count("day") == 3 and any(p[0] == "day" and p[1] is not None for p in perf)
    assert {p[0] for p in perf} == {"day", "week", "run"}

    # the same market_conditions figures as a backtest of the same data stores
    bt_url = f"sqlite:///{tmp_path}/bt.db"
    run_backtest_cli(RunConfig(data=DataSettings(paths=files), strategy=StrategySettings(name="momentum"),
                               runtime=RuntimeSettings(database_url=bt_url, run_id="analytics-paper")), progress=False)
    bt = sa.create_engine(bt_url)
    with bt.connect() as c:
        bt_mc = c.execute(sa.text("SELECT signal_id, volume_24h, volatility_1h, trend_direction, trend_strength "
                                  "FROM market_conditions WHERE rsi_14 IS NOT NULL ORDER BY signal_id")).all()
    bt.dispose()

    def norm(rows: list[Any]) -> list[tuple[Any, ...]]:
        return [(r[0], str(r[1]).rstrip("0"), float(r[2]), r[3], float(r[4])) for r in rows]

    assert norm(mc) == norm(bt_mc)
