"""EventWriter: every event into the database exactly once, in batches, surviving restarts.

- Batches: events are buffered and written ``batch_size`` at a time, one transaction per batch.
  PostgreSQL: a small batch (fewer than ``COPY_MIN_ROWS`` rows for every table; what a live
  service flushes after each read) is sent as one pipeline of set-based statements
  (``INSERT ... SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING``, prepared by the driver)
  followed by ``COMMIT``: one round trip per batch. A large batch goes in by ``COPY`` (binary
  format, dumped by psycopg's C dumpers; the writer's own text format when a value is not of
  its column's Python type).
  SQLite: executemany.
- Idempotent: every insert is ``ON CONFLICT DO NOTHING`` on the event id (``COPY`` first runs
  optimistically; a key already stored makes it fail, and the batch is redone skipping the
  stored keys); derived rows (order status, positions) are recomputed from stored rows, so
  delivering anything twice changes nothing, and retrying a batch whose commit was lost is safe.
- Bad records: an event that fails validation or a constraint goes to ``dead_letters`` with
  the reason and its raw payload; the rest of the batch is written (on a database error the
  batch is retried event by event, each in a SAVEPOINT, to isolate the bad one).
- Out-of-order delivery: a child whose parent row is not there yet (an order before its signal,
  a fill before its order) is held in ``pending_events`` (in the same transaction, so a restart
  keeps it) and inserted when the parent arrives; after ``orphan_timeout`` seconds, or at
  :meth:`EventWriter.close`, it is dead-lettered with the reason.
- Checkpoints: :meth:`EventWriter.save_checkpoint` commits the position and opaque state in the
  same transaction as the events written before it.
- Database restarts: on a lost connection the writer reconnects with capped exponential backoff
  and retries the uncommitted batch. On PostgreSQL the writer keeps one connection of the pool
  for itself (no checkout and ping per batch); it is replaced after an error or a long idle.
  After ``retry_timeout`` it raises StorageError with the batch still buffered (a caller that
  holds the events elsewhere drops it with :meth:`EventWriter.discard_buffer`: the one-process
  runtime's spool, :mod:`claire.storage.spool`; the distributed writer service leaves them
  unacknowledged on the bus).

The writer's parts, one job each: this module is the lifecycle (buffering, batches, retry and
reconnect, the connection, checkpoints); :mod:`claire.storage.handlers` writes each event type
into its tables (one dispatch table by event type); :mod:`claire.storage.bulk_load` gets rows
into tables (COPY, pipeline, executemany); :mod:`claire.storage.orphans` holds children whose
parent is missing; :mod:`claire.storage.records` has what a batch keeps (entries, dead letters,
caches, the transaction record).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError, OperationalError

from claire.events import DecodeError, Event, decode
from claire.events.topics import MARKET_DATA_TYPES, MARKET_EVENT_TYPES
from claire.storage import migrate, orphans
from claire.storage import rows as R
from claire.storage.bulk_load import SPECS, T, insert, pg_autocommit_off, pg_error, pg_exec, pg_send_bulk
from claire.storage.database import Database, StorageError, one_line
from claire.storage.handlers import PG_UPDATE_ORDERS, Batch, apply_batch, pg_numeric_div
from claire.storage.queries import load_checkpoint
from claire.storage.records import LRU, Dead, Item, OrderInfo, SignalInfo, Tx, dead_item, log

__all__ = [
    "COPY_BINARY",
    "COPY_MIN_ROWS",
    "IDLE_RECHECK_S",
    "MARKET_EVENT_TYPES",
    "PIPELINE_BULK",
    "SPECS",
    "USE_COPY",
    "EventWriter",
    "OrderInfo",
    "SignalInfo",
]


# --- write-path settings (read when each batch starts) -----------------------------------

# PostgreSQL: large tables of a batch go by COPY (else every batch is a pipeline of inserts)
USE_COPY = True
# PostgreSQL: COPY in binary format (psycopg's C dumpers); else the writer's own text format
COPY_BINARY = True
# PostgreSQL: a table with at least this many rows in one batch is written with COPY (cheaper per
# row, but a round trip of its own); below it, every statement of the batch and the COMMIT go in
# one pipeline (one round trip).
COPY_MIN_ROWS = 100
# PostgreSQL: the writer's own connection goes back to the pool (and is pinged on the next
# checkout) after this many idle seconds.
IDLE_RECHECK_S = 30.0
# PostgreSQL, pipeline: the inserts of a batch go in one statement (JSON rows per table)
PIPELINE_BULK = True

# the names these had when they lived here (tests compare the writer against PostgreSQL with them)
_PG_UPDATE_ORDERS = PG_UPDATE_ORDERS
_pg_numeric_div = pg_numeric_div


def _unique_violation(exc: BaseException) -> bool:
    """A unique-key violation: an optimistic COPY met a key already stored (a redelivery)."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None) == "23505"


def _retriable(exc: BaseException) -> bool:
    """A lost connection or a server going away: the batch is retried, not dead-lettered."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


# --- the writer -------------------------------------------------------------------------


class EventWriter:
    """Writes events of one run. Not a background thread: ``write`` buffers and flushes when the
    batch is full or ``flush_interval`` seconds have passed; call :meth:`flush`/:meth:`close`.
    Thread-safe (one lock), so a second thread may call :meth:`flush`.
    """

    def __init__(
        self,
        database: Database | str,
        run_id: str,
        *,
        batch_size: int = 500,
        flush_interval: float | None = 1.0,
        mode: str = "paper",
        config: dict[str, Any] | None = None,
        description: str | None = None,
        orphan_timeout: float = 60.0,
        max_slippage_bps: Decimal | int | str = 200,
        retry_initial_delay: float = 0.05,
        retry_max_delay: float = 5.0,
        retry_timeout: float | None = 300.0,
        upgrade: bool = True,
        cache_size: int = 200_000,
    ) -> None:
        if not run_id:
            raise ValueError("run_id is required")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self._own_db = not isinstance(database, Database)
        self.db = Database(database) if self._own_db else database
        self.run_id = run_id
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.orphan_timeout = orphan_timeout
        self.max_slippage_bps = Decimal(str(max_slippage_bps))
        self.retry_initial_delay = retry_initial_delay
        self.retry_max_delay = retry_max_delay
        self.retry_timeout = retry_timeout
        self._lock = threading.RLock()
        self._buffer: list[Item] = []
        self._dead: list[Dead] = []
        self._first_buffered: float | None = None
        self._signals: LRU = LRU(cache_size)
        self._orders: LRU = LRU(cache_size)
        self._strategies: set[tuple[str, str]] = set()
        self._pending_count = 0
        self._pending_oldest: float | None = None
        self._closed = False
        self._conn: Connection | None = None  # PostgreSQL: the writer's own connection
        self._conn_used = 0.0
        self._careful = False  # PostgreSQL: COPY looks up stored keys first (after a duplicate)
        self.stats: dict[str, int] = {
            "events": 0,
            "flushes": 0,
            "retries": 0,
            "row_by_row": 0,
            "dead_letters": 0,
            "held": 0,
            "resolved": 0,
            "market_data_skipped": 0,
        }
        try:
            self._with_retry(self._startup, upgrade, mode, config, description)
        except BaseException:
            if self._own_db:
                self.db.dispose()
            raise

    # --- setup --------------------------------------------------------------------------
    def _startup(
        self, upgrade: bool, mode: str, config: dict[str, Any] | None, description: str | None
    ) -> None:
        if self.db.current_revision() != migrate.head():
            if not upgrade:
                raise StorageError(
                    f"database {self.db.safe_url} is at schema {self.db.current_revision() or 'none'}, "
                    f"not {migrate.head()}: run `claire db upgrade`"
                )
            self.db.upgrade()
        runs = T["runs"]
        with self.db.begin() as conn:
            exists = conn.execute(select(runs.c.id).where(runs.c.id == self.run_id)).first()
        if exists is None:
            try:
                with self.db.begin(write=True) as conn:
                    conn.execute(
                        runs.insert().values(
                            id=self.run_id,
                            mode=mode,
                            config=R.as_json(config or {}),
                            description=description,
                            started_at=datetime.now(UTC),
                        )
                    )
            except IntegrityError:
                # another writer of the same run created it meanwhile; a bad mode is still an error
                with self.db.begin() as conn:
                    if conn.execute(select(runs.c.id).where(runs.c.id == self.run_id)).first() is None:
                        raise
        with self.db.begin() as conn:
            self._pending_count, self._pending_oldest = orphans.read_pending_state(conn, self.run_id)

    # --- public API ---------------------------------------------------------------------
    def write(self, event: Any) -> None:
        """Buffer one event (market data is not stored and is ignored)."""
        with self._lock:
            self._check_open()
            self._add(Item(event))

    def write_many(self, events: Iterable[Any]) -> None:
        """Buffer several events under one lock acquisition (a replay or a read of many)."""
        with self._lock:
            self._check_open()
            for ev in events:
                self._add(Item(ev))

    def write_raw(self, payload: bytes, source: str = "raw") -> None:
        """Decode a wire payload and buffer it; what cannot be decoded is dead-lettered."""
        with self._lock:
            self._check_open()
            try:
                ev = decode(payload)
            except DecodeError as exc:
                reason = str(exc)
                log.warning("dead letter from %s: %s", source, reason)
                self._dead.append(Dead(source, reason, bytes(payload)))
                self._maybe_flush()
                return
            self._add(Item(ev, raw=bytes(payload), source=source))

    def flush(self) -> None:
        """Write everything buffered (one transaction, retried on a lost connection)."""
        with self._lock:
            self._flush(None)

    def save_checkpoint(self, position: int, state: bytes) -> None:
        """Flush, and record ``(position, state)`` for this run in the same transaction."""
        if position < 0:
            raise ValueError("position must be >= 0")
        with self._lock:
            self._check_open()
            self._flush((int(position), bytes(state)))

    def load_checkpoint(self) -> tuple[int, bytes] | None:
        """The run's last ``(position, state)``, to resume a stream where the stored events end."""
        return load_checkpoint(self.db, self.run_id)

    def close(self, *, end_run: bool = False, dead_letter_pending: bool = True) -> None:
        """Flush; dead-letter children still without parent (unless told not to); release the
        database if the writer opened it. If the database stays unreachable (StorageError after
        ``retry_timeout``) the writer stays open with its buffer, so ``close`` can be retried."""
        with self._lock:
            if self._closed:
                return
            self._flush(None)
            if dead_letter_pending:
                self._flush(None, sweep_all=True)
            if end_run:
                self._with_retry(self._end_run, T["runs"])
            self._closed = True
            self._release_conn()
            if self._own_db:
                self.db.dispose()

    def _end_run(self, runs: Table) -> None:
        with self.db.begin() as conn:
            conn.execute(update(runs).where(runs.c.id == self.run_id).values(ended_at=datetime.now(UTC)))

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, exc_type, *rest: object) -> None:
        self.close(dead_letter_pending=exc_type is None)

    def discard_buffer(self) -> int:
        """Drop what is buffered and not committed (events and dead letters); returns how many.
        For a caller that holds those events elsewhere (the spool of
        :class:`claire.storage.spool.SpoolingWriter`) and will deliver them again."""
        with self._lock:
            n = len(self._buffer) + len(self._dead)
            self._buffer = []
            self._dead = []
            self._first_buffered = None
            return n

    @property
    def buffered(self) -> int:
        """Entries not yet committed (events and dead letters): what a caller must not ack yet."""
        return len(self._buffer) + len(self._dead)

    # --- buffering ----------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("EventWriter is closed")

    def _add(self, item: Item) -> None:
        ev = item.event
        if isinstance(ev, MARKET_DATA_TYPES):  # bars, trades, quotes and book depth: not persisted
            self.stats["market_data_skipped"] += 1
            return
        if not isinstance(ev, Event):
            raise TypeError(f"not an event: {type(ev).__name__}")
        self._buffer.append(item)
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        now = time.monotonic()
        if self._first_buffered is None:
            self._first_buffered = now
        if len(self._buffer) + len(self._dead) >= self.batch_size or (
            self.flush_interval is not None and now - self._first_buffered >= self.flush_interval
        ):
            self._flush(None)

    # --- flushing -----------------------------------------------------------------------
    def _sweep_due(self) -> bool:
        return (
            self._pending_count > 0
            and self._pending_oldest is not None
            and time.time() - self._pending_oldest >= self.orphan_timeout
        )

    def _flush(self, checkpoint: tuple[int, bytes] | None, sweep_all: bool = False) -> None:
        sweep = sweep_all or self._sweep_due()
        if not self._buffer and not self._dead and checkpoint is None and not (sweep and self._pending_count):
            return
        self._commit(self._buffer, self._dead, checkpoint, sweep, sweep_all)
        self._buffer = []
        self._dead = []
        self._first_buffered = None

    def _commit(
        self,
        items: list[Item],
        dead: list[Dead],
        checkpoint: tuple[int, bytes] | None,
        sweep: bool,
        sweep_all: bool = False,
    ) -> None:
        """Write one batch (retried on a lost connection) and merge what it learned."""
        if not sweep and self._sweep_due():
            sweep = True
        tx = self._with_retry(self._write_batch, items, dead, checkpoint, sweep, sweep_all)
        # committed: merge what the transaction learned
        for k, v in tx.signals.items():
            self._signals.put(k, v)
        for k, v in tx.orders.items():
            self._orders.put(k, v)
        self._strategies |= tx.strategies
        for k, v in tx.counts.items():
            self.stats[k] = self.stats.get(k, 0) + v
        self.stats["events"] += len(items)
        self.stats["flushes"] += 1
        self.stats["dead_letters"] += len(tx.dead)
        self.stats["held"] += tx.held
        self.stats["resolved"] += tx.resolved
        if tx.pending_cur is not None:  # counted in the batch's own transaction
            self._pending_count, self._pending_oldest = orphans.pending_state(tx.pending_cur.fetchone())
        elif tx.held or tx.resolved or sweep:
            self._refresh_pending()

    def _refresh_pending(self) -> None:
        try:
            with self.db.connect() as conn:
                state = orphans.read_pending_state(conn, self.run_id)
        except DBAPIError:
            return  # only an optimisation; the next flush tries again
        self._pending_count, self._pending_oldest = state

    def _with_retry(self, fn: Callable[..., Any], *args: Any) -> Any:
        delay = self.retry_initial_delay
        start = time.monotonic()
        while True:
            try:
                return fn(*args)
            except DBAPIError as exc:
                if not _retriable(exc):
                    raise
                self._release_conn()
                waited = time.monotonic() - start
                if self.retry_timeout is not None and waited >= self.retry_timeout:
                    raise StorageError(
                        f"database {self.db.safe_url} unavailable for {waited:.0f}s: {one_line(exc)}"
                    ) from exc
                self.stats["retries"] += 1
                log.warning("database unavailable (%s); retrying in %.2fs", one_line(exc), delay)
                time.sleep(delay)
                delay = min(delay * 2, self.retry_max_delay)

    # --- connection ---------------------------------------------------------------------
    def _release_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # a dead connection: the pool discards it
                log.debug("closing the writer's connection failed", exc_info=True)

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """One write transaction, committed on success. PostgreSQL: on the writer's own
        connection (taken from the pool once; given back after an error or a long idle, so the
        pool pings it again); driver errors come out as SQLAlchemy's."""
        if not self.db.is_postgres:
            with self.db.begin(write=True) as conn:
                yield conn
            return
        import psycopg  # start-up time: psycopg (~0.15 s) only on PostgreSQL, SQLite runs do without

        now = time.monotonic()
        conn = self._conn
        if conn is not None and (conn.closed or conn.invalidated or now - self._conn_used > IDLE_RECHECK_S):
            self._release_conn()
            conn = None
        if conn is None:
            conn = self._conn = self.db.engine.connect()
        self._conn_used = now
        try:
            with conn.begin():
                yield conn
        except psycopg.Error as exc:
            err = pg_error(conn, None, exc)
            if err.connection_invalidated:
                self._release_conn()
            raise err from exc
        except DBAPIError as exc:
            if _retriable(exc):
                self._release_conn()
            raise

    def _mode(self, items: list[Item]) -> str:
        """PostgreSQL: one pipeline for a small batch, COPY for a large one."""
        if not self.db.is_postgres:
            return "sqlite"
        if len(items) >= COPY_MIN_ROWS:
            per_type: dict[type, int] = {}
            for it in items:
                t = type(it.event)
                per_type[t] = per_type.get(t, 0) + 1
            if max(per_type.values()) >= COPY_MIN_ROWS:
                return "careful" if self._careful else "copy"
        return "pipeline"

    def _write_batch(
        self,
        items: list[Item],
        dead: list[Dead],
        checkpoint: tuple[int, bytes] | None,
        sweep: bool,
        sweep_all: bool,
    ) -> Tx:
        mode = self._mode(items)
        try:
            return self._write_once(mode, items, dead, checkpoint, sweep, sweep_all)
        except (IntegrityError, DataError) as exc:
            if _retriable(exc):
                raise
            first = exc
        if mode == "copy" and _unique_violation(first):
            # a key already stored (a redelivery): skip stored keys from now on
            log.info("batch of %d has events stored before; writing it again without them", len(items))
            self._careful = True
            try:
                return self._write_once("careful", items, dead, checkpoint, sweep, sweep_all)
            except (IntegrityError, DataError) as exc:
                if _retriable(exc):
                    raise
                first = exc
        log.warning("batch of %d failed (%s); retrying event by event", len(items), one_line(first))
        self.stats["row_by_row"] += 1
        with self._transaction() as conn:
            tx = Tx("rows" if self.db.is_postgres else "sqlite")
            work = self._with_pending(conn, items, sweep, sweep_all)
            for item in work:
                sub = Tx(tx.mode)
                sub.signals, sub.orders, sub.strategies = (
                    dict(tx.signals),
                    dict(tx.orders),
                    set(tx.strategies),
                )
                try:
                    with conn.begin_nested():
                        self._apply(conn, sub, [item])
                except (IntegrityError, DataError) as exc:
                    if _retriable(exc):
                        raise
                    dead_item(tx, item, f"rejected by the database: {one_line(exc)}")
                    if item.pending:
                        orphans.delete_pending(conn, tx, [item.event.id])
                    continue
                tx.signals, tx.orders, tx.strategies = sub.signals, sub.orders, sub.strategies
                for k, v in sub.counts.items():
                    tx.add(k, v)
                tx.dead.extend(sub.dead)
                tx.held += sub.held
                tx.resolved += sub.resolved
                tx.pending_touched |= sub.pending_touched
            self._finish(conn, tx, dead, checkpoint, sweep)
        return tx

    def _write_once(
        self,
        mode: str,
        items: list[Item],
        dead: list[Dead],
        checkpoint: tuple[int, bytes] | None,
        sweep: bool,
        sweep_all: bool,
    ) -> Tx:
        tx = self._new_tx(mode)
        with self._transaction() as conn:
            if mode == "pipeline":
                # BEGIN, every statement and the COMMIT queued: one round trip (a lookup of
                # parents missing from the caches syncs it earlier). BEGIN is sent explicitly:
                # the driver's implicit one would sync the pipeline on its own.
                raw = conn.connection.dbapi_connection
                raw.autocommit = True
                try:
                    with raw.pipeline():
                        raw.cursor().execute("BEGIN")
                        work = self._with_pending(conn, items, sweep, sweep_all)
                        self._apply(conn, tx, work)
                        self._finish(conn, tx, dead, checkpoint, sweep)
                        if tx.bulk:
                            pg_send_bulk(conn, tx)
                        for sql, params, key in tx.last:
                            pg_exec(conn, tx, sql, params, key)
                        raw.cursor().execute("COMMIT")
                finally:
                    pg_autocommit_off(raw)
            else:
                work = self._with_pending(conn, items, sweep, sweep_all)
                self._apply(conn, tx, work)
                self._finish(conn, tx, dead, checkpoint, sweep)
        tx.collect()
        if mode == "careful" and not tx.found_stored:
            self._careful = False
        return tx

    def _finish(
        self,
        conn: Connection,
        tx: Tx,
        dead: list[Dead],
        checkpoint: tuple[int, bytes] | None,
        sweep: bool = False,
    ) -> None:
        now = datetime.now(UTC)
        all_dead = list(dead) + tx.dead
        if all_dead:
            rows = []
            for d in all_dead:
                digest = hashlib.sha256(d.source.encode() + b"\0" + d.payload).hexdigest()
                rows.append(
                    {
                        "digest": digest,
                        "run_id": self.run_id,
                        "source": d.source,
                        "event_type": d.event_type,
                        "event_id": d.event_id,
                        "reason": d.reason,
                        "payload": d.payload,
                        "first_seen": now,
                    }
                )
            insert(conn, tx, None, SPECS["dead_letters"], rows)
        tx.dead = all_dead
        if checkpoint is not None:
            pos, state = checkpoint
            insert(
                conn,
                tx,
                None,
                SPECS["checkpoints"],
                [{"run_id": self.run_id, "position": pos, "state": state, "updated_at": now}],
            )
        if conn.dialect.name == "postgresql" and (tx.pending_touched or sweep):
            tx.pending_cur = pg_exec(conn, tx, orphans.PG_PENDING_COUNT, (self.run_id,))

    # --- pending children ---------------------------------------------------------------

    # --- applying a batch ---------------------------------------------------------------
    def _new_tx(self, mode: str) -> Tx:
        """A batch's transaction record, with this module's write-path settings as they are
        now (they may be changed between batches)."""
        return Tx(
            mode,
            copy_min_rows=COPY_MIN_ROWS if USE_COPY else None,
            pipeline_bulk=PIPELINE_BULK,
            copy_binary=COPY_BINARY,
        )

    def _with_pending(self, conn: Connection, items: list[Item], sweep: bool, sweep_all: bool) -> list[Item]:
        """The batch plus the held children it releases or the sweep takes
        (:func:`claire.storage.orphans.with_pending`); nothing to look up while none is held."""
        if not self._pending_count:
            return list(items)
        return orphans.with_pending(conn, self.run_id, items, sweep, sweep_all, self.orphan_timeout)

    def _apply(self, conn: Connection, tx: Tx, work: list[Item]) -> None:
        """Write ``work`` through the per-type handlers (:func:`claire.storage.handlers.apply_batch`)."""
        apply_batch(
            Batch(
                conn,
                tx,
                self.run_id,
                signals=self._signals,
                orders=self._orders,
                strategies=self._strategies,
                max_slippage_bps=self.max_slippage_bps,
                orphan_timeout=self.orphan_timeout,
            ),
            work,
        )
