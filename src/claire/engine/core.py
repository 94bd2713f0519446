"""The trading core for one process: the four state machines wired in a fixed order.

For every market event, in this order (the same in every runtime):

1. paper execution matches working orders against it (e.g. fills at a bar's open); each fill
   goes to the portfolio, each snapshot to the risk manager (trading-state changes);
2. the portfolio marks the position to the event (and takes the periodic snapshot that is due);
3. the risk manager sees the event (signals waiting for a narrower spread are decided);
4. the strategy sees the event; each signal goes through the risk manager; each approved order
   goes to paper execution (which may fill it at once, e.g. at the bar's close).

A :class:`~claire.events.BookDepth` (the top levels of a live book) goes to paper execution
(step 1: working orders may fill against its levels), then to the strategy host's market context
(book depth at the next signals); strategies, risk and portfolio never see it.

Everything produced is handed to ``emit`` in causal order. The core does no I/O and reads no
wall clock: ``clock.now`` is the event time of the event being processed.

The four are typed by their roles in the component contract (:mod:`claire.events.component`),
not by class: any object with the methods will do (the account stage of the distributed runtime
passes a strategy-less signal role and a tapped portfolio).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from claire.events import (
    Bar,
    BookDepth,
    Event,
    ExchangeRole,
    LedgerRole,
    Order,
    OrderResult,
    PortfolioSnapshot,
    QuoteTick,
    RiskRole,
    Signal,
    SignalRole,
    TradeTick,
    check_version,
    versioned,
)


class EventClock:
    """Event-time clock: the engine sets ``now`` to each event's time before handling it."""

    __slots__ = ("now",)

    def __init__(self, now: int = 0) -> None:
        self.now = now

    def __call__(self) -> int:
        """The event time now (components take the clock as a callable)."""
        return self.now


class TradingCore:
    """The one place the components meet, in the fixed order of the module doc, so every
    runtime (backtest, paper, the distributed account stage) produces the same events."""

    def __init__(self, signals: SignalRole, risk: RiskRole, execution: ExchangeRole,
                 portfolio: LedgerRole, clock: EventClock, emit: Callable[[Event], object]) -> None:
        self.signals = signals
        self.risk = risk
        self.execution = execution
        self.portfolio = portfolio
        self.clock = clock
        self.emit = emit
        self.processed = 0  # market events handled (the replay position for restarts)
        # bound methods of the bar path, looked up once (this path runs for every bar)
        self._ex_bar = execution.on_bar
        self._pf_bar = portfolio.on_bar
        self._risk_bar = risk.on_bar
        self._sig_bar = signals.on_bar
        self._risk_snap = risk.on_snapshot

    def run(self, events: Iterable[Bar | TradeTick | QuoteTick | BookDepth]) -> int:
        """Handle market events in order; returns how many. ``on_bar`` and ``on_market`` go
        through here too, so a replay and the live runtimes run the same steps for a bar
        (here without a Python call per bar: the components' bar handlers are looked up once)."""
        clock = self.clock
        ex_bar = self._ex_bar
        pf_bar = self._pf_bar
        risk_bar = self._risk_bar
        sig_bar = self._sig_bar
        risk_snap = self._risk_snap
        emit = self.emit
        route = self.route
        on_tick = self._on_tick
        bar_t = Bar
        n = 0  # counted in a local, added to `processed` once (also when a handler raises)
        try:
            for ev in events:
                if type(ev) is not bar_t:
                    on_tick(ev)
                    n += 1
                    continue
                clock.now = ev.ts_event
                fills = ex_bar(ev)
                if fills:
                    route(fills)
                snap = pf_bar(ev)
                if snap is not None:  # the periodic snapshot: to emit and to the risk manager
                    emit(snap)
                    out = risk_snap(snap)
                    if out:
                        route(out)
                risk_bar(ev)
                sigs = sig_bar(ev)
                if sigs:
                    route(sigs)
                n += 1
        finally:
            self.processed += n
        return n

    def on_bar(self, bar: Bar) -> None:
        """One bar (through ``run``: the same steps as a replay)."""
        self.run((bar,))

    def on_market(self, ev: Bar | TradeTick | QuoteTick | BookDepth) -> None:
        """One market event (through ``run``: the same steps as a replay)."""
        self.run((ev,))

    def on_book(self, book: BookDepth) -> None:
        """The top levels of a book (through ``run``, like every market event)."""
        self.run((book,))

    def _on_tick(self, ev: Bar | TradeTick | QuoteTick | BookDepth) -> None:
        self.clock.now = ev.ts_event
        if isinstance(ev, BookDepth):  # for the paper exchange, and the market context at signals
            results = self.execution.on_book(ev)
            if results:
                self.route(results)
            self.signals.on_book(ev)  # no signals: book depth for the analytics (strategies do not see it)
            return
        fills = self.execution.on_market(ev)
        if fills:
            self.route(fills)
        snap = self.portfolio.on_market(ev)
        if snap is not None:
            self.route((snap,))
        out = self.risk.on_market(ev)
        if out:
            self.route(out)
        sigs = self.signals.on_market(ev)
        if sigs:
            self.route(sigs)

    def route(self, events: Iterable[Event]) -> None:
        """Emit events and feed each to the component that consumes it (depth first)."""
        emit = self.emit
        for ev in events:
            emit(ev)
            # `type(ev) is X` (not a saved `type(ev)`) so that mypy narrows `ev` in each branch
            if type(ev) is OrderResult:
                # the risk manager and the strategy learn of every order result (working orders,
                # fills, cancels) before the portfolio's snapshots move the trading state
                out = self.risk.on_order_result(ev)
                self.signals.on_order_result(ev)
                if ev.is_fill:
                    snaps = self.portfolio.on_fill(ev)
                    if snaps:
                        self.route(snaps)
                if out:
                    self.route(out)
            elif type(ev) is PortfolioSnapshot:
                out = self.risk.on_snapshot(ev)
                if out:
                    self.route(out)
            elif type(ev) is Order:
                self.signals.on_order(ev)  # the strategy's view: working from now on
                self.route(self.execution.on_order(ev))
            elif type(ev) is Signal:
                self.route(self.risk.on_signal(ev))

    def finish(self, reason: str = "end of data") -> None:
        """End of a replay: cancel working orders and take a final snapshot."""
        ts = max(self.clock.now, self.portfolio.last_ts)
        self.route(self.risk.flush_delayed(ts, reason))
        self.route(self.execution.cancel_all(ts, reason))
        self.route((self.portfolio.snapshot(ts, "final"),))

    # --- restart --------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """The checkpoint of the core: the replay position, the clock and the four components'
        states, with the checkpoint format's version (plain data: msgspec encodes it)."""
        return versioned({
            "processed": self.processed, "now": self.clock.now,
            "portfolio": self.portfolio.get_state(), "risk": self.risk.get_state(),
            "execution": self.execution.get_state(), "signals": self.signals.get_state(),
        })

    def set_state(self, st: dict[str, Any]) -> None:
        """Restore a checkpoint of ``get_state`` (after a JSON round trip); StateError for a
        checkpoint of another version."""
        check_version(st, "trading core")
        self.processed = st["processed"]
        self.clock.now = st["now"]
        self.portfolio.set_state(st["portfolio"])
        self.risk.set_state(st["risk"])
        self.execution.set_state(st["execution"])
        self.signals.set_state(st["signals"])
