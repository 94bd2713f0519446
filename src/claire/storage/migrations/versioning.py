"""The schema_version bookkeeping every migration does: one row per applied version."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


def record_version(version: str, revision: str, description: str) -> None:
    op.execute(
        sa.text("INSERT INTO schema_version (version, revision, description) VALUES (:v, :r, :d)").bindparams(
            v=version, r=revision, d=description
        )
    )


def forget_version(version: str) -> None:
    op.execute(sa.text("DELETE FROM schema_version WHERE version = :v").bindparams(v=version))
