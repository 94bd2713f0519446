"""Collects what a run produces and pairs fills into round trips."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec

from claire.events import (
    Alert,
    Event,
    Order,
    OrderResult,
    PortfolioSnapshot,
    RiskEvent,
    Side,
    Signal,
)

ZERO = Decimal(0)


class RoundTrip(msgspec.Struct, kw_only=True):
    """From flat to flat on one symbol. ``exit_*`` stay None while the position is open."""

    symbol: str
    side: str  # long | short
    quantity: Decimal  # the largest size held
    entry_time: int
    entry_price: Decimal  # volume-weighted over the entry fills
    exit_time: int | None = None
    exit_price: Decimal | None = None  # volume-weighted over the exit fills
    fees: Decimal = ZERO
    pnl: Decimal = ZERO  # realized, after fees
    entry_qty: Decimal = ZERO
    entry_notional: Decimal = ZERO
    exit_qty: Decimal = ZERO
    exit_notional: Decimal = ZERO
    open_qty: Decimal = ZERO  # signed while open
    open_cost: Decimal = ZERO  # cost basis of the open quantity (average cost, as the portfolio's)

    @property
    def is_open(self) -> bool:
        return self.exit_time is None


class _Tracker:
    __slots__ = ("open",)

    def __init__(self) -> None:
        self.open: RoundTrip | None = None


#: the fields of a snapshot that the run files, the summary and the period figures read, in
#: this order (``Recorder.snapshot_rows``): references to the event's own objects, no copies
SNAPSHOT_ROW = ("ts_event", "equity", "cash", "realized_pnl", "unrealized_pnl", "fees", "total_exposure_pct",
                "drawdown_pct", "high_water_mark", "daily_pnl", "num_positions", "reason")
R_TS, R_EQUITY, R_EXPOSURE_PCT = 0, 1, 6


def snapshot_row(s: PortfolioSnapshot) -> tuple[Any, ...]:
    """The fields of ``SNAPSHOT_ROW`` of one snapshot."""
    return (s.ts_event, s.equity, s.cash, s.realized_pnl, s.unrealized_pnl, s.fees, s.total_exposure_pct,
            s.drawdown_pct, s.high_water_mark, s.daily_pnl, s.num_positions, s.reason)


def snapshot_rows(recorder: Any) -> list[tuple[Any, ...]]:
    """``recorder.snapshot_rows``; made from ``recorder.snapshots`` for any other object that
    holds snapshots (e.g. a collection of a distributed run's events)."""
    rows = getattr(recorder, "snapshot_rows", None)
    if rows is None:
        rows = [snapshot_row(s) for s in recorder.snapshots]
    return rows


class Recorder:
    """An ``emit`` target for the core: keeps what a run produces (market data is not kept).

    ``forward`` (optional) receives every event too, e.g. a database writer or a bus.

    ``keep_events=False`` (``claire backtest``): snapshots and orders are not kept as events,
    only what the run files and the summary read (``snapshot_rows`` and the counts); signals
    (signals.csv), order results, fills, risk events, alerts and round trips are kept as always. A snapshot with
    its positions is ~1.5 kB, its row ~0.2 kB beyond the objects the snapshot shares.
    """

    def __init__(self, forward: Callable[[Event], Any] | None = None, keep_events: bool = True) -> None:
        self.forward = forward
        self.keep_events = keep_events
        self.signals: list[Signal] = []
        self.orders: list[Order] = []
        self.results: list[OrderResult] = []
        self.fills: list[OrderResult] = []
        self.snapshots: list[PortfolioSnapshot] = []
        #: per snapshot, the fields of ``SNAPSHOT_ROW`` as a tuple (kept in both modes)
        self.snapshot_rows: list[tuple[Any, ...]] = []
        self.risk_events: list[RiskEvent] = []
        self.alerts: list[Alert] = []
        self.round_trips: list[RoundTrip] = []
        self._trackers: dict[str, _Tracker] = {}
        self._order_count = 0
        self._wire()

    def _wire(self) -> None:
        """The handler of each event type, and ``emit``."""
        keep = self.keep_events
        on_signal: Callable[[Any], None] = self.signals.append  # kept in both modes: signals.csv
        on_order: Callable[[Any], None] = self.orders.append if keep else self._count_order
        self._by_type: dict[type, Callable[[Any], None]] = {
            Signal: on_signal,
            Order: on_order,
            OrderResult: self._on_result,
            PortfolioSnapshot: self._keep_snapshot if keep else self._snapshot_row,
            RiskEvent: self.risk_events.append,
            Alert: self.alerts.append,
        }
        # what the core calls for each event (``emit``): without a forward, the handler itself
        self.emit: Callable[[Event], None] = self._emit_forward if self.forward is not None else self._emit

    def __call__(self, ev: Event) -> None:
        self._by_type[type(ev)](ev)
        if self.forward is not None:
            self.forward(ev)

    def _emit(self, ev: Event) -> None:
        self._by_type[type(ev)](ev)

    def _emit_forward(self, ev: Event) -> None:
        self._by_type[type(ev)](ev)
        self.forward(ev)  # type: ignore[misc]

    def _snapshot_row(self, s: PortfolioSnapshot) -> None:
        self.snapshot_rows.append((s.ts_event, s.equity, s.cash, s.realized_pnl, s.unrealized_pnl, s.fees,
                                   s.total_exposure_pct, s.drawdown_pct, s.high_water_mark, s.daily_pnl,
                                   s.num_positions, s.reason))

    def _keep_snapshot(self, s: PortfolioSnapshot) -> None:
        self.snapshots.append(s)
        self._snapshot_row(s)

    def _count_order(self, o: Order) -> None:
        self._order_count += 1

    @property
    def signal_count(self) -> int:
        return len(self.signals)

    @property
    def order_count(self) -> int:
        return len(self.orders) if self.keep_events else self._order_count

    @property
    def snapshot_count(self) -> int:
        return len(self.snapshot_rows)

    def _on_result(self, r: OrderResult) -> None:
        self.results.append(r)
        if r.is_fill:
            self.fills.append(r)
            self._pair(r)

    def _pair(self, f: OrderResult) -> None:
        tr = self._trackers.get(f.symbol)
        if tr is None:
            tr = self._trackers[f.symbol] = _Tracker()
        qty, price, fee = f.quantity, f.price, f.fee
        if price is None:  # OrderResult requires it for a fill
            raise ValueError(f"fill {f.id} has no price")
        signed = qty if f.side is Side.BUY else -qty
        rt = tr.open
        if rt is None:
            rt = tr.open = RoundTrip(symbol=f.symbol, side="long" if signed > 0 else "short",
                                     quantity=qty, entry_time=f.ts_event, entry_price=price)
            self.round_trips.append(rt)
        same = (rt.open_qty >= 0) == (signed > 0) if rt.open_qty else True
        if same:
            rt.entry_qty += qty
            rt.entry_notional += qty * price
            rt.entry_price = rt.entry_notional / rt.entry_qty
            rt.open_qty += signed
            rt.open_cost += qty * price
            rt.fees += fee
            rt.pnl -= fee
            if abs(rt.open_qty) > rt.quantity:
                rt.quantity = abs(rt.open_qty)
            return
        open_abs = abs(rt.open_qty)
        closing = min(qty, open_abs)
        rest = qty - closing
        fee_close = fee * closing / qty if rest else fee
        direction = 1 if rt.open_qty > 0 else -1
        rt.exit_qty += closing
        rt.exit_notional += closing * price
        rt.exit_price = rt.exit_notional / rt.exit_qty
        rt.fees += fee_close
        rt.open_qty += closing if signed > 0 else -closing
        if rt.open_qty:  # a partial exit: realized against the average cost of what is held
            cost_out = rt.open_cost * closing / open_abs
            rt.open_cost -= cost_out
            rt.pnl += (closing * price - cost_out) * direction - fee_close
        else:
            # flat: everything bought was sold, so the trip's PnL is exactly the exit notional
            # minus the entry notional (not the volume-weighted entry price times the size: an
            # entry after a partial exit would count the exited part's price again)
            rt.open_cost = ZERO
            rt.pnl = (rt.exit_notional - rt.entry_notional) * direction - rt.fees
            rt.exit_time = f.ts_event
            tr.open = None
            if rest:  # flipped: the rest opens a new round trip
                nrt = tr.open = RoundTrip(symbol=f.symbol, side="long" if signed > 0 else "short",
                                          quantity=rest, entry_time=f.ts_event, entry_price=price,
                                          entry_qty=rest, entry_notional=rest * price, open_cost=rest * price,
                                          open_qty=rest if signed > 0 else -rest,
                                          fees=fee - fee_close, pnl=-(fee - fee_close))
                self.round_trips.append(nrt)
