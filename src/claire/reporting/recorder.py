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


class Recorder:
    """An ``emit`` target for the core: keeps the events of a run (market data is not kept).

    ``forward`` (optional) receives every event too, e.g. a database writer or a bus.
    """

    def __init__(self, forward: Callable[[Event], Any] | None = None) -> None:
        self.forward = forward
        self.signals: list[Signal] = []
        self.orders: list[Order] = []
        self.results: list[OrderResult] = []
        self.fills: list[OrderResult] = []
        self.snapshots: list[PortfolioSnapshot] = []
        self.risk_events: list[RiskEvent] = []
        self.alerts: list[Alert] = []
        self.round_trips: list[RoundTrip] = []
        self._trackers: dict[str, _Tracker] = {}
        self._by_type: dict[type, Callable[[Any], None]] = {
            Signal: self.signals.append,
            Order: self.orders.append,
            OrderResult: self._on_result,
            PortfolioSnapshot: self.snapshots.append,
            RiskEvent: self.risk_events.append,
            Alert: self.alerts.append,
        }

    def __call__(self, ev: Event) -> None:
        self._by_type[type(ev)](ev)
        if self.forward is not None:
            self.forward(ev)

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
        assert price is not None
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
