"""Checkpoints (issue 10): a replay of the bundled files checkpointed through msgspec JSON at several
points, each time into a freshly built core, emits exactly the pinned events; checkpoints carry a
version and another version is refused."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import Any

import msgspec
import pytest

from claire.engine.core import EventClock, TradingCore
from claire.events import CHECKPOINT_VERSION, Event, IdFactory, StateError, encode
from claire.execution import ExchangeSimulator, ExecutionConfig, FillMode
from claire.marketdata import open_market_data
from claire.portfolio import Portfolio
from claire.risk import RiskConfig, RiskManager
from claire.runtime.distributed.stages import SignalStage
from claire.strategy.registry import load_strategy
from claire.strategy.signal_engine import SignalEngine
from tests.engine.test_event_hashes import FILES, PINNED


def _core(strategy: str, emit: Any) -> TradingCore:
    """The core of ``claire backtest`` with its defaults, built from the components themselves."""
    names = ",".join(Path(p).name for p in FILES)
    key = f"{strategy}:{sorted({}.items())}:{names}:None:next_open:default"
    ids = IdFactory(f"run-{hashlib.sha1(key.encode()).hexdigest()[:12]}")
    clock = EventClock()
    pf = Portfolio(Decimal(100_000), ids)
    ex = ExchangeSimulator(ExecutionConfig(fill=FillMode.NEXT_OPEN, slippage_bps=Decimal(0),
                                           taker_fee_bps=Decimal(10), maker_fee_bps=Decimal(10),
                                           max_volume_share=Decimal("0.25"), max_quote_share=Decimal(1)), ids, clock)
    rc = msgspec.structs.replace(RiskConfig(), enabled=True, expected_slippage_bps=Decimal(0), fee_bps=Decimal(10))
    return TradingCore(SignalEngine(load_strategy(strategy), {}, ids), RiskManager(rc, pf, ids, clock), ex, pf,
                       clock, emit)


@pytest.mark.slow
@pytest.mark.parametrize(("strategy", "cuts"), [("sma_cross", [1, 37, 23_456, 50_001]),
                                                ("momentum", [35, 999, 33_333, 71_999])])
def test_replay_with_checkpoints_emits_the_pinned_events(strategy: str, cuts: list[int]) -> None:
    digest = hashlib.sha256()
    count = 0

    def take(ev: Event) -> None:
        nonlocal count
        count += 1
        digest.update(encode(ev))
        digest.update(b"\n")

    events = iter(open_market_data([str(p) for p in FILES], None))
    core = _core(strategy, take)
    done = 0
    for k in cuts:
        core.run(islice(events, k - done))
        done = k
        raw = msgspec.json.encode(core.get_state())
        assert b"pickle" not in raw
        core = _core(strategy, take)
        core.set_state(msgspec.json.decode(raw))
    core.run(events)
    core.finish()
    assert (count, digest.hexdigest()) == PINNED[strategy]


def test_the_core_checkpoint_is_versioned() -> None:
    core = _core("sma_cross", lambda ev: None)
    st = msgspec.json.decode(msgspec.json.encode(core.get_state()))
    assert st["version"] == CHECKPOINT_VERSION
    core.set_state(st)
    with pytest.raises(StateError, match="trading core has version 2"):
        core.set_state({**st, "version": 2})
    del st["version"]
    with pytest.raises(StateError, match="trading core has no version"):
        core.set_state(st)


def test_signal_stage_checkpoint_is_plain_and_versioned() -> None:
    events = list(islice(open_market_data([str(FILES[0])], None), 300))
    stage = SignalStage(SignalEngine(load_strategy("sma_cross"), {"fast": 3, "slow": 7}, IdFactory("s")))
    for i, ev in enumerate(events[:150], 1):
        stage.handle(msgspec.structs.replace(ev, seq=i), b"")
    st = stage.get_state()
    raw = msgspec.json.encode(st)
    fresh = SignalStage(SignalEngine(load_strategy("sma_cross"), {"fast": 3, "slow": 7}, IdFactory("s")))
    fresh.set_state(msgspec.json.decode(raw))  # from Redis
    direct = SignalStage(SignalEngine(load_strategy("sma_cross"), {"fast": 3, "slow": 7}, IdFactory("s")))
    direct.set_state(st)  # as it is (msgspec.Raw values)
    rest = [msgspec.structs.replace(ev, seq=i) for i, ev in enumerate(events[150:], 151)]
    want = [o for ev in rest for o in stage.handle(ev, b"") if o[0] == "signals"]
    assert len(want) > 3
    for other in (fresh, direct):
        assert [o for ev in rest for o in other.handle(ev, b"") if o[0] == "signals"] == want
    assert msgspec.json.encode(fresh.get_state()) == msgspec.json.encode(stage.get_state())
    with pytest.raises(StateError, match="signal stage has version 0"):
        fresh.set_state({**msgspec.json.decode(raw), "version": 0})
