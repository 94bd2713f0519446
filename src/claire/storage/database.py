"""Database access: one engine with a bounded, pre-pinged pool, PostgreSQL or SQLite.

PostgreSQL (psycopg 3) is the system of record; an SQLite file (WAL, foreign keys on) is the
embedded default so that a backtest needs no server. ``CLAIRE_DATABASE_URL`` names the database;
without it ``sqlite:///claire.db`` in the current directory is used.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from claire.storage import migrate
from claire.storage.errors import DatabaseURLError, StorageError, one_line
from claire.storage.types import json_dumps, json_loads

ENV_URL = "CLAIRE_DATABASE_URL"
DEFAULT_URL = "sqlite:///claire.db"


def default_url() -> str:
    return os.environ.get(ENV_URL) or DEFAULT_URL


def normalize_url(url: str | URL) -> URL:
    """Parse and normalise: postgres[ql]:// -> postgresql+psycopg://; only PostgreSQL and SQLite."""
    if isinstance(url, str):
        if not url.strip():
            raise DatabaseURLError("empty database URL")
        try:
            parsed = make_url(url.strip())
        except ArgumentError as exc:
            raise DatabaseURLError(
                f"invalid database URL {url!r}: expected e.g. sqlite:///claire.db "
                "or postgresql://user@host:5432/dbname"
            ) from exc
    else:
        parsed = url
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgres", "postgresql"):
        if parsed.drivername not in ("postgresql+psycopg",) and driver not in (
            "psycopg",
            "psycopg2",
            "",
            None,
        ):
            raise DatabaseURLError(f"unsupported PostgreSQL driver {driver!r} (use postgresql+psycopg://)")
        parsed = parsed.set(drivername="postgresql+psycopg")
        if not parsed.database:
            raise DatabaseURLError(f"database URL {parsed.render_as_string()!r} names no database")
    elif backend == "sqlite":
        if driver not in ("pysqlite", ""):
            raise DatabaseURLError(f"unsupported SQLite driver {driver!r}")
    else:
        raise DatabaseURLError(
            f"unsupported database {backend!r} in URL {parsed.render_as_string()!r}: use sqlite:///FILE or postgresql://..."
        )
    return parsed


class Database:
    """An engine with its pool. Use :meth:`begin` for a transaction, :meth:`dispose` at the end."""

    def __init__(
        self,
        url: str | URL | None = None,
        *,
        pool_size: int = 5,
        max_overflow: int = 5,
        pool_timeout: float = 30.0,
        pool_recycle: int = 1800,
        connect_timeout: int = 10,
        application_name: str = "claire",
        echo: bool = False,
    ) -> None:
        self.url = normalize_url(url if url is not None else default_url())
        self.backend = self.url.get_backend_name()
        kw: dict[str, Any] = {
            "echo": echo,
            "pool_pre_ping": True,
            "json_serializer": json_dumps,
            "json_deserializer": json_loads,
        }
        if self.backend == "postgresql":
            kw.update(
                pool_size=pool_size,
                max_overflow=max_overflow,
                pool_timeout=pool_timeout,
                pool_recycle=pool_recycle,
                connect_args={
                    "connect_timeout": connect_timeout,
                    "application_name": application_name,
                    "options": "-c timezone=UTC",
                },
            )
        else:
            memory = self.url.database in (None, "", ":memory:")
            kw["connect_args"] = {"check_same_thread": False, "timeout": 30}
            if memory:
                kw["poolclass"] = StaticPool
            else:
                kw.update(pool_size=pool_size, max_overflow=max_overflow, pool_timeout=pool_timeout)
        try:
            self.engine: Engine = create_engine(self.url, **kw)
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise DatabaseURLError(f"cannot use database URL {self.safe_url}: {one_line(exc)}") from exc
        if self.backend == "sqlite":
            _setup_sqlite(self.engine)

    # --- info ------------------------------------------------------------------------------
    @property
    def is_postgres(self) -> bool:
        return self.backend == "postgresql"

    @property
    def is_sqlite(self) -> bool:
        return self.backend == "sqlite"

    @property
    def safe_url(self) -> str:
        return self.url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"Database({self.safe_url!r})"

    # --- connections -----------------------------------------------------------------------
    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def begin(self, *, write: bool = False) -> Iterator[Connection]:
        """A transaction, committed on success. ``write=True`` takes SQLite's write lock at BEGIN
        (BEGIN IMMEDIATE) so a read-then-write transaction never fails on a lock upgrade."""
        with self.engine.connect() as conn:
            if write and self.is_sqlite:
                conn = conn.execution_options(claire_begin_immediate=True)
            with conn.begin():
                yield conn

    def check(self) -> None:
        """Connect once; raise StorageError with a one-line reason if that fails."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot connect to {self.safe_url}: {one_line(exc)}") from exc

    # --- schema ----------------------------------------------------------------------------
    def upgrade(self, to: str = "head") -> str | None:
        return migrate.upgrade(self, to)

    def downgrade(self, to: str = "-1") -> str | None:
        return migrate.downgrade(self, to)

    def current_revision(self) -> str | None:
        return migrate.current(self)

    def is_at_head(self) -> bool:
        return self.current_revision() == migrate.head()

    def dispose(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.dispose()


def _setup_sqlite(engine: Engine) -> None:
    """WAL, foreign keys, durable commits; and SAVEPOINT-capable transactions (pysqlite's own
    transaction handling is switched off and BEGIN is emitted here, as SQLAlchemy documents)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        # WAL can fail (e.g. a read-only location); the default journal still works
        with contextlib.suppress(Exception):
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        if conn.get_execution_options().get("claire_begin_immediate"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")
