"""2.0 risk events and execution analysis

Revision ID: v2_0
Revises: v1_0
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from claire.storage.migrations.versioning import forget_version, record_version
from claire.storage.types import (
    Dec,
    JSONType,
    UTCDateTime,
    between,
    not_negative,
    one_of,
    positive,
)

revision = "v2_0"
down_revision = "v1_0"
branch_labels = None
depends_on = None

VERSION = "2.0.0"
DESCRIPTION = "Risk events (JSONB details, GIN) and execution analysis"


def upgrade() -> None:
    op.create_table(
        "risk_events",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("ts", UTCDateTime(), nullable=False),
        sa.Column("recv_ts", UTCDateTime(), nullable=False),
        sa.Column("signal_id", sa.String(length=128), nullable=True),
        sa.Column("order_id", sa.String(length=128), nullable=True),
        sa.Column("symbol", sa.String(length=32), nullable=True),
        sa.Column("check_type", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("check_value", Dec(), nullable=True),
        sa.Column("check_limit", Dec(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("trading_state", sa.String(length=20), nullable=False),
        sa.Column("requested_quantity", Dec(), nullable=True),
        sa.Column("approved_quantity", Dec(), nullable=True),
        sa.Column("details", JSONType, server_default=sa.text("'{}'"), nullable=False),
        sa.Column("correlation_id", sa.String(length=128), nullable=True),
        sa.Column("causation_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
        one_of(
            "action",
            (
                "approved",
                "resized",
                "rejected",
                "delayed",
                "halted",
                "circuit_broken",
                "resumed",
            ),
        ),
        one_of(
            "check_type",
            (
                "data_quality",
                "position_limit",
                "daily_drawdown",
                "total_exposure",
                "circuit_breaker",
                "slippage",
                "spread",
                "sizing",
                "all",
                "state",
            ),
        ),
        one_of(
            "trading_state",
            (
                "active",
                "halted",
                "circuit_broken",
            ),
        ),
        not_negative("approved_quantity"),
        not_negative("requested_quantity"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_risk_events_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_events")),
    )
    op.create_index(
        "ix_risk_events_check_type_ts",
        "risk_events",
        ["check_type", sa.literal_column("ts DESC")],
        unique=False,
    )
    op.create_index("ix_risk_events_run_id_ts", "risk_events", ["run_id", "ts"], unique=False)
    op.create_index(op.f("ix_risk_events_signal_id"), "risk_events", ["signal_id"], unique=False)
    op.create_index(op.f("ix_risk_events_ts"), "risk_events", ["ts"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_risk_events_details",
            "risk_events",
            ["details"],
            unique=False,
            postgresql_using="gin",
            postgresql_ops={"details": "jsonb_path_ops"},
        )
    op.create_table(
        "execution_analysis",
        sa.Column("trade_id", sa.String(length=128), nullable=False),
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("order_id", sa.String(length=128), nullable=False),
        sa.Column("signal_id", sa.String(length=128), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("signal_ts", UTCDateTime(), nullable=True),
        sa.Column("order_ts", UTCDateTime(), nullable=True),
        sa.Column("execution_ts", UTCDateTime(), nullable=False),
        sa.Column("signal_to_order_ms", Dec(), nullable=True),
        sa.Column("order_to_execution_ms", Dec(), nullable=True),
        sa.Column("total_latency_ms", Dec(), nullable=True),
        sa.Column("exchange_latency_ms", Dec(), nullable=True),
        sa.Column("expected_price", Dec(), nullable=True),
        sa.Column("execution_price", Dec(), nullable=False),
        sa.Column("slippage_bps", Dec(), nullable=True),
        sa.Column("slippage_reason", sa.String(length=100), nullable=True),
        sa.Column("price_before", Dec(), nullable=True),
        sa.Column("price_after", Dec(), nullable=True),
        sa.Column("market_impact_bps", Dec(), nullable=True),
        sa.Column("execution_quality_score", Dec(), nullable=True),
        sa.Column("metadata", JSONType, server_default=sa.text("'{}'"), nullable=False),
        positive("execution_price"),
        between("execution_quality_score", 0, 1),
        positive("expected_price"),
        positive("price_after"),
        positive("price_before"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_execution_analysis_run_id_runs")),
        sa.ForeignKeyConstraint(
            ["trade_id"], ["trades.id"], name=op.f("fk_execution_analysis_trade_id_trades")
        ),
        sa.PrimaryKeyConstraint("trade_id", name=op.f("pk_execution_analysis")),
    )
    op.create_index(
        "ix_execution_analysis_quality",
        "execution_analysis",
        [sa.literal_column("execution_quality_score DESC")],
        unique=False,
    )
    op.create_index(op.f("ix_execution_analysis_run_id"), "execution_analysis", ["run_id"], unique=False)
    record_version(VERSION, revision, DESCRIPTION)


def downgrade() -> None:
    forget_version(VERSION)
    op.drop_table("execution_analysis")
    op.drop_table("risk_events")
