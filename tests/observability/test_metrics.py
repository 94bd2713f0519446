"""Metrics that tell the truth (issue 13 point 6): each metric comes from the component that owns
it, under the same name in every runtime, and says what the database says.

* ``claire paper`` (one process, in-process here): after the run the exported equity is the
  equity of the last snapshot in the database, the signal/risk/order counters equal the rows;
* the distributed services (built on Redis, not run): each exports only its own families (the
  portfolio gauges only the portfolio service), every one the heartbeat, run info, disk and
  process metrics; the seeds' names are the same as paper's.
"""

from __future__ import annotations

import threading
from typing import Any

import sqlalchemy as sa
from prometheus_client import generate_latest

from claire.config import RunOptions, make_config
from claire.runtime.metrics import ServiceMetrics, roles_of
from tests.observability._obs import exposed_names

SEEDS = {"signals_generated_total", "risk_decisions_total", "order_processing_seconds_bucket",
         "portfolio_equity_usd", "portfolio_drawdown_ratio", "portfolio_exposure_ratio"}
EVERY_COMPONENT = {"claire_heartbeat_timestamp_seconds", "claire_disk_free_bytes", "claire_disk_size_bytes",
                   "process_start_time_seconds", "process_resident_memory_bytes", "claire_events_in_total",
                   "claire_errors_total"}
OWNED = {
    "signal": {"signals_generated_total"},
    "risk": {"risk_decisions_total", "claire_trading_state"},
    "execution": {"order_processing_seconds_bucket", "claire_order_results_total"},
    "portfolio": {"portfolio_equity_usd", "portfolio_drawdown_ratio", "portfolio_exposure_ratio",
                  "portfolio_daily_pnl_usd", "portfolio_cash_usd", "portfolio_open_positions"},
}
ALL_OWNED = set().union(*OWNED.values())


def _value(text: str, name: str) -> float:
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.split("{", 1)[0].split(" ", 1)[0] == name]
    return sum(values)


def _cfg(bars: int, **kw: Any) -> Any:
    return make_config(RunOptions(synthetic=bars, strategy="momentum", **kw))


def test_ownership_by_name() -> None:
    assert roles_of("paper") == {"signal", "risk", "execution", "portfolio"}
    assert roles_of("signal-3") == {"signal"} and roles_of("signal") == {"signal"}
    assert roles_of("account") == {"risk", "execution", "portfolio"}
    assert roles_of("writer") == roles_of("marketdata") == roles_of("report") == frozenset()
    text = generate_latest(ServiceMetrics("writer").registry).decode()
    assert "portfolio_equity_usd" not in text and "risk_decisions_total" not in text


def test_paper_equity_and_counters_equal_the_database(pg_database: str, tmp_path: Any) -> None:
    from claire.runtime.distributed.app import market_events
    from claire.runtime.paper import PaperRun

    cfg = _cfg(400, out=tmp_path / "out")
    run = PaperRun(cfg, market_events(cfg), db_url=pg_database, port=None, stop=threading.Event(), resume=False)
    summary = run.run(None, None, 2.0)
    assert summary["completed"]
    text = generate_latest(run.metrics.registry).decode()
    eng = sa.create_engine(pg_database)
    with eng.connect() as c:
        final = c.execute(sa.text("SELECT equity FROM portfolio_snapshots ORDER BY ts DESC, "
                                  "(reason = 'final') DESC LIMIT 1")).scalar_one()
        signals = c.execute(sa.text("SELECT count(*) FROM signals")).scalar_one()
        risk = c.execute(sa.text("SELECT count(*) FROM risk_events")).scalar_one()
        filled = c.execute(sa.text("SELECT count(*) FROM trades WHERE status = 'filled'")).scalar_one()
    eng.dispose()
    equity = _value(text, "portfolio_equity_usd")
    assert equity != 100_000.0 and signals > 5, "the run traded"
    assert abs(equity - float(final)) < 1e-6, (equity, final)
    assert _value(text, "signals_generated_total") == signals
    assert _value(text, "risk_decisions_total") == risk
    assert _value(text, "order_processing_seconds_count") == len(run.recorder.results)
    assert _value(text, "claire_order_results_total") == len(run.recorder.results)
    assert filled > 5 and f'claire_order_results_total{{service="paper",status="filled"}} {float(filled)}' in text
    names = exposed_names(text)
    assert names >= SEEDS | EVERY_COMPONENT | ALL_OWNED, sorted(SEEDS | EVERY_COMPONENT | ALL_OWNED - names)
    assert {"claire_run_info", "claire_trading_state", "claire_marketdata_last_event_age_seconds",
            "claire_ready", "claire_database_up"} <= names
    assert 'claire_run_info{live="false",run_id="' + cfg.run_key() + '"' in text
    assert 'claire_trading_state{service="paper",state="active"} 1.0' in text
    assert f'path="{(tmp_path / "out").resolve()}"' in text  # the disk of the run directory


def distributed_expositions(redis_url: str, prefix: str, db_url: str, tmp_path: Any) -> dict[str, str]:
    """/metrics of each distributed service as built by `claire service` (no events processed)."""
    from claire.bus import make_bus
    from claire.runtime.distributed.app import SERVICES, build_service, spec_from_config

    spec = spec_from_config(_cfg(50), bus_url=redis_url, prefix=prefix, database_url=db_url)
    out = {}
    for name in SERVICES:
        if name == "account":
            spec_acc = spec_from_config(_cfg(50), bus_url=redis_url, prefix=prefix + "acc:", database_url=db_url,
                                        topology="account")
            bus = make_bus(redis_url, prefix=prefix + "acc:")
            svc = build_service(name, spec_acc, bus)
        else:
            bus = make_bus(redis_url, prefix=prefix)
            svc = build_service(name, spec, bus)
        out[svc.name] = generate_latest(svc.metrics.registry).decode()
        if name == "writer":
            svc.loop.writer.close()
        bus.close()
    return out


def test_distributed_services_export_only_their_own(redis_url: str, redis_prefix: str, pg_database: str,
                                                    tmp_path: Any) -> None:
    texts = distributed_expositions(redis_url, redis_prefix, pg_database, tmp_path)
    assert set(texts) == {"marketdata", "signal", "risk", "execution", "portfolio", "writer", "account"}
    for service, text in texts.items():
        names = exposed_names(text)
        assert names >= EVERY_COMPONENT, (service, sorted(EVERY_COMPONENT - names))
        own = set().union(*(OWNED[r] for r in roles_of("signal-0" if service == "signal" else service)))
        assert own <= names, (service, sorted(own - names))
        foreign = (ALL_OWNED - own) & names
        assert not foreign, f"{service} exports {sorted(foreign)}, which it does not own"
    # the portfolio gauges: exactly one service of the seeds' topology exports them
    assert [s for s, t in texts.items() if "portfolio_equity_usd" in t and s != "account"] == ["portfolio"]
    assert "claire_marketdata_last_event_age_seconds" in texts["marketdata"]


def test_distributed_metrics_equal_the_database(redis_url: str, redis_prefix: str, pg_database: str) -> None:
    """The same run in the distributed runtime (its services as threads on Redis): each owner's
    metric says what the database says."""
    from claire.bus import make_bus
    from claire.runtime.distributed.app import spec_from_config
    from claire.runtime.distributed.threads import run_services_threads

    spec = spec_from_config(_cfg(300), bus_url=redis_url, prefix=redis_prefix, database_url=pg_database)
    services = run_services_threads(spec, lambda: make_bus(redis_url, prefix=redis_prefix), timeout=120)
    text = {name: generate_latest(svc.metrics.registry).decode() for name, svc in services.items()}
    eng = sa.create_engine(pg_database)
    with eng.connect() as c:
        final = c.execute(sa.text("SELECT equity FROM portfolio_snapshots WHERE reason = 'final'")).scalar_one()
        signals = c.execute(sa.text("SELECT count(*) FROM signals")).scalar_one()
        risk = c.execute(sa.text("SELECT count(*) FROM risk_events")).scalar_one()
        filled = c.execute(sa.text("SELECT count(*) FROM trades WHERE status = 'filled'")).scalar_one()
    eng.dispose()
    assert signals > 5 and filled > 5
    assert abs(_value(text["portfolio"], "portfolio_equity_usd") - float(final)) < 1e-6
    assert _value(text["signal"], "signals_generated_total") == signals
    assert _value(text["risk"], "risk_decisions_total") == risk
    assert f'claire_order_results_total{{service="execution",status="filled"}} {float(filled)}' in text["execution"]
    for name in ("signal", "risk", "execution", "writer", "marketdata"):
        assert "portfolio_equity_usd" not in text[name], name
