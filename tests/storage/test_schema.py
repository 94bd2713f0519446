"""The migrated schema equals the models, and its constraints hold (S2)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, inspect
from sqlalchemy.exc import IntegrityError

from claire import events
from claire.storage import models
from claire.storage.models import metadata

from .conftest import count, rows, scalar

T = metadata.tables
NOW = datetime(2025, 1, 1, tzinfo=UTC)


def test_every_table_of_s1_exists_and_matches_the_models(db):
    names = set(inspect(db.engine).get_table_names())
    s1 = {
        "signals",
        "orders",
        "trades",
        "positions",
        "portfolio_snapshots",
        "risk_events",
        "execution_analysis",
        "performance_metrics",
        "market_conditions",
        "alerts",
        "strategy_versions",
        "schema_version",
    }
    assert s1 | {"runs", "dead_letters", "checkpoints", "pending_events", "service_status"} <= names
    assert set(inspect(db.engine).get_view_names()) >= {"open_positions", "open_orders"}
    with db.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    # tables, columns, types, nullability, keys: identical (indexes with DESC expressions are
    # compared by name below; alembic cannot compare expression indexes)
    assert [d for d in diff if d[0] not in ("add_index", "remove_index")] == []
    insp = inspect(db.engine)
    for table in metadata.sorted_tables:
        want = {ix.name for ix in table.indexes}
        if db.is_sqlite:
            want.discard("ix_risk_events_details")  # GIN: PostgreSQL only
        assert {ix["name"] for ix in insp.get_indexes(table.name)} - {"uq_dead_letters_digest"} == want, (
            table.name
        )
    assert rows(db, "SELECT version FROM schema_version ORDER BY version") == [
        ("1.0.0",),
        ("2.0.0",),
        ("3.0.0",),
        ("4.0.0",),
    ]


def test_enum_checks_cover_the_event_enums():
    assert {s.value for s in events.Side} == set(models.SIDES)
    assert {s.value for s in events.OrderType} == set(models.ORDER_TYPES)
    assert {s.value for s in events.TimeInForce} == set(models.TIME_IN_FORCE)
    assert {s.value for s in events.OrderStatus} | {"pending"} == set(models.ORDER_STATUSES)
    assert {s.value for s in events.Liquidity} == set(models.LIQUIDITY)
    assert {s.value for s in events.PositionSide} == set(models.POSITION_SIDES)
    assert {s.value for s in events.RiskCheck} == set(models.RISK_CHECKS)
    assert {s.value for s in events.RiskAction} == set(models.RISK_ACTIONS)
    assert {s.value for s in events.TradingState} == set(models.TRADING_STATES)
    assert {s.value for s in events.AlertLevel} == set(models.ALERT_LEVELS)


def _base(conn):
    conn.execute(insert(T["runs"]).values(id="r", mode="test", config={}))
    conn.execute(
        insert(T["signals"]).values(
            id="s1",
            run_id="r",
            ts=NOW,
            recv_ts=NOW,
            symbol="BTCUSDT",
            side="buy",
            price=Decimal("65000.01"),
            confidence=Decimal("0.8"),
            strategy="m",
            strategy_version="1",
            metadata={},
        )
    )
    conn.execute(
        insert(T["orders"]).values(
            id="o1",
            run_id="r",
            signal_id="s1",
            ts=NOW,
            recv_ts=NOW,
            symbol="BTCUSDT",
            side="buy",
            order_type="market",
            time_in_force="gtc",
            quantity=Decimal("0.1"),
            price=None,
            reference_price=Decimal("65000.01"),
            status="pending",
            filled_quantity=0,
            fees=0,
            metadata={},
        )
    )


def _trade(**over):
    row = dict(
        id="t1",
        run_id="r",
        order_id="o1",
        signal_id="s1",
        ts=NOW,
        recv_ts=NOW,
        symbol="BTCUSDT",
        side="buy",
        order_type="market",
        status="filled",
        quantity=Decimal("0.1"),
        price=Decimal("65010"),
        notional=Decimal("6501"),
        fee=Decimal("6.5"),
        metadata={},
    )
    row.update(over)
    return row


BAD = [
    ("trades", {"price": Decimal("0")}),
    ("trades", {"price": Decimal("-1")}),
    ("trades", {"quantity": Decimal("0")}),
    ("trades", {"status": "rejected"}),
    ("trades", {"status": "FILLED"}),
    ("trades", {"order_id": "missing-order"}),
    ("trades", {"fee": Decimal("-0.01")}),
    ("signals", {"confidence": Decimal("1.01")}),
    ("signals", {"side": "BUY"}),
    ("signals", {"price": Decimal("0")}),
    ("orders", {"price": Decimal("65000")}),  # a market order with a price
    ("orders", {"order_type": "limit"}),  # a limit order without one
    ("orders", {"signal_id": "missing-signal"}),
    ("orders", {"status": "expired"}),
]


def test_constraints_reject_bad_rows(db):
    with db.begin() as conn:
        _base(conn)
    for table, bad in BAD:
        if table == "trades":
            row = _trade(**bad)
        elif table == "signals":
            row = dict(
                id="s2",
                run_id="r",
                ts=NOW,
                recv_ts=NOW,
                symbol="BTCUSDT",
                side="sell",
                price=Decimal("1"),
                confidence=Decimal("0.5"),
                strategy="m",
                strategy_version="1",
                metadata={},
            )
            row.update(bad)
        else:
            row = dict(
                id="o2",
                run_id="r",
                signal_id="s1",
                ts=NOW,
                recv_ts=NOW,
                symbol="BTCUSDT",
                side="buy",
                order_type="market",
                time_in_force="gtc",
                quantity=Decimal("0.1"),
                price=None,
                reference_price=Decimal("1"),
                status="pending",
                filled_quantity=0,
                fees=0,
                metadata={},
            )
            row.update(bad)
        with pytest.raises(IntegrityError), db.begin() as conn:
            conn.execute(insert(T[table]).values(**row))
    assert (count(db, "trades"), count(db, "signals"), count(db, "orders")) == (0, 1, 1)
    with db.begin() as conn:  # and the good trade passes
        conn.execute(insert(T["trades"]).values(**_trade()))
    assert count(db, "trades") == 1


def test_good_rows_roundtrip_exactly(db):
    with db.begin() as conn:
        _base(conn)
        conn.execute(insert(T["trades"]).values(**_trade(quantity=Decimal("0.123456789012345678"))))
    assert scalar(db, "SELECT count(*) FROM orders WHERE price IS NULL") == 1
    with db.connect() as conn:
        q = conn.execute(T["trades"].select()).mappings().one()
    assert q["quantity"] == Decimal("0.123456789012345678")
    assert q["price"] == Decimal("65010")
    assert q["ts"] == NOW and q["ts"].tzinfo is not None


def test_positions_side_must_match_quantity(db):
    with db.begin() as conn:
        _base(conn)
    base = dict(
        run_id="r",
        symbol="BTCUSDT",
        avg_price=1,
        mark_price=1,
        cost_basis=1,
        unrealized_pnl=0,
        realized_pnl=0,
        fees=0,
        exposure=1,
        exposure_pct=Decimal("1.7"),
        updated_at=NOW,
        snapshot_id="x",
        metadata={},
    )
    with db.begin() as conn:  # exposure above 1 (leverage/shorts) is allowed
        conn.execute(insert(T["positions"]).values(side="short", quantity=Decimal("-2"), **base))
    with pytest.raises(IntegrityError), db.begin() as conn:
        conn.execute(
            insert(T["positions"]).values(side="long", quantity=Decimal("-2"), **{**base, "symbol": "E"})
        )
    assert count(db, "open_positions") == 1


def test_benchmark_queries_use_their_indexes(pg_database):
    from claire.storage.database import Database

    db = Database(pg_database)
    try:
        db.upgrade()
        with db.begin() as conn:
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plans = {}
            for name, sql in {
                "signals": "EXPLAIN SELECT * FROM signals WHERE symbol = 'BTCUSDT' ORDER BY ts DESC LIMIT 100",
                "positions": "EXPLAIN SELECT symbol, sum(exposure) FROM open_positions GROUP BY symbol",
                "risk": 'EXPLAIN SELECT * FROM risk_events WHERE details @> \'{"portfolio": {"current_exposure": 4850}}\'',
                "orders": "EXPLAIN SELECT * FROM orders WHERE run_id = 'r' AND status IN ('pending', 'partially_filled')",
            }.items():
                plans[name] = "\n".join(r[0] for r in conn.exec_driver_sql(sql))
        assert "ix_signals_symbol_ts" in plans["signals"]
        assert "ix_positions_open" in plans["positions"]
        assert "ix_risk_events_details" in plans["risk"]
        assert "ix_orders_open" in plans["orders"]
    finally:
        db.dispose()
