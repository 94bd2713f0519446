"""Behaviour pinned: the SHA-256 over the wire encoding of every event a replay of the five bundled
files emits, for sma_cross and for momentum (default risk limits, default fills). A refactoring
must leave both unchanged; a deliberate change of behaviour updates them and says why."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from claire.config import DataSettings, RunConfig, StrategySettings
from claire.events import encode
from claire.runtime.backtest import run_backtest

DATA = Path(__file__).resolve().parents[2] / "data"
FILES = [DATA / f"{s}_USDT-1m.feather" for s in ("BTC", "ETH", "BNB", "SOL", "XRP")]

#: (events, sha256) of a replay with the default configuration of `claire backtest`. Changed by
#: issue 12: every signal carries the market context in ``metadata["market"]`` (without that key
#: the events hash to the earlier pins exactly: nothing else changed)
PINNED = {
    "sma_cross": (64000, "16e62fc38f18a5045d05a8a0d79637a7f21bc0455a98a80180223f0042fb80c6"),
    "momentum": (77116, "fbc9f32aa6f50f74f9f25274d24b18ee2178bfda4e92fde90c58f4cafd60bec8"),
}


def replay_hash(strategy: str) -> tuple[int, str]:
    digest = hashlib.sha256()
    count = 0

    def take(ev: object) -> None:
        nonlocal count
        count += 1
        digest.update(encode(ev))
        digest.update(b"\n")

    run_backtest(RunConfig(data=DataSettings(paths=[str(f) for f in FILES]), strategy=StrategySettings(name=strategy)),
                 forward=take)
    return count, digest.hexdigest()


@pytest.mark.slow
@pytest.mark.parametrize("strategy", sorted(PINNED))
def test_replay_of_the_bundled_files_emits_the_pinned_events(strategy: str) -> None:
    assert replay_hash(strategy) == PINNED[strategy]
