"""Column types that behave the same on PostgreSQL and SQLite.

- :class:`Dec`: ``NUMERIC`` (unconstrained, exact) on PostgreSQL; on SQLite the exact decimal
  text (SQLite's NUMERIC affinity would turn it into a float). Always ``Decimal`` in Python.
- :class:`UTCDateTime`: ``TIMESTAMP WITH TIME ZONE`` on PostgreSQL, ISO text on SQLite; always
  an aware UTC ``datetime`` in Python.
- :data:`JSONType`: ``JSONB`` on PostgreSQL, ``JSON`` (text) on SQLite.
- :func:`num`: wraps a column inside CHECK constraints so that SQLite compares numbers, not text.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy import JSON, CheckConstraint, DateTime, LargeBinary, Numeric, String, column
from sqlalchemy.dialects.postgresql import BYTEA, JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator

from claire.events.time import NS_PER_SEC

NS_PER_US = 1_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- time --------------------------------------------------------------------------------


def dt_from_ns(ns: int | None) -> datetime | None:
    """Event time (int ns since the epoch, UTC) -> aware datetime (microsecond precision)."""
    if ns is None:
        return None
    return _EPOCH + timedelta(microseconds=int(ns) // NS_PER_US)


def ns_from_dt(value: datetime | None) -> int | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * NS_PER_SEC + delta.microseconds * NS_PER_US


SQLITE_DT_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def sqlite_dt(value: datetime | None) -> str | None:
    """The text form SQLAlchemy's SQLite DateTime stores (naive UTC); sorts chronologically."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime(SQLITE_DT_FORMAT)


def sqlite_dec(value: Decimal | None) -> str | None:
    if value is None:
        return None
    return format(value, "f")


# --- JSON --------------------------------------------------------------------------------

_json_encoder = msgspec.json.Encoder(decimal_format="number")


def json_dumps(obj: Any) -> str:
    """Decimals become JSON numbers with their exact digits (JSONB keeps them as numeric)."""
    return _json_encoder.encode(obj).decode()


def json_loads(text: str | bytes) -> Any:
    return json.loads(text, parse_float=Decimal)


# --- types -------------------------------------------------------------------------------


class Dec(TypeDecorator):
    """An exact decimal: NUMERIC on PostgreSQL, decimal text on SQLite."""

    impl = Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String())
        return dialect.type_descriptor(Numeric(asdecimal=True))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if not isinstance(value, Decimal):
            value = Decimal(str(value))
        if dialect.name == "sqlite":
            return format(value, "f")
        return value

    def process_result_value(self, value, dialect):
        if value is None or isinstance(value, Decimal):
            return value
        return Decimal(str(value))

    @property
    def python_type(self):
        return Decimal


class UTCDateTime(TypeDecorator):
    """TIMESTAMP WITH TIME ZONE; aware UTC datetimes in and out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, int):
            value = dt_from_ns(value)
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    @property
    def python_type(self):
        return datetime


JSONType = JSON().with_variant(JSONB(), "postgresql")
BlobType = LargeBinary().with_variant(BYTEA(), "postgresql")


class num(FunctionElement):
    """Inside CHECK constraints: the column as a number (SQLite stores decimals as text)."""

    name = "num"
    inherit_cache = True


@compiles(num)
def _num_default(element, compiler, **kw):
    return compiler.process(element.clauses, **kw)


@compiles(num, "sqlite")
def _num_sqlite(element, compiler, **kw):
    return f"CAST({compiler.process(element.clauses, **kw)} AS REAL)"


# --- CHECK constraint helpers (names follow the metadata naming convention) ---------------


def one_of(col: str, values: tuple[str, ...], name: str | None = None) -> CheckConstraint:
    return CheckConstraint(column(col).in_(values), name=name or f"{col}_valid")


def positive(col: str) -> CheckConstraint:
    return CheckConstraint(num(column(col)) > 0, name=f"{col}_positive")


def not_negative(col: str) -> CheckConstraint:
    return CheckConstraint(num(column(col)) >= 0, name=f"{col}_not_negative")


def between(col: str, lo: int, hi: int) -> CheckConstraint:
    return CheckConstraint(num(column(col)).between(lo, hi), name=f"{col}_range")


def side_matches_quantity() -> CheckConstraint:
    """A position's side agrees with the sign of its quantity."""
    q = num(column("quantity"))
    return CheckConstraint(
        ((column("side") == "long") & (q > 0))
        | ((column("side") == "short") & (q < 0))
        | ((column("side") == "flat") & (q == 0)),
        name="side_matches_quantity",
    )
