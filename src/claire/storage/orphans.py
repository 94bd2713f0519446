"""Children that arrive before their parent: held in ``pending_events``, released with it.

On a distributed bus a fill can overtake its order, and an order its signal. Such a child cannot
be inserted (its foreign key would fail), and dropping it would lose a trade, so it is held in
``pending_events``, in the same transaction as the batch (a checkpoint never hides it, a restart
keeps it). When the parent arrives the child joins that batch; after the writer's
``orphan_timeout``, or at ``close()``, a child still without parent is swept: inserted if the
parent is there by now, else dead-lettered with the reason.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.engine import Connection

from claire.events import Order, Signal, decode
from claire.storage.bulk_load import SPECS, T, chunks, insert, pg_exec, pg_fetch
from claire.storage.records import Item, Tx, dead_item, event_type

# the count of held children and the oldest one's time, read in the batch's own transaction
PG_PENDING_COUNT = "SELECT count(*), min(first_seen) FROM pending_events WHERE run_id = %s"
# event types that can be a held child's parent (an order is both)
PARENT_TYPES = (Signal, Order)


def pending_state(row: tuple[Any, Any]) -> tuple[int, float | None]:
    """``(count, oldest first_seen)`` of ``pending_events`` as the writer keeps them (a count
    and a Unix time), so that it knows without a query when a sweep is due."""
    n, oldest = row
    return int(n or 0), (oldest.timestamp() if oldest is not None else None)


def read_pending_state(conn: Connection, run_id: str) -> tuple[int, float | None]:
    """:func:`pending_state` of the run, queried (at startup, and after a batch that did not
    count them in its own transaction)."""
    pe = T["pending_events"]
    return pending_state(
        conn.execute(select(func.count(), func.min(pe.c.first_seen)).where(pe.c.run_id == run_id)).one()
    )


def pending_item(payload: bytes) -> Item:
    """A held child back as a buffered entry, marked so that its row is deleted once handled."""
    return Item(decode(bytes(payload)), raw=bytes(payload), source="pending", pending=True)


def with_pending(
    conn: Connection,
    run_id: str,
    items: list[Item],
    sweep: bool,
    sweep_all: bool,
    orphan_timeout: float,
) -> list[Item]:
    """The batch plus held children whose parent is in it (recursively), and, on a sweep,
    held children past the timeout (to be inserted if their parent is there by now, else
    dead-lettered)."""
    pg = conn.dialect.name == "postgresql"
    pe = T["pending_events"]
    work = list(items)
    seen: set[str] = set()
    parents = {it.event.id for it in items if isinstance(it.event, PARENT_TYPES)}
    while parents:
        found: list[Any] = []
        for chunk in chunks(sorted(parents)):
            if pg:
                found += pg_fetch(
                    conn,
                    "SELECT event_id, payload FROM pending_events WHERE run_id = %s AND parent_id = ANY(%s)",
                    (run_id, list(chunk)),
                )
            else:
                found += conn.execute(
                    select(pe.c.event_id, pe.c.payload).where(pe.c.run_id == run_id, pe.c.parent_id.in_(chunk))
                ).all()
        parents = set()
        for eid, payload in found:
            if eid in seen:
                continue
            seen.add(eid)
            item = pending_item(payload)
            work.append(item)
            if isinstance(item.event, Order):
                parents.add(item.event.id)
    if sweep:
        cutoff = None if sweep_all else datetime.fromtimestamp(time.time() - orphan_timeout, UTC)
        for eid, payload in _held_since(conn, run_id, cutoff):
            if eid not in seen:
                seen.add(eid)
                item = pending_item(payload)
                item.final = True
                work.append(item)
    return work


def _held_since(conn: Connection, run_id: str, cutoff: datetime | None) -> list[Any]:
    """(event id, payload) of the run's held children first seen by ``cutoff`` (None: all), oldest first."""
    if conn.dialect.name == "postgresql":
        sql = "SELECT event_id, payload FROM pending_events WHERE run_id = %s"
        params: tuple = (run_id,)
        if cutoff is not None:
            sql += " AND first_seen <= %s"
            params += (cutoff,)
        return pg_fetch(conn, sql + " ORDER BY first_seen", params)
    pe = T["pending_events"]
    q = select(pe.c.event_id, pe.c.payload).where(pe.c.run_id == run_id)
    if cutoff is not None:
        q = q.where(pe.c.first_seen <= cutoff)
    return list(conn.execute(q.order_by(pe.c.first_seen)).all())


def delete_pending(conn: Connection, tx: Tx, ids: list[str]) -> None:
    """Forget held children that were handled (inserted, dead-lettered or duplicates)."""
    tx.pending_touched = True
    if conn.dialect.name == "postgresql":
        pg_exec(conn, tx, "DELETE FROM pending_events WHERE event_id = ANY(%s)", (list(ids),))
        return
    pe = T["pending_events"]
    for chunk in chunks(ids):
        conn.execute(delete(pe).where(pe.c.event_id.in_(chunk)))


def hold(
    conn: Connection,
    tx: Tx,
    run_id: str,
    orphan_timeout: float,
    items: list[tuple[Item, str, str]],
) -> None:
    """Hold children whose parent is missing (``(item, parent table, parent id)``); final ones
    (swept) are dead-lettered, ones already held stay as they are."""
    rows = []
    gone = []
    for item, parent_table, parent_id in items:
        ev = item.event
        if item.final:
            reason = (
                f"parent {parent_table[:-1]} {parent_id} never arrived "
                f"(held {orphan_timeout:g}s or until close)"
            )
            dead_item(tx, item, reason)
            gone.append(ev.id)
            continue
        if item.pending:
            continue  # still held, row stays
        rows.append(
            {
                "event_id": ev.id,
                "run_id": run_id,
                "parent_table": parent_table,
                "parent_id": parent_id,
                "event_type": event_type(ev),
                "payload": item.payload(),
                "first_seen": datetime.now(UTC),
            }
        )
    if gone:
        delete_pending(conn, tx, gone)
    if rows:
        tx.pending_touched = True
        insert(conn, tx, "held", SPECS["pending_events"], rows)
