"""Issue 9: an order's unfilled rest never outlives the strategy's intent, and no fill uses
information from after its time.

- Volume cap without look-ahead: at a bar's open the cap is ``max_volume_share`` x the volume of
  the symbol's previous bar; at a bar's close (fill mode ``close``, a limit touched inside the
  bar) that bar's own volume. One bar's share is used once (its close, then the next open).
- One intent per symbol: an order cancels the working orders of the opposite side first.
- Reduce-only orders never fill past a flat position (the exchange's own fills).
- The strategy's view: ``position`` and ``working_orders``.
- End to end (TradingCore): the NEAR sequence of the issue, and a property over the built-in
  strategies: with a fixed quantity the absolute position never exceeds it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from claire.config import PortfolioSettings, RunConfig, StrategySettings
from claire.engine.kernel import build_core
from claire.events import Bar, Event, Order, OrderResult, OrderStatus, OrderType, Side, TimeInForce, TradeTick
from claire.execution import ExchangeSimulator, ExecutionConfig, FillMode
from claire.risk import RiskConfig
from claire.strategy.base import WorkingOrder
from claire.strategy.signal_engine import SignalEngine

from ._util import MIN, SCRIPTED, T0, D, Scripted, bar, order

BTC = "BTCUSDT"
NEAR = "NEARUSDT"
T1 = T0 + MIN
T2 = T0 + 2 * MIN
T3 = T0 + 3 * MIN
T4 = T0 + 4 * MIN
FILLED, PARTIAL, CANCELLED = OrderStatus.FILLED, OrderStatus.PARTIALLY_FILLED, OrderStatus.CANCELLED


def make(fill: str = "next_open", vol: Any = "0.25") -> ExchangeSimulator:
    return ExchangeSimulator(ExecutionConfig(fill=FillMode(fill), taker_fee_bps=D(0), maker_fee_bps=D(0),
                                          max_volume_share=None if vol is None else D(str(vol))))


def summary(results: Any) -> list[tuple[str, OrderStatus, Decimal, Decimal]]:
    return [(r.order_id, r.status, r.quantity, r.leaves_quantity) for r in results]


# --- the volume cap: no look-ahead -------------------------------------------------------------------


@pytest.mark.parametrize("volume", ["0", "8", "10000"])
def test_the_quantity_filled_at_an_open_does_not_depend_on_that_bars_volume(volume: str) -> None:
    """Fails on the old rule (the open was capped by the same bar's whole volume: 0, 2, 5)."""
    ex = make(vol="0.25")
    ex.on_bar(bar(BTC, T1, "100", volume=8))  # the last volume seen before the next open
    ex.on_order(order(BTC, "buy", "5", T1, ref="100"))
    r = ex.on_bar(bar(BTC, T2, "100", open="100", volume=volume))
    assert [(x.status, x.quantity, x.leaves_quantity, x.ts_event) for x in r] == [(PARTIAL, D(2), D(3), T1)]
    # and the next open is capped by this bar's volume
    r = ex.on_bar(bar(BTC, T3, "100", volume=1))
    expected = {"0": [], "8": [(PARTIAL, D(2), D(1))], "10000": [(FILLED, D(3), D(0))]}[volume]
    assert [(x.status, x.quantity, x.leaves_quantity) for x in r] == expected


def test_no_previous_bar_no_fill_at_the_open_yet() -> None:
    ex = make(vol="0.25")
    ex.on_trade(TradeTick(id="t", ts_event=T0 + 30 * 10**9, ts_recv=T0 + 30 * 10**9, symbol=BTC, price=D(110),
                          size=D(1), aggressor=Side.BUY, trade_id="1"))
    o = order(BTC, "buy", "4", T0 + 30 * 10**9, ref="110", order_type=OrderType.LIMIT, price=D(105))
    assert ex.on_order(o) == []  # not marketable at 110: rests
    # the first bar opens through the limit, but no volume has been seen before its open
    assert ex.on_bar(bar(BTC, T1, "100", open="100", volume=1000)) == []
    r = ex.on_bar(bar(BTC, T2, "100", open="100", volume=1000))  # 25% of the previous 1000
    assert [(x.status, x.quantity, x.price, x.ts_event) for x in r] == [(FILLED, D(4), D(100), T1)]


def test_a_fill_at_the_close_uses_that_bars_volume_and_the_next_open_what_is_left_of_it() -> None:
    ex = make("close", vol="0.25")
    ex.on_bar(bar(BTC, T1, "100", volume=8))
    o = order(BTC, "buy", "5", T1, ref="100")
    r = ex.on_order(o)
    assert [(x.status, x.quantity, x.ts_event) for x in r] == [(PARTIAL, D(2), T1)]  # 25% of its bar's 8
    # the next open is at the same instant as that close: the same share, used up
    assert ex.on_bar(bar(BTC, T2, "100", volume=40)) == []
    r = ex.on_bar(bar(BTC, T3, "101", open="101", volume=40))  # 25% of 40
    assert [(x.status, x.quantity, x.price, x.ts_event) for x in r] == [(FILLED, D(3), D(101), T2)]


def test_a_limit_touched_inside_a_bar_fills_at_its_close_on_its_volume() -> None:
    ex = make(vol="0.25")
    ex.on_bar(bar(BTC, T1, "100", volume=4))  # would cap an open fill at 1
    assert ex.on_order(order(BTC, "buy", "5", T1, ref="100", order_type=OrderType.LIMIT, price=D(99))) == []
    r = ex.on_bar(bar(BTC, T2, "100", open="100", low="98", volume=40))
    assert [(x.status, x.quantity, x.price, x.ts_event) for x in r] == [(FILLED, D(5), D(99), T2)]


def test_volume_share_is_shared_between_orders_and_survives_a_restart() -> None:
    ex = make("close", vol="0.5")
    ex.on_bar(bar(BTC, T1, "100", volume=8))  # 4 for everything at this close and the next open
    assert summary(ex.on_order(order(BTC, "buy", "3", T1, ref="100", oid="a"))) == [("a", FILLED, D(3), D(0))]
    ex2 = make("close", vol="0.5")
    ex2.set_state(ex.get_state())
    assert summary(ex2.on_order(order(BTC, "buy", "3", T1, ref="100", oid="b"))) == [("b", PARTIAL, D(1), D(2))]
    assert ex2.on_bar(bar(BTC, T2, "100", volume=8)) == []  # nothing left of T1's share
    assert summary(ex2.on_bar(bar(BTC, T3, "100", volume=8))) == [("b", FILLED, D(2), D(0))]


# --- one intent per symbol ---------------------------------------------------------------------------


def test_an_order_cancels_the_working_orders_of_the_opposite_side_first() -> None:
    ex = make("next_open", vol="0.25")
    ex.on_bar(bar(NEAR, T1, "5", volume=2072))
    ex.on_order(order(NEAR, "buy", "2000", T1, ref="5", oid="entry"))
    assert summary(ex.on_bar(bar(NEAR, T2, "5", volume=100_000))) == [("entry", PARTIAL, D(518), D(1482))]
    ex.on_order(order(NEAR, "buy", "10", T2, ref="5", oid="more"))  # the same side: kept
    out = ex.on_order(order(NEAR, "sell", "518", T2, ref="5", oid="exit", reduce_only=True))
    assert [(r.order_id, r.status, r.cum_quantity, r.leaves_quantity, r.reason, r.ts_event) for r in out] == [
        ("entry", CANCELLED, D(518), D(1482), "cancelled: superseded by a sell order exit", T2),
        ("more", CANCELLED, D(0), D(10), "cancelled: superseded by a sell order exit", T2),
    ]
    assert summary(ex.on_bar(bar(NEAR, T3, "5"))) == [("exit", FILLED, D(518), D(0))]
    assert ex.working == {} and ex.position == {NEAR: D(0)}


def test_cancels_come_before_the_new_orders_own_results() -> None:
    ex = make("close", vol=None)
    ex.on_bar(bar(BTC, T1, "100"))
    assert ex.on_order(order(BTC, "sell", "5", T1, ref="100", oid="s", order_type=OrderType.LIMIT,
                             price=D(110))) == []  # rests
    out = ex.on_order(order(BTC, "buy", "1", T1, ref="100", oid="b"))
    assert summary(out) == [("s", CANCELLED, D(0), D(5)), ("b", FILLED, D(1), D(0))]
    assert ex.working == {}
    # redelivered: ignored, nothing cancelled again
    assert ex.on_order(order(BTC, "buy", "1", T1, ref="100", oid="b")) == []


# --- reduce-only ---------------------------------------------------------------------------------------


def test_reduce_only_never_fills_past_flat() -> None:
    ex = make("close", vol=None)
    ex.on_bar(bar(BTC, T1, "100"))
    ex.on_order(order(BTC, "buy", "3", T1, ref="100", oid="b"))
    out = ex.on_order(order(BTC, "sell", "5", T1, ref="100", oid="s", reduce_only=True))
    assert [(r.status, r.quantity, r.cum_quantity, r.leaves_quantity, r.reason) for r in out] == [
        (PARTIAL, D(3), D(3), D(2), None),
        (CANCELLED, D(0), D(3), D(2), "reduce only: no position left to reduce"),
    ]
    assert ex.position[BTC] == 0 and ex.working == {}


def test_reduce_only_without_a_position_is_cancelled_at_once() -> None:
    ex = make("next_open", vol="0.25")
    ex.on_bar(bar(BTC, T1, "100", volume=0))
    ex.on_order(order(BTC, "buy", "4", T1, ref="100", oid="entry"))
    assert ex.on_bar(bar(BTC, T2, "100", volume=0)) == []  # no volume: nothing filled
    out = ex.on_order(order(BTC, "sell", "4", T2, ref="100", oid="close", reduce_only=True))
    assert [(r.order_id, r.status, r.reason) for r in out] == [
        ("entry", CANCELLED, "cancelled: superseded by a sell order close"),
        ("close", CANCELLED, "reduce only: no position left to reduce"),
    ]
    assert ex.working == {}
    # a reduce-only buy does not reduce a long, nor a reduce-only sell a short
    ex.on_bar(bar(BTC, T3, "100", volume=1000))
    r = ex.on_order(order(BTC, "buy", "1", T3, ref="100", reduce_only=True))
    assert [x.reason for x in r] == ["reduce only: no position left to reduce"]


def test_reduce_only_partial_by_volume_keeps_working_until_flat() -> None:
    ex = make("next_open", vol="0.25")
    ex.on_bar(bar(BTC, T1, "100", volume=400))
    ex.on_order(order(BTC, "buy", "5", T1, ref="100", oid="b"))
    ex.on_bar(bar(BTC, T2, "100", volume=8))  # b: 5 (cap 100)
    ex.on_order(order(BTC, "sell", "9", T2, ref="100", oid="s", reduce_only=True, time_in_force=TimeInForce.GTC))
    assert summary(ex.on_bar(bar(BTC, T3, "100", volume=1000))) == [("s", PARTIAL, D(2), D(7))]  # cap 2
    out = ex.on_bar(bar(BTC, T4, "100", volume=8))
    assert [(r.status, r.quantity, r.reason) for r in out] == [
        (PARTIAL, D(3), None), (CANCELLED, D(0), "reduce only: no position left to reduce")]
    assert ex.position[BTC] == 0


def test_position_is_kept_across_a_restart_and_old_checkpoints_load() -> None:
    ex = make("close", vol=None)
    ex.on_bar(bar(BTC, T1, "100"))
    ex.on_order(order(BTC, "sell", "2", T1, ref="100"))
    st = ex.get_state()
    assert st["position"] == {BTC: "-2"}
    ex2 = make("close", vol=None)
    ex2.set_state(st)
    r = ex2.on_order(order(BTC, "buy", "5", T1, ref="100", reduce_only=True))
    assert [(x.status, x.quantity) for x in r] == [(PARTIAL, D(2)), (CANCELLED, D(0))]
    old = {k: v for k, v in st.items() if k not in ("position", "volume_used")}
    ex3 = make("close", vol=None)
    ex3.set_state(old)
    assert ex3.position == {} and ex3.volume_used == {}


# --- the strategy's view -------------------------------------------------------------------------------


class Viewing(Scripted):
    """Scripted, recording its position view at each bar (before acting)."""

    name: ClassVar[str] = "viewing"
    seen: ClassVar[list[tuple[Decimal, dict[str, WorkingOrder]]]] = []

    def on_bar(self, bar: Bar) -> None:
        Viewing.seen.append((self.position, dict(self.working_orders)))
        super().on_bar(bar)


def test_a_strategy_sees_its_position_and_working_orders() -> None:
    Viewing.seen = []
    out: list[Event] = []
    script = {NEAR: [("none", None), ("buy", D(2000)), ("none", None), ("close_long", None), ("none", None)]}
    cfg = RunConfig(strategy=StrategySettings(name="tests.core.test_execution_intent:Viewing", params={"script": script}),
                    risk=RiskConfig(enabled=False), execution=ExecutionConfig(taker_fee_bps=D(0), maker_fee_bps=D(0)))
    core = build_core(cfg, out.append)
    for i, vol in enumerate([2072, 2072, 100_000, 100_000, 100_000]):
        core.on_bar(bar(NEAR, T1 + i * MIN, "5", volume=vol))
        if i == 1:  # the buy was just approved: working, nothing filled
            st = core.signals.strategies[NEAR]
            (wo,) = st.working_orders.values()
            assert (wo.side, wo.quantity, wo.leaves, st.position) == (Side.BUY, D(2000), D(2000), 0)
            # a restart keeps the view
            eng = SignalEngine(core.signals.strategy_cls, core.signals.params)
            eng.set_state(core.signals.get_state())
            assert eng.strategies[NEAR].working_orders == st.working_orders
    views = [(pos, {w.side: w.leaves for w in wo.values()}) for pos, wo in Viewing.seen]
    assert views == [
        (0, {}), (0, {}),
        (D(518), {Side.BUY: D(1482)}),  # bar 2's open fill is capped by bar 1's volume: 25% of 2072
        (D(2000), {}),
        (D(0), {}),  # the close filled at the next open
    ]


def test_the_view_restores_from_a_checkpoint_taken_before_it_existed() -> None:
    eng = SignalEngine(Scripted, {"script": {}})
    eng.on_bar(bar(BTC, T1, "100"))
    strat = eng.strategies[BTC]
    del strat.__dict__["position"], strat.__dict__["working_orders"]  # as unpickled from an old checkpoint
    assert strat.position == 0 and strat.working_orders == {}
    eng.on_order(order(BTC, "buy", "3", T1, ref="100", oid="o"))
    eng.on_order_result(OrderResult(id="f", ts_event=T2, ts_recv=T2, order_id="o", signal_id="x", symbol=BTC,
                                    side=Side.BUY, status=PARTIAL, quantity=D(1), price=D(100),
                                    order_quantity=D(3), cum_quantity=D(1), leaves_quantity=D(2)))
    assert strat.position == 1 and strat.working_orders["o"].leaves == 2
    assert Scripted.working_orders == {}  # the class default is never written


# --- end to end ----------------------------------------------------------------------------------------


class Positions:
    """The core's emit: the signed position from the fills, its largest absolute value."""

    def __init__(self) -> None:
        self.pos: dict[str, Decimal] = {}
        self.max_abs = D(0)
        self.events: list[Event] = []

    def __call__(self, ev: Event) -> None:
        self.events.append(ev)
        if type(ev) is OrderResult and ev.is_fill:
            q = ev.quantity if ev.side is Side.BUY else -ev.quantity
            p = self.pos[ev.symbol] = self.pos.get(ev.symbol, D(0)) + q
            self.max_abs = max(self.max_abs, abs(p))


def _near_core(risk: str = "none") -> tuple[Any, Positions]:
    rec = Positions()
    script = {NEAR: [("none", None), ("buy", None), ("close_long", None), ("buy", None), ("none", None),
                     ("none", None)]}
    cfg = RunConfig(strategy=StrategySettings(name=SCRIPTED, params={"script": script}),
                    risk=RiskConfig(enabled=risk != "none", quantity=D(2000)),
                    execution=ExecutionConfig(taker_fee_bps=D(0), maker_fee_bps=D(0)))
    return build_core(cfg, rec), rec


def test_near_sequence_a_close_cancels_the_entrys_rest_no_stacking() -> None:
    """The issue's run: buy 2000, 518 filled at 04:05 by the cap, the close signal at that bar's
    close; at 04:06 the close fills and the entry's 1,482 must not: flat, then the next buy
    opens 2000 (not 3,482)."""
    core, rec = _near_core()
    t = T0 + 4 * 60 * MIN + 4 * MIN  # 04:04
    vols = [2072, 2072, 100_000, 100_000, 100_000, 100_000]  # the 04:05 open is capped at 25% of 2072 = 518
    for i, vol in enumerate(vols):
        core.on_bar(bar(NEAR, t + i * MIN, "5.1", volume=vol))
        if i == 2:
            assert rec.pos[NEAR] == 518  # 04:05-04:06 opened with 518 filled; close signal at its close
        if i == 3:
            assert rec.pos[NEAR] == 0, "the entry's rest filled after the close"
    core.finish()
    results = [e for e in rec.events if type(e) is OrderResult]
    cancels = [r for r in results if r.status is CANCELLED and r.reason.startswith("cancelled: superseded")]
    assert [(r.side, r.leaves_quantity) for r in cancels] == [(Side.BUY, D(1482))]
    # the cancel comes before the close's fill
    assert results.index(cancels[0]) < next(i for i, r in enumerate(results) if r.side is Side.SELL and r.is_fill)
    assert rec.pos[NEAR] == 2000 and rec.max_abs == 2000


def test_near_sequence_close_before_any_fill_cancels_the_entry() -> None:
    """The close arrives while the entry has filled nothing (no volume): no position, but a
    working entry. Needs the risk side: the close is approved as a reduce-only order of the
    working leaves, which cancels the entry here."""
    core, rec = _near_core()
    t = T0 + 4 * 60 * MIN + 4 * MIN
    vols = [0, 0, 100_000, 100_000, 100_000, 100_000]
    for i, vol in enumerate(vols):
        core.on_bar(bar(NEAR, t + i * MIN, "5.1", volume=vol))
    core.finish()
    assert rec.max_abs <= 2000 and rec.pos.get(NEAR, 0) == 2000


# --- property: with a fixed quantity the position never exceeds it -----------------------------------

SMALL_PARAMS = {
    "sma_cross": {"fast": 2, "slow": 4},
    "momentum": {"rsi_period": 2, "macd_fast": 2, "macd_slow": 3, "macd_signal": 2, "bb_period": 3},
}
_prices = st.lists(st.integers(1, 40), min_size=6, max_size=70)
_volumes = st.sampled_from([0, 0, 1, 3, 50, 400, 2072, 10_000, 1_000_000])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    strategy=st.sampled_from(["sma_cross", "momentum", "momentum_short"]),
    fill=st.sampled_from(["next_open", "close"]),
    risk=st.sampled_from(["none", "default"]),
    quantity=st.sampled_from(["1", "7", "2000"]),
    data=st.data(),
)
def test_the_absolute_position_never_exceeds_the_fixed_quantity(strategy: str, fill: str, risk: str,
                                                                quantity: str, data: st.DataObject) -> None:
    prices = data.draw(_prices, label="prices")
    volumes = data.draw(st.lists(_volumes, min_size=len(prices), max_size=len(prices)), label="volumes")
    short = strategy == "momentum_short"
    name = "momentum" if short else strategy
    params = dict(SMALL_PARAMS[name], **({"allow_short": True} if short else {}))
    rec = Positions()
    cfg = RunConfig(strategy=StrategySettings(name=name, params=params),
                    risk=RiskConfig(enabled=risk != "none", quantity=D(quantity), allow_short=short),
                    execution=ExecutionConfig(fill=fill, taker_fee_bps=D(0), maker_fee_bps=D(0)),
                    portfolio=PortfolioSettings(start_cash=D(1_000_000)))
    core = build_core(cfg, rec)
    prev = D(prices[0])
    for i, (p, v) in enumerate(zip(prices, volumes, strict=True)):
        c = D(p)
        core.on_bar(bar(NEAR, T1 + i * MIN, c, open=prev, volume=v))
        prev = c
        assert rec.max_abs <= D(quantity), f"position {rec.pos} above the quantity {quantity} at bar {i}"
        # no rest outlives the intent: what still works is on the side of the latest order
        last = next((e for e in reversed(rec.events) if type(e) is Order), None)
        working = [w.order for w in core.execution.working.get(NEAR, ())]
        assert all(o.side is last.side for o in working), f"bar {i}: {working} after {last}"
    core.finish()
    assert rec.max_abs <= D(quantity)
    orders = [e for e in rec.events if type(e) is Order]
    assert all(o.quantity <= D(quantity) for o in orders)
    results = [e for e in rec.events if type(e) is OrderResult]
    for what, hit in (("orders", orders), ("partial fills", [r for r in results if r.status is PARTIAL]),
                      ("superseded", [r for r in results if (r.reason or "").startswith("cancelled: superseded")]),
                      ("reduce only cancel", [r for r in results if (r.reason or "").startswith("reduce only")])):
        event(f"{what}: {'yes' if hit else 'no'}")
