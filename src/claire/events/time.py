"""Time is an integer of nanoseconds since the Unix epoch (UTC) everywhere in the core."""

from __future__ import annotations

from datetime import UTC, datetime

NS_PER_SEC = 1_000_000_000
NS_PER_MIN = 60 * NS_PER_SEC
NS_PER_DAY = 86_400 * NS_PER_SEC


def iso_from_ns(ns: int) -> str:
    """ISO 8601 UTC with a 'Z' suffix; milliseconds shown only when present."""
    secs, rem = divmod(ns, NS_PER_SEC)
    dt = datetime.fromtimestamp(secs, tz=UTC)
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if rem:
        frac = f"{rem:09d}".rstrip("0")
        return f"{base}.{frac}Z"
    return base + "Z"


def ns_from_iso(text: str) -> int:
    """ISO 8601 (a naive time is UTC) to ns since the epoch; microseconds are kept."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    whole = int(dt.replace(microsecond=0).timestamp())
    return whole * NS_PER_SEC + dt.microsecond * 1000


def datetime_from_ns(ns: int) -> datetime:
    """An aware UTC datetime (to the microsecond), for the database and the reports."""
    secs, rem = divmod(ns, NS_PER_SEC)
    return datetime.fromtimestamp(secs, tz=UTC).replace(microsecond=rem // 1000)


def utc_day(ns: int) -> int:
    """Days since the epoch: the UTC calendar day an instant falls in."""
    return ns // NS_PER_DAY
