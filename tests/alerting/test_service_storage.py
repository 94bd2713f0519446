"""Alerts stored once, repeats counted, acknowledged with `claire alerts --ack` (SQLite and
PostgreSQL); the service pushes new alerts and daily summaries to a json:// receiver."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from claire.alerting.notify import Notifier
from claire.cli.main import app
from claire.config.tree import AlertSettings
from claire.events import encode
from claire.runtime.alerts import AlertService
from claire.storage import Database, EventWriter
from claire.storage.alerts import acknowledge, bump_occurrence, list_alerts, record_alert
from tests.alerting.conftest import DAY0, NS_PER_DAY, NS_PER_SEC, component_alert, snap
from tests.support.notify_receiver import NotifyReceiver

RUN = "run-alerts"
MIN = 60 * NS_PER_SEC
runner = CliRunner()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'a.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_database")
    EventWriter(url, RUN).close()  # the schema and the run
    return url


def test_store_bump_list_and_ack(db_url: str) -> None:
    db = Database(db_url)
    try:
        svc = AlertService(RUN, AlertSettings(), db=db)
        svc.feed(snap(DAY0, "96000"))  # drawdown 4 %
        svc.feed(snap(DAY0 + MIN, "99000"))
        svc.feed(snap(DAY0 + 2 * MIN, "95000"))  # a repeat within the cool-down
        svc.feed(snap(DAY0 + 3 * MIN, "99000"))
        svc.feed(snap(DAY0 + 4 * MIN, "95000"))
        svc.close()
        rows = list_alerts(db, RUN, rules_only=True)
        assert [(r["code"], r["category"], r["occurrences"], r["level"]) for r in rows] == [
            ("drawdown", "risk", 3, "warning")]
        assert rows[0]["last_seen"] > rows[0]["ts"] and not rows[0]["acknowledged"]
        # a replay of the same events stores nothing twice and counts nothing twice
        again = AlertService(RUN, AlertSettings(), db=db)
        for i, eq in enumerate(("96000", "99000", "95000", "99000", "95000")):
            again.feed(snap(DAY0 + i * MIN, eq))
        again.close()
        rows = list_alerts(db, RUN)
        assert len(rows) == 1 and rows[0]["occurrences"] == 3 and again.stats["stored"] == 0
        assert not record_alert(db, again.fired[0], RUN)
        assert bump_occurrence(db, rows[0]["id"], DAY0 + 5 * MIN) and list_alerts(db)[0]["occurrences"] == 4
        assert not bump_occurrence(db, "no-such-alert", DAY0)
        assert acknowledge(db, rows[0]["id"]) and not acknowledge(db, "no-such-alert")
        assert list_alerts(db, RUN, unacked_only=True) == [] and len(list_alerts(db, None)) == 1
    finally:
        db.dispose()


def test_cli_lists_and_acknowledges(db_url: str) -> None:
    db = Database(db_url)
    try:
        svc = AlertService(RUN, AlertSettings(), db=db)
        svc.feed(component_alert(DAY0, "data_quality.stale", symbol="BTCUSDT"))
        svc.close()
        alert_id = list_alerts(db, RUN)[0]["id"]
    finally:
        db.dispose()
    res = runner.invoke(app, ["alerts", "--db", db_url, "--run", RUN])
    assert res.exit_code == 0, res.output
    assert "data_stale" in res.output and "warning" in res.output
    res = runner.invoke(app, ["alerts", "--db", db_url, "--ack", alert_id])
    assert res.exit_code == 0 and f"acknowledged {alert_id}" in res.output
    res = runner.invoke(app, ["alerts", "--db", db_url])
    assert res.exit_code == 0 and "no alerts to acknowledge" in res.output
    res = runner.invoke(app, ["alerts", "--db", db_url, "--all"])
    assert "data_stale" in res.output and "yes" in res.output
    res = runner.invoke(app, ["alerts", "--db", db_url, "--ack", "nope"])
    assert res.exit_code == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --ack nope: no alert with this id"), res.stderr


def test_service_pushes_new_alerts_and_the_daily_summary(receiver: tuple[NotifyReceiver, int], tmp_path: Path) -> None:
    rec, port = receiver
    url = f"sqlite:///{tmp_path / 'p.db'}"
    EventWriter(url, RUN).close()
    db = Database(url)
    svc = AlertService(RUN, AlertSettings(drawdown_pct=Decimal("0.02")), db=db,
                       notifier=Notifier([f"json://127.0.0.1:{port}/claire"]))
    try:
        for h in range(30):  # hourly: past one UTC midnight
            ts = DAY0 + h * 3600 * NS_PER_SEC
            svc.observe("portfolio_snapshots", encode(snap(ts, "97500" if h == 5 else "100000")))
            if h == 5:  # back up, and down again within the cool-down: a repeat, counted, not pushed
                svc.observe("portfolio_snapshots", encode(snap(ts + 30 * NS_PER_SEC, "100000")))
                svc.observe("portfolio_snapshots", encode(snap(ts + MIN, "97000")))
        svc.observe("signals", b'{"type":"signal"}')  # not looked at
        svc.close(10)
    finally:
        db.dispose()
    titles = [m["title"] for m in rec.messages]
    assert titles == ["Claire [warning] drawdown", "Claire daily summary 2022-01-08"]
    summary = rec.messages[1]["message"]
    assert "equity 100000.00 USDT" in summary and "1 alert(s)" in summary and "max 3.00 %" in summary
    assert svc.stats == {"alerts": 2, "repeats": 1, "stored": 2, "pushed": 2, "errors": 0, "dropped": 0}
    db = Database(url)
    try:
        rows = {r["code"]: r for r in list_alerts(db, RUN)}
        assert rows["drawdown"]["occurrences"] == 2 and rows["daily_summary"]["category"] == "summary"
        assert rows["daily_summary"]["ts"].timestamp() == (DAY0 + NS_PER_DAY) / 1e9
    finally:
        db.dispose()


def test_database_away_alerts_and_keeps_the_alerts_until_it_is_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    EventWriter(url, RUN).close()
    missing = Database(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}")  # cannot be opened
    svc = AlertService(RUN, AlertSettings(), db=missing, retry_db_after_s=0.2)
    t0 = time.perf_counter()
    svc.feed(snap(DAY0, "96000"))
    assert time.perf_counter() - t0 < 0.5  # the caller does not wait for the database (its thread does)
    assert not svc.flush(1.0)  # the database is away: nothing stored
    assert [a.code for a in svc.fired] == ["drawdown", "database_unreachable"]
    good = Database(url)
    svc.db = good  # back
    assert svc.flush(5.0)
    svc.close()
    try:
        assert sorted(r["code"] for r in list_alerts(good, RUN)) == ["database_unreachable", "drawdown"]
        assert ("database_unreachable", "") not in svc.rules.active  # re-armed once it answered
    finally:
        good.dispose()


def test_dead_letters_raise_one_alert_per_service_and_stream(db_url: str) -> None:
    """An event a service set aside (dead letter) is never silently lost: the writer's alert
    service raises ``event_dead_lettered`` per consuming service and stream, repeats counted."""
    from claire.bus.base import DeadLetter

    def dead(i: int, stream: str, group: str, reason: str) -> DeadLetter:
        return DeadLetter(id=f"{i}-0", reason=reason, stream=stream, original_id=f"{i}-1", group=group,
                          deliveries=1, payload=b"\xff", headers={})

    db = Database(db_url)
    try:
        svc = AlertService(RUN, AlertSettings(), db=db)
        svc.feed(snap(DAY0, "100000"))  # the run's clock
        svc.on_dead_letters([dead(1, "market_data", "signal", "malformed event: bad JSON"),
                             dead(2, "market_data", "signal", "malformed event: bad type"),
                             dead(3, "orders", "execution", "ValueError while processing: no price")])
        svc.on_dead_letters([dead(4, "market_data", "signal", "malformed event: bad JSON")])  # a repeat
        svc.close()
        rows = list_alerts(db, RUN, rules_only=True)
        got = sorted((r["code"], r["level"], r["occurrences"], r["message"]) for r in rows)
        assert got == [
            ("event_dead_lettered", "critical", 1,
             "execution: 1 event(s) of orders dead-lettered: ValueError while processing: no price"),
            ("event_dead_lettered", "critical", 2, "signal: 2 event(s) of market_data dead-lettered: malformed event: bad JSON"),
        ]
        day0 = datetime.fromtimestamp(DAY0 / NS_PER_SEC, UTC)
        assert {r["ts"].replace(tzinfo=UTC) for r in rows} == {day0}  # on the run's clock, not the wall's
    finally:
        db.dispose()
