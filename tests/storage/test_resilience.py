"""S9: no connection leaks; a PostgreSQL crash and restart mid-run loses and doubles nothing."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text

from claire.storage.database import Database
from claire.storage.queries import load_checkpoint
from claire.storage.writer import EventWriter
from tests.support.pg_server import PgServer

from . import factory as F


def _connections(admin: Database, dbname: str) -> int:
    with admin.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = :d AND backend_type = 'client backend'"
                ),
                {"d": dbname},
            ).scalar()
        )


def test_no_connection_leak_over_many_runs(pg_database, pg_server_url):
    dbname = pg_database.rsplit("/", 1)[1]
    admin = Database(pg_server_url)
    try:
        # autovacuum workers also appear in pg_stat_activity; only client backends count
        setup = Database(pg_database)
        setup.upgrade()
        setup.dispose()
        time.sleep(0.2)
        baseline = 0
        for i in range(200):
            if i % 2:
                db = Database(pg_database, pool_size=2, max_overflow=1)
                w = EventWriter(db, f"leak-{i}", batch_size=3)
                w.write_many(F.chain(i))
                w.close()
                db.dispose()
            else:  # the writer opens and releases its own Database
                w = EventWriter(pg_database, f"leak-{i}", batch_size=3)
                w.write_many(F.chain(i))
                w.close()
            if i == 100:
                assert _connections(admin, dbname) <= baseline + 1
        deadline = time.monotonic() + 5
        while _connections(admin, dbname) > baseline and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _connections(admin, dbname) == baseline
        check = Database(pg_database)
        with check.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM trades")).scalar() == 200
        check.dispose()
    finally:
        admin.dispose()


@pytest.fixture()
def pg_server():
    server = PgServer()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


def test_writer_survives_postgres_kill_and_restart(pg_server):
    url = pg_server.create_database("claire_restart")
    n_chains = 300
    chains = [
        F.chain(i, symbol=("BTCUSDT", "ETHUSDT", "SOLUSDT")[i % 3], limit=i % 4 == 0) for i in range(n_chains)
    ]
    db = Database(url, pool_size=2, max_overflow=0, connect_timeout=2)
    writer = EventWriter(
        db,
        "run-crash",
        batch_size=20,
        flush_interval=None,
        retry_initial_delay=0.02,
        retry_max_delay=0.3,
        retry_timeout=60,
    )
    progress = {"chains": 0}
    errors: list[BaseException] = []

    def produce():
        try:
            for i, chain in enumerate(chains):
                for ev in chain:
                    writer.write(ev)
                if i % 25 == 24:
                    writer.save_checkpoint(i + 1, f"after chain {i}".encode())
                progress["chains"] = i + 1
                time.sleep(0.004)
            writer.flush()
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    t = threading.Thread(target=produce, daemon=True)
    t.start()

    def wait_for(n):
        deadline = time.monotonic() + 60
        while progress["chains"] < n and t.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)

    wait_for(60)
    pg_server.kill()  # kill -9 of the postmaster and its backends
    time.sleep(0.5)
    pg_server.restart()
    wait_for(150)
    pg_server.stop("immediate")
    time.sleep(0.4)
    pg_server.start()
    wait_for(220)
    pg_server.kill()
    time.sleep(0.3)
    pg_server.restart()
    t.join(120)
    assert not t.is_alive()
    assert not errors, errors
    writer.close()
    assert writer.stats["retries"] > 0

    flat = [ev for chain in chains for ev in chain]
    with db.connect() as conn:
        for table, kind in (
            ("signals", "Signal"),
            ("orders", "Order"),
            ("trades", "OrderResult"),
            ("portfolio_snapshots", "PortfolioSnapshot"),
            ("risk_events", "RiskEvent"),
        ):
            want = sorted(e.id for e in flat if type(e).__name__ == kind)
            got = [r[0] for r in conn.execute(text(f"SELECT id FROM {table} ORDER BY id"))]
            assert got == want, table  # every id present, once
        for table in ("execution_analysis", "market_conditions"):
            assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() == n_chains
        assert conn.execute(text("SELECT count(*) FROM orders WHERE status = 'filled'")).scalar() == n_chains
        assert conn.execute(text("SELECT count(*) FROM dead_letters")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM pending_events")).scalar() == 0
    assert load_checkpoint(db, "run-crash") == (300, b"after chain 299")
    db.dispose()
