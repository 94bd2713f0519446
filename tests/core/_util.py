"""Builders and a small harness shared by the core tests (no I/O, event time only)."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any, ClassVar

import msgspec

from claire.engine.core import EventClock
from claire.events import (
    Alert,
    Bar,
    Event,
    Order,
    OrderResult,
    OrderStatus,
    PortfolioSnapshot,
    QuoteTick,
    RiskCheck,
    RiskEvent,
    Side,
    Signal,
)
from claire.events.time import NS_PER_DAY, NS_PER_MIN, NS_PER_SEC
from claire.portfolio import Portfolio
from claire.risk import RiskConfig, RiskManager
from claire.strategy.base import Strategy

D = Decimal
T0 = 1_704_067_200 * NS_PER_SEC  # 2024-01-01T00:00:00Z, a UTC day boundary
SEC = NS_PER_SEC
MIN = NS_PER_MIN
DAY = NS_PER_DAY

#: R1..R7 in the order the risk manager runs them
R_ORDER = (
    RiskCheck.DATA_QUALITY,
    RiskCheck.POSITION_LIMIT,
    RiskCheck.DAILY_DRAWDOWN,
    RiskCheck.TOTAL_EXPOSURE,
    RiskCheck.CIRCUIT_BREAKER,
    RiskCheck.SLIPPAGE,
    RiskCheck.SPREAD,
)

_seq = itertools.count(1)


def bar(sym: str, ts: int, close: Any, open: Any = None, high: Any = None, low: Any = None,
        volume: Any = 1000, interval_s: int = 60) -> Bar:
    """A bar closing at ``ts`` (opened ``interval_s`` earlier)."""
    c = D(str(close))
    o = D(str(open)) if open is not None else c
    h = D(str(high)) if high is not None else max(o, c)
    lo = D(str(low)) if low is not None else min(o, c)
    return Bar(id=f"bar:{sym}:{interval_s}:{ts}", ts_event=ts, ts_recv=ts, symbol=sym, interval_s=interval_s,
               open=o, high=h, low=lo, close=c, volume=D(str(volume)))


def quote(sym: str, ts: int, bid: Any, ask: Any, bid_size: Any = 100, ask_size: Any = 100) -> QuoteTick:
    return QuoteTick(id=f"quote:{sym}:{ts}:{next(_seq)}", ts_event=ts, ts_recv=ts, symbol=sym,
                     bid=D(str(bid)), ask=D(str(ask)), bid_size=D(str(bid_size)), ask_size=D(str(ask_size)))


def signal(sym: str, side: str | Side, price: Any, ts: int, *, market_ts: int | None = None,
           quantity: Any = None, reduce_only: bool = False, sid: str | None = None) -> Signal:
    sid = sid or f"sig-{next(_seq)}"
    return Signal(id=sid, ts_event=ts, ts_recv=ts, correlation_id=sid, symbol=sym, side=Side(side),
                  price=D(str(price)), confidence=D(1), strategy="test",
                  quantity=None if quantity is None else D(str(quantity)), reduce_only=reduce_only,
                  market_ts=ts if market_ts is None else market_ts)


def fill(sym: str, side: str | Side, qty: Any, price: Any, ts: int, fee: Any = 0,
         status: OrderStatus = OrderStatus.FILLED) -> OrderResult:
    n = next(_seq)
    return OrderResult(id=f"fill-{n}", ts_event=ts, ts_recv=ts, order_id=f"order-{n}", signal_id=f"sig-{n}",
                       symbol=sym, side=Side(side), status=status, quantity=D(str(qty)), price=D(str(price)),
                       fee=D(str(fee)))


def order(sym: str, side: str | Side, qty: Any, ts: int, ref: Any, **kw: Any) -> Order:
    oid = kw.pop("oid", None) or f"order-{next(_seq)}"
    return Order(id=oid, ts_event=ts, ts_recv=ts, symbol=sym, side=Side(side), quantity=D(str(qty)),
                 signal_id=f"sig-of-{oid}", reference_price=D(str(ref)), **kw)


def of_type(events: list[Event] | tuple[Event, ...], t: type) -> list[Any]:
    return [e for e in events if type(e) is t]


class RiskHarness:
    """Portfolio + RiskManager + event clock, fed by hand; collects what the risk manager emits.

    Snapshots the portfolio takes are handed to ``RiskManager.on_snapshot`` as the core does.
    Fills are applied to the portfolio directly (fee 0 by default) so equity is easy to compute.
    """

    def __init__(self, config: RiskConfig | None = None, start_cash: Any = 100_000) -> None:
        self.clock = EventClock(T0)
        self.pf = Portfolio(D(str(start_cash)))
        self.config = config or RiskConfig()
        self.rm = RiskManager(self.config, self.pf, clock=self.clock)
        self.events: list[Event] = []

    def _snap(self, snap: PortfolioSnapshot | None) -> list[Event]:
        if snap is None:
            return []
        out = self.rm.on_snapshot(snap)
        self.events += out
        return out

    def bar(self, sym: str, ts: int, close: Any, **kw: Any) -> list[Event]:
        b = bar(sym, ts, close, **kw)
        self.clock.now = ts
        out = self._snap(self.pf.on_bar(b))
        self.rm.on_bar(b)
        return out

    def quote(self, sym: str, ts: int, bid: Any, ask: Any, **kw: Any) -> list[Event]:
        q = quote(sym, ts, bid, ask, **kw)
        self.clock.now = ts
        out = self._snap(self.pf.on_quote(q))
        res = list(self.rm.on_quote(q))
        self.events += res
        return out + res

    def fill(self, sym: str, side: str, qty: Any, price: Any, ts: int | None = None, fee: Any = 0) -> list[Event]:
        out: list[Event] = []
        for s in self.pf.on_fill(fill(sym, side, qty, price, self.clock.now if ts is None else ts, fee)):
            out += self._snap(s)
        return out

    def settle(self, o: Order, price: Any = None, qty: Any = None) -> list[Event]:
        """The result of an approved order as execution would send it: a fill of ``qty`` (default:
        all) at ``price``, or a cancellation when ``price`` is None. The harness has no exchange,
        so until then the risk manager counts the order as working (R2, R4, the cash)."""
        if price is None:
            res = OrderResult(id=f"cancel-{o.id}", ts_event=self.clock.now, ts_recv=self.clock.now, order_id=o.id,
                              signal_id=o.signal_id, symbol=o.symbol, side=o.side, status=OrderStatus.CANCELLED,
                              order_quantity=o.quantity, leaves_quantity=o.quantity)
            return list(self.rm.on_order_result(res))
        q = D(str(qty)) if qty is not None else o.quantity
        res = fill(o.symbol, o.side, q, price, self.clock.now,
                   status=OrderStatus.FILLED if q == o.quantity else OrderStatus.PARTIALLY_FILLED)
        res = msgspec.structs.replace(res, order_id=o.id, signal_id=o.signal_id, order_quantity=o.quantity,
                                      cum_quantity=q, leaves_quantity=o.quantity - q)
        out = list(self.rm.on_order_result(res))
        for s in self.pf.on_fill(res):
            out += self._snap(s)
        return out

    def signal(self, sym: str, side: str, price: Any, **kw: Any) -> list[Event]:
        kw.setdefault("market_ts", self.clock.now)
        sig = signal(sym, side, price, self.clock.now, **kw)
        out = self.rm.on_signal(sig)
        self.events += out
        self.last_signal = sig
        return out


def decision(out: list[Event], sig_id: str) -> RiskEvent:
    """The one RiskEvent deciding ``sig_id`` in ``out`` (asserts there is exactly one)."""
    evs = [e for e in out if type(e) is RiskEvent and e.signal_id == sig_id]
    assert len(evs) == 1, f"expected exactly one decision for {sig_id}, got {evs}"
    return evs[0]


def assert_well_formed(ev: RiskEvent, rm: RiskManager) -> None:
    """Checks listed in R1..R7 order up to the deciding one, with the portfolio and config attached."""
    kinds = [c.check for c in ev.checks]
    assert kinds == list(R_ORDER[: len(kinds)]), kinds
    if ev.passed:
        assert kinds == list(R_ORDER), "an approval runs every check"
        assert all(c.passed for c in ev.checks)
    elif ev.check in R_ORDER:
        assert kinds == list(R_ORDER[: R_ORDER.index(ev.check) + 1])
        assert all(c.passed for c in ev.checks[:-1])
        assert ev.checks[-1].passed is False
    assert ev.config == rm.config.as_dict()
    assert set(ev.portfolio) >= {"equity", "cash", "total_exposure", "daily_loss_pct", "drawdown_pct",
                                 "positions", "trading_state"}
    assert ev.portfolio["trading_state"] == ev.trading_state.value


def alerts(out: list[Event]) -> list[Alert]:
    return of_type(out, Alert)


#: load_strategy spec of the scripted strategy below (for RunConfig / build_core)
SCRIPTED = "tests.core._util:Scripted"


class Scripted(Strategy):
    """Emits, on its symbol's i-th bar, the i-th action of ``script[symbol]``: ``(kind, quantity)``
    with kind ``buy``, ``sell``, ``close_long`` (close(SELL)), ``close_short`` (close(BUY)) or
    anything else for nothing."""

    name: ClassVar[str] = "scripted"
    defaults: ClassVar[dict[str, Any]] = {"script": {}}

    def setup(self) -> None:
        self.script = self.params["script"].get(self.symbol, [])
        self.i = 0

    def on_bar(self, bar: Bar) -> None:
        i = self.i
        self.i += 1
        if i >= len(self.script):
            return
        kind, qty = self.script[i]
        if kind == "buy":
            self.buy(quantity=qty)
        elif kind == "sell":
            self.sell(quantity=qty)
        elif kind == "close_long":
            self.close(Side.SELL)
        elif kind == "close_short":
            self.close(Side.BUY)
