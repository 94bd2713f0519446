"""In-process implementation of the bus contract (see :mod:`claire.bus.base`).

Same semantics as Redis Streams, kept in dictionaries behind one lock. Idle times of pending
entries are measured with an injectable ``clock`` (milliseconds, monotonic), so tests can advance
time instead of sleeping. Message ids use wall-clock milliseconds like Redis and grow strictly.
Blocking reads wait on a condition variable that every append notifies.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from claire.bus.base import (
    REASON_MAX_DELIVERIES,
    Bus,
    BusClosedError,
    Message,
    NoGroupError,
    dead_letter_headers,
    format_id,
    next_id,
    parse_id,
)

Id = tuple[int, int]


def _monotonic_ms() -> float:
    return time.monotonic() * 1000.0


@dataclass(slots=True)
class _Pending:
    consumer: str
    delivered_at: float  # clock() at the last delivery, ms
    deliveries: int


@dataclass(slots=True)
class _Group:
    last_delivered: Id
    # Insertion order is id order: entries enter only through '>' reads, in increasing id order,
    # and claims update them in place.
    pel: dict[Id, _Pending] = field(default_factory=dict)


@dataclass(slots=True)
class _Stream:
    ids: list[Id] = field(default_factory=list)
    data: dict[Id, tuple[bytes, dict[str, str]]] = field(default_factory=dict)
    groups: dict[str, _Group] = field(default_factory=dict)
    last_id: Id = (0, 0)


class InMemoryBus(Bus):
    """Thread-safe in-process bus with consumer groups, pending entries, dead letters and trimming."""

    def __init__(
        self,
        prefix: str = "",
        *,
        clock: Callable[[], float] = _monotonic_ms,
        wall_clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        share_with: InMemoryBus | None = None,
        **options,
    ) -> None:
        """``share_with``: another InMemoryBus whose streams this one sees (a second "connection"
        to the same in-process broker, with its own options and its own ``close``)."""
        super().__init__(prefix, **options)
        self._clock = clock
        self._wall_ms = wall_clock_ms
        if share_with is None:
            self._streams: dict[str, _Stream] = {}
            self._lock = threading.RLock()
            self._cond = threading.Condition(self._lock)
            self._checkpoints: dict[str, tuple[int, bytes]] = {}
        else:
            self._checkpoints = share_with._checkpoints
            self._streams = share_with._streams
            self._lock = share_with._lock
            self._cond = share_with._cond
        self._closed = False

    def __repr__(self) -> str:
        return f"InMemoryBus(prefix={self.prefix!r})"

    # -- internals ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise BusClosedError("bus is closed")

    def _stream(self, name: str) -> _Stream:
        s = self._streams.get(name)
        if s is None:
            s = self._streams[name] = _Stream()
        return s

    def _group(self, stream: str, group: str) -> tuple[_Stream, _Group]:
        s = self._streams.get(stream)
        g = s.groups.get(group) if s is not None else None
        if g is None:
            raise NoGroupError(f"no consumer group {group!r} on stream {stream!r}")
        return s, g  # type: ignore[return-value]

    def _append(self, stream: str, payload: bytes, headers: Mapping[str, str] | None) -> str:
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
        s = self._stream(stream)
        ms = self._wall_ms()
        new = (ms, 0) if ms > s.last_id[0] else next_id(s.last_id)
        s.ids.append(new)
        s.data[new] = (bytes(payload), dict(headers or {}))
        s.last_id = new
        return format_id(new)

    def _message(self, stream: str, s: _Stream, mid: Id, deliveries: int) -> Message:
        payload, headers = s.data[mid]
        return Message(stream, format_id(mid), payload, deliveries, dict(headers))

    # -- publishing ---------------------------------------------------------------------------

    def publish(self, stream: str, payload: bytes, headers: Mapping[str, str] | None = None) -> str:
        with self._cond:
            self._check_open()
            mid = self._append(stream, payload, headers)
            self._cond.notify_all()
        if self._count_published(stream, 1):
            self.trim(stream)
        return mid

    def publish_many(
        self, stream: str, payloads: Iterable[bytes], headers: Mapping[str, str] | None = None
    ) -> list[str]:
        with self._cond:
            self._check_open()
            ids = [self._append(stream, p, headers) for p in payloads]
            if ids:
                self._cond.notify_all()
        if self._count_published(stream, len(ids)):
            self.trim(stream)
        return ids

    # -- groups and reading ---------------------------------------------------------------------

    def ensure_group(self, stream: str, group: str, start: str = "0") -> bool:
        with self._lock:
            self._check_open()
            s = self._stream(stream)
            if group in s.groups:
                return False
            pos = s.last_id if start == "$" else parse_id(start)
            s.groups[group] = _Group(last_delivered=pos)
            return True

    def _take(self, group: str, consumer: str, streams: Sequence[str], count: int) -> list[Message]:
        pairs = [(name, *self._group(name, group)) for name in streams]  # all or nothing, like Redis
        out: list[Message] = []
        now = self._clock()
        for name, s, g in pairs:
            start = bisect.bisect_right(s.ids, g.last_delivered)
            for mid in s.ids[start : start + count]:
                g.pel[mid] = _Pending(consumer, now, 1)
                g.last_delivered = mid
                out.append(self._message(name, s, mid, 1))
        return out

    def read(
        self,
        group: str,
        consumer: str,
        streams: Sequence[str],
        count: int = 100,
        block_ms: int | None = None,
    ) -> list[Message]:
        if isinstance(streams, str):
            streams = [streams]
        if count < 1:
            raise ValueError("count must be >= 1")
        deadline = time.monotonic() + (block_ms or 0) / 1000.0
        with self._cond:
            while True:
                self._check_open()
                out = self._take(group, consumer, streams, count)
                if out or not block_ms:
                    return out
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._cond.wait(remaining)

    def ack(self, stream: str, group: str, ids: Iterable[str]) -> int:
        with self._lock:
            self._check_open()
            s = self._streams.get(stream)
            g = s.groups.get(group) if s is not None else None
            if g is None:  # like XACK: nothing pending, nothing to ack
                return 0
            n = 0
            for mid in ids:
                if g.pel.pop(parse_id(mid), None) is not None:
                    n += 1
            return n

    def claim_stale(
        self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int = 100
    ) -> list[Message]:
        with self._cond:
            self._check_open()
            s, g = self._group(stream, group)
            now = self._clock()
            out: list[Message] = []
            dead: list[tuple[Message, int]] = []
            for mid, p in list(g.pel.items()):
                if len(out) >= count:
                    break
                if now - p.delivered_at < min_idle_ms:
                    continue
                if mid not in s.data:  # deleted from the stream: Redis 7 drops it from the PEL
                    del g.pel[mid]
                    continue
                p.consumer, p.delivered_at, p.deliveries = consumer, now, p.deliveries + 1
                if p.deliveries > self.max_deliveries:
                    dead.append((self._message(stream, s, mid, p.deliveries - 1), p.deliveries - 1))
                else:
                    out.append(self._message(stream, s, mid, p.deliveries))
            for msg, delivered in dead:
                self._dead_letter_locked(stream, group, msg, REASON_MAX_DELIVERIES, delivered)
            if dead:
                self._cond.notify_all()
        if dead and self._count_published(self.dlq_name(stream), len(dead)):
            self.trim(self.dlq_name(stream))
        return out

    def pending_count(self, stream: str, group: str) -> int:
        with self._lock:
            self._check_open()
            return len(self._group(stream, group)[1].pel)

    def backlog(self, stream: str, group: str) -> int:
        with self._lock:
            self._check_open()
            s = self._streams.get(stream)
            g = s.groups.get(group) if s is not None else None
            if s is None or g is None:
                return 0
            return len(s.ids) - bisect.bisect_right(s.ids, g.last_delivered) + len(g.pel)

    def _dead_letter_locked(
        self, stream: str, group: str, message: Message, reason: str, deliveries: int | None = None
    ) -> str | None:
        _, g = self._group(stream, group)
        if g.pel.pop(parse_id(message.id), None) is None:  # already acked or dead-lettered
            return None
        return self._append(
            self.dlq_name(stream), message.payload, dead_letter_headers(message, group, reason, deliveries)
        )

    def dead_letter(self, stream: str, group: str, message: Message, reason: str) -> str | None:
        with self._cond:
            self._check_open()
            dlq_id = self._dead_letter_locked(stream, group, message, reason)
            if dlq_id is not None:
                self._cond.notify_all()
        if dlq_id is not None and self._count_published(self.dlq_name(stream), 1):
            self.trim(self.dlq_name(stream))
        return dlq_id

    # -- housekeeping -------------------------------------------------------------------------

    def trim(self, stream: str) -> int:
        with self._lock:
            self._check_open()
            s = self._streams.get(stream)
            if s is None or not s.ids:
                return 0
            if s.groups:
                bound = min(
                    next(iter(g.pel)) if g.pel else next_id(g.last_delivered) for g in s.groups.values()
                )
                below = bisect.bisect_left(s.ids, bound)
            elif self.max_len is None:
                return 0
            else:
                below = len(s.ids)
            excess = below if self.max_len is None else len(s.ids) - self.max_len
            k = max(0, min(excess, below))
            if k:
                for mid in s.ids[:k]:
                    del s.data[mid]
                del s.ids[:k]
            return k

    def length(self, stream: str) -> int:
        with self._lock:
            self._check_open()
            s = self._streams.get(stream)
            return len(s.ids) if s else 0

    def commit(
        self,
        name: str,
        number: int,
        state: bytes,
        publish: Sequence[tuple[str, bytes]] = (),
        acks: Sequence[tuple[str, str, Sequence[str]]] = (),
    ) -> bool:
        counts: dict[str, int] = {}
        with self._cond:
            self._check_open()
            cps = self._checkpoints
            cur = cps.get(name)
            if cur is not None and cur[0] >= number:
                return False
            for stream, payload in publish:
                self._append(stream, payload, None)
                counts[stream] = counts.get(stream, 0) + 1
            for stream, group, ids in acks:
                s = self._streams.get(stream)
                g = s.groups.get(group) if s is not None else None
                if g is not None:
                    for mid in ids:
                        g.pel.pop(parse_id(mid), None)
            cps[name] = (number, bytes(state))
            if publish:
                self._cond.notify_all()
        for stream, n in counts.items():
            if self._count_published(stream, n):
                self.trim(stream)
        return True

    def load_checkpoint(self, name: str) -> tuple[int, bytes] | None:
        with self._lock:
            return self._checkpoints.get(name)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
