"""R2, R4 and the cash count working orders (approved, not yet filled) as well as positions
(issue 9 b): the exposure at approval never exceeds the limits, whatever else was approved on
the same bar and waits for the next open. Also the sizing rules that go with working orders:
the fixed quantity is a position size per symbol (an opening order tops up to it), and a close
with no position but a working entry is a reduce-only order of the entry's size.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claire.config import DataSettings, RunConfig, RuntimeSettings, StrategySettings
from claire.engine.kernel import build_core
from claire.events import (
    Event,
    Order,
    OrderResult,
    RiskAction,
    RiskCheck,
    RiskEvent,
    Side,
    TradingState,
)
from claire.execution import ExecutionConfig
from claire.portfolio import Portfolio
from claire.risk import RiskConfig, RiskManager

from ._util import MIN, SCRIPTED, T0, D, RiskHarness, bar, decision, of_type

BTC, ETH, SOL, XRP, BNB = "BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "BNBUSDT"
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "BNBUSDT", "ADAUSDT")
STEP = D("0.000001")
FEE = D("0.001")  # 10 bps, the property's taker fee


# --- the property ---------------------------------------------------------------------------


class ApprovalChecker:
    """The core's ``emit``: keeps its own book of working orders (from Order / OrderResult
    events) and checks, at each approved opening order, positions + working + the order
    against the limits and the equity the decision saw."""

    def __init__(self, pos_pct: Decimal, total_pct: Decimal) -> None:
        self.pf: Portfolio = None  # type: ignore[assignment]
        self.pos_pct, self.total_pct = pos_pct, total_pct
        self.working: dict[str, list[Any]] = {}  # order id -> [order, leaves]
        self.last_decision: RiskEvent | None = None
        self.approved = self.resized_r4 = self.rejected_r4 = 0

    def __call__(self, ev: Event) -> None:
        t = type(ev)
        if t is RiskEvent:
            self.last_decision = ev
            if ev.check is RiskCheck.TOTAL_EXPOSURE and not ev.passed:
                self.rejected_r4 += 1
        elif t is Order:
            self._check(ev)
            self.working[ev.id] = [ev, ev.quantity]
        elif t is OrderResult:
            w = self.working.get(ev.order_id)
            if w is not None:
                if ev.is_fill:
                    w[1] -= ev.quantity
                if ev.status.value in ("filled", "cancelled", "rejected"):
                    del self.working[ev.order_id]

    def _check(self, o: Order) -> None:
        dec = self.last_decision
        assert dec is not None and dec.order_id == o.id
        if o.reduce_only:
            return
        self.approved += 1
        equity, exposure = self.pf.equity_and_exposure()
        opening = [(w[0], w[1]) for w in self.working.values() if not w[0].reduce_only]
        working = sum((leaves * wo.reference_price for wo, leaves in opening), D(0))
        price = o.reference_price
        notional = o.quantity * price
        total = exposure + working + notional
        assert total <= self.total_pct * equity, (total, equity, total / equity)
        same = sum((leaves for wo, leaves in opening if wo.symbol == o.symbol and wo.side is o.side), D(0))
        pos = (abs(self.pf.position_qty(o.symbol)) + same) * price + notional
        assert pos <= self.pos_pct * equity, (o.symbol, pos, equity, pos / equity)
        if dec.action is RiskAction.RESIZED and dec.check is RiskCheck.TOTAL_EXPOSURE:
            # shrunk to fit: the cap (on equity after the order's fee) is filled to one quantity step
            self.resized_r4 += 1
            cap = self.total_pct * (equity - notional * FEE)
            assert total > cap - price * STEP * 2, (total, equity)


prices = st.decimals(min_value=D("0.5"), max_value=D(50_000), places=2, allow_nan=False, allow_infinity=False)


@st.composite
def same_bar_scenarios(draw: Any) -> tuple:
    n_sym = draw(st.integers(2, 6))
    syms = list(SYMBOLS[:n_sym])
    n_bars = draw(st.integers(2, 8))
    paths = {s: draw(st.lists(prices, min_size=n_bars, max_size=n_bars)) for s in syms}
    # mostly buys (all symbols signalling on the same bar), some closes, some nothing
    kinds = st.sampled_from(["buy", "buy", "buy", "close_long", "none"])
    script = {s: [(k, None) for k in draw(st.lists(kinds, min_size=n_bars, max_size=n_bars))] for s in syms}
    pos_pct = draw(st.sampled_from([D("0.05"), D("0.10"), D("0.12"), D("0.25")]))
    total_pct = draw(st.sampled_from([D("0.20"), D("0.30"), D("0.50")]))
    partial = draw(st.booleans())
    return syms, n_bars, paths, script, pos_pct, total_pct, partial


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(same_bar_scenarios())
def test_exposure_plus_working_orders_at_approval_never_exceeds_the_limits(sc: tuple) -> None:
    syms, n_bars, paths, script, pos_pct, total_pct, partial = sc
    checker = ApprovalChecker(pos_pct, total_pct)
    rc = RiskConfig(max_position_pct=pos_pct, max_total_exposure_pct=total_pct,
                    max_daily_drawdown_pct=D(1), circuit_breaker_threshold_pct=D(1), max_slippage_pct=D(1))
    cfg = RunConfig(strategy=StrategySettings(name=SCRIPTED, params={"script": script}),
                    execution=ExecutionConfig(fill="next_open", taker_fee_bps=FEE * 10_000, maker_fee_bps=FEE * 10_000,
                                              max_volume_share=D("0.5") if partial else None),
                    risk=rc, runtime=RuntimeSettings(run_id="working-prop"))
    core = build_core(cfg, checker)
    checker.pf = core.portfolio
    volume = "1e12" if not partial else "20"  # partial: at most 10 units per bar fill
    for i in range(n_bars):
        for s in syms:
            core.on_bar(bar(s, T0 + (i + 1) * MIN, paths[s][i], volume=volume))
    core.finish()
    assert not core.risk.working  # every order ended (filled or cancelled at the end)


def test_same_bar_signals_share_the_cap() -> None:
    """Five symbols signal on one bar: three orders of 10% each, the rest rejected by R4; the
    working orders fill at the next open and then count as positions."""
    syms = [BTC, ETH, SOL, XRP, BNB]
    checker = ApprovalChecker(D("0.10"), D("0.30"))
    cfg = RunConfig(strategy=StrategySettings(name=SCRIPTED, params={"script": {s: [("buy", None)] for s in syms}}),
                    execution=ExecutionConfig(fill="next_open", taker_fee_bps=D(0), maker_fee_bps=D(0),
                                              max_volume_share=None),
                    runtime=RuntimeSettings(run_id="same-bar"))
    core = build_core(cfg, checker)
    checker.pf = core.portfolio
    for s in syms:
        core.on_bar(bar(s, T0 + MIN, "100", volume="1e12"))
    assert checker.approved == 3 and checker.rejected_r4 == 2
    assert len(core.risk.working) == 3 and core.risk._open_notional == D(30_000)
    for s in syms:
        core.on_bar(bar(s, T0 + 2 * MIN, "100", volume="1e12"))
    assert core.risk.working == {} and core.portfolio.total_exposure() == D(30_000)


def test_sized_order_shrinks_to_the_room_left_by_working_orders() -> None:
    h = RiskHarness(RiskConfig(max_position_pct=D("0.12")))
    for s in (BTC, ETH, SOL):
        h.bar(s, T0 + MIN, "100")
    orders = [of_type(h.signal(s, "buy", "100"), Order)[0] for s in (BTC, ETH, SOL)]
    assert [o.quantity for o in orders] == [D(120), D(120), D(60)]
    ev = decision(h.events, h.last_signal.id)
    assert (ev.check, ev.action) == (RiskCheck.TOTAL_EXPOSURE, RiskAction.RESIZED)
    # a fill moves leaves into the position: the sum stays the same, so does the room (none)
    h.settle(orders[0], "100", qty="50")
    assert h.rm.working[orders[0].id].leaves == D(70) and h.pf.total_exposure() == D(5000)
    h.bar(XRP, T0 + MIN, "100")
    assert decision(h.signal(XRP, "buy", "100"), h.last_signal.id).check is RiskCheck.TOTAL_EXPOSURE
    # a cancel frees the room
    h.settle(orders[1])
    (o,) = of_type(h.signal(XRP, "buy", "100"), Order)
    assert o.quantity == D(120)


def test_position_limit_counts_working_orders_of_the_same_side() -> None:
    h = RiskHarness()
    h.bar(BTC, T0 + MIN, "100")
    (o,) = of_type(h.signal(BTC, "buy", "100", quantity="60"), Order)
    out = h.signal(BTC, "buy", "100", quantity="41")  # 60 working + 41 = 10.1%
    ev = decision(out, h.last_signal.id)
    assert (ev.check, ev.passed, ev.value) == (RiskCheck.POSITION_LIMIT, False, D("0.101"))
    (o2,) = of_type(h.signal(BTC, "buy", "100"), Order)  # sized: the 40 left
    assert o2.quantity == D(40)
    h.settle(o, "100")
    h.settle(o2, "100")
    assert h.pf.position_qty(BTC) == D(100) and h.rm.working == {}


def test_cash_check_counts_working_buys() -> None:
    cfg = RiskConfig(max_position_pct=D(1), max_total_exposure_pct=D(1))
    h = RiskHarness(cfg, start_cash=10_000)
    h.bar(BTC, T0 + MIN, "100")
    h.bar(ETH, T0 + MIN, "100")
    assert of_type(h.signal(BTC, "buy", "100", quantity="60"), Order)
    # cash 10,000 less 6,000 x 1.01 (kept for fees and slippage) for the working buy
    out = h.signal(ETH, "buy", "100", quantity="50")
    ev = decision(out, h.last_signal.id)
    assert (ev.check, ev.passed, ev.reason) == (RiskCheck.SIZING, False, "not enough cash for the order")
    (o2,) = of_type(h.signal(ETH, "buy", "100"), Order)
    expected = ((D(10_000) - D(6000) * D("1.01")) / (D(100) * D("1.01"))).quantize(STEP, rounding="ROUND_DOWN")
    assert o2.quantity == expected


def test_working_reduce_only_orders_add_no_exposure() -> None:
    h = RiskHarness()
    for s in (BTC, ETH):
        h.bar(s, T0 + MIN, "100")
    h.fill(BTC, "buy", 300, "100")  # 30%: the cap
    (close,) = of_type(h.signal(BTC, "sell", "100", reduce_only=True), Order)
    assert close.reduce_only and h.rm._open_notional == 0
    # the close is working, not filled: the position still counts, nothing fits
    assert decision(h.signal(ETH, "buy", "100"), h.last_signal.id).check is RiskCheck.TOTAL_EXPOSURE
    h.settle(close, "100")
    (o,) = of_type(h.signal(ETH, "buy", "100"), Order)
    assert o.quantity == D(100)


# --- sizing with working orders ----------------------------------------------------------------


@pytest.mark.parametrize("enabled", [True, False])
def test_fixed_quantity_is_the_position_size_per_symbol(enabled: bool) -> None:
    h = RiskHarness(RiskConfig(quantity=D(1), enabled=enabled))
    h.bar(BTC, T0 + MIN, "100")
    (o,) = of_type(h.signal(BTC, "buy", "100"), Order)
    assert o.quantity == D(1)
    out = h.signal(BTC, "buy", "100")  # the working order already is the fixed quantity
    ev = decision(out, h.last_signal.id)
    assert (ev.check, ev.passed) == (RiskCheck.SIZING, False) and of_type(out, Order) == []
    assert "already holds/works the fixed quantity" in ev.reason
    h.settle(o, "100", qty="0.4")
    h.settle(o)  # the rest cancelled: 0.4 held
    (o2,) = of_type(h.signal(BTC, "buy", "100"), Order)
    assert o2.quantity == D("0.6")  # topped up
    ev = decision(h.events, h.last_signal.id)
    assert ev.requested_quantity == ev.approved_quantity == D("0.6")
    h.settle(o2, "100")
    assert "already holds" in decision(h.signal(BTC, "buy", "100"), h.last_signal.id).reason
    # a close is sized to the position; an explicit signal quantity is left as it is
    (c,) = of_type(h.signal(BTC, "sell", "100", reduce_only=True), Order)
    assert (c.quantity, c.reduce_only) == (D(1), True)
    (x,) = of_type(h.signal(BTC, "buy", "100", quantity="2"), Order)
    assert x.quantity == D(2)


@pytest.mark.parametrize("enabled", [True, False])
def test_close_with_no_position_but_a_working_entry_cancels_it(enabled: bool) -> None:
    h = RiskHarness(RiskConfig(enabled=enabled))
    h.bar(BTC, T0 + MIN, "100")
    (entry,) = of_type(h.signal(BTC, "buy", "100"), Order)
    out = h.signal(BTC, "sell", "100", reduce_only=True)
    ev = decision(out, h.last_signal.id)
    (c,) = of_type(out, Order)
    assert ev.passed and (c.side, c.quantity, c.reduce_only) == (Side.SELL, entry.quantity, True)
    # the wrong side still closes nothing; nothing working and no position: nothing to close
    out = h.signal(BTC, "buy", "100", reduce_only=True)
    assert decision(out, h.last_signal.id).reason.startswith("nothing to close")
    h.settle(entry)
    h.settle(c)
    out = h.signal(BTC, "sell", "100", reduce_only=True)
    assert decision(out, h.last_signal.id).reason.startswith("nothing to close") and of_type(out, Order) == []


def test_close_with_no_position_passes_the_halt_and_the_breaker() -> None:
    h = RiskHarness()
    h.bar(BTC, T0 + MIN, "100")
    (entry,) = of_type(h.signal(BTC, "buy", "100"), Order)
    h.rm.state = TradingState.CIRCUIT_BROKEN  # as after a trip
    out = h.signal(BTC, "sell", "100", reduce_only=True)
    (c,) = of_type(out, Order)
    assert c.quantity == entry.quantity and decision(out, h.last_signal.id).passed


def test_working_orders_survive_a_restart_and_old_checkpoints_have_none() -> None:
    h = RiskHarness()
    h.bar(BTC, T0 + MIN, "100")
    h.bar(ETH, T0 + MIN, "100")
    (o,) = of_type(h.signal(BTC, "buy", "100"), Order)
    h.settle(o, "100", qty="30")
    h.fill(ETH, "buy", 100, "100")
    (c,) = of_type(h.signal(ETH, "sell", "100", reduce_only=True), Order)
    state = msgspec.json.decode(msgspec.json.encode(h.rm.get_state()))
    rm2 = RiskManager(RiskConfig(), h.pf)
    rm2.set_state(state)
    assert {k: (w.symbol, w.side, w.leaves, w.ref, w.reduce_only) for k, w in rm2.working.items()} == {
        o.id: (BTC, Side.BUY, D(70), D(100), False), c.id: (ETH, Side.SELL, D(100), D(100), True)}
    assert rm2._open_leaves == {BTC: [D(70), D(0)]} and rm2._open_notional == D(7000)
    assert rm2._open_buy_notional == D(7000)
    del state["working"]
    rm3 = RiskManager(RiskConfig(), h.pf)
    rm3.set_state(state)
    assert rm3.working == {} and rm3._open_notional == 0


def test_results_of_unknown_orders_are_ignored() -> None:
    h = RiskHarness()
    h.bar(BTC, T0 + MIN, "100")
    (o,) = of_type(h.signal(BTC, "buy", "100"), Order)
    h.fill(BTC, "buy", 5, "100")  # a result of an order the manager never approved
    assert h.rm.working[o.id].leaves == o.quantity


# --- the demo's bar (issue 9 b) --------------------------------------------------------------


def test_demo_bar_2026_03_25_15_23_approves_at_most_the_cap(data_dir: Path) -> None:
    """`make demo` (five symbols, momentum, the seeds' limits): all five signal a buy on the
    2026-03-25 15:23 bar. Before, each passed R4 on its own (exposure 0.10 -> 0.50); now the
    approvals of that bar add up to at most the 30% cap."""
    from claire.marketdata import open_market_data

    files = [data_dir / f"{s}_USDT-1m.feather" for s in ("BTC", "ETH", "BNB", "SOL", "XRP")]
    t_bar = int(dt.datetime(2026, 3, 25, 15, 23, tzinfo=dt.UTC).timestamp()) * 10**9
    events: list[Event] = []
    core = build_core(RunConfig(data=DataSettings(paths=[str(f) for f in files]), strategy=StrategySettings(name="momentum"),
                                runtime=RuntimeSettings(run_id="demo-bar")), events.append)
    for ev in open_market_data(files, None):
        if ev.ts_event > t_bar:
            break
        core.on_market(ev)
    decisions = [e for e in events if type(e) is RiskEvent and e.ts_event == t_bar and e.signal_id]
    orders = [e for e in events if type(e) is Order and e.ts_event == t_bar and not e.reduce_only]
    assert len({d.symbol for d in decisions}) == 5, "the five symbols signal on this bar"
    assert 1 <= len(orders) < 5
    assert all(d.check is RiskCheck.TOTAL_EXPOSURE for d in decisions if not d.passed)
    equity, exposure = core.portfolio.equity_and_exposure()
    working = sum((w.leaves * w.ref for w in core.risk.working.values() if not w.reduce_only), D(0))
    assert working == sum((o.quantity * o.reference_price for o in orders), D(0))
    assert (exposure + working) / equity <= D("0.30")
