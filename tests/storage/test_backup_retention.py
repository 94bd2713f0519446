"""S8 backup and restore (whole database and one table) and S6 retention, on both backends."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from claire.storage import backup as bk
from claire.storage.database import StorageError
from claire.storage.models import metadata
from claire.storage.queries import prune
from claire.storage.writer import EventWriter

from . import factory as F
from .conftest import checksum, count, rows, scalar

TABLES = [t.name for t in metadata.sorted_tables]


def _fill(db, run="run-b", n=8):
    with EventWriter(db, run, batch_size=7) as w:
        for i in range(n):
            w.write_many(F.chain(i, limit=i % 2 == 0))
        w.write(F.alert(signal_id="x"))
        w.write_raw(b"garbage", source="signals")
        w.save_checkpoint(n, b"cp")


def _snapshot(db):
    return {t: (count(db, t), checksum(db, t)) for t in TABLES}


def test_backup_clear_restore_whole_database(db, tmp_path):
    _fill(db)
    before = _snapshot(db)
    path = bk.backup(db, tmp_path / "bk", keep_days=14)
    assert path.exists() and path.name.startswith("claire-")
    assert path.suffix == (".dump" if db.is_postgres else ".sqlite")
    with db.begin() as conn:  # lose everything
        for t in reversed(TABLES):
            conn.execute(text(f"DELETE FROM {t}"))
    assert count(db, "signals") == 0
    bk.restore(db, path)
    assert _snapshot(db) == before
    assert before["trades"][0] == 8 and before["dead_letters"][0] == 1


def test_restore_a_single_table(db, tmp_path):
    _fill(db)
    before = _snapshot(db)
    path = bk.backup(db, tmp_path)
    # lose the snapshots and the risk events, damage a trade's fee, and add a stray alert
    with db.begin() as conn:
        conn.execute(text("DELETE FROM portfolio_snapshots"))
        conn.execute(text("DELETE FROM risk_events"))
        conn.execute(text("UPDATE trades SET fee = 999"))
    with EventWriter(db, "run-b") as w:
        w.write(F.alert())
    for table in ("portfolio_snapshots", "risk_events", "trades", "alerts"):
        bk.restore(db, path, table=table)
    assert _snapshot(db) == before
    with pytest.raises(StorageError, match="unknown table"):
        bk.restore(db, path, table="nope")


def test_backup_retention_and_cli_prints_path_last(db_url, db, tmp_path):
    from typer.testing import CliRunner

    from claire.cli.db import app

    d = tmp_path / "bk"
    d.mkdir()
    old = d / "claire-20000101-000000.dump"
    old.write_bytes(b"x")
    recent_name = (datetime.now(UTC) - timedelta(days=3)).strftime("claire-%Y%m%d-%H%M%S.sqlite")
    (d / recent_name).write_bytes(b"y")
    (d / "notes.txt").write_text("kept")
    res = CliRunner().invoke(
        app, ["backup", "--dir", str(d), "--keep-days", "14"], env={"CLAIRE_DATABASE_URL": db_url}
    )
    assert res.exit_code == 0, res.output
    last = res.stdout.strip().splitlines()[-1]
    assert os.path.exists(last) and os.path.dirname(last) == str(d)
    assert not old.exists() and (d / recent_name).exists() and (d / "notes.txt").exists()
    res = CliRunner().invoke(app, ["restore", last, "--table", "runs"], env={"CLAIRE_DATABASE_URL": db_url})
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["restore", str(d / "missing.dump")], env={"CLAIRE_DATABASE_URL": db_url})
    assert res.exit_code == 2 and "not found" in res.stderr


def test_pg_tools_match_the_server(pg_database):
    from claire.storage.database import Database

    db = Database(pg_database)
    try:
        major = bk.server_major(db)
        for tool in ("pg_dump", "pg_restore"):
            out = subprocess.run([bk.pg_tool(tool, major), "--version"], capture_output=True, text=True,
                                 check=False).stdout
            assert f") {major}." in out
    finally:
        db.dispose()


def test_prune_keeps_what_retention_says(db):
    now = datetime(2025, 6, 1, tzinfo=UTC)
    day = 86_400 * 10**9
    t_now = int(now.timestamp()) * 10**9

    def at(days_ago):
        return t_now - days_ago * day

    # 200 days old, with a trade: the whole chain stays
    s_old_traded = F.signal(at(200))
    o_old_traded = F.order(s_old_traded)
    f_old = F.fill(o_old_traded)
    s_old_rejected = F.signal(at(200))
    o_old_rejected = F.order(s_old_rejected)
    r_old = F.reject(o_old_rejected)
    s_60 = F.signal(at(60))  # signal past 30 days, its order (60 days, no trade) still kept
    o_60 = F.order(s_60)
    s_40_alone = F.signal(at(40))  # no order: goes
    s_10 = F.signal(at(10))  # recent: stays
    risk_old, risk_new = F.risk(ts=at(100)), F.risk(ts=at(80))
    snap_old = F.snapshot(at(300))
    with EventWriter(db, "run-ret") as w:
        w.write_many(
            [
                s_old_traded,
                o_old_traded,
                f_old,
                s_old_rejected,
                o_old_rejected,
                r_old,
                s_60,
                o_60,
                s_40_alone,
                s_10,
                risk_old,
                risk_new,
                snap_old,
            ]
        )
    dry = prune(db, now=now, dry_run=True)
    assert dry == {"risk_events": 1, "orders": 1, "signals": 2, "market_conditions": 2}
    assert count(db, "signals") == 5  # nothing deleted by the dry run
    out = prune(db, now=now)
    assert out == {"risk_events": 1, "orders": 1, "market_conditions": 2, "signals": 2}
    ids = {r[0] for r in rows(db, "SELECT id FROM signals")}
    assert ids == {s_old_traded.id, s_60.id, s_10.id}
    assert {r[0] for r in rows(db, "SELECT id FROM orders")} == {o_old_traded.id, o_60.id}
    assert [r[0] for r in rows(db, "SELECT id FROM risk_events")] == [risk_new.id]
    assert (
        count(db, "trades") == 1
        and count(db, "portfolio_snapshots") == 1
        and count(db, "execution_analysis") == 1
    )
    assert scalar(db, "SELECT count(*) FROM market_conditions") == 3


def test_daily_maintenance_prunes_backs_up_and_keeps_14_days(db_url, db, tmp_path):
    from claire.storage.retention import DailyMaintenance, daily_maintenance

    wall = datetime(2026, 12, 6, 1, 0, tzinfo=UTC)
    d = tmp_path / "bk"
    d.mkdir()
    old = [d / "claire-20261120-000000.dump", d / "claire-20261121-235959-1.sqlite"]  # 15+ days
    new = [d / "claire-20261123-020000.dump", d / "claire-20261205-000000.sqlite"]  # < 14 days
    foreign = [d / "claire-notes.dump", d / "other-20200101-000000.dump", d / "claire-20200101-000000.txt"]
    for p in old + new + foreign:
        p.write_bytes(b"x")
    run_clock = datetime(2025, 6, 1, tzinfo=UTC)  # a replay of history: its own clock
    with EventWriter(db, "run-m") as w:
        t_run = int(run_clock.timestamp()) * 10**9
        w.write_many([F.signal(t_run - 40 * 86_400 * 10**9), F.risk(ts=t_run)])
    out = daily_maintenance(db_url, d, run_clock, wall_now=wall)
    assert out["errors"] == []
    assert out["day"] == "2025-06-01"
    assert out["pruned"] == {"risk_events": 0, "orders": 0, "market_conditions": 1, "signals": 1}
    made = Path(out["backup"])
    assert made.parent == d and made.name.startswith("claire-20261206-010000") and out["backup_bytes"] > 0
    assert sorted(out["backups_removed"]) == sorted(p.name for p in old)
    assert not any(p.exists() for p in old)
    assert all(p.exists() for p in new + foreign)
    assert made.exists()

    sched = DailyMaintenance(db_url, tmp_path / "bk2")
    first = sched.maybe_run(datetime(2025, 6, 1, 0, 5, tzinfo=UTC))
    assert first is not None and first["backup"] and sched.last is first
    assert sched.maybe_run(datetime(2025, 6, 1, 23, 59, tzinfo=UTC)) is None  # same UTC day
    assert sched.maybe_run(datetime(2025, 6, 2, 0, 0, tzinfo=UTC)) is not None
    assert len(list((tmp_path / "bk2").glob("claire-*"))) == 2


def test_daily_maintenance_reports_an_unreachable_database(tmp_path):
    from claire.storage.retention import daily_maintenance
    from tests.support.ports import free_port

    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nope"
    out = daily_maintenance(url, tmp_path, datetime(2025, 6, 1, tzinfo=UTC))
    assert out["backup"] is None and out["errors"] and out["errors"][0].startswith("prune:")
