"""Signal engine: routes market data to one strategy instance per symbol, collects signals."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from claire.events import Bar, IdFactory, Order, OrderResult, OrderStatus, QuoteTick, Side, Signal, TradeTick
from claire.strategy.base import Strategy, WorkingOrder

_EMPTY: tuple[Signal, ...] = ()
_BUY = Side.BUY
_FILLED, _PARTIALLY_FILLED = OrderStatus.FILLED, OrderStatus.PARTIALLY_FILLED


class SignalEngine:
    def __init__(self, strategy_cls: type[Strategy], params: dict[str, Any] | None = None,
                 ids: IdFactory | None = None) -> None:
        self.strategy_cls = strategy_cls
        self.params = dict(params or {})
        self.ids = ids or IdFactory()
        self.strategies: dict[str, Strategy] = {}
        # validate parameters now, with a clear message, rather than at the first event
        strategy_cls("__check__", self.ids, **self.params)

    def _new(self, symbol: str) -> Strategy:
        strat = self.strategies[symbol] = self.strategy_cls(symbol, self.ids, **self.params)
        return strat

    def _run(self, strat: Strategy, ev: Any, fn: Callable[[Any], None]) -> tuple[Signal, ...] | list[Signal]:
        strat._event = ev
        fn(ev)
        if strat._out:
            out = strat._out
            strat._out = []
            return out
        return _EMPTY

    def on_bar(self, bar: Bar) -> tuple[Signal, ...] | list[Signal]:
        strat = self.strategies.get(bar.symbol)
        if strat is None:
            strat = self._new(bar.symbol)
        strat._event = bar
        strat.on_bar(bar)
        out = strat._out
        if out:
            strat._out = []
            return out
        return _EMPTY

    def on_trade(self, tick: TradeTick) -> tuple[Signal, ...] | list[Signal]:
        strat = self.strategies.get(tick.symbol) or self._new(tick.symbol)
        return self._run(strat, tick, strat.on_trade)

    def on_quote(self, quote: QuoteTick) -> tuple[Signal, ...] | list[Signal]:
        strat = self.strategies.get(quote.symbol) or self._new(quote.symbol)
        return self._run(strat, quote, strat.on_quote)

    def on_market(self, ev: Bar | TradeTick | QuoteTick) -> tuple[Signal, ...] | list[Signal]:
        if type(ev) is Bar:
            return self.on_bar(ev)
        if type(ev) is TradeTick:
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
        """Strategies are user classes with arbitrary state: they are pickled as they are."""
        import base64
        import pickle

        return {"strategies": base64.b64encode(pickle.dumps(self.strategies)).decode()}

    def set_state(self, st: dict[str, Any]) -> None:
        import base64
        import pickle

        self.strategies = pickle.loads(base64.b64decode(st["strategies"]))


def _working(strat: Strategy) -> dict[str, WorkingOrder]:
    wo = strat.working_orders
    if "working_orders" not in strat.__dict__:  # restored from a checkpoint taken before the view existed
        wo = strat.working_orders = {}
    return wo
