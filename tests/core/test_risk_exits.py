"""Exits are never blocked (issue 9 a): orders that reduce a position pass R2-R5 (they still go
through R1, R6 and R7), and with the action ``flatten`` the circuit breaker (R5) and the daily
drawdown halt (R3) close every position at the trip.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from claire.config import (
    ConfigError,
    DataSettings,
    RunConfig,
    RuntimeSettings,
    StrategySettings,
    risk_config_from_env,
)
from claire.engine.kernel import build_core
from claire.events import (
    Alert,
    Event,
    Order,
    OrderResult,
    PortfolioSnapshot,
    RiskAction,
    RiskCheck,
    RiskEvent,
    Side,
    Signal,
    TradingState,
)
from claire.execution import ExecutionConfig
from claire.risk import RiskConfig
from claire.risk.manager import FLATTEN_STRATEGY
from claire.runtime.backtest import run_backtest

from ._util import (
    DAY,
    MIN,
    SCRIPTED,
    SEC,
    T0,
    D,
    RiskHarness,
    assert_well_formed,
    bar,
    decision,
    of_type,
)

BTC, ETH = "BTCUSDT", "ETHUSDT"


# --- settings -------------------------------------------------------------------------------------


def test_trip_actions_from_the_environment() -> None:
    cfg = risk_config_from_env({})
    assert (cfg.circuit_breaker_action, cfg.daily_drawdown_action) == ("reduce_only", "reduce_only")
    cfg = risk_config_from_env({"CIRCUIT_BREAKER_ACTION": "flatten", "DAILY_DRAWDOWN_ACTION": " Reduce_Only "})
    assert (cfg.circuit_breaker_action, cfg.daily_drawdown_action) == ("flatten", "reduce_only")
    with pytest.raises(ConfigError) as exc:
        risk_config_from_env({"CIRCUIT_BREAKER_ACTION": "sell_all", "DAILY_DRAWDOWN_ACTION": "stop",
                              "MAX_POSITION_PCT": "ten"})
    msg = str(exc.value)
    assert "CIRCUIT_BREAKER_ACTION='sell_all': expected reduce_only or flatten" in msg
    assert "DAILY_DRAWDOWN_ACTION='stop': expected reduce_only or flatten" in msg
    assert "MAX_POSITION_PCT" in msg
    with pytest.raises(ValueError, match="CIRCUIT_BREAKER_ACTION"):
        RiskConfig(circuit_breaker_action="panic")  # type: ignore[arg-type]


# --- reduce_only (the default): exits pass every gate of new exposure --------------------------


def _halted(config: RiskConfig | None = None) -> tuple[RiskHarness, list[Event]]:
    """30% in BTC at 100, BTC falls to 80: daily loss 6% -> HALTED (as TC-002)."""
    h = RiskHarness(config)
    t = T0 + MIN
    h.bar(BTC, t, "100")
    h.bar(ETH, t, "100")
    h.fill(BTC, "buy", 300, "100")
    h.bar(BTC, t + MIN, "80")
    out = h.bar(BTC, t + 2 * MIN, "80")
    assert h.rm.state is TradingState.HALTED
    return h, out


def _broken(config: RiskConfig | None = None) -> tuple[RiskHarness, list[Event]]:
    """30% in BTC at 100, falling over three days to 60: 12% below the top -> CIRCUIT_BROKEN (as TC-004)."""
    h = RiskHarness(config)
    t = T0 + MIN
    h.bar(BTC, t, "100")
    h.bar(ETH, t, "100")
    h.fill(BTC, "buy", 300, "100")
    out: list[Event] = []
    for day, price in ((0, "85"), (1, "70"), (2, "60")):
        base = T0 + day * DAY + (2 if day == 0 else 1) * MIN
        h.bar(BTC, base, price)
        out = h.bar(BTC, base + MIN, price)
        h.bar(ETH, base + MIN, "100")
    assert h.rm.state is TradingState.CIRCUIT_BROKEN
    return h, out


@pytest.mark.parametrize("tripped", [_halted, _broken])
def test_close_after_the_trip_is_approved_and_new_exposure_is_not(tripped: Any) -> None:
    h, _ = tripped()
    state = h.rm.state
    out = h.signal(ETH, "buy", "100")
    assert decision(out, h.last_signal.id).check in (RiskCheck.DAILY_DRAWDOWN, RiskCheck.CIRCUIT_BREAKER)
    price = h.pf.marks[BTC]
    out = h.signal(BTC, "sell", price, reduce_only=True)
    ev = decision(out, h.last_signal.id)
    assert (ev.action, ev.passed, ev.trading_state) == (RiskAction.APPROVED, True, state)
    assert_well_formed(ev, h.rm)
    (o,) = of_type(out, Order)
    assert (o.side, o.quantity, o.reduce_only) == (Side.SELL, D(300), True)
    h.settle(o, price)
    assert h.pf.position_qty(BTC) == 0 and h.rm.state is state


def test_exits_still_go_through_data_quality_slippage_and_spread() -> None:
    h, _ = _broken()
    # R1: stale data
    h.clock.now += 2 * MIN
    out = h.signal(BTC, "sell", "60", reduce_only=True, market_ts=h.clock.now - 2 * MIN)
    assert decision(out, h.last_signal.id).check is RiskCheck.DATA_QUALITY
    # R6: the price moved 5% away from the signal's
    h.bar(BTC, h.clock.now, "57")
    out = h.signal(BTC, "sell", "60", reduce_only=True)
    assert decision(out, h.last_signal.id).check is RiskCheck.SLIPPAGE
    # R7: a wide spread delays it
    h.quote(BTC, h.clock.now + SEC, "56", "58")
    out = h.signal(BTC, "sell", "57", reduce_only=True)
    ev = decision(out, h.last_signal.id)
    assert (ev.check, ev.action) == (RiskCheck.SPREAD, RiskAction.DELAYED)
    checks = {c.check: c for c in ev.checks}
    assert checks[RiskCheck.CIRCUIT_BREAKER].passed and "reduces" in checks[RiskCheck.CIRCUIT_BREAKER].note


def test_momentum_on_eth_exits_after_the_breaker(data_dir: Path) -> None:
    """Issue 9 a: momentum with the default limits on ETHUSDT trips the breaker; before, every
    later signal was rejected, the closes of the open long included, and the drawdown grew to
    12.28%. Now no close is rejected by a limit of new exposure."""
    cfg = RunConfig(data=DataSettings(paths=[str(data_dir / "ETH_USDT-1m.feather")]),
                    strategy=StrategySettings(name="momentum"), runtime=RuntimeSettings(run_id="eth-exits"))
    r = run_backtest(cfg)
    evs = r.recorder.risk_events
    trips = [e for e in evs if e.action is RiskAction.CIRCUIT_BROKEN]
    assert trips, "the breaker trips in this month"
    after = [e for e in evs if e.signal_id and e.ts_event >= trips[0].ts_event]
    signals = {s.id: s for s in r.recorder.signals}
    gates = (RiskCheck.POSITION_LIMIT, RiskCheck.DAILY_DRAWDOWN, RiskCheck.TOTAL_EXPOSURE, RiskCheck.CIRCUIT_BREAKER)
    blocked = [e for e in after if e.check in gates and not e.passed]
    assert blocked and all(not signals[e.signal_id].reduce_only for e in blocked)
    assert all(e.portfolio["positions"].get("ETHUSDT") in (None, "0") for e in blocked)  # only entries
    threshold = RiskConfig().circuit_breaker_threshold_pct
    assert Decimal(str(r.summary["max_drawdown"])) < threshold + D("0.01")


# --- flatten ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("tripped", "field", "check"), [
    (_halted, "daily_drawdown_action", RiskCheck.DAILY_DRAWDOWN),
    (_broken, "circuit_breaker_action", RiskCheck.CIRCUIT_BREAKER),
])
def test_flatten_at_the_trip_closes_every_position(tripped: Any, field: str, check: RiskCheck) -> None:
    h, out = tripped(RiskConfig(**{field: "flatten"}))
    (trip,) = [e for e in of_type(out, RiskEvent) if e.check is RiskCheck.STATE]
    assert trip.checks[0].check is check
    assert [type(e) for e in out] == [RiskEvent, Alert, Signal, RiskEvent, Order]
    sig, ev, o = out[2], out[3], out[4]
    price = h.pf.marks[BTC]
    assert (sig.symbol, sig.side, sig.reduce_only, sig.strategy, sig.price, sig.causation_id) == (
        BTC, Side.SELL, True, FLATTEN_STRATEGY, price, trip.id)
    # the last BTC data the manager had at the trip (the bar of the snapshot's minute)
    assert sig.market_ts == trip.ts_event == sig.ts_event
    assert (ev.signal_id, ev.action, ev.passed, ev.order_id) == (sig.id, RiskAction.APPROVED, True, o.id)
    assert_well_formed(ev, h.rm)
    assert (o.symbol, o.side, o.quantity, o.reduce_only, o.signal_id) == (BTC, Side.SELL, D(300), True, sig.id)
    assert h.rm.on_signal(sig) == []  # handed back (as TradingCore.route does): already decided
    # the other setting's trip does not flatten
    other = "circuit_breaker_action" if field == "daily_drawdown_action" else "daily_drawdown_action"
    _, out = tripped(RiskConfig(**{other: "flatten"}))
    assert [type(e) for e in out] == [RiskEvent, Alert]


def test_flatten_at_a_trip_during_a_decision_and_of_working_entries() -> None:
    """The loss is first seen by a decision: the trip, then the flatten (the position and an entry
    of another symbol still working), then the decision itself."""
    h = RiskHarness(RiskConfig(daily_drawdown_action="flatten"))
    t = T0 + MIN
    for s in (BTC, ETH, "SOLUSDT"):
        h.bar(s, t, "100")
    h.fill(BTC, "buy", 250, "100")
    (entry,) = of_type(h.signal(ETH, "buy", "100"), Order)
    h.bar(BTC, t + MIN, "80")  # no snapshot with the loss yet: -5%
    h.bar("SOLUSDT", t + MIN, "100")
    out = h.signal("SOLUSDT", "buy", "100")
    flatten = of_type(out, Signal)
    assert [(s.symbol, s.side) for s in flatten] == [(BTC, Side.SELL), (ETH, Side.SELL)]
    orders = of_type(out, Order)
    assert [(o.symbol, o.quantity, o.reduce_only) for o in orders] == [(BTC, D(250), True), (ETH, entry.quantity, True)]
    assert decision(out, h.last_signal.id).check is RiskCheck.DAILY_DRAWDOWN
    assert out.index(decision(out, h.last_signal.id)) == len(out) - 1


def _flatten_run(action: str) -> tuple[list[Event], Any]:
    """TradingCore: BTC and ETH bought (40% each), then both fall 5% per bar; the breaker trips
    at 10% drawdown. Fills at the next open, no fees."""
    rc = RiskConfig(max_position_pct=D("0.4"), max_total_exposure_pct=D(1), max_daily_drawdown_pct=D("0.9"),
                    circuit_breaker_action=action)
    script = {s: [("buy", None)] for s in (BTC, ETH)}
    cfg = RunConfig(strategy=StrategySettings(name=SCRIPTED, params={"script": script}),
                    execution=ExecutionConfig(fill="next_open", taker_fee_bps=D(0), maker_fee_bps=D(0),
                                              max_volume_share=None),
                    risk=rc, runtime=RuntimeSettings(run_id=f"flatten-{action}"))
    events: list[Event] = []
    core = build_core(cfg, events.append)
    prices = ["100", "100", "95", "90", "85", "80", "75", "70", "65", "60"]
    for i, p in enumerate(prices):
        for s in (BTC, ETH):
            core.on_bar(bar(s, T0 + (i + 1) * MIN, p, volume="1e12"))
    core.finish()
    return events, core


def test_flatten_stops_the_drawdown_at_the_trip_in_the_core() -> None:
    events, core = _flatten_run("flatten")
    (trip,) = [e for e in of_type(events, RiskEvent) if e.action is RiskAction.CIRCUIT_BROKEN]
    flat = [s for s in of_type(events, Signal) if s.strategy == FLATTEN_STRATEGY]
    assert [(s.symbol, s.causation_id) for s in flat] == [(BTC, trip.id), (ETH, trip.id)]
    # each flatten signal is decided once (TradingCore routes it back to on_signal: a no-op)
    assert [len([e for e in of_type(events, RiskEvent) if e.signal_id == s.id]) for s in flat] == [1, 1]
    orders = [o for o in of_type(events, Order) if o.signal_id in {s.id for s in flat}]
    fills = [r for r in of_type(events, OrderResult) if r.is_fill and r.order_id in {o.id for o in orders}]
    assert len(orders) == 2 and sum(f.quantity for f in fills) == sum(o.quantity for o in orders)
    assert core.portfolio.open == {}
    # the closes fill at each symbol's next open after the trip (the periodic snapshot that
    # trips is taken at the first bar of the next minute, after that bar's fills) ...
    assert all(f.ts_event <= trip.ts_event + MIN for f in fills)
    # ... and from then on the equity no longer moves
    last_fill = max(f.ts_event for f in fills)
    after = {s.equity for s in of_type(events, PortfolioSnapshot) if s.ts_event >= last_fill}
    assert len(after) == 1
    dd = max(s.drawdown_pct for s in of_type(events, PortfolioSnapshot))
    assert dd == D("0.18")
    # reduce_only: no new entries, but the positions ride the fall
    events2, core2 = _flatten_run("reduce_only")
    assert core2.portfolio.open and not [s for s in of_type(events2, Signal) if s.strategy == FLATTEN_STRATEGY]
    dd2 = max(s.drawdown_pct for s in of_type(events2, PortfolioSnapshot))
    assert dd2 > D("0.3") > dd
