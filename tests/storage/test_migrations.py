"""Migrations 1.0 -> 2.0 -> 3.0 -> 4.0 keep the data, go down again, and have a CLI (S4)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import text

from claire.storage.database import Database

from .conftest import count, rows

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def _exec(db: Database, sql: str, **params) -> None:
    with db.begin() as conn:
        conn.execute(text(sql), params)


def _v1_data(db):
    _exec(db, "INSERT INTO runs (id, mode) VALUES ('r1', 'paper')")
    _exec(
        db,
        "INSERT INTO signals (id, run_id, ts, recv_ts, symbol, side, price, confidence, strategy, strategy_version) "
        "VALUES ('s1', 'r1', :ts, :ts, 'BTCUSDT', 'buy', :p, :c, 'momentum', '1')",
        ts=NOW,
        p="65000.01" if db.is_sqlite else Decimal("65000.01"),
        c="0.8" if db.is_sqlite else Decimal("0.8"),
    )


def _v2_data(db):
    _exec(
        db,
        "INSERT INTO risk_events (id, run_id, ts, recv_ts, check_type, action, passed, reason, trading_state, details) "
        "VALUES ('re1', 'r1', :ts, :ts, 'total_exposure', 'rejected', false, 'limit', 'active', :d)",
        ts=NOW,
        d='{"portfolio": {"current_exposure": 4850}}',
    )


def _v3_data(db):
    _exec(
        db,
        "INSERT INTO alerts (id, run_id, ts, recv_ts, level, source, code, message) "
        "VALUES ('a1', 'r1', :ts, :ts, 'warning', 'risk', 'DD', 'drawdown')",
        ts=NOW,
    )


def test_upgrade_step_by_step_keeps_data_and_downgrade_works(db_url):
    db = Database(db_url)
    try:
        assert db.current_revision() is None
        assert db.upgrade("1.0") == "v1_0"
        _v1_data(db)
        assert rows(db, "SELECT version FROM schema_version") == [("1.0.0",)]
        assert db.upgrade("2.0.0") == "v2_0"
        assert count(db, "signals") == 1
        _v2_data(db)
        assert db.upgrade("3.0") == "v3_0"
        _v3_data(db)
        assert db.upgrade() == "v4_0"
        assert rows(db, "SELECT category, occurrences FROM alerts") == [(None, 1)]  # 4.0 keeps the alert
        assert (count(db, "signals"), count(db, "risk_events"), count(db, "alerts")) == (1, 1, 1)
        assert rows(db, "SELECT price FROM signals")[0][0] in ("65000.01", Decimal("65000.01"))
        assert [r[0] for r in rows(db, "SELECT version FROM schema_version ORDER BY version")] == [
            "1.0.0",
            "2.0.0",
            "3.0.0",
            "4.0.0",
        ]

        assert db.downgrade() == "v3_0"
        assert count(db, "alerts") == 1
        assert db.downgrade() == "v2_0"
        assert (count(db, "signals"), count(db, "risk_events")) == (1, 1)
        assert [r[0] for r in rows(db, "SELECT version FROM schema_version ORDER BY version")] == [
            "1.0.0",
            "2.0.0",
        ]
        assert db.downgrade("v1") == "v1_0"
        assert count(db, "signals") == 1
        assert db.upgrade() == "v4_0"  # and up again, data still there
        assert count(db, "signals") == 1 and count(db, "alerts") == 0
        assert db.downgrade("base") is None
        from sqlalchemy import inspect

        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
    finally:
        db.dispose()


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def _claire_db(*args, url: str, cwd) -> Result:
    """Run `claire db ARGS` in-process with CLAIRE_DATABASE_URL=url (unset when empty) in cwd."""
    from typer.testing import CliRunner

    from claire.cli.db import app

    old = os.getcwd()
    os.chdir(cwd)
    try:
        res = CliRunner().invoke(app, list(args), env={"CLAIRE_DATABASE_URL": url or None})
    finally:
        os.chdir(old)
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    return Result(res.exit_code, res.stdout, res.stderr)


def test_cli_upgrade_current_history_downgrade(db_url, tmp_path):
    r = _claire_db("upgrade", "--to", "2.0", url=db_url, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "v2_0 (schema 2.0.0)" in r.stdout
    r = _claire_db("current", url=db_url, cwd=tmp_path)
    assert r.stdout.strip() == "v2_0 (schema 2.0.0)"
    r = _claire_db("history", url=db_url, cwd=tmp_path)
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 4 and lines[1].startswith("* v2_0")
    assert _claire_db("upgrade", url=db_url, cwd=tmp_path).returncode == 0
    assert _claire_db("current", url=db_url, cwd=tmp_path).stdout.strip() == "v4_0 (schema 4.0.0) head"
    assert _claire_db("downgrade", url=db_url, cwd=tmp_path).returncode == 0
    assert _claire_db("current", url=db_url, cwd=tmp_path).stdout.strip() == "v3_0 (schema 3.0.0)"


def test_cli_default_url_is_sqlite_file_in_cwd(tmp_path):
    r = _claire_db("upgrade", url="", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "claire.db").exists()
    assert "v4_0" in r.stdout


def test_cli_bad_url_gives_one_line_error(tmp_path):
    for url in (
        "mysql://u@h/db",
        "not a url",
        "postgresql://postgres@127.0.0.1:1/nothing",
        "sqlite+foo:///x.db",
    ):
        r = _claire_db("upgrade", url=url, cwd=tmp_path)
        assert r.returncode == 2, (url, r.stdout, r.stderr)
        err = r.stderr.strip()
        assert err.startswith("error: ") and "\n" not in err, (url, err)
        assert "Traceback" not in r.stderr
    r = _claire_db("upgrade", "--to", "9.0", url=f"sqlite:///{tmp_path / 'x.db'}", cwd=tmp_path)
    assert r.returncode == 2 and "unknown schema revision '9.0'" in r.stderr
