"""Deterministic event ids.

An id is a UUID derived from the run's namespace and the event's cause (for example the
signal id for its order), so replaying the same input after a crash produces the same ids and
every idempotent consumer drops the repeats.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import deque

_ROOT = uuid.UUID("6f1d3c2a-9b7e-4c1d-8a55-c1a1e0de0b1e")


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}
_sha1 = hashlib.sha1


def _uuid5_text(ns_bytes: bytes, name: str) -> str:
    h = _sha1(ns_bytes + name.encode()).hexdigest()
    # version 5 and the RFC 4122 variant, exactly as uuid.uuid5 sets them
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def make_id(namespace: uuid.UUID, *parts: object) -> str:
    """A name-based UUID (the same as ``str(uuid.uuid5(namespace, ":".join(parts)))``)."""
    return _uuid5_text(namespace.bytes, ":".join(map(str, parts)))


class IdFactory:
    """Makes ids within one run. `run_key` names the run (same key, same ids)."""

    __slots__ = ("_ns_bytes", "namespace", "run_key")

    def __init__(self, run_key: str = "default") -> None:
        self.run_key = run_key
        self.namespace = uuid.uuid5(_ROOT, run_key)
        self._ns_bytes = self.namespace.bytes

    def __call__(self, *parts: object) -> str:
        """The id of ``parts`` joined with ":" in this run (the same parts, the same id)."""
        return _uuid5_text(self._ns_bytes, ":".join(map(str, parts)))

    def of(self, name: str) -> str:
        """The id of an already joined name: ``of(f"a:{b}")`` is ``self("a", b)``."""
        return _uuid5_text(self._ns_bytes, name)


class BoundedSet:
    """The most recent ``maxlen`` ids, for dropping redelivered messages without growing forever."""

    __slots__ = ("_order", "_set", "maxlen")

    def __init__(self, items: list[str] | None = None, maxlen: int = 10_000) -> None:
        self.maxlen = maxlen
        self._order: deque[str] = deque()
        self._set: set[str] = set()
        for x in items or ():
            self.add(x)

    def add(self, item: str) -> None:
        """Remember ``item`` (the oldest is forgotten past ``maxlen``)."""
        if item in self._set:
            return
        self._set.add(item)
        self._order.append(item)
        if len(self._order) > self.maxlen:
            self._set.discard(self._order.popleft())

    def add_new(self, item: str) -> bool:
        """Add ``item``; False (and nothing changes) when it is already there."""
        if item in self._set:
            return False
        self._set.add(item)
        self._order.append(item)
        if len(self._order) > self.maxlen:
            self._set.discard(self._order.popleft())
        return True

    def __contains__(self, item: object) -> bool:
        return item in self._set

    def __len__(self) -> int:
        return len(self._order)

    def to_list(self) -> list[str]:
        """The ids, oldest first (for a checkpoint)."""
        return list(self._order)
