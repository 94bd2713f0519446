"""The message-bus contract: append-only streams with consumer groups (Redis Streams semantics).

Two implementations honour it: :class:`claire.bus.memory.InMemoryBus` (in-process, for tests and
single-process runs) and :class:`claire.bus.redis_streams.RedisStreamsBus` (Redis Streams, for the
distributed runtime). Both are exercised by one contract test suite (``tests/bus/test_contract.py``).

Model
-----
* A *stream* is an append-only log of messages. Each message has an id ``"<ms>-<seq>"`` that grows
  strictly, an opaque ``payload`` (bytes, normally an event encoded by ``claire.events.encode``) and
  optional string ``headers``.
* A *consumer group* reads a stream independently of every other group: it has a last-delivered id
  and a pending entries list (PEL): messages delivered to one of its consumers and not yet acked,
  each with its owner, the time of its last delivery and its delivery count.
* :meth:`Bus.read` hands out *new* messages only (``XREADGROUP ... >``). Within one group every
  message goes to exactly one consumer; the consumer must :meth:`Bus.ack` it once processed.
* A consumer that dies leaves its messages pending. :meth:`Bus.claim_stale` lets another consumer
  take over entries idle for at least ``min_idle_ms`` (``XAUTOCLAIM``); each claim counts as one more
  delivery.

Delivery is therefore *at least once*: consumers must be idempotent (they are: every event carries
an ``event_id``). The Redis implementation additionally retries a publish after a reconnect, which
can duplicate a message whose first attempt did reach the server.

Dead letters
------------
A message that has been delivered ``max_deliveries`` times (default 5) and goes stale again is not
handed out a further time: the claim moves it to the dead-letter stream (``<stream>.dlq`` unless
configured otherwise) and acks it on the source. A consumer that finds a message it can never
process (e.g. a decode error) calls :meth:`Bus.dead_letter` itself. A dead-letter entry keeps the
raw payload and original headers, and adds the headers ``dlq-reason``, ``dlq-stream``, ``dlq-id``,
``dlq-group`` and ``dlq-deliveries`` (see :class:`DeadLetter`). The dead-letter stream is an
ordinary stream: it can be read with a group, and it is trimmed like any other stream.

Trimming policy
---------------
:meth:`Bus.trim` never removes an entry some consumer group has not yet read or has not yet acked.
The *safe bound* of a stream is the minimum over its groups of the group's oldest pending id, or,
when the group has nothing pending, the id just after its last-delivered id; every entry below the
safe bound has been delivered to and acked by every group. ``trim`` removes the oldest entries so
that the stream holds at most ``max_len`` entries, but only ever entries below the safe bound
(on Redis one atomic script picks the cut and applies it with ``XTRIM MINID``): when unread or
unacked entries alone exceed ``max_len``, the stream stays longer than ``max_len`` until the groups
catch up. With ``max_len=None`` ``trim`` removes every entry below the safe bound. A stream with
no group at all has no readers to protect, so only the ``max_len`` bound applies to it (create
groups before publishing if early messages matter). ``publish``/``publish_many`` call ``trim`` on a
stream every ``trim_every`` published messages (``None`` disables automatic trimming).
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

DEFAULT_MAX_DELIVERIES = 5
DEFAULT_MAX_LEN = 100_000
DEFAULT_TRIM_EVERY = 1_000
DLQ_SUFFIX = ".dlq"

# Header names a dead-letter entry carries in addition to the original headers.
H_REASON = "dlq-reason"
H_STREAM = "dlq-stream"
H_ID = "dlq-id"
H_GROUP = "dlq-group"
H_DELIVERIES = "dlq-deliveries"

REASON_MAX_DELIVERIES = "max-deliveries-exceeded"

_SEQ_MAX = 2**64 - 1


class BusError(Exception):
    """Base class of the bus's own errors."""


class NoGroupError(BusError):
    """The consumer group (or its stream) does not exist; call ``ensure_group`` first."""


class BusClosedError(BusError):
    """The bus has been closed."""


class BusAuthenticationError(BusError):
    """The broker rejected the credentials (or none were given and it requires some). Not retried."""


class BusUnavailableError(BusError):
    """The broker could not be reached within the reconnect budget."""


@dataclass(frozen=True, slots=True)
class Message:
    """One message as delivered to a consumer."""

    stream: str  # logical stream name (without the key prefix)
    id: str  # "<ms>-<seq>"
    payload: bytes
    deliveries: int = 1  # how many times it has been delivered to a consumer of the group, this one included
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead-letter entry, parsed from a message read from a dead-letter stream."""

    id: str  # id in the dead-letter stream
    reason: str
    stream: str  # original stream
    original_id: str
    group: str
    deliveries: int
    payload: bytes  # the original raw payload, untouched
    headers: Mapping[str, str]  # the original headers (without the dlq-* ones)

    @classmethod
    def from_message(cls, msg: Message) -> DeadLetter:
        h = dict(msg.headers)
        try:
            return cls(
                id=msg.id,
                reason=h.pop(H_REASON),
                stream=h.pop(H_STREAM),
                original_id=h.pop(H_ID),
                group=h.pop(H_GROUP),
                deliveries=int(h.pop(H_DELIVERIES)),
                payload=msg.payload,
                headers=h,
            )
        except KeyError as exc:
            raise ValueError(
                f"message {msg.id} of {msg.stream} is not a dead letter (missing {exc})"
            ) from None


def dead_letter_headers(
    message: Message, group: str, reason: str, deliveries: int | None = None
) -> dict[str, str]:
    headers = {k: v for k, v in message.headers.items() if not k.startswith("dlq-")}
    headers.update(
        {
            H_REASON: reason,
            H_STREAM: message.stream,
            H_ID: message.id,
            H_GROUP: group,
            H_DELIVERIES: str(message.deliveries if deliveries is None else deliveries),
        }
    )
    return headers


# ----------------------------------------------------------------------------------------------
# Stream ids


def parse_id(value: str | bytes) -> tuple[int, int]:
    """``"1700000000000-3"`` -> ``(1700000000000, 3)``; ``"5"`` -> ``(5, 0)``."""
    if isinstance(value, bytes):
        value = value.decode()
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


def format_id(value: tuple[int, int]) -> str:
    return f"{value[0]}-{value[1]}"


def next_id(value: tuple[int, int]) -> tuple[int, int]:
    """The smallest id greater than ``value``."""
    ms, seq = value
    return (ms + 1, 0) if seq >= _SEQ_MAX else (ms, seq + 1)


# ----------------------------------------------------------------------------------------------
# The contract


class Bus(abc.ABC):
    """Stream bus with consumer groups. All methods are thread-safe.

    ``stream`` and ``group`` names are logical; implementations namespace storage keys with the
    ``prefix`` given at construction.
    """

    def __init__(
        self,
        prefix: str = "",
        *,
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
        max_len: int | None = DEFAULT_MAX_LEN,
        trim_every: int | None = DEFAULT_TRIM_EVERY,
        dlq_suffix: str = DLQ_SUFFIX,
        dlq_names: Mapping[str, str] | None = None,
    ) -> None:
        if max_deliveries < 1:
            raise ValueError("max_deliveries must be >= 1")
        if max_len is not None and max_len < 0:
            raise ValueError("max_len must be >= 0 or None")
        if trim_every is not None and trim_every < 1:
            raise ValueError("trim_every must be >= 1 or None")
        self.prefix = prefix
        self.max_deliveries = max_deliveries
        self.max_len = max_len
        self.trim_every = trim_every
        self.dlq_suffix = dlq_suffix
        self.dlq_names = dict(dlq_names or {})
        self._publish_counts: dict[str, int] = {}
        self._count_lock = threading.Lock()

    # -- naming -------------------------------------------------------------------------------

    def dlq_name(self, stream: str) -> str:
        """Name of the dead-letter stream of ``stream``."""
        return self.dlq_names.get(stream, stream + self.dlq_suffix)

    # -- publishing ---------------------------------------------------------------------------

    @abc.abstractmethod
    def publish(self, stream: str, payload: bytes, headers: Mapping[str, str] | None = None) -> str:
        """Append one message; returns its id."""

    @abc.abstractmethod
    def publish_many(
        self, stream: str, payloads: Iterable[bytes], headers: Mapping[str, str] | None = None
    ) -> list[str]:
        """Append messages in order (one round trip per chunk for Redis); returns their ids."""

    # -- groups and reading ---------------------------------------------------------------------

    @abc.abstractmethod
    def ensure_group(self, stream: str, group: str, start: str = "0") -> bool:
        """Create ``group`` on ``stream`` (creating the stream if needed) unless it exists.

        ``start`` is where a new group begins: ``"0"`` (whole stream), ``"$"`` (only messages
        published from now on) or an id. Returns True if the group was created, False if it
        already existed (its position is then left unchanged).
        """

    @abc.abstractmethod
    def read(
        self,
        group: str,
        consumer: str,
        streams: Sequence[str],
        count: int = 100,
        block_ms: int | None = None,
    ) -> list[Message]:
        """Deliver new messages (never delivered to this group) to ``consumer``.

        ``count`` caps the messages taken *per stream*. With ``block_ms`` (> 0) and nothing to
        read, waits up to that long for a message to arrive; ``None`` or 0 returns at once (0 does
        NOT mean "forever" as in Redis). Delivered messages are pending until acked. Raises
        :class:`NoGroupError` if the group does not exist on one of the streams.
        """

    @abc.abstractmethod
    def ack(self, stream: str, group: str, ids: Iterable[str]) -> int:
        """Acknowledge messages; returns how many were pending (unknown ids are ignored)."""

    @abc.abstractmethod
    def claim_stale(
        self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int = 100
    ) -> list[Message]:
        """Take over up to ``count`` pending messages idle for at least ``min_idle_ms``.

        The claimed messages now belong to ``consumer``, their idle time restarts and their
        delivery count grows by one (``Message.deliveries``). A message that would be delivered
        more than ``max_deliveries`` times is dead-lettered instead (and acked) and not returned.
        A consumer may claim its own stale entries (e.g. after a restart).
        """

    @abc.abstractmethod
    def pending_count(self, stream: str, group: str) -> int:
        """Number of messages delivered to the group and not acked."""

    def backlog(self, stream: str, group: str) -> int:
        """Messages of ``stream`` the group has not finished: not yet delivered plus pending (0 when
        the group or stream does not exist). What a stalled consumer leaves growing."""
        return self.pending_count(stream, group)

    @abc.abstractmethod
    def dead_letter(self, stream: str, group: str, message: Message, reason: str) -> str | None:
        """Move ``message`` to the dead-letter stream with ``reason`` and ack it on ``stream``.

        Returns the id of the dead-letter entry, or None if the message was no longer pending for
        the group (already acked or dead-lettered: nothing is written, so retries and races cannot
        duplicate a dead letter). Ack and write are one atomic step on Redis.
        """

    # -- housekeeping -------------------------------------------------------------------------

    @abc.abstractmethod
    def trim(self, stream: str) -> int:
        """Apply the trimming policy (module docstring) to ``stream``; returns entries removed."""

    @abc.abstractmethod
    def length(self, stream: str) -> int:
        """Number of entries currently held by ``stream`` (0 if it does not exist)."""

    # -- atomic processing step ----------------------------------------------------------------

    @abc.abstractmethod
    def commit(
        self,
        name: str,
        number: int,
        state: bytes,
        publish: Sequence[tuple[str, bytes]] = (),
        acks: Sequence[tuple[str, str, Sequence[str]]] = (),
    ) -> bool:
        """Publish ``publish`` ((stream, payload) in order), ack ``acks`` ((stream, group, ids)) and
        store the checkpoint ``state`` of consumer ``name`` as one atomic step.

        ``number`` must grow with every commit of ``name``: a commit whose number is not greater
        than the stored one is skipped (returns False), so retrying a commit whose reply was lost
        never publishes twice. This is what makes a service's processing exactly-once on the bus.
        """

    def commit_and_read(
        self,
        name: str,
        number: int,
        state: bytes,
        publish: Sequence[tuple[str, bytes]],
        acks: Sequence[tuple[str, str, Sequence[str]]],
        *,
        group: str,
        consumer: str,
        streams: Sequence[str],
        count: int = 100,
        block_ms: int | None = None,
    ) -> tuple[bool, list[Message]]:
        """``commit(...)`` then ``read(...)``, the step of a service loop; returns the commit's
        result and the messages read. The Redis bus sends both in one round trip (the read behind
        the commit, on the same connection, so the server runs them in that order)."""
        done = self.commit(name, number, state, publish, acks)
        return done, self.read(group, consumer, streams, count=count, block_ms=block_ms)

    def ack_many(self, acks: Sequence[tuple[str, str, Sequence[str]]]) -> int:
        """``ack`` for several (stream, group, ids); one round trip on Redis."""
        return sum(self.ack(stream, group, ids) for stream, group, ids in acks)

    @abc.abstractmethod
    def load_checkpoint(self, name: str) -> tuple[int, bytes] | None:
        """The last committed (number, state) of consumer ``name``, or None."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release resources; later calls raise :class:`BusClosedError`. Idempotent."""

    def __enter__(self) -> Bus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- shared helpers -----------------------------------------------------------------------

    def _count_published(self, stream: str, n: int) -> bool:
        """Record ``n`` publishes; True when an automatic trim of ``stream`` is due."""
        if self.trim_every is None or n <= 0:
            return False
        with self._count_lock:
            total = self._publish_counts.get(stream, 0) + n
            due = total >= self.trim_every
            self._publish_counts[stream] = 0 if due else total
        return due
