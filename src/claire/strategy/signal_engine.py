"""Signal engine: routes market data to one strategy instance per symbol, collects signals.

Its checkpoint (``get_state``) holds one entry per symbol (:func:`strategy_state`): the
strategy's name and version, its parameters, the number of signals it emitted (their ids derive
from it), its position view, and its own ``Strategy.get_state()``. Plain data throughout, no
Python objects: a checkpoint names no code to run. Next to them: the market context
(``market``) and the fills waiting for their price after (``price_after``).

Every signal a strategy emits leaves here with ``metadata["market"]``: the figures of
:class:`~claire.strategy.market_context.MarketContext` at the signal's market event (24h volume,
1h volatility, trend, spread, book depth, and why a figure is missing), fed by the same events the
strategy sees, so every runtime stores the same ``market_conditions`` row. Each fill of the
engine's symbols waits in :class:`~claire.strategy.market_context.PriceAfter` for the symbol's
next price (``execution_analysis.price_after``; the one-process runtimes take them with
:meth:`SignalEngine.take_prices_after`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import msgspec

from claire.events import (
    Bar,
    BookDepth,
    IdFactory,
    Order,
    OrderResult,
    OrderStatus,
    QuoteTick,
    Side,
    Signal,
    StateError,
    TradeTick,
    from_plain,
    to_plain,
)
from claire.strategy.base import Strategy, WorkingOrder
from claire.strategy.market_context import CATCH_UP_EVERY, MarketContext, PriceAfter

_EMPTY: tuple[Signal, ...] = ()
_BUY = Side.BUY
_FILLED, _PARTIALLY_FILLED = OrderStatus.FILLED, OrderStatus.PARTIALLY_FILLED


_E = TypeVar("_E", Bar, TradeTick, QuoteTick)
_encoder = msgspec.json.Encoder()
_replace = msgspec.structs.replace


class SignalEngine:
    """Hosts the strategy: one instance of the strategy class per symbol, made on the symbol's
    first event, so user strategies never look up which symbol an event is for. Implements the
    component contract (:class:`claire.events.SignalRole`)."""

    def __init__(self, strategy_cls: type[Strategy], params: dict[str, Any] | None = None,
                 ids: IdFactory | None = None) -> None:
        self.strategy_cls = strategy_cls
        self.params = dict(params or {})
        self.ids = ids or IdFactory()
        self.strategies: dict[str, Strategy] = {}
        #: bars closing at or before this time (ns) are history (a live run's warm-up): the
        #: strategy sees them, their signals are dropped (counted, so the ids stay the same)
        self.history_until = -1
        #: the market around each signal (stamped into its metadata) and the fills waiting for
        #: their symbol's next price
        self.market = MarketContext()
        self.after = PriceAfter()
        self._pending: dict[str, list[Bar]] = {}  # symbol -> its market context's unprocessed bars
        # validate parameters now, with a clear message, rather than at the first event
        strategy_cls("__check__", self.ids, **self.params)

    def _new(self, symbol: str) -> Strategy:
        strat = self.strategies[symbol] = self.strategy_cls(symbol, self.ids, **self.params)
        return strat

    def _run(self, strat: Strategy, ev: _E, fn: Callable[[_E], None]) -> Sequence[Signal]:
        strat._event = ev
        fn(ev)
        if strat._out:
            out = strat._out
            strat._out = []
            return self._stamp(out, ev)
        return _EMPTY

    def _stamp(self, out: list[Signal], ev: Bar | TradeTick | QuoteTick) -> list[Signal]:
        """The signals with the market figures at ``ev`` in ``metadata["market"]`` (a strategy's
        own ``market`` entries kept over them)."""
        figs = self.market.figures(ev.symbol, ev.ts_event)
        stamped = []
        for s in out:
            meta = s.metadata
            own = meta.get("market") if meta else None
            market = {**figs, **own} if isinstance(own, dict) else figs
            stamped.append(_replace(s, metadata={**meta, "market": market}))
        return stamped

    def on_bar(self, bar: Bar) -> Sequence[Signal]:
        """The bar to its symbol's strategy; the signals it emitted."""
        sym = bar.symbol
        strat = self.strategies.get(sym)
        if strat is None:
            strat = self._new(sym)
        # the market context: the bar appended (processed when a signal needs the figures)
        pending = self._pending.get(sym)
        if pending is None:
            m = self.market.symbol(sym)
            m.has_bars = True
            pending = self._pending[sym] = m.pending
        pending.append(bar)
        if len(pending) >= CATCH_UP_EVERY:
            self.market.symbols[sym].catch_up()
        waiting = self.after.waiting
        if waiting and sym in waiting:
            self.after.on_price(sym, bar.ts_event, bar.close)
        strat._event = bar
        strat.on_bar(bar)
        out = strat._out
        if out:
            strat._out = []
            if bar.ts_event <= self.history_until:
                return _EMPTY
            return self._stamp(out, bar)
        return _EMPTY

    def on_trade(self, tick: TradeTick) -> Sequence[Signal]:
        """The trade to its symbol's strategy; the signals it emitted."""
        strat = self.strategies.get(tick.symbol) or self._new(tick.symbol)
        self.market.on_trade(tick)
        if tick.symbol in self.after.waiting:
            self.after.on_price(tick.symbol, tick.ts_event, tick.price)
        return self._run(strat, tick, strat.on_trade)

    def on_quote(self, quote: QuoteTick) -> Sequence[Signal]:
        """The quote to its symbol's strategy; the signals it emitted."""
        strat = self.strategies.get(quote.symbol) or self._new(quote.symbol)
        self.market.on_quote(quote)
        if quote.symbol in self.after.waiting:
            self.after.on_price(quote.symbol, quote.ts_event, quote.price)
        return self._run(strat, quote, strat.on_quote)

    def on_book(self, book: BookDepth) -> Sequence[Signal]:
        """The top levels of a book: for the market context only (book depth at the signals;
        strategies do not see books, nor does the price after a fill: bars, quotes, trades)."""
        self.market.on_book(book)
        return _EMPTY

    def take_prices_after(self) -> list[tuple[str, str, int]]:
        """The fills whose price after is known since the last call: ``(fill id, price as text,
        event time of the price)``."""
        return self.after.take()

    def on_market(self, ev: Bar | TradeTick | QuoteTick) -> Sequence[Signal]:
        """Any market event to its symbol's strategy; the signals it emitted."""
        if isinstance(ev, Bar):
            return self.on_bar(ev)
        if isinstance(ev, TradeTick):
            return self.on_trade(ev)
        return self.on_quote(ev)

    # --- the strategies' position view (not on the per-bar path) ----------------------------
    def on_order(self, order: Order) -> None:
        """An order approved for one of this engine's signals: working from now on."""
        strat = self.strategies.get(order.symbol)
        if strat is None:
            return
        _working(strat)[order.id] = WorkingOrder(order_id=order.id, signal_id=order.signal_id, side=order.side,
                                                 quantity=order.quantity, leaves=order.quantity,
                                                 reduce_only=order.reduce_only)

    def on_order_result(self, result: OrderResult) -> None:
        """An order result of one of this engine's signals (fill, partial fill, cancel, reject):
        updates the strategy's ``position`` and ``working_orders``."""
        strat = self.strategies.get(result.symbol)
        if strat is None:
            return
        status = result.status
        if status is _FILLED or status is _PARTIALLY_FILLED:
            self.after.on_fill(result.id, result.symbol, result.ts_event)
            q = result.quantity
            strat.position = strat.position + q if result.side is _BUY else strat.position - q
        if status is _PARTIALLY_FILLED and result.leaves_quantity > 0:
            wo = _working(strat)
            old = wo.get(result.order_id)
            wo[result.order_id] = WorkingOrder(
                order_id=result.order_id, signal_id=result.signal_id, side=result.side,
                quantity=result.order_quantity if old is None else old.quantity,
                leaves=result.leaves_quantity, reduce_only=False if old is None else old.reduce_only)
        elif strat.working_orders:
            strat.working_orders.pop(result.order_id, None)  # done: filled, cancelled or rejected

    # --- restart --------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """Every strategy as plain data (see :func:`strategy_state`); raises StateError naming
        the strategy and symbol whose state msgspec cannot encode."""
        out = {}
        for sym, strat in self.strategies.items():
            st = out[sym] = strategy_state(strat)
            _check_encodes(strat, st)
        return {"strategies": out, "market": self.market.get_state(), "price_after": self.after.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        """Make every strategy of the checkpoint again (see :meth:`restore_strategy`), and the
        market context and the fills waiting for their price after."""
        self.strategies = {sym: self.restore_strategy(sym, st) for sym, st in state["strategies"].items()}
        self.set_market(state.get("market") or {})
        self.after = PriceAfter()
        self.after.set_state(state.get("price_after") or {})

    def set_market(self, state: dict[str, Any]) -> None:
        """The market context of a checkpoint (``MarketContext.get_state``, per symbol)."""
        self.market = MarketContext()
        self.market.set_state(state)
        self._pending = {}

    def encode_market(self, symbol: str) -> bytes | None:
        """One symbol's market context as JSON (what the signal stage keeps per symbol)."""
        m = self.market.symbols.get(symbol)
        return None if m is None else _encoder.encode(m.get_state())

    def restore_strategy(self, symbol: str, st: dict[str, Any]) -> Strategy:
        """A strategy of ``symbol`` as :func:`strategy_state` saved it: constructed with the saved
        parameters (``setup`` runs), the framework's part put back, then ``Strategy.set_state``."""
        cls = self.strategy_cls
        if st.get("strategy") != cls.name or st.get("strategy_version") != cls.version:
            raise StateError(
                f"the checkpoint of {symbol} is of strategy {st.get('strategy')!r} version "
                f"{st.get('strategy_version')!r}; this run has {cls.name!r} version {cls.version!r} (a "
                "strategy whose state changed shape gets a new version; start the run afresh)")
        params = from_plain(st["params"])
        if type(params) is not dict:
            raise StateError(f"the checkpoint of {symbol}: parameters are not a mapping")
        strat = cls(symbol, self.ids, **params)
        strat._n = int(st["signals"])
        strat.position = Decimal(st["position"])
        strat.working_orders = {
            oid: WorkingOrder(order_id=oid, signal_id=sid, side=Side(side), quantity=Decimal(q), leaves=Decimal(lv),
                              reduce_only=bool(ro))
            for oid, sid, side, q, lv, ro in st["working_orders"]
        }
        strat.set_state(st["state"])
        return strat


def strategy_state(strat: Strategy) -> dict[str, Any]:
    """One strategy's checkpoint: the framework's part (name, version, parameters in the typed
    plain form, signal counter, position view) and ``strat.get_state()``."""
    return {
        "strategy": strat.name,
        "strategy_version": strat.version,
        "params": to_plain(strat.params, f"{type(strat).__qualname__}.params"),
        "signals": strat._n,
        "position": str(strat.position),
        "working_orders": [[w.order_id, w.signal_id, w.side.value, str(w.quantity), str(w.leaves), w.reduce_only]
                           for w in strat.working_orders.values()],
        "state": strat.get_state(),
    }


def encode_strategy(strat: Strategy) -> bytes:
    """:func:`strategy_state` as JSON (what the signal stage keeps per symbol)."""
    st = strategy_state(strat)
    return _check_encodes(strat, st)


def _check_encodes(strat: Strategy, st: dict[str, Any]) -> bytes:
    try:
        return _encoder.encode(st)
    except (TypeError, ValueError, OverflowError) as exc:
        cls = type(strat).__qualname__
        raise StateError(f"{cls}.get_state() of {strat.symbol} returned what msgspec cannot encode ({exc}); "
                         "return plain data (see claire.strategy.base)") from None


def _working(strat: Strategy) -> dict[str, WorkingOrder]:
    wo = strat.working_orders
    if "working_orders" not in strat.__dict__:  # restored from a checkpoint taken before the view existed
        wo = strat.working_orders = {}
    return wo
