"""S6 retention: `claire db prune` (signals 30 days, orders and risk events 90 days, trades and
snapshots kept), per run or for all, idempotent, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from typer.testing import CliRunner

from claire.cli.db import app
from claire.storage.retention import prune
from claire.storage.writer import EventWriter

from . import factory as F
from .conftest import count, rows

NOW = datetime(2025, 6, 1, tzinfo=UTC)
DAY = 86_400 * 10**9
T_NOW = int(NOW.timestamp()) * 10**9


def at(days_ago: float) -> int:
    return T_NOW - int(days_ago * DAY)


def _history(db, run: str) -> dict:
    """One run's rows of every age; returns the events by name."""
    ev = {}
    ev["s_old_traded"] = F.signal(at(200))
    ev["o_old_traded"] = F.order(ev["s_old_traded"])
    ev["f_old"] = F.fill(ev["o_old_traded"])
    ev["s_old_rejected"] = F.signal(at(120))
    ev["o_old_rejected"] = F.order(ev["s_old_rejected"])
    ev["r_old_rejected"] = F.reject(ev["o_old_rejected"])
    ev["s_60"] = F.signal(at(60))  # signal past 30 days, its order (60 days, no trade) kept
    ev["o_60"] = F.order(ev["s_60"])
    ev["s_31"] = F.signal(at(31))  # no order: goes
    ev["s_29"] = F.signal(at(29))  # within 30 days: stays
    ev["risk_old"] = F.risk(ts=at(91))
    ev["risk_new"] = F.risk(ts=at(89))
    ev["snap_old"] = F.snapshot(at(400))
    with EventWriter(db, run) as w:
        w.write_many(ev.values())
    return ev


def test_prune_per_run_keeps_traded_orders_and_is_idempotent(db):
    a = _history(db, "run-a")
    b = _history(db, "run-b")
    assert count(db, "signals") == 10 and count(db, "market_conditions") == 10

    dry = prune(db, now=NOW, run="run-a", dry_run=True)
    assert dry == {"risk_events": 1, "orders": 1, "market_conditions": 2, "signals": 2}
    assert count(db, "signals") == 10  # a dry run deletes nothing

    assert prune(db, now=NOW, run="run-a") == dry
    kept = {r[0] for r in rows(db, "SELECT id FROM signals WHERE run_id = 'run-a'")}
    assert kept == {a["s_old_traded"].id, a["s_60"].id, a["s_29"].id}
    assert {r[0] for r in rows(db, "SELECT id FROM orders WHERE run_id = 'run-a'")} == {
        a["o_old_traded"].id,
        a["o_60"].id,
    }
    assert [r[0] for r in rows(db, "SELECT id FROM risk_events WHERE run_id = 'run-a'")] == [a["risk_new"].id]
    # the other run is untouched
    assert count(db, "signals", "WHERE run_id = 'run-b'") == 5
    assert count(db, "risk_events", "WHERE run_id = 'run-b'") == 2
    # trades, their execution analysis and snapshots stay
    assert count(db, "trades") == 2 and count(db, "execution_analysis") == 2
    assert count(db, "portfolio_snapshots") == 2
    # the market conditions of the deleted signals went with them, nothing dangles
    assert count(db, "market_conditions") == 8
    assert count(db, "market_conditions", "WHERE signal_id NOT IN (SELECT id FROM signals)") == 0

    assert prune(db, now=NOW, run="run-a") == {"risk_events": 0, "orders": 0, "market_conditions": 0, "signals": 0}
    assert prune(db, now=NOW) == {"risk_events": 1, "orders": 1, "market_conditions": 2, "signals": 2}
    assert prune(db, now=NOW) == {"risk_events": 0, "orders": 0, "market_conditions": 0, "signals": 0}
    assert {r[0] for r in rows(db, "SELECT id FROM orders WHERE run_id = 'run-b'")} == {
        b["o_old_traded"].id,
        b["o_60"].id,
    }


def test_cli_prune_prints_counts_per_table(db_url, db):
    _history(db, "run-cli")
    runner = CliRunner()
    args = ["prune", "--db", db_url, "--run", "run-cli", "--now", "2025-06-01T00:00:00Z"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines() == [
        "risk_events: deleted 1",
        "orders: deleted 1",
        "market_conditions: deleted 2",
        "signals: deleted 2",
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and all(line.endswith("deleted 0") for line in res.stdout.splitlines())
    # without --now the rows (from 2025) are measured from today: only what retention keeps stays
    res = runner.invoke(app, ["prune", "--db", db_url])
    assert res.exit_code == 0, res.output
    assert count(db, "signals") == 1 and count(db, "orders") == 1 and count(db, "trades") == 1
    res = runner.invoke(app, ["prune", "--db", db_url, "--now", "yesterday"])
    assert res.exit_code == 2 and "not an ISO 8601 time" in res.stderr
