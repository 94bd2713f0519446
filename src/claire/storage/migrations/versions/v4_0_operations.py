"""4.0 operations: alert categories and de-duplication, service status

Revision ID: v4_0
Revises: v3_0
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from claire.storage.migrations.versioning import forget_version, record_version
from claire.storage.types import Dec, JSONType, UTCDateTime, not_negative, one_of

revision = "v4_0"
down_revision = "v3_0"
branch_labels = None
depends_on = None

SERVICE_STATES = ("starting", "running", "degraded", "stopped", "failed")
VERSION = "4.0.0"
DESCRIPTION = "Operations: alerts.category/occurrences/last_seen, service_status (health of each component)"


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("category", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("occurrences", sa.Integer(), server_default=sa.text("1"), nullable=False))
        batch.add_column(sa.Column("last_seen", UTCDateTime(), nullable=True))
    op.create_index("ix_alerts_category_ts", "alerts", ["category", "ts"], unique=False)
    op.create_table(
        "service_status",
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("replica", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("ready", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("heartbeat_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("events_processed", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_event_ts", UTCDateTime(), nullable=True),
        sa.Column("lag_ms", Dec(), nullable=True),
        sa.Column("restarts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("details", JSONType, server_default=sa.text("'{}'"), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_service_status_run_id_runs")),
        sa.PrimaryKeyConstraint("run_id", "service", "replica", name=op.f("pk_service_status")),
        one_of("status", SERVICE_STATES),
        not_negative("lag_ms"),
    )
    record_version(VERSION, revision, DESCRIPTION)


def downgrade() -> None:
    forget_version(VERSION)
    op.drop_table("service_status")
    op.drop_index("ix_alerts_category_ts", table_name="alerts")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("last_seen")
        batch.drop_column("occurrences")
        batch.drop_column("category")
