"""3.0 analytics tables

Revision ID: v3_0
Revises: v2_0
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

revision = "v3_0"
down_revision = "v2_0"
branch_labels = None
depends_on = None

VERSION = "3.0.0"
DESCRIPTION = "Analytics: performance_metrics, market_conditions, alerts, strategy_versions"


def upgrade() -> None:
    op.create_table(
        "performance_metrics",
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("period_type", sa.String(length=8), nullable=False),
        sa.Column("period_start", UTCDateTime(), nullable=False),
        sa.Column("period_end", UTCDateTime(), nullable=False),
        sa.Column("total_return_pct", Dec(), nullable=True),
        sa.Column("sharpe_ratio", Dec(), nullable=True),
        sa.Column("sortino_ratio", Dec(), nullable=True),
        sa.Column("win_rate", Dec(), nullable=True),
        sa.Column("profit_factor", Dec(), nullable=True),
        sa.Column("avg_win", Dec(), nullable=True),
        sa.Column("avg_loss", Dec(), nullable=True),
        sa.Column("max_drawdown_pct", Dec(), nullable=True),
        sa.Column("max_drawdown_duration_hours", Dec(), nullable=True),
        sa.Column("total_trades", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("total_volume", Dec(), server_default=sa.text("0"), nullable=False),
        sa.Column("total_fees", Dec(), server_default=sa.text("0"), nullable=False),
        sa.Column("avg_exposure_pct", Dec(), nullable=True),
        sa.Column("max_exposure_pct", Dec(), nullable=True),
        sa.Column("metadata", JSONType, server_default=sa.text("'{}'"), nullable=False),
        sa.Column("computed_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
        one_of(
            "period_type",
            (
                "hour",
                "day",
                "week",
                "month",
                "run",
            ),
        ),
        not_negative("avg_exposure_pct"),
        not_negative("max_drawdown_duration_hours"),
        not_negative("max_drawdown_pct"),
        not_negative("max_exposure_pct"),
        sa.CheckConstraint("period_end >= period_start", name=op.f("ck_performance_metrics_period_order")),
        not_negative("profit_factor"),
        not_negative("total_fees"),
        not_negative("total_trades"),
        not_negative("total_volume"),
        between("win_rate", 0, 1),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_performance_metrics_run_id_runs")),
        sa.PrimaryKeyConstraint("run_id", "period_type", "period_start", name=op.f("pk_performance_metrics")),
    )
    op.create_table(
        "market_conditions",
        sa.Column("signal_id", sa.String(length=128), nullable=False),
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("ts", UTCDateTime(), nullable=False),
        sa.Column("price", Dec(), nullable=False),
        sa.Column("volume_24h", Dec(), nullable=True),
        sa.Column("volatility_1h", Dec(), nullable=True),
        sa.Column("trend_direction", sa.String(length=10), nullable=True),
        sa.Column("trend_strength", Dec(), nullable=True),
        sa.Column("spread_bps", Dec(), nullable=True),
        sa.Column("order_book_depth", Dec(), nullable=True),
        sa.Column("rsi_14", Dec(), nullable=True),
        sa.Column("macd", Dec(), nullable=True),
        sa.Column("macd_signal", Dec(), nullable=True),
        sa.Column("macd_hist", Dec(), nullable=True),
        sa.Column("bb_position", Dec(), nullable=True),
        sa.Column("metadata", JSONType, server_default=sa.text("'{}'"), nullable=False),
        one_of(
            "trend_direction",
            (
                "up",
                "down",
                "sideways",
            ),
        ),
        not_negative("order_book_depth"),
        positive("price"),
        between("rsi_14", 0, 100),
        not_negative("spread_bps"),
        between("trend_strength", 0, 1),
        not_negative("volatility_1h"),
        not_negative("volume_24h"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_market_conditions_run_id_runs")),
        sa.ForeignKeyConstraint(
            ["signal_id"],
            ["signals.id"],
            name=op.f("fk_market_conditions_signal_id_signals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("signal_id", name=op.f("pk_market_conditions")),
    )
    op.create_index(op.f("ix_market_conditions_run_id"), "market_conditions", ["run_id"], unique=False)
    op.create_index(
        "ix_market_conditions_symbol_ts",
        "market_conditions",
        ["symbol", sa.literal_column("ts DESC")],
        unique=False,
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("ts", UTCDateTime(), nullable=False),
        sa.Column("recv_ts", UTCDateTime(), nullable=False),
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("code", sa.String(length=128), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("related_signal_id", sa.String(length=128), nullable=True),
        sa.Column("related_order_id", sa.String(length=128), nullable=True),
        sa.Column("related_trade_id", sa.String(length=128), nullable=True),
        sa.Column("acknowledged", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("acknowledged_at", UTCDateTime(), nullable=True),
        sa.Column("details", JSONType, server_default=sa.text("'{}'"), nullable=False),
        sa.Column("correlation_id", sa.String(length=128), nullable=True),
        sa.Column("causation_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
        one_of(
            "level",
            (
                "info",
                "warning",
                "critical",
            ),
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_alerts_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_index("ix_alerts_level_ts", "alerts", ["level", sa.literal_column("ts DESC")], unique=False)
    op.create_index("ix_alerts_run_id_ts", "alerts", ["run_id", "ts"], unique=False)
    op.create_index(
        "ix_alerts_unacknowledged",
        "alerts",
        ["ts"],
        unique=False,
        postgresql_where=sa.text("NOT acknowledged"),
        sqlite_where=sa.text("NOT acknowledged"),
    )
    op.create_table(
        "strategy_versions",
        sa.Column("strategy", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("first_run_id", sa.String(length=128), nullable=True),
        sa.Column("first_seen", UTCDateTime(), nullable=False),
        sa.Column("params", JSONType, server_default=sa.text("'{}'"), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["first_run_id"], ["runs.id"], name=op.f("fk_strategy_versions_first_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("strategy", "version", name=op.f("pk_strategy_versions")),
    )
    record_version(VERSION, revision, DESCRIPTION)


def downgrade() -> None:
    forget_version(VERSION)
    op.drop_table("strategy_versions")
    op.drop_table("alerts")
    op.drop_table("market_conditions")
    op.drop_table("performance_metrics")
