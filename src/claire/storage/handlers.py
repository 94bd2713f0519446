"""Events into their tables: one handler per event type, looked up in :data:`HANDLERS`.

A batch is sorted once by ``type(event)`` (a dict lookup; a subclass of an event type finds its
base's handler through :func:`handler_for`), then each handler writes its group, parents before
children, in the order of :data:`HANDLERS`:

- Signal -> signals + market_conditions (+ strategy_versions the first time a pair is seen);
- Order -> orders (held in ``pending_events`` while its signal is missing);
- OrderResult -> trades + execution_analysis for a fill, the order's status otherwise (held
  while its order is missing); the order's status, filled quantity, average price and fees are
  recomputed from the stored fills;
- PortfolioSnapshot -> portfolio_snapshots + positions (from the newest snapshot of the batch);
- RiskEvent -> risk_events; Alert -> alerts.

An event that does not convert (:mod:`claire.storage.rows` refuses it) is dead-lettered, the
rest of the batch is written. Handlers run inside the writer's transaction and write through
:mod:`claire.storage.bulk_load`; what they learn (parents, counts) goes to the batch's
:class:`~claire.storage.records.Tx`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal
from typing import Any

from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.engine import Connection

from claire.events import Alert, Order, OrderResult, PortfolioSnapshot, RiskEvent, Signal
from claire.storage import orphans
from claire.storage import rows as R
from claire.storage.bulk_load import SPECS, T, chunks, insert, pg_exec, pg_fetch
from claire.storage.records import LRU, Item, OrderInfo, SignalInfo, Tx, dead_item, event_type
from claire.storage.types import ns_from_dt

# what rows.py raises for an event that cannot become a row (the dead-letter reason)
ROW_ERRORS = (R.RowError, TypeError, ValueError)

# Order status from its stored fills, set-based (PostgreSQL; SQLite does the same in Python).
# An order whose row already holds these values is left alone (no new row version).
_ORDER_SET = {
    "status": """CASE
    WHEN a.q >= o.quantity OR a.any_final THEN 'filled'
    WHEN COALESCE(u.terminal, CASE WHEN o.status IN ('rejected', 'cancelled') THEN o.status END) IS NOT NULL
      THEN COALESCE(u.terminal, o.status)
    WHEN a.q > 0 THEN 'partially_filled'
    ELSE o.status END""",
    "filled_quantity": "COALESCE(a.q, 0)",
    "avg_fill_price": "CASE WHEN a.q > 0 THEN a.n / a.q END",
    "fees": "COALESCE(a.f, 0)",
    "reason": "COALESCE(u.reason, o.reason)",
    "updated_at": "u.updated",
}
PG_UPDATE_ORDERS = f"""
UPDATE orders o SET
  {", ".join(f"{k} = {v}" for k, v in _ORDER_SET.items())}
FROM unnest(%b::text[], %b::text[], %b::text[], %b::timestamptz[]) AS u(id, terminal, reason, updated)
LEFT JOIN LATERAL (
  SELECT sum(quantity) AS q, sum(notional) AS n, sum(fee) AS f, bool_or(status = 'filled') AS any_final
  FROM trades WHERE order_id = u.id
) a ON true
WHERE o.id = u.id
  AND ({", ".join(f"o.{k}" for k in _ORDER_SET)}) IS DISTINCT FROM ({", ".join(_ORDER_SET.values())})
"""  # noqa: S608 - column names and expressions are our own constants, values are bound parameters

PG_FLATTEN_POSITIONS = """
UPDATE positions SET side = 'flat', quantity = 0, cost_basis = 0, unrealized_pnl = 0, exposure = 0,
  exposure_pct = 0, updated_at = %(ts)s, snapshot_id = %(snap)s
WHERE run_id = %(run)s AND side <> 'flat' AND updated_at <= %(ts)s AND symbol <> ALL(%(symbols)s::text[])
"""

# --- one batch ----------------------------------------------------------------------------


class Batch:
    """One batch being applied: its connection and transaction, the writer's committed parent
    caches, and what one handler leaves for the next (an order's results of the same batch,
    the orders this transaction inserted), so that handlers share no state but this."""

    __slots__ = (
        "by_order",
        "conn",
        "done_pending",
        "max_slippage_bps",
        "new_orders",
        "orders",
        "orphan_timeout",
        "pg",
        "results_bad",
        "results_checked",
        "run_id",
        "signals",
        "strategies",
        "tx",
    )

    def __init__(
        self,
        conn: Connection,
        tx: Tx,
        run_id: str,
        *,
        signals: LRU,
        orders: LRU,
        strategies: set[tuple[str, str]],
        max_slippage_bps: Decimal,
        orphan_timeout: float,
    ) -> None:
        self.conn = conn
        self.tx = tx
        self.pg = conn.dialect.name == "postgresql"
        self.run_id = run_id
        self.signals = signals  # committed caches (the transaction's own are in tx)
        self.orders = orders
        self.strategies = strategies
        self.max_slippage_bps = max_slippage_bps
        self.orphan_timeout = orphan_timeout
        self.done_pending: list[str] = []  # held children handled (their rows are deleted)
        # order results, converted before the orders (PostgreSQL: a new order is inserted with
        # the status its results of this batch give it, so that it needs no update afterwards)
        self.results_checked: list[tuple[Item, str, dict[str, Any] | None]] = []
        self.results_bad: list[tuple[Item, str]] = []
        self.by_order: dict[str, list[tuple[Any, str, dict[str, Any] | None]]] = {}
        self.new_orders: set[str] | None = None  # orders this transaction inserted

    def signal(self, sid: str) -> SignalInfo | None:
        """A signal known to this transaction or committed before."""
        return self.tx.signals.get(sid) or self.signals.get(sid)

    def order(self, oid: str) -> OrderInfo | None:
        """An order known to this transaction or committed before."""
        return self.tx.orders.get(oid) or self.orders.get(oid)

    def known_signals(self, ids: set[str]) -> None:
        """Look up the signals missing from the caches (after a restart, or evicted), so that
        a child whose parent is stored is not held."""
        tx, conn = self.tx, self.conn
        missing = sorted(i for i in ids if i not in tx.signals and i not in self.signals)
        if not missing:
            return
        if self.pg:
            for sid, ts, price in pg_fetch(conn, "SELECT id, ts, price FROM signals WHERE id = ANY(%s)", (missing,)):
                tx.signals[sid] = SignalInfo(ns_from_dt(ts), price)
            return
        s = T["signals"]
        for chunk in chunks(missing):
            for sid, ts, price in conn.execute(select(s.c.id, s.c.ts, s.c.price).where(s.c.id.in_(chunk))):
                tx.signals[sid] = SignalInfo(ns_from_dt(ts), price)

    def known_orders(self, ids: set[str]) -> None:
        """Look up the orders missing from the caches, as :meth:`known_signals`."""
        tx, conn = self.tx, self.conn
        missing = sorted(i for i in ids if i not in tx.orders and i not in self.orders)
        if not missing:
            return
        if self.pg:
            for oid, ts, sid, ref, qty in pg_fetch(
                conn,
                "SELECT id, ts, signal_id, reference_price, quantity FROM orders WHERE id = ANY(%s)",
                (missing,),
            ):
                tx.orders[oid] = OrderInfo(ns_from_dt(ts), sid, ref, qty)
            return
        o = T["orders"]
        for chunk in chunks(missing):
            q = select(o.c.id, o.c.ts, o.c.signal_id, o.c.reference_price, o.c.quantity).where(o.c.id.in_(chunk))
            for oid, ts, sid, ref, qty in conn.execute(q):
                tx.orders[oid] = OrderInfo(ns_from_dt(ts), sid, ref, qty)

    def hold(self, held: list[tuple[Item, str, str]]) -> None:
        """Hold children whose parent is missing (see :func:`claire.storage.orphans.hold`)."""
        orphans.hold(self.conn, self.tx, self.run_id, self.orphan_timeout, held)


# --- the handlers -------------------------------------------------------------------------


def apply_signals(b: Batch, items: list[Item]) -> None:
    """Signals, their market conditions and the strategy versions seen for the first time."""
    tx, run_id, conn = b.tx, b.run_id, b.conn
    srows, mrows, vrows = [], [], []
    for item in items:
        ev = item.event
        try:
            row = R.signal_row(ev, run_id)
            mrow = R.market_condition_row(ev, run_id, row["price"], row["ts"])
        except ROW_ERRORS as exc:
            dead_item(tx, item, str(exc))
            continue
        srows.append(row)
        mrows.append(mrow)
        key = (row["strategy"], row["strategy_version"])
        if key not in b.strategies and key not in tx.strategies:
            tx.strategies.add(key)
            vrows.append(
                {
                    "strategy": key[0],
                    "version": key[1],
                    "first_run_id": run_id,
                    "first_seen": row["ts"],
                    "params": {},
                }
            )
        tx.signals[ev.id] = SignalInfo(ev.ts_event, row["price"])
    new_ids = insert(conn, tx, "signals", SPECS["signals"], srows, track=True)
    if new_ids is not None and len(new_ids) < len(mrows):
        # a signal stored before already has its market_conditions row
        mrows = [m for m in mrows if m["signal_id"] in new_ids]
    insert(conn, tx, "market_conditions", SPECS["market_conditions"], mrows, fresh=new_ids is not None)
    insert(conn, tx, "strategy_versions", SPECS["strategy_versions"], vrows)


def prepare_results(b: Batch, items: list[Item]) -> None:
    """Convert the order results before the orders are written (no database work): a new
    order is then inserted with the status its results of this batch give it (PostgreSQL)."""
    run_id, pg = b.run_id, b.pg
    checked, bad, by_order = b.results_checked, b.results_bad, b.by_order
    for item in items:
        ev = item.event
        try:
            status = R.result_status(ev)
            trow = R.trade_row(ev, run_id, status) if status in R.FILL else None
        except ROW_ERRORS as exc:
            bad.append((item, str(exc)))
            continue
        checked.append((item, status, trow))
        if pg:
            by_order.setdefault(ev.order_id, []).append((ev, status, trow))


def apply_orders(b: Batch, items: list[Item]) -> None:
    """Orders whose signal is known; the others are held until it arrives."""
    tx, run_id, by_order, done_pending = b.tx, b.run_id, b.by_order, b.done_pending
    b.known_signals({it.event.signal_id for it in items})
    orows, held = [], []
    for item in items:
        ev = item.event
        try:
            row = R.order_row(ev, run_id)
        except ROW_ERRORS as exc:
            dead_item(tx, item, str(exc))
            if item.pending:
                done_pending.append(ev.id)
            continue
        if b.signal(ev.signal_id) is None:
            held.append((item, "signals", ev.signal_id))
            continue
        if ev.id in by_order:
            row = pg_order_final(row, by_order[ev.id])
        orows.append(row)
        tx.orders[ev.id] = OrderInfo(ev.ts_event, ev.signal_id, row["reference_price"], row["quantity"])
        if item.pending:
            done_pending.append(ev.id)
    b.new_orders = insert(b.conn, tx, "orders", SPECS["orders"], orows, track=True)
    b.hold(held)


def apply_results(b: Batch, items: list[Item]) -> None:
    """Order results whose order is known (the others are held): fills -> trades and
    execution analysis; rejections and cancellations -> the order's status. The orders touched
    are then recomputed from their stored fills. ``items`` were converted by
    :func:`prepare_results`."""
    tx, conn, done_pending = b.tx, b.conn, b.done_pending
    _dead_results(b)
    checked = b.results_checked
    if not checked:
        return
    affected: dict[str, dict[str, Any]] = {}
    b.known_orders({it.event.order_id for it, _, _ in checked})
    trows, held = [], []
    fill_items = []
    for item, status, trow in checked:
        ev = item.event
        order = b.order(ev.order_id)
        if order is None:
            held.append((item, "orders", ev.order_id))
            continue
        if item.pending:
            done_pending.append(ev.id)
        a = affected.get(ev.order_id)
        if a is None:
            a = affected[ev.order_id] = {"terminal": None, "reason": None, "ts": ev.ts_event}
        elif ev.ts_event > a["ts"]:
            a["ts"] = ev.ts_event
        if trow is None:
            a["terminal"] = status
            a["reason"] = ev.reason
            tx.add("order_results_" + status, 1)
            continue
        trows.append(trow)
        fill_items.append((trow, ev, order))
    erows = _execution_rows(b, fill_items)
    new_ids = insert(conn, tx, "trades", SPECS["trades"], trows, track=True)
    if new_ids is not None:  # likewise a stored trade's execution analysis
        erows = [e for e in erows if e["trade_id"] in new_ids]
    insert(conn, tx, "execution_analysis", SPECS["execution_analysis"], erows, fresh=new_ids is not None)
    b.hold(held)
    new_orders = b.new_orders
    if new_orders:  # inserted by this transaction with their final status already
        affected = {k: v for k, v in affected.items() if k not in new_orders}
    if affected:
        update_orders(conn, tx, affected)


def _dead_results(b: Batch) -> None:
    """Dead-letter the order results :func:`prepare_results` found bad."""
    for item, reason in b.results_bad:
        dead_item(b.tx, item, reason)
        if item.pending:
            b.done_pending.append(item.event.id)


def _execution_rows(b: Batch, fill_items: list[tuple[dict[str, Any], Any, Any]]) -> list[dict[str, Any]]:
    """The execution analysis of each (trade row, fill, its order), against the signal behind it."""
    if not fill_items:
        return []
    b.known_signals({o.signal_id for _, _, o in fill_items})
    max_bps = b.max_slippage_bps
    erows = []
    for trow, ev, order in fill_items:
        sig = b.signal(order.signal_id)
        erows.append(
            R.execution_row(
                trow,
                ev,
                signal_ts=sig.ts if sig else None,
                signal_price=sig.price if sig else None,
                order_ts=order.ts,
                order_reference=order.reference_price,
                max_slippage_bps=max_bps,
            )
        )
    return erows


def apply_snapshots(b: Batch, items: list[Item]) -> None:
    """Portfolio snapshots, and the positions of the newest one."""
    tx, run_id, conn = b.tx, b.run_id, b.conn
    prow_all, latest = [], None
    newest_with: dict[str, Any] = {}  # symbol -> newest snapshot of the batch holding it
    for item in items:
        ev = item.event
        try:
            row = R.snapshot_row(ev, run_id)
        except ROW_ERRORS as exc:
            dead_item(tx, item, str(exc))
            continue
        prow_all.append(row)
        for p in ev.positions:
            cur = newest_with.get(p.symbol)
            if cur is None or ev.ts_event >= cur.ts_event:
                newest_with[p.symbol] = ev
        if latest is None or ev.ts_event >= latest.event.ts_event:
            latest = item
    insert(conn, tx, "portfolio_snapshots", SPECS["portfolio_snapshots"], prow_all)
    if latest is None:
        return
    # positions follow the newest snapshot; a position opened and closed inside the batch is
    # stored from the newest snapshot that held it, then set flat
    try:
        pos = R.position_rows(latest.event, run_id)
        held_syms = {r["symbol"] for r in pos}
        extra = []
        for ev in {id(e): e for sym, e in newest_with.items() if sym not in held_syms}.values():
            extra += [
                r for r in R.position_rows(ev, run_id) if r["symbol"] not in held_syms and newest_with[r["symbol"]] is ev
            ]
    except ROW_ERRORS as exc:
        dead_item(tx, latest, f"positions: {exc}")
    else:
        if extra:
            insert(conn, tx, "positions", SPECS["positions"], extra)
        apply_positions(conn, tx, run_id, latest.event, pos)


def rows_handler(table: str, row: Callable[[Any, str], dict[str, Any]]) -> Callable[[Batch, list[Item]], None]:
    """The handler of an event type that is one row of one table and nothing else (risk
    events, alerts): convert, dead-letter what does not convert, insert."""
    spec = SPECS[table]

    def apply(b: Batch, items: list[Item]) -> None:
        tx, run_id = b.tx, b.run_id
        rows = []
        for item in items:
            try:
                rows.append(row(item.event, run_id))
            except ROW_ERRORS as exc:
                dead_item(tx, item, str(exc))
        insert(b.conn, tx, table, spec, rows)

    apply.__name__ = apply.__qualname__ = f"apply_{table}"
    apply.__doc__ = f"{table}: one row per event."
    return apply


# --- the dispatch table -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Handler:
    """What the writer does with one event type: ``apply`` writes a batch's events of that type;
    ``prepare``, if any, runs before every handler's ``apply`` (an order needs its results of
    the same batch); ``holds``: its events may be held children, whose ``pending_events`` rows
    the handler deletes itself once they are handled. Compared by identity (a dict key per
    batch group: no hashing of fields)."""

    name: str
    apply: Callable[[Batch, list[Item]], None]
    prepare: Callable[[Batch, list[Item]], None] | None = None
    holds: bool = False


# event type -> handler; the order is the order of writing (parents before children)
HANDLERS: dict[type, Handler] = {
    Signal: Handler("signals", apply_signals),
    Order: Handler("orders", apply_orders, holds=True),
    OrderResult: Handler("order_results", apply_results, prepare=prepare_results, holds=True),
    PortfolioSnapshot: Handler("portfolio_snapshots", apply_snapshots),
    RiskEvent: Handler("risk_events", rows_handler("risk_events", R.risk_row)),
    Alert: Handler("alerts", rows_handler("alerts", R.alert_row)),
}
_ORDER = tuple(HANDLERS.values())
_PREPARE = tuple((h, h.prepare) for h in _ORDER if h.prepare is not None)


@functools.cache
def handler_for(t: type) -> Handler | None:
    """The handler of a type not in :data:`HANDLERS` itself: its nearest base's (a subclass of
    an event type is stored as that type), None if it is no stored event type."""
    for base in t.__mro__[1:]:
        h = HANDLERS.get(base)
        if h is not None:
            return h
    return None


def apply_batch(b: Batch, work: list[Item]) -> None:
    """Write ``work`` (the batch with its released children): drop duplicates, sort by event
    type through :data:`HANDLERS`, run the handlers in their order, then delete the rows of
    the held children handled."""
    groups = _group(b, work)
    for h, prepare in _PREPARE:
        group = groups.get(h)
        if group:
            prepare(b, group)
    for h in _ORDER:
        group = groups.get(h)
        if group:
            h.apply(b, group)

    # held children now handled (inserted or dead-lettered); the holding handlers did theirs
    done_pending = b.done_pending
    for it in work:
        if it.pending:
            t = type(it.event)
            h = HANDLERS.get(t) or handler_for(t)
            if h is None or not h.holds:
                done_pending.append(it.event.id)
    if done_pending:
        orphans.delete_pending(b.conn, b.tx, done_pending)
        b.tx.resolved += len(done_pending)


def _group(b: Batch, work: list[Item]) -> dict[Handler, list[Item]]:
    """``work`` by handler, in order; duplicates counted (and their pending rows deleted), events
    of a type that is not stored dead-lettered."""
    tx, conn = b.tx, b.conn
    groups: dict[Handler, list[Item]] = {}
    seen: set[tuple[type, str]] = set()
    handlers = HANDLERS
    for item in work:
        ev = item.event
        t = type(ev)
        key = (t, ev.id)
        if key in seen:
            tx.add("duplicates", 1)
            if item.pending:
                orphans.delete_pending(conn, tx, [ev.id])
            continue
        seen.add(key)
        h = handlers.get(t) or handler_for(t)
        if h is None:
            dead_item(tx, item, f"event type {event_type(ev)} is not stored")
            continue
        group = groups.get(h)
        if group is None:
            groups[h] = [item]
        else:
            group.append(item)
    return groups


# --- orders recomputed from their fills ---------------------------------------------------

_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)


def pg_numeric_div(n: Decimal, q: Decimal) -> Decimal:
    """PostgreSQL's ``numeric / numeric`` to the digit: the result scale of its
    ``select_div_scale`` (at least 16 significant digits, not less than either input's scale),
    rounded half away from zero (``q`` > 0)."""
    en = n.as_tuple().exponent
    eq = q.as_tuple().exponent
    if n:  # weight (base 10 000) of the first non-zero digit, and that digit
        w1 = n.adjusted() // 4
        f1 = int(_EXACT.scaleb(abs(n), -4 * w1))
    else:
        w1 = f1 = 0
    w2 = q.adjusted() // 4
    f2 = int(_EXACT.scaleb(q, -4 * w2))
    qweight = w1 - w2 - (1 if f1 <= f2 else 0)
    rscale = min(max(16 - qweight * 4, -en, -eq, 0), 1000)
    num = int(_EXACT.scaleb(abs(n), -en))  # the coefficients
    den = int(_EXACT.scaleb(q, -eq))
    e = en - eq + rscale
    if e >= 0:
        num *= 10**e
    else:
        den *= 10**-e
    r, rem = divmod(num, den)
    if 2 * rem >= den:
        r += 1
    out = _EXACT.scaleb(Decimal(r), -rscale)
    return -out if n < 0 and r else out


def pg_order_final(
    row: dict[str, Any], results: list[tuple[Any, str, dict[str, Any] | None]]
) -> dict[str, Any]:
    """A new order row (a copy) with the values ``PG_UPDATE_ORDERS`` would set from the
    results of the same batch (its only stored ones: it is new), exactly as PostgreSQL computes
    them, so that the update finds nothing to change."""
    row = dict(row)
    fills = [t for _, _, t in results if t is not None]
    terminal = reason = None
    ts = results[0][0].ts_event
    for ev, status, trow in results:
        ts = max(ts, ev.ts_event)
        if trow is None:
            terminal, reason = status, ev.reason
    status = "pending"
    if fills:
        q = _EXACT.create_decimal(0)
        n = _EXACT.create_decimal(0)
        f = _EXACT.create_decimal(0)
        for t in fills:
            q = _EXACT.add(q, t["quantity"])
            n = _EXACT.add(n, t["notional"])
            f = _EXACT.add(f, t["fee"])
        if q >= row["quantity"] or any(t["status"] == "filled" for t in fills):
            status = "filled"
        elif terminal:
            status = terminal
        elif q > 0:
            status = "partially_filled"
        row["filled_quantity"] = q
        row["avg_fill_price"] = pg_numeric_div(n, q) if q > 0 else None
        row["fees"] = f
    elif terminal:
        status = terminal
    row["status"] = status
    if reason is not None:
        row["reason"] = reason
    row["updated_at"] = R.dt_from_ns(ts)
    return row


def update_orders(conn: Connection, tx: Tx, affected: dict[str, dict[str, Any]]) -> None:
    """Recompute status, filled quantity, average price and fees of the orders touched,
    from the stored fills (idempotent: the same whatever was delivered twice)."""
    t, o = T["trades"], T["orders"]
    ids = sorted(affected)
    if conn.dialect.name == "postgresql":
        pg_exec(
            conn,
            tx,
            PG_UPDATE_ORDERS,
            (
                ids,
                [affected[i]["terminal"] for i in ids],
                [affected[i]["reason"] for i in ids],
                [R.dt_from_ns(affected[i]["ts"]) for i in ids],
            ),
            last=True,
        )
        return
    fills: dict[str, list[tuple[Decimal, Decimal, Decimal, str]]] = {}
    current: dict[str, tuple[Decimal, str, str | None]] = {}
    for chunk in chunks(ids):
        for oid, q, p, fee, st in conn.execute(
            select(t.c.order_id, t.c.quantity, t.c.price, t.c.fee, t.c.status).where(
                t.c.order_id.in_(chunk)
            )
        ):
            fills.setdefault(oid, []).append((q, p, fee, st))
        for oid, qty, st, reason in conn.execute(
            select(o.c.id, o.c.quantity, o.c.status, o.c.reason).where(o.c.id.in_(chunk))
        ):
            current[oid] = (qty, st, reason)
    params = []
    for oid in ids:
        if oid not in current:
            continue
        qty, status, reason = current[oid]
        a = affected[oid]
        fl = fills.get(oid, [])
        filled = sum((f[0] for f in fl), R.ZERO)
        notional = sum((f[0] * f[1] for f in fl), R.ZERO)
        fees = sum((f[2] for f in fl), R.ZERO)
        terminal = a["terminal"] or (status if status in R.TERMINAL else None)
        if filled >= qty or any(f[3] == "filled" for f in fl):
            new = "filled"
        elif terminal:
            new = terminal
        elif filled > 0:
            new = "partially_filled"
        else:
            new = status
        params.append(
            {
                "oid": oid,
                "status": new,
                "filled": filled,
                "avg": (notional / filled) if filled > 0 else None,
                "fees": fees,
                "reason": a["reason"] if a["reason"] else reason,
                "updated": R.dt_from_ns(a["ts"]),
            }
        )
    if params:
        stmt = (
            update(o)
            .where(o.c.id == bindparam("oid"))
            .values(
                status=bindparam("status"),
                filled_quantity=bindparam("filled"),
                avg_fill_price=bindparam("avg"),
                fees=bindparam("fees"),
                reason=bindparam("reason"),
                updated_at=bindparam("updated"),
            )
        )
        conn.execute(stmt, params)

def apply_positions(
    conn: Connection, tx: Tx, run_id: str, ev: PortfolioSnapshot, rows: list[dict[str, Any]]
) -> None:
    """Upsert the positions of the newest snapshot and set flat the run's positions it no
    longer holds (never overwriting a newer state: positions follow the newest snapshot)."""
    insert(conn, tx, "positions", SPECS["positions"], rows)
    ts = R.dt_from_ns(ev.ts_event)
    symbols = [r["symbol"] for r in rows]
    if conn.dialect.name == "postgresql":
        pg_exec(
            conn,
            tx,
            PG_FLATTEN_POSITIONS,
            {"ts": ts, "snap": ev.id, "run": run_id, "symbols": symbols},
            "positions_closed",
            last=True,
        )
        return
    p = T["positions"]
    cond = [p.c.run_id == run_id, p.c.side != "flat", p.c.updated_at <= ts]
    if symbols:
        cond.append(p.c.symbol.not_in(symbols))
    res = conn.execute(
        update(p)
        .where(and_(*cond))
        .values(
            side="flat",
            quantity=R.ZERO,
            cost_basis=R.ZERO,
            unrealized_pnl=R.ZERO,
            exposure=R.ZERO,
            exposure_pct=R.ZERO,
            updated_at=ts,
            snapshot_id=ev.id,
        )
    )
    tx.add("positions_closed", max(res.rowcount or 0, 0))
