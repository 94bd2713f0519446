"""What the writer keeps about a batch: the buffered entries, the dead letters, the parent caches
and :class:`Tx`, what one transaction learned.

These are plain records shared by the writer's modules (:mod:`~claire.storage.bulk_load`,
:mod:`~claire.storage.handlers`, :mod:`~claire.storage.orphans`,
:mod:`~claire.storage.writer`). They hold no connection and run no SQL, so that a transaction's
findings can be kept apart and merged into the writer's caches only after its commit (a batch
that fails and is retried must not leave half of itself in the caches).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from claire.events import encode

if TYPE_CHECKING:
    from claire.storage.bulk_load import Spec

# one logger for every part of the writer: operators' logging configuration (and tests) name it
log = logging.getLogger("claire.storage.writer")


@dataclass(frozen=True, slots=True)
class OrderInfo:
    """What a fill needs of its order (the execution analysis' latency and slippage), cached so
    that a fill of a known order costs no lookup."""

    ts: int
    signal_id: str
    reference_price: Decimal | None
    quantity: Decimal


@dataclass(frozen=True, slots=True)
class SignalInfo:
    """What an order or a fill needs of its signal (parent check, latency, price before),
    cached for the same reason as :class:`OrderInfo`."""

    ts: int
    price: Decimal


class LRU(OrderedDict):
    """A bounded cache of parents: a long session would otherwise keep every id it saw."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: Any, value: Any) -> None:
        """Store ``value``, forgetting the oldest entry beyond ``size``."""
        self[key] = value
        if len(self) > self.size:
            self.popitem(last=False)


@dataclass
class Item:
    """One buffered entry: an event (with its raw payload when it came as bytes, so that a dead
    letter or a held child stores exactly what was received)."""

    event: Any
    raw: bytes | None = None
    source: str = "writer"
    final: bool = False  # from the orphan sweep: dead-letter instead of holding again
    pending: bool = False  # came from pending_events (delete it there once handled)

    def payload(self) -> bytes:
        """The bytes to keep for this entry: as received, else the event encoded (its repr if
        even that fails: a dead letter must never fail)."""
        if self.raw is not None:
            return self.raw
        try:
            return encode(self.event)
        except Exception:
            return repr(self.event).encode()


@dataclass
class Dead:
    """A dead letter to write: what could not be stored, and why, so nothing is lost silently."""

    source: str
    reason: str
    payload: bytes
    event_type: str | None = None
    event_id: str | None = None


def event_type(ev: Any) -> str:
    """The event's type as stored in ``dead_letters`` and ``pending_events``."""
    return type(ev).__name__


def dead_item(tx: Tx, item: Item, reason: str) -> None:
    """Dead-letter ``item`` in this transaction (logged as a warning: a record was refused)."""
    ev = item.event
    log.warning("dead letter %s %s: %s", event_type(ev), getattr(ev, "id", "?"), reason)
    tx.dead.append(Dead(item.source, reason, item.payload(), event_type(ev), getattr(ev, "id", None)))


class Tx:
    """What one transaction learned; merged into the writer's caches only after commit.

    ``mode`` (PostgreSQL): ``pipeline`` (statements queued, one round trip with the COMMIT),
    ``copy`` (large tables by optimistic COPY), ``careful`` (COPY after skipping stored keys),
    ``rows`` (row by row, in SAVEPOINTs); SQLite: ``sqlite``.

    ``copy_min_rows``: a table with at least this many rows goes by COPY (only in the COPY
    modes; None: never); ``pipeline_bulk``: in a pipeline, the inserts of the batch go in one
    statement; ``copy_binary``: COPY in binary format. The writer sets them from its module's
    settings for each batch."""

    def __init__(
        self,
        mode: str = "rows",
        *,
        copy_min_rows: int | None = None,
        pipeline_bulk: bool = False,
        copy_binary: bool = True,
    ) -> None:
        self.mode = mode
        self.copy_min_rows = copy_min_rows if mode in ("copy", "careful") else None
        self.pipeline_bulk = pipeline_bulk and mode == "pipeline"
        self.copy_binary = copy_binary
        self.careful = mode == "careful"
        self.signals: dict[str, SignalInfo] = {}
        self.orders: dict[str, OrderInfo] = {}
        self.strategies: set[tuple[str, str]] = set()
        self.counts: dict[str, int] = {}
        self.dead: list[Dead] = []
        self.held = 0
        self.resolved = 0
        self.found_stored = False  # careful COPY met keys already stored
        self.pending_touched = False  # pending_events written or deleted
        self.pending_cur: Any = None  # PostgreSQL: the count of pending_events after the batch
        self._deferred: list[tuple[Any, str]] | None = [] if mode == "pipeline" else None
        self.bulk: list[tuple[str | None, Spec, list[dict[str, Any]]]] = []  # pipeline: inserts to send
        self._multi: list[tuple[Any, list[str | None]]] = []  # bulk statements and their count keys
        self.last: list[tuple[str, Any, str | None]] = []  # pipeline: statements after the inserts

    def add(self, key: str | None, n: int) -> None:
        """Count ``n`` rows under ``key`` (``held``: children held; None: not counted)."""
        if not n or key is None:
            return
        if key == "held":
            self.held += n
        else:
            self.counts[key] = self.counts.get(key, 0) + n

    def add_multi(self, cur: Any, keys: list[str | None]) -> None:
        """The counts of a statement inserting into several tables (one row of counts, in
        ``keys`` order; in a pipeline: known after the sync)."""
        self._multi.append((cur, keys))
        if self._deferred is None:
            self.collect()

    def count(self, cur: Any, key: str) -> None:
        """The row count of a statement (in a pipeline: known after the sync)."""
        if self._deferred is None:
            self.add(key, max(cur.rowcount, 0))
        else:
            self._deferred.append((cur, key))

    def collect(self) -> None:
        """Read the counts that were waiting for the pipeline's sync."""
        for cur, key in self._deferred or ():
            self.add(key, max(cur.rowcount, 0))
        if self._deferred:
            self._deferred = []
        for cur, keys in self._multi:
            for key, n in zip(keys, cur.fetchone(), strict=True):
                self.add(key, int(n))
        self._multi = []
