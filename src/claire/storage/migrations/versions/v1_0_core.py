"""1.0 core tables

Revision ID: v1_0
Revises: None
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from claire.storage.migrations.versioning import record_version
from claire.storage.types import (
    BlobType,
    Dec,
    JSONType,
    UTCDateTime,
    between,
    not_negative,
    one_of,
    positive,
    side_matches_quantity,
)

revision = "v1_0"
down_revision = None
branch_labels = None
depends_on = None

VERSION = "1.0.0"
# The views as of 1.0 (frozen here: a later change is a new migration).
OPEN_POSITIONS_VIEW = (
    "CREATE VIEW open_positions AS "
    "SELECT run_id, symbol, side, quantity, avg_price, mark_price, exposure, exposure_pct, "
    "unrealized_pnl, realized_pnl, opened_at, updated_at FROM positions WHERE side <> 'flat'"
)
OPEN_ORDERS_VIEW = (
    "CREATE VIEW open_orders AS "
    "SELECT id, run_id, signal_id, ts, symbol, side, order_type, quantity, price, filled_quantity, status "
    "FROM orders WHERE status IN ('pending', 'partially_filled')"
)
DESCRIPTION = "Core tables: runs, signals, orders, trades, positions, portfolio_snapshots, dead_letters, pending_events, checkpoints, schema_version"


def upgrade() -> None:
    op.create_table(
        "schema_version",
        sa.Column("version", sa.String(length=20), nullable=False),
        sa.Column("revision", sa.String(length=32), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("applied_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_schema_version")),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("started_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.Column("config", JSONType, server_default=sa.text("'{}'"), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        one_of(
            "mode",
            (
                "backtest",
                "paper",
                "replay",
                "test",
            ),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index(op.f("ix_runs_started_at"), "runs", ["started_at"], unique=False)
    op.create_table(
        "signals",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("ts", UTCDateTime(), nullable=False),
        sa.Column("recv_ts", UTCDateTime(), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("price", Dec(), nullable=False),
        sa.Column("confidence", Dec(), nullable=False),
        sa.Column("strategy", sa.String(length=128), nullable=False),
        sa.Column("strategy_version", sa.String(length=32), nullable=False),
        sa.Column("quantity", Dec(), nullable=True),
        sa.Column("reduce_only", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("market_ts", UTCDateTime(), nullable=True),
        sa.Column("correlation_id", sa.String(length=128), nullable=True),
        sa.Column("causation_id", sa.String(length=128), nullable=True),
        sa.Column("metadata", JSONType, server_default=sa.text("'{}'"), nullable=False),
        sa.Column("created_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
        one_of(
            "side",
            (
                "buy",
                "sell",
            ),
        ),
        between("confidence", 0, 1),
        positive("price"),
        positive("quantity"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_signals_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signals")),
    )
    op.create_index("ix_signals_run_id_ts", "signals", ["run_id", "ts"], unique=False)
    op.create_index("ix_signals_symbol_ts", "signals", ["symbol", sa.literal_column("ts DESC")], unique=False)
    op.create_index(op.f("ix_signals_ts"), "signals", ["ts"], unique=False)
    op.create_table(
        "orders",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("signal_id", sa.String(length=128), nullable=False),
        sa.Column("ts", UTCDateTime(), nullable=False),
        sa.Column("recv_ts", UTCDateTime(), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("order_type", sa.String(length=8), nullable=False),
        sa.Column("time_in_force", sa.String(length=8), nullable=False),
        sa.Column("quantity", Dec(), nullable=False),
        sa.Column("price", Dec(), nullable=True),
        sa.Column("reference_price", Dec(), nullable=False),
        sa.Column("reduce_only", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("strategy", sa.String(length=128), server_default="", nullable=False),
        sa.Column("status", sa.String(length=20), server_default="pending", nullable=False),
        sa.Column("filled_quantity", Dec(), server_default=sa.text("0"), nullable=False),
        sa.Column("avg_fill_price", Dec(), nullable=True),
        sa.Column("fees", Dec(), server_default=sa.text("0"), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=True),
        sa.Column("correlation_id", sa.String(length=128), nullable=True),
        sa.Column("causation_id", sa.String(length=128), nullable=True),
        sa.Column("metadata", JSONType, server_default=sa.text("'{}'"), nullable=False),
        sa.Column("created_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "(order_type = 'market' AND price IS NULL) OR (order_type = 'limit' AND price IS NOT NULL)",
            name=op.f("ck_orders_price_by_type"),
        ),
        one_of(
            "order_type",
            (
                "market",
                "limit",
            ),
        ),
        one_of(
            "side",
            (
                "buy",
                "sell",
            ),
        ),
        one_of(
            "status",
            (
                "pending",
                "partially_filled",
                "filled",
                "rejected",
                "cancelled",
            ),
        ),
        one_of(
            "time_in_force",
            (
                "gtc",
                "ioc",
                "fok",
                "day",
            ),
        ),
        positive("avg_fill_price"),
        not_negative("fees"),
        not_negative("filled_quantity"),
        positive("price"),
        positive("quantity"),
        positive("reference_price"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_orders_run_id_runs")),
        sa.ForeignKeyConstraint(["signal_id"], ["signals.id"], name=op.f("fk_orders_signal_id_signals")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
    )
    op.create_index(
        "ix_orders_open",
        "orders",
        ["run_id", "symbol"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending', 'partially_filled')"),
        sqlite_where=sa.text("status IN ('pending', 'partially_filled')"),
    )
    op.create_index("ix_orders_run_id_ts", "orders", ["run_id", "ts"], unique=False)
    op.create_index(op.f("ix_orders_signal_id"), "orders", ["signal_id"], unique=False)
    op.create_index("ix_orders_status_ts", "orders", ["status", sa.literal_column("ts DESC")], unique=False)
    op.create_index(op.f("ix_orders_ts"), "orders", ["ts"], unique=False)
    op.create_table(
        "trades",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("order_id", sa.String(length=128), nullable=False),
        sa.Column("signal_id", sa.String(length=128), nullable=False),
        sa.Column("ts", UTCDateTime(), nullable=False),
        sa.Column("recv_ts", UTCDateTime(), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("order_type", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("quantity", Dec(), nullable=False),
        sa.Column("price", Dec(), nullable=False),
        sa.Column("notional", Dec(), nullable=False),
        sa.Column("fee", Dec(), server_default=sa.text("0"), nullable=False),
        sa.Column("fee_asset", sa.String(length=16), server_default="USDT", nullable=False),
        sa.Column("liquidity", sa.String(length=8), server_default="none", nullable=False),
        sa.Column("order_quantity", Dec(), nullable=True),
        sa.Column("cum_quantity", Dec(), nullable=True),
        sa.Column("leaves_quantity", Dec(), nullable=True),
        sa.Column("reference_price", Dec(), nullable=True),
        sa.Column("slippage_bps", Dec(), nullable=True),
        sa.Column("latency_ms", Dec(), nullable=True),
        sa.Column("correlation_id", sa.String(length=128), nullable=True),
        sa.Column("causation_id", sa.String(length=128), nullable=True),
        sa.Column("metadata", JSONType, server_default=sa.text("'{}'"), nullable=False),
        sa.Column("created_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
        one_of(
            "liquidity",
            (
                "maker",
                "taker",
                "none",
            ),
        ),
        one_of(
            "order_type",
            (
                "market",
                "limit",
            ),
        ),
        one_of(
            "side",
            (
                "buy",
                "sell",
            ),
        ),
        one_of(
            "status",
            (
                "filled",
                "partially_filled",
            ),
        ),
        not_negative("cum_quantity"),
        not_negative("fee"),
        not_negative("leaves_quantity"),
        positive("notional"),
        positive("price"),
        positive("quantity"),
        positive("reference_price"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_trades_order_id_orders")),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_trades_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trades")),
    )
    op.create_index(op.f("ix_trades_order_id"), "trades", ["order_id"], unique=False)
    op.create_index("ix_trades_run_id_ts", "trades", ["run_id", "ts"], unique=False)
    op.create_index("ix_trades_symbol_ts", "trades", ["symbol", sa.literal_column("ts DESC")], unique=False)
    op.create_table(
        "positions",
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("quantity", Dec(), nullable=False),
        sa.Column("avg_price", Dec(), nullable=False),
        sa.Column("mark_price", Dec(), nullable=False),
        sa.Column("cost_basis", Dec(), nullable=False),
        sa.Column("unrealized_pnl", Dec(), nullable=False),
        sa.Column("realized_pnl", Dec(), nullable=False),
        sa.Column("fees", Dec(), nullable=False),
        sa.Column("exposure", Dec(), nullable=False),
        sa.Column("exposure_pct", Dec(), nullable=False),
        sa.Column("opened_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("snapshot_id", sa.String(length=128), nullable=False),
        sa.Column("metadata", JSONType, server_default=sa.text("'{}'"), nullable=False),
        side_matches_quantity(),
        one_of(
            "side",
            (
                "long",
                "short",
                "flat",
            ),
        ),
        not_negative("avg_price"),
        not_negative("exposure"),
        not_negative("exposure_pct"),
        not_negative("fees"),
        not_negative("mark_price"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_positions_run_id_runs")),
        sa.PrimaryKeyConstraint("run_id", "symbol", name=op.f("pk_positions")),
    )
    op.create_index(
        "ix_positions_open",
        "positions",
        ["symbol", "run_id"],
        unique=False,
        postgresql_where=sa.text("side <> 'flat'"),
        sqlite_where=sa.text("side <> 'flat'"),
    )
    op.create_table(
        "portfolio_snapshots",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("ts", UTCDateTime(), nullable=False),
        sa.Column("recv_ts", UTCDateTime(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("start_cash", Dec(), nullable=False),
        sa.Column("cash", Dec(), nullable=False),
        sa.Column("equity", Dec(), nullable=False),
        sa.Column("realized_pnl", Dec(), nullable=False),
        sa.Column("unrealized_pnl", Dec(), nullable=False),
        sa.Column("fees", Dec(), nullable=False),
        sa.Column("total_exposure", Dec(), nullable=False),
        sa.Column("total_exposure_pct", Dec(), nullable=False),
        sa.Column("high_water_mark", Dec(), nullable=False),
        sa.Column("drawdown_pct", Dec(), nullable=False),
        sa.Column("day_start_equity", Dec(), nullable=False),
        sa.Column("daily_pnl", Dec(), nullable=False),
        sa.Column("num_positions", sa.Integer(), nullable=False),
        sa.Column("positions", JSONType, server_default=sa.text("'[]'"), nullable=False),
        sa.Column("created_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
        not_negative("drawdown_pct"),
        not_negative("fees"),
        not_negative("high_water_mark"),
        not_negative("num_positions"),
        positive("start_cash"),
        not_negative("total_exposure"),
        not_negative("total_exposure_pct"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_portfolio_snapshots_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portfolio_snapshots")),
    )
    op.create_index(
        "ix_portfolio_snapshots_run_id_ts",
        "portfolio_snapshots",
        ["run_id", sa.literal_column("ts DESC")],
        unique=False,
    )
    op.create_index(op.f("ix_portfolio_snapshots_ts"), "portfolio_snapshots", ["ts"], unique=False)
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("digest", sa.String(length=128), nullable=False),
        sa.Column("run_id", sa.String(length=128), nullable=True),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=True),
        sa.Column("event_id", sa.String(length=128), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("payload", BlobType, nullable=False),
        sa.Column("first_seen", UTCDateTime(), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
        sa.UniqueConstraint("digest", name=op.f("uq_dead_letters_digest")),
    )
    op.create_index(
        "ix_dead_letters_run_id_first_seen", "dead_letters", ["run_id", "first_seen"], unique=False
    )
    op.create_table(
        "pending_events",
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("parent_table", sa.String(length=32), nullable=False),
        sa.Column("parent_id", sa.String(length=128), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("payload", BlobType, nullable=False),
        sa.Column("first_seen", UTCDateTime(), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_pending_events_run_id_runs")),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_pending_events")),
    )
    op.create_index(op.f("ix_pending_events_parent_id"), "pending_events", ["parent_id"], unique=False)
    op.create_index(
        "ix_pending_events_run_id_first_seen", "pending_events", ["run_id", "first_seen"], unique=False
    )
    op.create_table(
        "checkpoints",
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("state", BlobType, nullable=False),
        sa.Column("updated_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
        not_negative("position"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_checkpoints_run_id_runs")),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_checkpoints")),
    )
    op.execute(OPEN_POSITIONS_VIEW)
    op.execute(OPEN_ORDERS_VIEW)
    record_version(VERSION, revision, DESCRIPTION)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS open_orders")
    op.execute("DROP VIEW IF EXISTS open_positions")
    op.drop_table("checkpoints")
    op.drop_table("pending_events")
    op.drop_table("dead_letters")
    op.drop_table("portfolio_snapshots")
    op.drop_table("positions")
    op.drop_table("trades")
    op.drop_table("orders")
    op.drop_table("signals")
    op.drop_table("runs")
    op.drop_table("schema_version")
