"""All services as threads over a real bus give the trades of `claire backtest`."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa

from claire.bus import InMemoryBus, RedisStreamsBus
from claire.config import DataSettings, RunConfig, RuntimeSettings, StrategySettings
from claire.execution import ExecutionConfig
from claire.marketdata import open_market_data
from claire.runtime.backtest import run_backtest
from claire.runtime.distributed.app import spec_from_config
from claire.runtime.distributed.threads import run_services_threads


def _cfg(data_dir, run_id):
    return RunConfig(data=DataSettings(paths=[str(data_dir / "BTC_USDT-1m.feather"), str(data_dir / "ETH_USDT-1m.feather")]),
                     strategy=StrategySettings(name="sma_cross", params={"fast": 10, "slow": 30}),
                     execution=ExecutionConfig(max_volume_share=Decimal("0.05")), runtime=RuntimeSettings(run_id=run_id))


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_services_in_threads_match_backtest(data_dir, tmp_path, backend, request):
    cfg = _cfg(data_dir, f"threads-{backend}")
    ref = run_backtest(cfg, events=list(open_market_data(cfg.data.paths))[:8000])
    db_url = f"sqlite:///{tmp_path}/run.db"
    if backend == "memory":
        shared = InMemoryBus("t:")
        factory = lambda: InMemoryBus("t:", share_with=shared)  # noqa: E731
        bus_url = "memory://"
    else:
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        factory = lambda: RedisStreamsBus(url, prefix)  # noqa: E731
        bus_url = url
    spec = spec_from_config(cfg, bus_url=bus_url, prefix="t:", database_url=db_url)
    # the same first 8000 events: replace the source
    import claire.runtime.distributed.app as app

    orig = app.market_events
    app.market_events = lambda cfg: list(open_market_data(cfg.data.paths))[:8000]
    try:
        services = run_services_threads(spec, factory, timeout=240)
    finally:
        app.market_events = orig
    pf = services["portfolio"].loop.stage.portfolio
    assert pf.equity() == ref.portfolio.equity()
    eng = sa.create_engine(db_url)
    with eng.connect() as c:
        trades = c.execute(sa.text("select count(*) from trades")).scalar()
        orders = c.execute(sa.text("select count(*) from orders")).scalar()
        signals = c.execute(sa.text("select count(*) from signals")).scalar()
        snaps = c.execute(sa.text("select count(*) from portfolio_snapshots")).scalar()
    assert trades == len(ref.fills) > 10
    assert orders == len(ref.recorder.orders)
    assert signals == len(ref.recorder.signals)
    assert snaps == len(ref.recorder.snapshots)
