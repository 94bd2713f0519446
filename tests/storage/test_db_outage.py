"""The database may go away (issue 13, point 9): a one-process run keeps trading and holds its
events in a local spool, writing them once the database is back, in order and without
duplicates; the distributed writer service catches up from the bus (nothing acked before it is
stored). Each test stops a PostgreSQL server of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa

from claire.events import encode
from claire.events.topics import topic_out
from claire.storage.database import Database
from claire.storage.queries import load_checkpoint
from claire.storage.spool import Spool, SpoolingWriter, SpoolRecord
from claire.storage.writer import EventWriter
from tests.support.pg_server import PgServer
from tests.support.ports import free_port

from . import factory as F


@pytest.fixture(scope="module")
def pg_server():
    server = PgServer()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture()
def own_pg(pg_server):
    """The module's private server, running (a test before may have left it stopped)."""
    if not pg_server.is_ready():
        pg_server.start()
    return pg_server


def _ids(url: str, table: str) -> list[str]:
    eng = sa.create_engine(url)
    try:
        with eng.connect() as c:
            return [r[0] for r in c.execute(sa.text(f"SELECT id FROM {table} ORDER BY id"))]
    finally:
        eng.dispose()


def _want(events: list, kind: str) -> list[str]:
    return sorted(e.id for e in events if type(e).__name__ == kind)


TABLES = (("signals", "Signal"), ("orders", "Order"), ("trades", "OrderResult"),
          ("portfolio_snapshots", "PortfolioSnapshot"), ("risk_events", "RiskEvent"))


def test_spool_appends_reads_in_order_and_skips_a_torn_tail(tmp_path):
    spool = Spool(tmp_path / "spool", max_file_bytes=200)
    recs = [SpoolRecord("event", "signals", f"payload-{i}".encode() * 5) for i in range(20)]
    for i in range(0, 20, 3):
        spool.append(recs[i:i + 3])
    spool.append([SpoolRecord("checkpoint", payload=b"state", position=7)])
    assert len(spool.files()) > 1  # rolled over to new files
    assert list(spool.records()) == [*recs, SpoolRecord("checkpoint", payload=b"state", position=7)]
    spool.close()
    last = spool.files()[-1]
    with last.open("ab") as fh:  # a crash in the middle of a write
        fh.write(b"\x00\x00\x00\x30\x01\x02")
    assert len(list(Spool(tmp_path / "spool").records())) == 21
    spool.clear()
    assert spool.files() == [] and not spool


def test_spooling_writer_holds_events_and_writes_them_once_back(own_pg, tmp_path):
    url = own_pg.create_database("spool_unit")
    chains = [F.chain(i, symbol=("BTCUSDT", "ETHUSDT")[i % 2]) for i in range(40)]
    changes: list[tuple[bool, str]] = []
    db = Database(url, connect_timeout=2)
    sink = SpoolingWriter(EventWriter(db, "run-spool", batch_size=50), tmp_path / "spool",
                          give_up_after_s=0.5, probe_every_s=0.2, on_change=lambda ok, why: changes.append((ok, why)))

    def feed(lo: int, hi: int) -> None:
        for chain in chains[lo:hi]:
            for ev in chain:
                sink.write_raw(encode(ev), source=topic_out(ev)[0])
            sink.flush()

    feed(0, 10)
    assert not sink.spooling and len(_ids(url, "trades")) == 10
    own_pg.stop("fast")
    t0 = time.monotonic()
    feed(10, 30)
    sink.save_checkpoint(30, b"after 30")
    assert time.monotonic() - t0 < 10  # held, not blocked
    assert sink.spooling and changes and changes[0][0] is False
    held = list(sink.spool.records())
    assert [r.kind for r in held].count("checkpoint") == 1 and held[-1].position == 30
    assert len(held) >= 20 * len(chains[0]) + 1
    own_pg.start()
    time.sleep(0.3)
    feed(30, 34)  # the first flush after the probe interval writes the spool, then these
    assert not sink.spooling and changes[-1][0] is True and sink.spool.files() == []
    # a run stopped while the database was away leaves its spool; the next start writes it
    own_pg.stop("fast")
    feed(34, 40)
    sink.spool.close()
    own_pg.start()
    db2 = Database(url)
    again = SpoolingWriter(EventWriter(db2, "run-spool"), tmp_path / "spool")
    assert not again.spooling and again.spool.files() == []
    again.close()
    flat = [ev for chain in chains for ev in chain]
    for table, kind in TABLES:
        assert _ids(url, table) == _want(flat, kind), table  # every id once
    assert load_checkpoint(db2, "run-spool") == (30, b"after 30")
    db.dispose()
    db2.dispose()


def test_distributed_writer_service_catches_up_after_an_outage(own_pg, redis_url, redis_prefix):
    """The bus holds what the writer has not stored: a writer that gave up (its service dies, the
    supervisor starts it again) loses nothing, and nothing is doubled."""
    from claire.bus.redis_streams import RedisStreamsBus
    from claire.runtime.distributed.runner import WriterService

    url = own_pg.create_database("dist_outage")
    chains = [F.chain(i, symbol=("BTCUSDT", "SOLUSDT")[i % 2]) for i in range(60)]
    bus = RedisStreamsBus(redis_url, prefix=redis_prefix)

    def publish(lo: int, hi: int) -> None:
        for chain in chains[lo:hi]:
            for ev in chain:
                bus.publish(topic_out(ev)[0], encode(ev))

    def service() -> tuple[WriterService, threading.Thread, threading.Event, list]:
        writer = EventWriter(Database(url, connect_timeout=2), "run-dist", batch_size=50,
                             retry_initial_delay=0.05, retry_max_delay=0.2, retry_timeout=1.5)
        svc = WriterService(bus, writer, block_ms=50)
        svc.start()
        stop, errors = threading.Event(), []

        def loop():
            try:
                svc.run(stop)
            except Exception as exc:  # a writer that gave up: the service dies
                errors.append(exc)

        t = threading.Thread(target=loop, daemon=True)
        t.start()
        return svc, t, stop, errors

    svc, t, stop, errors = service()
    publish(0, 20)
    deadline = time.monotonic() + 20
    while len(_ids(url, "trades")) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    own_pg.stop("fast")
    publish(20, 60)
    t.join(20)
    assert not t.is_alive() and errors and "unavailable" in str(errors[0])  # it gave up
    own_pg.start()
    svc, t, stop, errors = service()  # started again, as the supervisor does
    deadline = time.monotonic() + 30
    while len(_ids(url, "portfolio_snapshots")) < 60 and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    t.join(10)
    assert not errors
    flat = [ev for chain in chains for ev in chain]
    for table, kind in TABLES:
        assert _ids(url, table) == _want(flat, kind), table
    svc.writer.close()
    bus.close()


def _paper_cmd(data: Path, db: str, out: Path, speed: str, port: int) -> list[str]:
    return [sys.executable, "-m", "claire.cli.main", "paper", "--data", str(data), "--strategy", "sma_cross",
            "--param", "fast=5", "--param", "slow=20", "--db", db, "--out", str(out), "--speed", speed,
            "--port", str(port)]


def _health(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return json.loads(r.read())
    except OSError:
        return {}


def _facts(url: str) -> dict:
    eng = sa.create_engine(url)
    with eng.connect() as c:
        trades = c.execute(sa.text("SELECT id, symbol, side, quantity, price FROM trades ORDER BY id")).all()
        final = c.execute(sa.text("SELECT equity, cash FROM portfolio_snapshots WHERE reason = 'final'")).all()
        counts = {t: c.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()
                  for t in ("signals", "orders", "trades", "risk_events", "portfolio_snapshots")}
        alerts = [r[0] for r in c.execute(sa.text("SELECT code FROM alerts ORDER BY ts"))]
    eng.dispose()
    return {"trades": [tuple(map(str, r)) for r in trades], "final": [tuple(map(str, r)) for r in final],
            "counts": counts, "alerts": alerts}


def test_paper_keeps_trading_through_a_30s_database_outage(own_pg, data_dir, tmp_path):
    import pyarrow.feather as feather

    data = tmp_path / "BTC_USDT-1m.feather"
    feather.write_feather(feather.read_table(data_dir / "BTC_USDT-1m.feather").slice(0, 3200), data)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    ref_url, run_url = own_pg.create_database("paper_ref"), own_pg.create_database("paper_outage")
    subprocess.run(_paper_cmd(data, ref_url, tmp_path / "ref", "max", 0), check=True, env=env,
                   capture_output=True, timeout=60)
    want = _facts(ref_url)
    # 3200 one-minute bars at 5,000x event time: ~38 s of wall time, 30 of them without the database
    port = free_port()
    out = tmp_path / "run"
    errfile = tmp_path / "paper.stderr"
    with errfile.open("wb") as err_fh:
        proc = subprocess.Popen(_paper_cmd(data, run_url, out, "5000", port), env=env,
                                stdout=subprocess.DEVNULL, stderr=err_fh)
    try:
        deadline = time.monotonic() + 30
        while _health(port).get("processed", 0) < 300 and time.monotonic() < deadline:
            time.sleep(0.2)
        own_pg.stop("fast")
        before = _health(port)["processed"]
        seen_spooling, held = False, 0
        end = time.monotonic() + 30
        while time.monotonic() < end:
            h = _health(port)
            spool = h.get("spool", {})
            seen_spooling |= bool(spool.get("spooling"))
            held = max(held, spool.get("spooled", 0))
            time.sleep(0.5)
        during = _health(port)["processed"]
        files_during = sorted(p.name for p in (out / "spool").glob("*.msgpack"))
        own_pg.start()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        print(errfile.read_text()[-3000:])
    assert proc.returncode == 0
    assert before < 1000 and during > before + 1000  # it kept trading while the database was down
    assert seen_spooling and held > 0 and files_during  # the spool held the events
    assert list((out / "spool").glob("*.msgpack")) == []  # and was emptied into the database
    got = _facts(run_url)
    assert got["counts"] == want["counts"]
    assert got["trades"] == want["trades"] and len(want["trades"]) > 10
    assert got["final"] == want["final"]
    assert "database_unreachable" in got["alerts"] and "database_unreachable" not in want["alerts"]
    assert got["alerts"].index("database_unreachable") < got["alerts"].index("database_reachable")
    print(f"processed {before} when PostgreSQL stopped, {during} 30 s later; {held} events spooled at most")
