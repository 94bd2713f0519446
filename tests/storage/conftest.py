"""Storage tests run on both backends: an SQLite file and a fresh PostgreSQL database."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import text

from claire.storage.database import Database


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'claire.db'}"
    return request.getfixturevalue("pg_database")


@pytest.fixture()
def db(db_url):
    """A Database at the newest schema."""
    database = Database(db_url)
    database.upgrade()
    yield database
    database.dispose()


def count(db: Database, table: str, where: str = "", **params) -> int:
    with db.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table} {where}"), params).scalar())


def scalar(db: Database, sql: str, **params):
    with db.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def rows(db: Database, sql: str, **params) -> list:
    with db.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params).all()]


def checksum(db: Database, table: str) -> str:
    """md5 of the table's rows in primary-key order (values through the typed model columns)."""
    from sqlalchemy import select

    from claire.storage.models import metadata

    t = metadata.tables[table]
    with db.connect() as conn:
        data = conn.execute(select(t).order_by(*t.primary_key.columns)).all()
    return hashlib.md5(repr([tuple(r) for r in data]).encode()).hexdigest()
