"""Alembic environment. Runs from the installed package: the Config is built in code by
:mod:`claire.storage.migrate`, which passes an open connection in ``config.attributes``.
Run by the plain ``alembic`` command (``-c .../alembic.ini``) it connects to
``CLAIRE_DATABASE_URL`` instead.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import text

from claire.storage.database import Database, default_url
from claire.storage.models import metadata

# Any constant will do: serialises concurrent upgrades of one PostgreSQL database.
_PG_LOCK_KEY = 0x0C1A12E


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return

    db = Database(
        context.config.get_main_option("sqlalchemy.url")
        or os.environ.get("CLAIRE_DATABASE_URL")
        or default_url()
    )
    try:
        with db.engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        db.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
