"""The risk manager's own orders (flatten at a circuit-breaker trip) in the distributed
runtimes: the orders go to execution like signal-decided ones, the signals to the signals
topic, and the account topology gives exactly the one-process core's fills and decisions."""

from __future__ import annotations

from decimal import Decimal as D

import msgspec
import pytest

from claire.config import RunConfig, RuntimeSettings, StrategySettings
from claire.execution import ExecutionConfig
from claire.risk import RiskConfig
from claire.risk.manager import FLATTEN_STRATEGY
from claire.runtime.backtest import run_backtest
from tests.core._util import MIN, SCRIPTED, T0, bar

from .test_stage_parity import _key, run_account, run_stages

SYMS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


def _scenario(action: str = "flatten", fill: str = "next_open"):
    """Three symbols bought (30% each), then falling 5% a bar: the breaker trips at 10%."""
    rc = RiskConfig(max_position_pct=D("0.3"), max_total_exposure_pct=D(1), max_daily_drawdown_pct=D("0.9"),
                    circuit_breaker_action=action)
    prices = ["100", "100", "95", "90", "85", "80", "75", "70", "65", "60", "55", "50"]
    script = {s: [("buy", None)] for s in SYMS}
    cfg = RunConfig(strategy=StrategySettings(name=SCRIPTED, params={"script": script}),
                    execution=ExecutionConfig(fill=fill, taker_fee_bps=D(10), maker_fee_bps=D(10), max_volume_share=None),
                    risk=rc, runtime=RuntimeSettings(run_id=f"stage-flatten-{action}-{fill}"))
    bars = [bar(s, T0 + (i + 1) * MIN, p, volume="1e12") for i, p in enumerate(prices) for s in SYMS]
    return cfg, [msgspec.structs.replace(b, seq=i + 1) for i, b in enumerate(bars)]


@pytest.mark.parametrize(("fill", "partitions", "checkpoint_every"), [("next_open", 1, 0), ("close", 2, 7)])
def test_account_stage_flattens_like_the_core(fill, partitions, checkpoint_every):
    cfg, bars = _scenario(fill=fill)
    ref = run_backtest(cfg, events=bars)
    flat = [s for s in ref.recorder.signals if s.strategy == FLATTEN_STRATEGY]
    assert len(flat) == 3 and ref.portfolio.open == {}
    fills, snaps, risk_events, _, acc = run_account(cfg, bars, seed=5, partitions=partitions,
                                                    checkpoint_every=checkpoint_every)
    assert [f.id for f in fills] == [f.id for f in ref.fills]
    assert [_key(f) for f in fills] == [_key(f) for f in ref.fills]
    assert [(r.id, r.action, r.check) for r in risk_events] == [(r.id, r.action, r.check) for r in ref.recorder.risk_events]
    assert [(s.ts_event, s.equity, s.reason) for s in snaps] == [
        (s.ts_event, s.equity, s.reason) for s in ref.recorder.snapshots]
    assert acc.core.portfolio.equity() == ref.portfolio.equity() and acc.core.portfolio.open == {}


@pytest.mark.parametrize(("fill", "seed"), [("next_open", 1), ("next_open", 2), ("close", 3)])
def test_risk_stage_sends_the_flatten_orders_to_execution(fill, seed):
    """Split topology (risk -> execution -> portfolio): the flatten orders leave with the
    trip's snapshot, where the core sends them, so the fills are the core's."""
    cfg, bars = _scenario(fill=fill)
    ref = run_backtest(cfg, events=bars)
    fills, _, risk_events, pf = run_stages(cfg, bars, seed)
    flat_ids = {s.id for s in ref.recorder.signals if s.strategy == FLATTEN_STRATEGY}
    decided = [r for r in risk_events if r.signal_id in flat_ids]
    assert len(decided) == 3 and all(r.passed for r in decided)
    assert pf.open == {}  # every position closed by the flatten orders' fills
    assert [f.id for f in fills] == [f.id for f in ref.fills]
    assert [_key(f) for f in fills] == [_key(f) for f in ref.fills]
    assert [(r.id, r.action, r.check) for r in risk_events] == [(r.id, r.action, r.check) for r in ref.recorder.risk_events]
    assert pf.equity() == ref.portfolio.equity()


def test_account_stage_puts_the_risk_managers_signals_on_the_signals_topic():
    """The stream's signals are on the topic already (the signal service); the flatten signals
    come from the account itself and go there too, with the sequence of their market event."""
    from claire.engine.kernel import build_core
    from claire.events import IdFactory, Signal, decode, encode
    from claire.events.topics import PIPE_SIGNALS, SIGNALS
    from claire.runtime.distributed.stages import AccountStage, SignalStage

    from .test_stage_parity import _market_queues

    cfg, bars = _scenario()
    ids = IdFactory(cfg.run_key())
    sig_stage = SignalStage(build_core(cfg, lambda e: None, ids).signals)
    acc = AccountStage(build_core(cfg, lambda e: None, ids))
    on_topic = []
    for raw in _market_queues(bars, 1)[0]:
        for stream, item in sig_stage.handle(decode(raw), raw):
            if stream != PIPE_SIGNALS:
                continue
            raw2 = item if isinstance(item, bytes) else encode(item)
            on_topic += [e for s, e in acc.handle_signal_stream(decode(raw2), raw2) if s == SIGNALS]
    assert [type(e) for e in on_topic] == [Signal] * 3
    assert {(e.symbol, e.strategy, e.reduce_only) for e in on_topic} == {(s, FLATTEN_STRATEGY, True) for s in SYMS}
    assert all(e.seq > 0 for e in on_topic) and acc.core.portfolio.open == {}
