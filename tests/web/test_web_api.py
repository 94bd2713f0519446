"""Issue 12: the live view's JSON endpoints and its stream, on SQLite and on PostgreSQL, served by
``serve_in_thread`` (what `paper --web` and the papertest use) on a real run of the CLI; and the
heartbeat writer behind the status panel."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from claire.runtime.web import data as view_data
from claire.runtime.web import serve_in_thread
from claire.storage import Database
from claire.storage.models import metadata
from claire.storage.service_status import StatusHeartbeat, read_status, record_status
from tests.web.support import count, insert_trade, latest_run, make_run

T = metadata.tables


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        return json.loads(r.read())


def _stream_events(url: str, n: int, after_first: Any = None) -> list[tuple[str, Any]]:
    """The first ``n`` events of the stream (``after_first()`` runs once the init has come)."""
    events: list[tuple[str, Any]] = []
    with urllib.request.urlopen(url, timeout=15) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        name = None
        for raw in r:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: ") and name:
                events.append((name, json.loads(line[6:])))
                if len(events) == 1 and after_first is not None:
                    after_first()
                if len(events) >= n:
                    return events
    return events


@pytest.fixture(params=["sqlite", "postgresql"])
def run_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'api.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_database")
    make_run(url, bars=300, cwd=tmp_path)
    return url


def test_api_and_stream(run_db: str) -> None:
    run_id = latest_run(run_db)
    fills = count(run_db, "trades", run_id)
    snapshots = count(run_db, "portfolio_snapshots", run_id)
    handle = serve_in_thread(run_db, None, "127.0.0.1", 0, None)
    try:
        base = handle.url
        assert handle.run_id == run_id
        summary = _get(base + "api/summary")
        assert summary["run"]["id"] == run_id and summary["run"]["ended_at"] is not None
        assert summary["counts"]["trades"] == fills and summary["counts"]["portfolio_snapshots"] == snapshots
        eq = _get(base + "api/equity")
        assert eq["snapshots"] == snapshots and len(eq["ts"]) == snapshots == len(eq["equity"])
        assert eq["ts"] == sorted(eq["ts"]) and eq["equity"][-1] == round(float(Decimal(summary["latest"]["equity"])), 2)
        trades = _get(base + "api/trades")
        assert trades["count"] == fills and len(trades["trades"]) == min(fills, 500)
        assert trades["trades"][0]["ts"] >= trades["trades"][-1]["ts"]  # newest first
        risk = _get(base + "api/risk")
        passed = [r["passed"] for r in risk["recent"]]
        assert passed == sorted(passed)  # rejections first
        assert sum(risk["by_action"].values()) == count(run_db, "risk_events", run_id)
        assert isinstance(_get(base + "api/positions"), list) and isinstance(_get(base + "api/alerts"), list)
        # bound to loopback without a token: only this machine's names (no DNS rebinding)
        rebound = urllib.request.Request(base + "api/summary", headers={"Host": f"evil.example:{handle.port}"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(rebound, timeout=10)
        assert refused.value.code == 403
        assert _get(base.replace("127.0.0.1", "localhost") + "api/summary")["run"]["id"] == run_id
        status = _get(base + "api/status")
        assert [s["service"] for s in status["services"]] == ["paper"]
        assert status["services"][0]["status"] == "stopped" and status["services"][0]["events_processed"] == 600
        assert sorted(status["freshness"]["symbols"]) == ["BTCUSDT", "ETHUSDT"]
        # the stream: everything first, then deltas; a fill stored meanwhile comes in a delta
        new_id: list[str] = []
        events = _stream_events(base + "api/stream", 3, lambda: new_id.append(insert_trade(run_db, run_id)))
        assert [e[0] for e in events] == ["init", "delta", "delta"]
        init = events[0][1]
        assert init["trade_count"] == fills and len(init["equity"]["ts"]) == snapshots
        pushed = [t["id"] for _, d in events[1:] for t in d["trades"]]
        assert pushed == new_id and events[-1][1]["trade_count"] == fills + 1
    finally:
        handle.stop()
    _check_downsampling(run_db, run_id)


def _check_downsampling(url: str, run_id: str) -> None:
    """The equity series is thinned in the database: at most max_points, first and last kept."""
    db = Database(url)
    try:
        full = view_data.equity(db, run_id)
        small = view_data.equity(db, run_id, max_points=50)
        ps = T["portfolio_snapshots"]
        with db.connect() as conn:
            first, last = conn.execute(select(func.min(ps.c.ts), func.max(ps.c.ts)).where(ps.c.run_id == run_id)).one()
    finally:
        db.dispose()
    assert full["stride"] == 1 and len(full["ts"]) == full["snapshots"] > 300
    assert small["snapshots"] == full["snapshots"] and len(small["ts"]) <= 50
    assert small["stride"] == -(-full["snapshots"] // 49)
    assert small["ts"][0] == first.timestamp() and small["ts"][-1] == last.timestamp() == full["ts"][-1]
    assert small["max_drawdown_pct"] == full["max_drawdown_pct"] >= max(full["drawdown_pct"])
    # kept by the server and extended by new snapshots: still at most max_points, the newest last
    db = Database(url)
    try:
        series = view_data.EquitySeries(max_points=50)
        before = series.get(db, run_id)
        assert before["ts"] == small["ts"] and before["equity"] == small["equity"]
        added = _add_snapshots(db, run_id, 130)
        after = series.get(db, run_id)
    finally:
        db.dispose()
    assert after["snapshots"] == full["snapshots"] + 130 and len(after["ts"]) <= 50
    assert after["ts"] == sorted(after["ts"]) and after["ts"][0] == small["ts"][0]
    assert after["ts"][-1] == added[-1].timestamp() and after["last_ts"] == added[-1].isoformat()
    assert after["stride"] >= small["stride"] and len(after["ts"]) > 25


def _add_snapshots(db: Database, run_id: str, n: int) -> list[datetime]:
    """``n`` snapshots after the run's last (copies, a minute apart), as a running writer adds them."""
    ps = T["portfolio_snapshots"]
    with db.begin(write=True) as conn:
        last = dict(conn.execute(select(ps).where(ps.c.run_id == run_id).order_by(ps.c.ts.desc()).limit(1)).mappings().one())
        last.pop("created_at")
        times = [last["ts"] + timedelta(minutes=i + 1) for i in range(n)]
        conn.execute(ps.insert(), [{**last, "id": f"extra-{i}", "ts": t, "recv_ts": t} for i, t in enumerate(times)])
    return times


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_record_status_upserts_one_row_per_replica(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'st.db'}" if backend == "sqlite" else request.getfixturevalue("pg_database")
    db = Database(url)
    try:
        db.upgrade()
        with db.begin() as conn:
            conn.execute(T["runs"].insert().values(id="r1", mode="paper"))
        ts = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        record_status(db, "r1", "signal", 0, status="starting", ready=False, events_processed=0, last_event_ts=None,
                      lag_ms=None)
        record_status(db, "r1", "signal", 1, status="running", ready=True, events_processed=5,
                      last_event_ts=int(ts.timestamp() * 1e9), lag_ms=3.25, details={"symbols": {"BTCUSDT": "x"}})
        record_status(db, "r1", "signal", 0, status="running", ready=True, events_processed=42, last_event_ts=ts,
                      lag_ms=Decimal("1.5"), restarts=2)
        rows = read_status(db, "r1")
        assert [(r["service"], r["replica"]) for r in rows] == [("signal", 0), ("signal", 1)]
        r0, r1 = rows
        assert (r0["status"], r0["ready"], r0["events_processed"], r0["restarts"]) == ("running", True, 42, 2)
        assert r0["last_event_ts"] == ts and r0["lag_ms"] == Decimal("1.5")
        assert r1["last_event_ts"] == ts and r1["details"] == {"symbols": {"BTCUSDT": "x"}}
        with pytest.raises(ValueError, match="status must be one of"):
            record_status(db, "r1", "signal", 0, status="fine", ready=True)
        # a heartbeat: beats from its thread, "stopped" at the end; a start after a death counts a restart
        n = {"i": 0}

        def sample() -> dict[str, Any]:
            n["i"] += 1
            return {"status": "running", "ready": True, "events_processed": n["i"]}

        hb = StatusHeartbeat(url, "r1", "risk", 0, sample, interval=0.05).start()
        done = threading.Event()
        while hb.beats < 3 and not done.wait(0.02):
            pass
        assert next(r for r in read_status(db, "r1") if r["service"] == "risk")["status"] == "running"
        hb.stop()
        risk = next(r for r in read_status(db, "r1") if r["service"] == "risk")
        assert risk["status"] == "stopped" and not risk["ready"] and risk["restarts"] == 0 and risk["events_processed"] >= 3
        record_status(db, "r1", "risk", 0, status="running", ready=True)  # then the process dies
        hb2 = StatusHeartbeat(db, "r1", "risk", 0, sample, interval=10).start()
        hb2.stop()
        assert next(r for r in read_status(db, "r1") if r["service"] == "risk")["restarts"] == 1
        # no run row (the writer has not made it yet): logged, never raised
        hb3 = StatusHeartbeat(db, "no-such-run", "risk", 0, sample, interval=10)
        assert hb3.beat() is False
    finally:
        db.dispose()


def test_up_web_starts_and_stops_the_view_process(tmp_path: Path) -> None:
    """`claire up --web`: `claire web` as one more process (pid in the state directory, the URL
    of the database by environment), stopped by `claire down`."""
    from claire.runtime.distributed.supervisor import WEB_PID_FILE, start_web, stop_web

    url = f"sqlite:///{tmp_path / 'up.db'}"
    make_run(url, bars=100, cwd=tmp_path)
    run_id = latest_run(url)
    state = tmp_path / "state"
    view = start_web(state, url, run_id, 0)
    pid = int((state / WEB_PID_FILE).read_text())
    assert _get(view + "api/summary")["run"]["id"] == run_id
    assert url not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    assert stop_web(state) == "stopped"
    assert not (state / WEB_PID_FILE).exists() and stop_web(state) is None
    with pytest.raises(RuntimeError, match="is not in"):
        start_web(state, url, "no-such-run", 0)
