"""Analytics rows completed after their insert: the price after each fill (A1), and what the
performance figures of a run are computed from while it goes on (A2).

``execution_analysis.price_after`` is the symbol's next price after the fill (the signal engine
watches for it, see :class:`claire.strategy.market_context.PriceAfter`); the writer stores the
fill before that price exists, so the runtimes hand the prices over here
(:func:`complete_price_after`), with ``market_impact_bps`` computed from them. A fill with no
later price (the end of the data) keeps NULL and says why (:func:`mark_no_price_after`).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, bindparam, select, update

from claire.storage import rows as R
from claire.storage.bulk_load import chunks
from claire.storage.database import Database
from claire.storage.models import metadata
from claire.storage.types import dt_from_ns, ns_from_dt

NO_PRICE_AFTER = "no later price of the symbol (the data ended after the fill)"


def complete_price_after(db: Database, run_id: str, items: Sequence[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """Set ``price_after`` and ``market_impact_bps`` of the fills ``items`` = ``(trade id, price
    as text, event time of the price)`` whose row is stored and still without it; returns the
    items whose row is not stored yet (to hand over again later)."""
    if not items:
        return []
    ea = metadata.tables["execution_analysis"]
    by_id = {i[0]: i for i in items}
    params: list[dict[str, Any]] = []
    found: set[str] = set()
    with db.begin(write=True) as conn:
        for chunk in chunks(sorted(by_id)):
            q = select(ea.c.trade_id, ea.c.side, ea.c.execution_price, ea.c.price_after, ea.c.metadata).where(
                and_(ea.c.run_id == run_id, ea.c.trade_id.in_(chunk)))
            for tid, side, px, after, meta in conn.execute(q):
                found.add(tid)
                if after is not None:
                    continue  # already done (an item handed over twice)
                _, price, ts = by_id[tid]
                pa = Decimal(price)
                params.append({"tid": tid, "pa": pa, "mi": R.impact_bps(side, Decimal(px), pa),
                               "meta": {**(meta or {}), "price_after_ts": _iso(ts)}})
        if params:
            conn.execute(update(ea).where(ea.c.trade_id == bindparam("tid")).values(
                price_after=bindparam("pa"), market_impact_bps=bindparam("mi"), metadata=bindparam("meta")), params)
    return [i for i in items if i[0] not in found]


def mark_no_price_after(db: Database, run_id: str) -> int:
    """At the end of a run: the fills still without a price after say why in their metadata."""
    ea = metadata.tables["execution_analysis"]
    with db.begin(write=True) as conn:
        rows = list(conn.execute(select(ea.c.trade_id, ea.c.metadata).where(
            and_(ea.c.run_id == run_id, ea.c.price_after.is_(None)))))
        params = [{"tid": tid, "meta": {**(meta or {}), "unavailable": {"price_after": NO_PRICE_AFTER,
                                                                         "market_impact_bps": NO_PRICE_AFTER}}}
                  for tid, meta in rows if "unavailable" not in (meta or {})]
        if params:
            conn.execute(update(ea).where(ea.c.trade_id == bindparam("tid")).values(metadata=bindparam("meta")), params)
    return len(params)


def _iso(ns: int) -> str:
    dt = dt_from_ns(ns)
    return dt.isoformat() if dt is not None else ""


def _ns(ts: Any) -> int:
    ns = ns_from_dt(ts)
    if ns is None:
        raise ValueError("a stored time is missing")
    return ns


def load_period_inputs(db: Database, run_id: str) -> tuple[Decimal | None, list[tuple[int, Decimal, Decimal]],
                                                           list[tuple[int, str, str, str, Decimal, Decimal, Decimal]]]:
    """What a run's performance figures are computed from, as stored: the start cash, the
    snapshots ``(ts ns, equity, exposure share)`` in time order, and the fills ``(ts ns, id,
    symbol, side, quantity, price, fee)`` in the order they happened (time, then their order's
    time, then how much of the order was done)."""
    ps, tr, od = (metadata.tables[t] for t in ("portfolio_snapshots", "trades", "orders"))
    with db.begin() as conn:
        start = conn.execute(select(ps.c.start_cash).where(ps.c.run_id == run_id).limit(1)).scalar()
        points = [(_ns(ts), eq, pct) for ts, eq, pct in conn.execute(
            select(ps.c.ts, ps.c.equity, ps.c.total_exposure_pct).where(ps.c.run_id == run_id)
            .order_by(ps.c.ts, ps.c.created_at, ps.c.id))]
        fills = [(_ns(ts), fid, sym, side, qty, px, fee) for ts, fid, sym, side, qty, px, fee in conn.execute(
            select(tr.c.ts, tr.c.id, tr.c.symbol, tr.c.side, tr.c.quantity, tr.c.price, tr.c.fee)
            .join(od, od.c.id == tr.c.order_id).where(tr.c.run_id == run_id)
            .order_by(tr.c.ts, od.c.ts, tr.c.cum_quantity, tr.c.id))]
    return start, points, fills
