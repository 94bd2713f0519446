"""Property: whatever the prices and signals, a fill never takes one symbol's position above
``max_position_pct`` of equity, nor the total exposure above ``max_total_exposure_pct``.

Random price paths for 1-3 symbols and random buy / sell / close signals (with and without a
fixed quantity, long-only and with shorts allowed) run through a full TradingCore with fill mode
``close`` (orders fill at once at the close of the signal's bar, which is also the signal's
price and the portfolio's mark) and no volume limit (no partial fills).

What is measured, right after each fill (at the fill's snapshot): the filled symbol's position
value ``|qty| * fill price`` and the total exposure ``sum |qty| * mark``, against the snapshot's
equity. Only fills that *increase* a position must respect the limits: a position can outgrow
a limit through price moves alone, and the risk manager lets orders that reduce it pass; for
those the test asserts they really reduce (never grow, never flip).

Why no tolerance is needed with fee 0: the decision and the fill happen on the same event, at
the same price (signal price = bar close = fill price = mark), so the equity and exposure the
risk manager checked against are exactly those of the snapshot after the fill. With a taker fee
the fill lowers equity by the fee, which the risk manager does not anticipate: the bound then
holds against ``equity + fee`` (the equity the decision saw), and exceeds it against the equity
after the fill - see ``test_position_limit_holds_after_the_fee_is_paid`` (a bug).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from claire.config import RunConfig, RuntimeSettings, StrategySettings
from claire.engine.kernel import build_core
from claire.events import (
    Event,
    Order,
    OrderResult,
    OrderStatus,
    PortfolioSnapshot,
    RiskEvent,
    Side,
)
from claire.execution import ExecutionConfig
from claire.portfolio import Portfolio
from claire.risk import RiskConfig

from ._util import MIN, SCRIPTED, T0, D, bar

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
POS = D("0.10")
TOTAL = D("0.30")


class Checker:
    """The core's ``emit``: checks the limits at each fill's snapshot."""

    def __init__(self, fee_tolerant: bool) -> None:
        self.pf: Portfolio = None  # type: ignore[assignment]  # set once the core is built
        self.fee_tolerant = fee_tolerant
        self.pending: tuple[OrderResult, Decimal] | None = None
        self.fills = 0
        self.increasing = 0
        self.orders: list[Order] = []
        self.results: list[OrderResult] = []

    def __call__(self, ev: Event) -> None:
        t = type(ev)
        if t is Order:
            self.orders.append(ev)
        elif t is OrderResult:
            self.results.append(ev)
            if ev.is_fill:
                # emitted before the portfolio applies it: remember the position before
                self.pending = (ev, self.pf.position_qty(ev.symbol))
        elif t is PortfolioSnapshot and ev.reason == "fill":
            f, before = self.pending
            assert ev.causation_id == f.id
            self.pending = None
            self.fills += 1
            self._check(ev, f, before)

    def _check(self, snap: PortfolioSnapshot, f: OrderResult, before: Decimal) -> None:
        after = self.pf.position_qty(f.symbol)
        assert after == before + (f.quantity if f.side is Side.BUY else -f.quantity)
        if abs(after) <= abs(before):  # a reducing fill: reduces, never flips
            assert before != 0 and (after == 0 or (after > 0) == (before > 0)), (before, after)
            return
        self.increasing += 1
        equity = snap.equity + (f.fee if self.fee_tolerant else 0)  # the equity the decision saw
        value = abs(after) * f.price
        assert value <= POS * equity, (f.symbol, value, snap.equity, value / snap.equity)
        assert snap.total_exposure == sum((abs(p.quantity) * p.mark_price for p in snap.positions), D(0))
        assert snap.total_exposure <= TOTAL * equity, (snap.total_exposure, snap.equity)


prices = st.decimals(min_value=D("0.5"), max_value=D(100_000), places=2, allow_nan=False, allow_infinity=False)
quantities = st.none() | st.decimals(min_value=D("0.001"), max_value=D(2000), places=3)
actions = st.tuples(st.sampled_from(["none", "buy", "buy", "sell", "close_long", "close_short"]), quantities)


@st.composite
def scenarios(draw: Any) -> tuple[list[str], int, dict, dict, bool]:
    n_sym = draw(st.integers(1, 3))
    syms = list(SYMBOLS[:n_sym])
    n_bars = draw(st.integers(2, 25))
    paths = {s: draw(st.lists(prices, min_size=n_bars, max_size=n_bars)) for s in syms}
    script = {s: draw(st.lists(actions, min_size=n_bars, max_size=n_bars)) for s in syms}
    allow_short = draw(st.booleans())
    return syms, n_bars, paths, script, allow_short


def run(syms: list[str], n_bars: int, paths: dict, script: dict, allow_short: bool,
        fee_bps: Decimal, fee_tolerant: bool) -> Checker:
    """The production wiring (``build_core``), fill at the close, no volume limit."""
    checker = Checker(fee_tolerant)
    cfg = RunConfig(strategy=StrategySettings(name=SCRIPTED, params={"script": script}),
                    execution=ExecutionConfig(fill="close", taker_fee_bps=fee_bps, maker_fee_bps=fee_bps,
                                              max_volume_share=None),
                    risk=RiskConfig(allow_short=allow_short), runtime=RuntimeSettings(run_id="risk-properties"))
    core = build_core(cfg, checker)
    checker.pf = core.portfolio
    for i in range(n_bars):
        for s in syms:
            core.on_bar(bar(s, T0 + (i + 1) * MIN, paths[s][i], volume="1e12"))
    # every approved order filled completely, at once, at the bar's close
    assert len(checker.results) == len(checker.orders)
    assert all(r.status is OrderStatus.FILLED for r in checker.results)
    assert all(r.quantity == o.quantity and r.ts_event == o.ts_event and r.price == o.reference_price
               for r, o in zip(checker.results, checker.orders, strict=True))
    return checker


SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


#: found by this property (shrunk): a reduce-only BUY (close of a short) while *long* doubles the
#: long past both limits (see test_risk_matrix.py::test_reduce_only_signal_on_the_wrong_side_...).
#: Kept as an explicit example so that it fails fast, without a long shrink, while the bug is there.
WRONG_SIDE_CLOSE = (["BTCUSDT"], 2, {"BTCUSDT": [D("0.50"), D("0.50")]},
                    {"BTCUSDT": [("buy", None), ("close_short", None)]}, False)


@SETTINGS
@example(WRONG_SIDE_CLOSE)
@given(scenarios())
def test_limits_hold_after_every_fill_without_fees(sc: tuple) -> None:
    run(*sc, fee_bps=D(0), fee_tolerant=False)


@SETTINGS
@example(WRONG_SIDE_CLOSE)
@given(scenarios())
def test_limits_hold_after_every_fill_with_fees_against_the_decision_equity(sc: tuple) -> None:
    run(*sc, fee_bps=D(10), fee_tolerant=True)


def test_the_limits_are_reached_not_just_respected() -> None:
    """A sanity check of the property's setup: fills do happen, and sized orders fill to the limits."""
    syms = list(SYMBOLS)
    script = {s: [("buy", None)] * 3 for s in syms}
    paths = {s: [D(100), D(100), D(100)] for s in syms}
    checker = run(syms, 3, paths, script, False, D(0), False)
    assert checker.fills == 3 and checker.increasing == 3  # 10% each, then nothing is left under 30%


def test_position_limit_holds_after_the_fee_is_paid() -> None:
    """BUG (see report): R2/R4 compare against the equity before the order, but the fill's fee
    lowers equity, so right after a maximal fill the position is 10.001% of equity (fee 10 bps)."""
    checker = run(["BTCUSDT"], 1, {"BTCUSDT": [D(100)]}, {"BTCUSDT": [("buy", None)]}, False, D(10), False)
    assert checker.fills == 1


def test_fee_tolerance_is_exactly_the_fee() -> None:
    """The excess above is the fee and nothing else: position / (equity after + fee) == 10%."""
    seen: list[Event] = []
    cfg = RunConfig(strategy=StrategySettings(name=SCRIPTED, params={"script": {"BTCUSDT": [("buy", None)]}}),
                    execution=ExecutionConfig(fill="close", taker_fee_bps=D(10), maker_fee_bps=D(10),
                                              max_volume_share=None))
    core = build_core(cfg, seen.append)
    core.on_bar(bar("BTCUSDT", T0 + MIN, "100", volume="1e12"))
    (f,) = [e for e in seen if type(e) is OrderResult]
    snap = [e for e in seen if type(e) is PortfolioSnapshot][-1]
    assert (f.price, f.fee) == (D(100), f.quantity * D(100) * D("0.001"))
    assert snap.equity == D(100_000) - f.fee
    assert f.quantity * f.price / (snap.equity + f.fee) <= POS
    assert [e.passed for e in seen if type(e) is RiskEvent] == [True]
