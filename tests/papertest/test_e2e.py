"""`claire papertest` end to end, as a user runs it: against `claire mexc-fake` replaying the
bundled real BTC and ETH 1m data at high speed, 25 hours of market data (so more than one UTC
day: the run crosses midnight) in well under a minute of wall time.

On the way: the paper component is killed (`kill -9`) and the supervisor restarts it (counted,
pushed); then the supervisor AND the component are killed and `papertest resume` continues the
same run from its database checkpoint, the missed bars repaired by REST. At the end: the report
and its verdict, and in the local apprise json:// receiver a forced drawdown alert, a daily
summary, the restart and the final summary. The database rows show nothing twice and no hole.
"""

from __future__ import annotations

import itertools
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.papertest.conftest import alive, claire, cleanup_run, kill9, state, wait_until
from tests.support.ports import free_port_base

pytestmark = [pytest.mark.slow]

DURATION_H = 25
#: the bundled files start at 2026-03-23 12:09 UTC: with 471 bars of history the stream starts at 20:00
HISTORY_1P = 471
#: the distributed run (six processes on the bus: slower) crosses one UTC midnight in 4 h, from 23:00
HISTORY_DIST = 651
DURATION_DIST_H = 4
SPEED_DIST = 20
MINUTE = timedelta(minutes=1)


def _env(notify_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAIRE_", "MEXC_"))}
    return {**env, "CLAIRE_NOTIFY_URLS": notify_url, "CLAIRE_ALERT_DRAWDOWN_PCT": "0.001", "NO_COLOR": "1",
            "COLUMNS": "200", **extra}


def _event_hours(engine: Any, run_id: str, start_ms: int) -> float:
    with engine.connect() as c:
        ts = c.execute(text("SELECT max(ts) FROM portfolio_snapshots WHERE run_id = :r"), {"r": run_id}).scalar()
    if ts is None:
        return 0.0
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts)
    ts = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    return (ts.timestamp() * 1000 - start_ms) / 3_600_000


def _ts(v: Any) -> datetime:
    t = datetime.fromisoformat(v) if isinstance(v, str) else v
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _assert_rows(engine: Any, run_id: str, start_ms: int, end_ms: int) -> None:
    """Nothing twice, no hole: one periodic snapshot per minute from start to end, every fill once."""
    with engine.connect() as c:
        periodic = [_ts(r[0]) for r in c.execute(text(
            "SELECT ts FROM portfolio_snapshots WHERE run_id = :r AND reason = 'periodic' ORDER BY ts"), {"r": run_id})]
        fills = c.execute(text("SELECT count(*), count(DISTINCT order_id || ':' || cum_quantity) FROM trades "
                               "WHERE run_id = :r"), {"r": run_id}).one()
        resumed = c.execute(text("SELECT count(*) FROM alerts WHERE run_id = :r AND code = 'data_quality.gap_repaired' "
                                 "AND message LIKE '%(resume)%'"), {"r": run_id}).scalar()
        final = c.execute(text("SELECT count(*) FROM portfolio_snapshots WHERE run_id = :r AND reason = 'final'"),
                          {"r": run_id}).scalar()
    assert len(periodic) == len(set(periodic)), "a periodic snapshot twice"
    minutes = [p.replace(second=0, microsecond=0) for p in periodic]
    assert len(minutes) == len(set(minutes)), "two periodic snapshots in one minute"
    holes = [(a, b) for a, b in itertools.pairwise(minutes) if b - a != MINUTE]
    assert not holes, f"minutes without market data: {holes[:5]}"
    first, last = minutes[0].timestamp() * 1000, minutes[-1].timestamp() * 1000
    assert first <= start_ms + 5 * 60_000, "the run does not start where it was started"
    assert last >= end_ms - 5 * 60_000, "the run ends before its duration"
    assert last <= end_ms + 60_000, "the run goes past its duration"
    assert {m.date() for m in minutes} >= {minutes[0].date(), minutes[0].date() + timedelta(days=1)}
    assert fills[0] > 0 and fills[0] == fills[1], f"fills twice: {fills}"
    assert resumed >= 1, "the resume's repaired bars are not recorded"
    assert final == 1


def test_papertest_one_process(tmp_path: Path, fake_exchange: Any, receiver: Any) -> None:
    rec, url = receiver
    run_dir = tmp_path / "pt"
    env = _env(url)
    fake = fake_exchange(history=HISTORY_1P)
    try:
        res = claire("papertest", "start", "--mexc-url", fake.rest_url, "--symbols", "BTCUSDT,ETHUSDT",
                     "--duration", f"{DURATION_H}h", "--run-dir", str(run_dir), env=env)
        assert res.returncode == 0, res.stderr + res.stdout
        fake.release()
        assert "running" in res.stdout
        st = state(run_dir)
        assert st["clock"] == "exchange" and st["status"] == "running"
        assert oct((run_dir / "papertest.json").stat().st_mode & 0o777) == "0o600"
        engine = create_engine(f"sqlite:///{run_dir / 'papertest.db'}")
        st = wait_until(lambda: (s := state(run_dir))["start_event_ms"] and s, 30, "the run's start")
        start_ms, end_ms = st["start_event_ms"], st["end_event_ms"]
        assert end_ms - start_ms == DURATION_H * 3_600_000

        # a component killed: the supervisor restarts it (counted, pushed) and it resumes
        wait_until(lambda: _event_hours(engine, st["run_id"], start_ms) > 3, 60, "3 h of market data")
        kill9(st["components"]["paper"])
        wait_until(lambda: state(run_dir)["restarts"].get("paper") == 1, 30, "the restart")
        wait_until(lambda: rec.has("was restarted"), 10, "the restart's notification")
        with engine.connect() as c:
            assert c.execute(text("SELECT count(*) FROM alerts WHERE run_id = :r AND code = 'service_restarted'"),
                             {"r": st["run_id"]}).scalar() == 1

        # the supervisor and the component killed: `resume` goes on with the same run
        wait_until(lambda: _event_hours(engine, st["run_id"], start_ms) > 10, 60, "10 h of market data")
        st = state(run_dir)
        kill9(st["supervisor_pid"])
        kill9(st["components"]["paper"])
        res = claire("papertest", "status", "--run-dir", str(run_dir), env=env)
        assert res.returncode == 0, res.stderr
        assert "supervisor" in res.stdout
        res = claire("papertest", "resume", "--run-dir", str(run_dir), env=env)
        assert res.returncode == 0, res.stderr + res.stdout
        assert st["run_id"] in res.stdout

        st = wait_until(lambda: (s := state(run_dir))["status"] == "finished" and s, 120, "the end of the run", 0.5)
        assert not alive(st.get("supervisor_pid") or 0)
        assert st["resumed"] == 1 and st["restarts"]["paper"] >= 1
        report = Path(st["report"])
        assert report.is_file() and report.stat().st_size > 10_000, st["verdict"]
        assert st["verdict"] and not st["verdict"].startswith("no report")
        _assert_rows(engine, st["run_id"], start_ms, end_ms)
        wait_until(lambda: rec.has("papertest finished"), 15, "the final summary")
        assert rec.has("] drawdown"), "no drawdown alert pushed"
        assert rec.has("daily summary"), "no daily summary pushed"
        res = claire("papertest", "report", "--run-dir", str(run_dir), env=env)
        assert res.returncode == 0 and str(report) in res.stdout
        res = claire("papertest", "resume", "--run-dir", str(run_dir), env=env)
        assert res.returncode == 2 and "finished" in res.stderr
        engine.dispose()
    finally:
        cleanup_run(run_dir)


def _free_base() -> int:
    """A port base with the seven service ports (and signal's replica port) free, below the
    ephemeral range (an outgoing connection cannot take one of them before a service binds it)."""
    return free_port_base([*range(7), 11])


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.xdist_group("distributed")
def test_papertest_distributed(tmp_path: Path, fake_exchange: Any, receiver: Any, pg_database: str,
                               redis_url: str) -> None:
    rec, url = receiver
    run_dir = tmp_path / "pt"
    env = _env(url)
    fake = fake_exchange(history=HISTORY_DIST, speed=SPEED_DIST)
    try:
        res = claire("papertest", "start", "--distributed", "--mexc-url", fake.rest_url,
                     "--symbols", "BTCUSDT,ETHUSDT", "--duration", f"{DURATION_DIST_H}h", "--run-dir", str(run_dir),
                     "--db", pg_database, "--redis", redis_url, "--port", str(_free_base()), env=env)
        assert res.returncode == 0, res.stderr + res.stdout
        fake.release()
        st = state(run_dir)
        assert st["distributed"] and set(st["components"]) >= {"marketdata", "signal", "risk", "writer"}
        engine = create_engine(pg_database)
        st = wait_until(lambda: (s := state(run_dir))["start_event_ms"] and s, 60, "the run's start", 0.5)
        start_ms, end_ms = st["start_event_ms"], st["end_event_ms"]

        # a service killed: the supervisor restarts it, the run goes on
        wait_until(lambda: _event_hours(engine, st["run_id"], start_ms) > 1, 60, "1 h of market data")
        # and the market data service with it: restarted, it fetches every bar closed while it was
        # down (by REST, from its last published one), so no minute is missing below
        kill9(st["components"]["signal"])
        kill9(st["components"]["marketdata"])
        wait_until(lambda: state(run_dir)["restarts"].get("signal") == 1, 60, "the restart")
        wait_until(lambda: state(run_dir)["restarts"].get("marketdata") == 1, 60, "the market data restart")
        res = claire("papertest", "status", "--run-dir", str(run_dir), env=env)
        assert res.returncode == 0 and "signal" in res.stdout

        st = wait_until(lambda: (s := state(run_dir))["status"] == "finished" and s, 150, "the end of the run", 0.5)
        report = Path(st["report"])
        assert report.is_file() and st["verdict"] and not st["verdict"].startswith("no report")
        with engine.connect() as c:
            periodic = [_ts(r[0]) for r in c.execute(text(
                "SELECT ts FROM portfolio_snapshots WHERE run_id = :r AND reason = 'periodic' ORDER BY ts"),
                {"r": st["run_id"]})]
            fills = c.execute(text("SELECT count(*), count(DISTINCT order_id || ':' || cum_quantity) FROM trades "
                                   "WHERE run_id = :r"), {"r": st["run_id"]}).one()
        minutes = [p.replace(second=0, microsecond=0) for p in periodic]
        assert len(minutes) == len(set(minutes))
        holes = [(a, b) for a, b in itertools.pairwise(minutes) if b - a != MINUTE]
        assert not holes, f"minutes without market data: {holes[:5]}"
        assert minutes[-1].timestamp() * 1000 >= end_ms - 5 * 60_000
        assert {m.date() for m in minutes} >= {minutes[0].date(), minutes[0].date() + timedelta(days=1)}
        assert fills[0] > 0 and fills[0] == fills[1]
        wait_until(lambda: rec.has("papertest finished"), 15, "the final summary")
        pushed = [t for t in rec.texts() if "was restarted" in t]
        assert len(pushed) == sum(st["restarts"].values()) >= 2, pushed  # each restart pushed once
        assert rec.has("] drawdown"), "no drawdown alert pushed"
        assert rec.has("daily summary"), "no daily summary pushed"
        import redis

        client = redis.Redis.from_url(redis_url)
        prefix = json.loads((run_dir / "supervisor" / "spec.json").read_text())["runtime"]["prefix"]
        assert not list(client.scan_iter(match=prefix + "*", count=1000)), "the finished run's bus keys remain"
        client.close()
        engine.dispose()
    finally:
        cleanup_run(run_dir)


def test_papertest_stop_with_the_live_view(tmp_path: Path) -> None:
    """`start --source mexc-fake --web` (the fake a component of the run), the live view answers;
    `stop` finishes the run long before its 7 days: the report, and nothing left running."""
    import urllib.request

    run_dir = tmp_path / "pt"
    env = _env("")
    env.pop("CLAIRE_NOTIFY_URLS")
    try:
        res = claire("papertest", "start", "--source", "mexc-fake", "--speed", "20", "--symbols", "BTCUSDT",
                     "--duration", "7d", "--web", "--run-dir", str(run_dir), env=env)
        assert res.returncode == 0, res.stderr + res.stdout
        st = wait_until(lambda: (s := state(run_dir))["web_url"] and s, 30, "the live view")
        with urllib.request.urlopen(st["web_url"], timeout=10) as resp:
            assert resp.status == 200
        res = claire("papertest", "start", "--run-dir", str(run_dir), env=env)
        assert res.returncode == 2 and "already running" in res.stderr
        engine = create_engine(f"sqlite:///{run_dir / 'papertest.db'}")
        wait_until(lambda: _event_hours(engine, st["run_id"], st["start_event_ms"] or 0) > 0.5, 60,
                   "30 min of market data")
        engine.dispose()
        res = claire("papertest", "status", "--json", "--run-dir", str(run_dir), env=env)
        data = json.loads(res.stdout)
        assert data["status"] == "running" and data["progress"]["pct"] < 5 and data["portfolio"]["equity"]
        assert data["freshness"]["BTCUSDT"]["last_event_ms"] and data["web"] == st["web_url"]
        pids = [st["supervisor_pid"], *state(run_dir)["components"].values()]
        assert len(pids) == 3 and all(alive(p) for p in pids)
        res = claire("papertest", "stop", "--run-dir", str(run_dir), env=env)
        assert res.returncode == 0, res.stderr
        assert "verdict:" in res.stdout and "report:" in res.stdout
        st = state(run_dir)
        assert st["status"] == "finished" and Path(st["report"]).is_file()
        assert not any(alive(p) for p in pids)
        res = claire("papertest", "stop", "--run-dir", str(run_dir), env=env)
        assert res.returncode == 2 and "no papertest running" in res.stderr
    finally:
        cleanup_run(run_dir)
