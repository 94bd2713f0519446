"""The writer's write paths give the same rows: one pipeline per small batch, COPY for a large
one (optimistic, then skipping stored keys after a redelivery); new orders are written with
exactly the values PostgreSQL computes."""

from __future__ import annotations

import random
from decimal import Decimal

import msgspec
import pytest
from sqlalchemy import text

from claire.events import OrderStatus
from claire.storage import writer as W
from claire.storage.database import Database
from claire.storage.writer import EventWriter

from . import factory as F
from .conftest import count, rows, scalar

PART = OrderStatus.PARTIALLY_FILLED
# what COPY's text format must escape, and more
TRICKY = 'tab\there, newline\nand\r\nback\\slash \\N "quoted" \'single\' é ✓ \\x00'


def _events(prefix: str, n: int) -> list:
    """``n`` chains of every kind (fills in parts with inexact averages, cancels, rejects,
    positions opened and closed), with ids ``prefix-...`` so that two runs can be compared."""
    rnd = random.Random(7)
    out: list = []
    held: dict[str, str] = {}
    for i in range(n):
        ts = F.T0 + i * 60_000 * F.MS
        sym = ("BTCUSDT", "ETHUSDT", "SOLUSDT")[i % 3]
        meta = {"rsi": 40 + i % 30, "macd": rnd.uniform(-5, 5), "bb_upper": 66000.0, "bb_lower": 64000.0,
                "note": TRICKY if i % 7 == 0 else f"n{i}"}
        s = F.signal(ts, symbol=sym, price=f"{65000 + rnd.randint(0, 999)}.{rnd.randint(0, 99):02d}",
                     sid=f"{prefix}-s-{i}", metadata=meta)
        o = F.order(s, quantity="0.7", limit="65020.5" if i % 5 == 0 else None, oid=f"{prefix}-o-{i}")
        kind = i % 4
        res = []
        if kind == 0:  # two parts, an average that does not terminate
            res = [
                F.fill(o, price="65001.13", quantity="0.2", status=PART, cum="0.2", fid=f"{prefix}-f-{i}-a"),
                F.fill(o, price="65003.07", quantity="0.5", cum="0.7", ts=o.ts_event + 9 * F.MS,
                       fid=f"{prefix}-f-{i}-b"),
            ]
        elif kind == 1:  # three parts of 0.1, then cancelled
            res = [
                F.fill(o, price=p, quantity="0.1", status=PART, cum=c, ts=o.ts_event + k * F.MS,
                       fid=f"{prefix}-f-{i}-{k}")
                for k, (p, c) in enumerate((("65000.01", "0.1"), ("65000.02", "0.2"), ("65000.04", "0.3")), 5)
            ] + [F.reject(o, status="cancelled", reason="ioc rest", ts=o.ts_event + 20 * F.MS,
                          rid=f"{prefix}-c-{i}")]
        elif kind == 2:  # partially filled, still open
            res = [F.fill(o, price="64999.99", quantity="0.3", status=PART, cum="0.3", fid=f"{prefix}-f-{i}")]
        else:
            res = [F.reject(o, reason=TRICKY if i % 8 == 7 else "no liquidity", rid=f"{prefix}-r-{i}")]
        if kind != 3:
            held[sym] = f"{0.1 * (i % 7 + 1):.1f}"
        elif sym in held:
            del held[sym]  # closed
        positions = tuple(F.position(k, q, ts=ts) for k, q in sorted(held.items()))
        out += [s, F.risk(s, ts=ts + F.MS, passed=True, rid=f"{prefix}-k-{i}"), o, *res,
                F.snapshot(ts + 30 * F.MS, positions=positions, sid=f"{prefix}-p-{i}")]
    return out


_TABLES = {
    "signals": "id",
    "market_conditions": "signal_id",
    "orders": "id",
    "trades": "id",
    "execution_analysis": "trade_id",
    "portfolio_snapshots": "id",
    "risk_events": "id",
    "positions": "symbol",
}


def _dump(db: Database, run: str, prefix: str) -> dict[str, list]:
    """Every row of the run as text, ids without their prefix (created_at left out)."""
    out = {}
    with db.connect() as conn:
        for table, key in _TABLES.items():
            cols = [
                r[0]
                for r in conn.execute(
                    text(
                        "SELECT column_name FROM information_schema.columns WHERE table_name = :t "
                        "AND column_name NOT IN ('created_at', 'run_id') ORDER BY ordinal_position"
                    ),
                    {"t": table},
                )
            ]
            sel = ", ".join(f"{c}::text" for c in cols)
            got = conn.execute(text(f"SELECT {sel} FROM {table} WHERE run_id = :r ORDER BY {key}"), {"r": run})
            out[table] = [tuple(v.replace(prefix + "-", "") if v else v for v in r) for r in got]
    return out


@pytest.fixture()
def pg(pg_database):
    db = Database(pg_database)
    db.upgrade()
    yield db
    db.dispose()


def test_pipeline_and_copy_paths_write_the_same_rows(pg):
    n = 240  # > COPY_MIN_ROWS rows per table in one batch
    small = _events("a", n)
    with EventWriter(pg, "run-small", batch_size=7, flush_interval=None) as w:
        w.write_many(small)  # one pipeline per batch
    assert w.stats["row_by_row"] == 0
    big = _events("b", n)
    with EventWriter(pg, "run-big", batch_size=5000, flush_interval=None) as w:
        w.write_many(big)  # one COPY batch
    assert w.stats["row_by_row"] == 0
    several = _events("c", n)
    with EventWriter(pg, "run-several", batch_size=700, flush_interval=None) as w:
        w.write_many(several)  # COPY batches, parents in the batch before
    a, b, c = _dump(pg, "run-small", "a"), _dump(pg, "run-big", "b"), _dump(pg, "run-several", "c")
    assert len(a["trades"]) == n // 4 * 6 and len(a["orders"]) == n
    for table in _TABLES:
        assert a[table] == b[table], table
        assert a[table] == c[table], table
    for prefix in ("a", "b"):  # text with COPY's special characters stored as it was
        assert scalar(pg, f"SELECT reason FROM orders WHERE id = '{prefix}-o-7'") == TRICKY
        assert scalar(pg, f"SELECT metadata->>'note' FROM signals WHERE id = '{prefix}-s-7'") == TRICKY
    status = dict(rows(pg, "SELECT status, count(*) FROM orders WHERE run_id = 'run-big' GROUP BY status"))
    assert status == {"filled": n // 4, "cancelled": n // 4, "partially_filled": n // 4, "rejected": n // 4}


def test_new_orders_hold_exactly_what_postgres_computes_from_their_fills(pg):
    evs = _events("d", 200)
    with EventWriter(pg, "run-d", batch_size=5000, flush_interval=None) as w:
        w.write_many(evs)
    assert w.stats["row_by_row"] == 0
    # the writer's own recomputation from the stored fills (it skips orders already right)
    # finds nothing to change
    got = rows(pg, "SELECT id, updated_at FROM orders WHERE run_id = 'run-d' ORDER BY id")
    with pg.begin() as conn:
        res = conn.exec_driver_sql(
            W._PG_UPDATE_ORDERS,
            ([r[0] for r in got], [None] * len(got), [None] * len(got), [r[1] for r in got]),
        )
        assert res.rowcount == 0
    # and the average price to the digit (scale included), against the fills stored
    off = scalar(
        pg,
        """SELECT count(*) FROM orders o LEFT JOIN LATERAL (
             SELECT sum(quantity) q, sum(notional) n, sum(fee) f FROM trades WHERE order_id = o.id) a ON true
           WHERE o.run_id = 'run-d' AND (
             (CASE WHEN a.q > 0 THEN a.n / a.q END)::text IS DISTINCT FROM o.avg_fill_price::text
             OR COALESCE(a.q, 0)::text IS DISTINCT FROM o.filled_quantity::text
             OR COALESCE(a.f, 0)::text IS DISTINCT FROM o.fees::text)""",
    )
    assert off == 0
    avg = scalar(pg, "SELECT avg_fill_price::text FROM orders WHERE id = 'd-o-0'")
    assert avg == "65002.515714285714"  # (0.2 * 65001.13 + 0.5 * 65003.07) / 0.7 to PostgreSQL's scale


def test_pg_numeric_division_matches_postgres(pg):
    rnd = random.Random(3)
    cases = []
    for _ in range(3000):
        def num():
            return Decimal(rnd.randint(1, 10 ** rnd.randint(1, 14))).scaleb(-rnd.randint(0, 18))
        cases.append((num(), num()))
    with pg.connect() as conn:
        got = conn.exec_driver_sql(
            "SELECT (a / b)::text FROM unnest(%(a)s::numeric[], %(b)s::numeric[]) AS t(a, b)",
            {"a": [c[0] for c in cases], "b": [c[1] for c in cases]},
        ).all()
    for (n, q), (want,) in zip(cases, got, strict=True):
        assert format(W._pg_numeric_div(n, q), "f") == want, (n, q)


def test_large_batches_redelivered_are_written_once(db):
    evs = [ev for i in range(260) for ev in F.chain(i, symbol=("BTCUSDT", "ETHUSDT")[i % 2], limit=i % 3 == 0)]
    with EventWriter(db, "run-re", batch_size=1000, flush_interval=None, orphan_timeout=3600) as w:
        w.write_many(evs)
        w.flush()
        w.write_many(evs)  # a redelivery: keys already stored
        w.write_many(list(reversed(evs)))
    assert w.stats["row_by_row"] == 0
    for table in ("signals", "orders", "trades", "portfolio_snapshots", "risk_events", "market_conditions",
                  "execution_analysis"):
        assert count(db, table) == 260, table
    assert scalar(db, "SELECT count(*) FROM orders WHERE status = 'filled'") == 260
    assert count(db, "dead_letters") == 0 and count(db, "pending_events") == 0


def test_a_failed_large_batch_stays_buffered_and_is_written_once_later(pg, monkeypatch):
    evs = [ev for i in range(100) for ev in F.chain(i)]  # 500 events, 100 of each kind: COPY
    calls = {"n": 0}
    real = EventWriter._write_batch

    def first_fails(self, *args):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return real(self, *args)

    monkeypatch.setattr(EventWriter, "_write_batch", first_fails)
    w = EventWriter(pg, "run-fail", batch_size=500, flush_interval=None)
    with pytest.raises(RuntimeError, match="boom"):
        w.write_many(evs)
    assert w.buffered == 500 and count(pg, "signals") == 0
    w.flush()
    assert w.buffered == 0 and count(pg, "signals") == 100 and count(pg, "trades") == 100
    w.close()
    assert count(pg, "signals") == 100 and count(pg, "market_conditions") == 100


def test_the_writer_replaces_a_connection_killed_between_batches(pg):
    w = EventWriter(pg, "run-kill", batch_size=100, flush_interval=None, retry_initial_delay=0.01)
    w.write_many(F.chain(0))
    w.flush()
    with pg.connect() as conn:
        killed = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar()
    assert killed >= 1
    w.write_many(F.chain(1))
    w.flush()
    w.close()
    assert count(pg, "signals") == 2 and count(pg, "trades") == 2
    assert w.stats["retries"] >= 1


def test_binary_and_text_copy_write_the_same_rows(pg, monkeypatch):
    n = 120  # > COPY_MIN_ROWS rows per table in one batch
    with EventWriter(pg, "run-bin", batch_size=5000, flush_interval=None) as w:
        w.write_many(_events("x", n))  # binary COPY (psycopg's C dumpers)
    monkeypatch.setattr(W, "COPY_BINARY", False)
    with EventWriter(pg, "run-text", batch_size=5000, flush_interval=None) as w:
        w.write_many(_events("y", n))  # the writer's own text format
    assert w.stats["row_by_row"] == 0
    x, y = _dump(pg, "run-bin", "x"), _dump(pg, "run-text", "y")
    for table in _TABLES:
        assert x[table] == y[table], table
    assert scalar(pg, "SELECT metadata->>'note' FROM signals WHERE id = 'x-s-7'") == TRICKY


def test_a_value_binary_copy_cannot_dump_falls_back_to_text(pg):
    # a field of another Python type than its column's (events built in Python are not
    # validated): binary COPY cannot dump it, the table goes as text, where it is str()-ed
    evs = [
        msgspec.structs.replace(F.signal(F.T0 + i * F.MS, sid=f"g-s-{i}"), correlation_id=1000 + i)
        for i in range(110)
    ]
    with EventWriter(pg, "run-odd", batch_size=5000, flush_interval=None) as w:
        w.write_many(evs)
    assert w.stats["row_by_row"] == 0 and w.stats["dead_letters"] == 0
    assert count(pg, "signals") == 110 and count(pg, "market_conditions") == 110
    assert scalar(pg, "SELECT correlation_id FROM signals WHERE id = 'g-s-3'") == "1003"


def test_a_numeric_out_of_range_in_a_copy_batch_is_dead_lettered_alone(pg):
    evs = [F.signal(F.T0 + i * F.MS, sid=f"h-s-{i}") for i in range(110)]
    evs[5] = msgspec.structs.replace(evs[5], quantity=Decimal("1E-20000"))  # beyond NUMERIC's scale
    with EventWriter(pg, "run-num", batch_size=5000, flush_interval=None) as w:
        w.write_many(evs)
    assert count(pg, "signals") == 109 and count(pg, "market_conditions") == 109
    assert rows(pg, "SELECT event_id FROM dead_letters") == [("h-s-5",)]
    assert "rejected by the database" in scalar(pg, "SELECT reason FROM dead_letters")
