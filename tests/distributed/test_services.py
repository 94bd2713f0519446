"""Operating the services of `claire up`: /health, /ready and /metrics on each service's port,
`claire status`, `claire down`, logs per service and per day, SIGTERM = finish the batch in
hand and exit 0 (a restarted service then carries on, nothing lost)."""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from claire.runtime.backtest import run_backtest
from claire.runtime.distributed import supervisor
from claire.runtime.supervision import read_state
from tests.distributed._dist import (
    SERVICE_NAMES,
    alive,
    all_healthy,
    db_result,
    http_get,
    load_checkpoint,
    make_cfg,
    make_spec,
    metric_values,
    read_pids,
    run_claire,
    stop_all,
    wait_final,
    wait_until,
    write_bars,
)

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres, pytest.mark.xdist_group("distributed")]

LOG_NAME = {"signal": "signal-0"}  # the signal service logs as replica 0


def _metrics(port: int) -> str:
    code, body = http_get(port, "/metrics")
    assert code == 200
    return body.decode()


def _total(text: str, name: str, **labels: str) -> float:
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for lab, v in metric_values(text, name).items() if all(w in lab for w in want))


def test_endpoints_metrics_status_logs_and_down(tmp_path, redis_url, redis_prefix, pg_database, cleanup):
    data = write_bars(tmp_path / "data", ["BTC"], 1500)
    cfg = make_cfg(data)
    bt = run_backtest(make_cfg(data))
    spec = make_spec(cfg, bus_url=redis_url, prefix=redis_prefix, db_url=pg_database)
    ports = spec["runtime"]["ports"]
    state = cleanup.services(tmp_path / "state")
    pids = supervisor.up(spec, state)
    assert set(pids) == set(SERVICE_NAMES)
    wait_final(spec, state)
    wait_until(lambda: all_healthy(spec), 30, "/health of every service", state_dir=state)

    # /health and /ready on each service's own port
    for name in SERVICE_NAMES:
        code, body = http_get(ports[name], "/health")
        health = json.loads(body)
        assert code == 200 and health["service"] == name and health["status"] == "alive", health
        code, body = http_get(ports[name], "/ready")
        ready = json.loads(body)
        assert code == 200 and ready["ready"] is True, ready
        assert ready["checks"]["bus"] is True
        assert http_get(ports[name], "/nothing")[0] == 404
    assert json.loads(http_get(ports["writer"], "/ready")[1])["checks"]["database"] is True
    assert json.loads(http_get(ports["portfolio"], "/health")[1])["done"] is True

    # /metrics: events in/out and the seeds' metrics, with the run's values
    m = {name: _metrics(ports[name]) for name in SERVICE_NAMES}
    n_bars = 1500
    assert _total(m["marketdata"], "claire_events_out_total", stream="market_data") == n_bars
    assert _total(m["signal"], "claire_events_in_total", stream="market_data") == n_bars + 1  # + end_of_data
    assert _total(m["signal"], "claire_events_out_total", stream="signals") == len(bt.recorder.signals)  # topic
    assert _total(m["signal"], "claire_events_out_total") > n_bars  # + the market events it forwards
    for name in ("risk", "execution", "portfolio", "writer"):
        assert _total(m[name], "claire_events_in_total") > n_bars, name
    # the seeds' metrics, each event counted once (all compared, then asserted together)
    got = {
        "signals_generated_total": _total(m["signal"], "signals_generated_total", strategy="sma_cross",
                                          symbol="BTCUSDT"),
        "order_processing_seconds_count": _total(m["execution"], "order_processing_seconds_count"),
        "risk_decisions_total": _total(m["risk"], "risk_decisions_total"),
        "portfolio_equity_usd": round(metric_values(m["portfolio"], "portfolio_equity_usd")[""], 6),
    }
    want = {
        "signals_generated_total": len(bt.recorder.signals),
        "order_processing_seconds_count": len(bt.recorder.results),
        "risk_decisions_total": len(bt.recorder.risk_events),
        "portfolio_equity_usd": round(float(bt.final_equity), 6),
    }
    assert len(bt.recorder.signals) > 20  # (got == want is asserted at the end, after the other checks)
    for name in SERVICE_NAMES:
        assert _total(m[name], "claire_dead_letters_total") == 0

    # `claire status` shows every service alive, healthy and ready
    rows = json.loads(run_claire(["status", "--state-dir", state, "--json"], cwd=tmp_path).stdout)
    assert {r["service"] for r in rows} == set(SERVICE_NAMES)
    for r in rows:
        assert r["alive"] and r["health"] and r["ready"], r
        assert r["port"] == ports[r["service"]] and r["pid"] == pids[r["service"]]
    table = run_claire(["status", "--state-dir", state], cwd=tmp_path).stdout
    for name in SERVICE_NAMES:
        assert name in table

    # logs per service and per (UTC) day
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    for name in SERVICE_NAMES:
        log = state / "logs" / LOG_NAME.get(name, name) / f"{today}.log"
        assert log.exists(), sorted(p.name for p in (state / "logs").iterdir())
        assert "serving /health /ready /metrics" in log.read_text()

    # `claire down` stops them all: SIGTERM, each exits 0
    res = run_claire(["down", "--state-dir", state], cwd=tmp_path)
    for name in SERVICE_NAMES:
        assert f"{name}: stopped" in res.stdout
    for name, pid in pids.items():
        assert read_state(state)["components"][name]["exit_code"] == 0, name  # as the supervisor saw it
        assert not alive(pid)
        log = state / "logs" / LOG_NAME.get(name, name) / f"{today}.log"
        assert "stopped cleanly" in log.read_text(), name
    assert read_pids(state) == {}
    assert "nothing to stop" in run_claire(["down", "--state-dir", state], cwd=tmp_path).stdout

    # and the run is complete in the database
    res = db_result(pg_database)
    assert res["counts"]["trades"] == len(bt.fills)
    assert [Decimal(e) for e in res["final_equity"]] == [bt.final_equity]

    # FAILS on a src bug while each Signal / OrderResult is emitted twice (pipeline + topic
    # stream) and StageService.process observes every emitted item: counted twice.
    assert got == want


@pytest.mark.parametrize("victim", ["risk", "marketdata"])
def test_sigterm_mid_run_exits_zero_and_a_restart_carries_on(victim, tmp_path, redis_url, redis_prefix,
                                                               pg_database, cleanup):
    data = write_bars(tmp_path / "data", ["BTC", "ETH"], 1200)
    bt = run_backtest(make_cfg(data))
    spec = make_spec(make_cfg(data), bus_url=redis_url, prefix=redis_prefix, db_url=pg_database, speed=16_000.0)
    state = cleanup.services(tmp_path / "state")
    pids = supervisor.up(spec, state)

    def progress() -> int:
        cp = load_checkpoint(spec, victim)
        if cp is None:
            return 0
        st = json.loads(cp[1])
        return st["pos"] if victim == "marketdata" else st["cur"]

    wait_until(lambda: progress() >= 800, 90, f"{victim} mid-run", interval=0.02, state_dir=state)
    os.kill(pids[victim], signal.SIGTERM)
    t0 = time.monotonic()
    # the supervisor (whose child it is) sees it exit 0 and starts it again after its first backoff
    comp = wait_until(lambda: (c := read_state(state).get("components", {}).get(victim, {})).get("restarts") and c,
                      15, f"{victim} to be restarted", state_dir=state)
    at = progress()
    assert comp["exit_code"] == 0, f"{victim} exited {comp['exit_code']} on SIGTERM"
    assert time.monotonic() - t0 < 5 + 1
    assert 0 < at < 2400, "SIGTERM must hit the run in progress"
    log = (state / "logs" / victim).glob("20*.log")
    assert "stopped cleanly" in "".join(p.read_text() for p in log)

    wait_final(spec, state)
    stop_all(state)
    res = db_result(pg_database)
    assert [r[0] for r in res["trades"]] == [f.id for f in sorted(bt.fills, key=lambda f: (f.ts_event, f.id))]
    assert res["counts"]["orders"] == len(bt.recorder.orders)
    assert res["counts"]["signals"] == len(bt.recorder.signals)
    assert res["counts"]["portfolio_snapshots"] == len(bt.recorder.snapshots)
    assert [Decimal(e) for e in res["final_equity"]] == [bt.final_equity]
