"""Message bus: streams with consumer groups, in memory or on Redis Streams.

``make_bus(url, prefix)`` picks the implementation from the URL:

* ``memory://`` -> :class:`InMemoryBus` (one process);
* ``redis://...`` / ``rediss://...`` -> :class:`RedisStreamsBus`;
* ``None`` -> the URL in ``CLAIRE_REDIS_URL`` (an error if unset: a distributed service silently
  falling back to a private in-memory bus would never see the other services' messages).
"""

from __future__ import annotations

import os
from typing import Any

from claire.bus.base import (
    DEFAULT_MAX_DELIVERIES,
    DEFAULT_MAX_LEN,
    DEFAULT_TRIM_EVERY,
    REASON_MAX_DELIVERIES,
    Bus,
    BusAuthenticationError,
    BusClosedError,
    BusError,
    BusUnavailableError,
    DeadLetter,
    Message,
    NoGroupError,
)
from claire.bus.memory import InMemoryBus
from claire.bus.redis_streams import RedisStreamsBus, redact_url


def make_bus(url: str | None, prefix: str = "", **options: Any) -> Bus:
    """Build the bus named by ``url`` (see module docstring); ``options`` go to the constructor."""
    if url is None:
        url = os.environ.get("CLAIRE_REDIS_URL")
        if not url:
            raise ValueError(
                "no bus URL given and CLAIRE_REDIS_URL is not set (use 'memory://' for in-process)"
            )
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "memory":
        return InMemoryBus(prefix, **options)
    if scheme in ("redis", "rediss", "unix"):
        return RedisStreamsBus(url, prefix, **options)
    raise ValueError(
        f"unsupported bus URL scheme {scheme or url!r}: expected memory://, redis:// or rediss://"
    )


__all__ = [
    "DEFAULT_MAX_DELIVERIES",
    "DEFAULT_MAX_LEN",
    "DEFAULT_TRIM_EVERY",
    "REASON_MAX_DELIVERIES",
    "Bus",
    "BusAuthenticationError",
    "BusClosedError",
    "BusError",
    "BusUnavailableError",
    "DeadLetter",
    "InMemoryBus",
    "Message",
    "NoGroupError",
    "RedisStreamsBus",
    "make_bus",
    "redact_url",
]
