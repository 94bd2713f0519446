"""Checkpoints without pickle (issue 10): strategies and their indicators as plain, versioned data.

A checkpoint goes through msgspec JSON (as in Redis and the database); the restored strategy must
emit exactly what the uninterrupted one emits.
"""

from __future__ import annotations

import math
from collections import deque
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import pytest

from claire.events import (
    CHECKPOINT_VERSION,
    Bar,
    IdFactory,
    Side,
    StateError,
    check_version,
    from_plain,
    to_plain,
)
from claire.strategy import SignalEngine, Strategy
from claire.strategy.indicators import EMA, MACD, RSI, SMA, BollingerBands
from tests.strategy.user_strategy import Breakout

SRC = Path(__file__).resolve().parents[2] / "src"


def _json(x: Any) -> Any:
    return msgspec.json.decode(msgspec.json.encode(x))


def _bars(n: int, symbol: str = "BTCUSDT") -> list[Bar]:
    out = []
    for i in range(n):
        c = Decimal(100) + Decimal(int(20 * math.sin(i / 7) + 7 * math.sin(i / 3))) + Decimal(i % 5) / 10
        out.append(Bar(id=f"b{i}", ts_event=(i + 1) * 60_000_000_000, ts_recv=(i + 1) * 60_000_000_000,
                       symbol=symbol, interval_s=60, open=c, high=c + 1, low=c - 1, close=c, volume=Decimal(10)))
    return out


def _restart_matches(cls: type[Strategy], params: dict[str, Any], bars: list[Bar], cut: int) -> list[Any]:
    whole = SignalEngine(cls, params, IdFactory("cp"))
    expected = [s for b in bars for s in whole.on_bar(b)]
    first = SignalEngine(cls, params, IdFactory("cp"))
    got = [s for b in bars[:cut] for s in first.on_bar(b)]
    second = SignalEngine(cls, params, IdFactory("cp"))
    second.set_state(_json(first.get_state()))
    got += [s for b in bars[cut:] for s in second.on_bar(b)]
    assert got == expected
    return expected


def test_no_pickle_anywhere_in_the_package() -> None:
    hits = [str(p) for p in SRC.rglob("*.py") if "pickle" in p.read_text()]
    assert hits == []


@pytest.mark.parametrize("cut", [1, 3, 4, 57, 150])
def test_a_user_strategy_restores_with_the_default_state(cut: int) -> None:
    expected = _restart_matches(Breakout, {"lookback": 4, "size": Decimal("0.25")}, _bars(200), cut)
    assert len(expected) > 5


class WithIndicators(Strategy):
    """A user strategy holding indicators, a bound method, an enum, tuples, a dict with int keys."""

    name: ClassVar[str] = "with_indicators"
    defaults: ClassVar[dict[str, Any]] = {"period": 5}

    def setup(self) -> None:
        self.sma = SMA(self.params["period"])
        self.bb = BollingerBands(self.params["period"])
        self._sma_update = self.sma.update
        self.side = Side.SELL
        self.seen: dict[int, tuple[Decimal, str]] = {}
        self.last: Bar | None = None

    def on_bar(self, bar: Bar) -> None:
        avg = self._sma_update(bar.close)
        bands = self.bb.update(bar.close)
        self.seen[len(self.seen) % 3] = (bar.close, bar.id)
        prev, self.last = self.last, bar
        if avg is None or bands is None or prev is None:
            return
        side = Side.BUY if bar.close > avg and prev.close <= avg else Side.SELL
        if side is not self.side:
            self.side = side
            self.buy(metadata={"avg": str(avg)}) if side is Side.BUY else self.close(Side.SELL)


@pytest.mark.parametrize("cut", [2, 5, 6, 77])
def test_indicators_and_plain_attributes_restore_exactly(cut: int) -> None:
    assert len(_restart_matches(WithIndicators, {}, _bars(160), cut)) > 5


def test_a_restored_strategy_keeps_its_bound_methods_on_the_restored_indicator() -> None:
    eng = SignalEngine(WithIndicators, {}, IdFactory("cp"))
    for b in _bars(20):
        eng.on_bar(b)
    again = SignalEngine(WithIndicators, {}, IdFactory("cp"))
    again.set_state(_json(eng.get_state()))
    strat = again.strategies["BTCUSDT"]
    assert isinstance(strat, WithIndicators)
    assert strat._sma_update.__self__ is strat.sma and strat.sma.sum == eng.strategies["BTCUSDT"].sma.sum


class Opaque(Strategy):
    name: ClassVar[str] = "opaque"

    def setup(self) -> None:
        self.handle = object()


def test_an_attribute_without_a_plain_form_is_named_in_the_error() -> None:
    eng = SignalEngine(Opaque, {}, IdFactory("cp"))
    eng.on_bar(_bars(1)[0])
    with pytest.raises(StateError, match=r"`Opaque\.handle` is a builtins\.object.*override get_state\(\) and "
                                         r"set_state\(\) of Opaque"):
        eng.get_state()


class Overridden(Opaque):
    """Overrides the pair: the opaque handle is made again, a counter is saved."""

    name: ClassVar[str] = "overridden"

    def setup(self) -> None:
        super().setup()
        self.bars = 0

    def on_bar(self, bar: Bar) -> None:
        self.bars += 1
        if self.bars % 4 == 0:
            self.buy()

    def get_state(self) -> dict[str, Any]:
        return {"bars": self.bars}

    def set_state(self, state: dict[str, Any]) -> None:
        self.bars = state["bars"]


def test_a_strategy_may_override_get_state_and_set_state() -> None:
    _restart_matches(Overridden, {}, _bars(30), 7)


class BadOverride(Opaque):
    name: ClassVar[str] = "bad_override"

    def get_state(self) -> dict[str, Any]:
        return {"handle": self.handle}


def test_an_override_returning_what_msgspec_cannot_encode_names_the_strategy() -> None:
    eng = SignalEngine(BadOverride, {}, IdFactory("cp"))
    eng.on_bar(_bars(1)[0])
    with pytest.raises(StateError, match=r"BadOverride\.get_state\(\) of BTCUSDT returned what msgspec cannot"):
        eng.get_state()


def test_a_checkpoint_of_another_strategy_or_version_is_refused() -> None:
    eng = SignalEngine(Breakout, {}, IdFactory("cp"))
    eng.on_bar(_bars(1)[0])
    st = _json(eng.get_state())
    st["strategies"]["BTCUSDT"]["strategy_version"] = "1"  # Breakout is version 2
    with pytest.raises(StateError, match="strategy 'breakout' version '1'; this run has 'breakout' version '2'"):
        SignalEngine(Breakout, {}, IdFactory("cp")).set_state(st)


def test_a_checkpoint_cannot_restore_framework_attributes() -> None:
    eng = SignalEngine(Breakout, {}, IdFactory("cp"))
    eng.on_bar(_bars(1)[0])
    st = _json(eng.get_state())
    st["strategies"]["BTCUSDT"]["state"]["attrs"]["ids"] = "x"
    with pytest.raises(StateError, match="not an attribute it may restore: 'ids'"):
        SignalEngine(Breakout, {}, IdFactory("cp")).set_state(st)


# --- the typed plain form and the version --------------------------------------------------------


@pytest.mark.parametrize("value", [
    None, True, 0, -(2**80), 1.5, float("inf"), float("-inf"), "x", Decimal("1.50"), Decimal("-0E-8"),
    [Decimal(1), (2, "a")], (), deque([Decimal("1.1"), 2], maxlen=3), deque(),
    {"a": Decimal(1), 2: [None], (1, 2): {"x"}}, {1, 2, 3}, frozenset({"a"}), Side.BUY,
    _bars(1)[0],
])
def test_to_plain_round_trips_through_json(value: Any) -> None:
    back = from_plain(_json(to_plain(value)))
    assert back == value and type(back) is type(value)
    if isinstance(value, Decimal):
        assert str(back) == str(value)
    if isinstance(value, deque):
        assert back.maxlen == value.maxlen


def test_nan_round_trips() -> None:
    assert math.isnan(from_plain(_json(to_plain(float("nan")))))


def test_unknown_tags_and_unknown_versions_are_clear_errors() -> None:
    with pytest.raises(StateError, match="unknown value in a checkpoint"):
        from_plain({"object": "os.system"})
    check_version({"version": CHECKPOINT_VERSION}, "x")
    with pytest.raises(StateError, match="the checkpoint of the trading core has version 2; this claire reads "
                                         "version 1 only"):
        check_version({"version": 2}, "trading core")
    with pytest.raises(StateError, match="has no version"):
        check_version({"strategies": "gASV..."}, "signal stage")


# --- indicators ----------------------------------------------------------------------------------


def _feed(ind: Any, xs: list[Any]) -> list[Any]:
    return [ind.update(x) for x in xs]


@pytest.mark.parametrize("make", [
    lambda: SMA(7), lambda: EMA(9), lambda: RSI(14), lambda: MACD(12, 26, 9), lambda: BollingerBands(20, 2.0),
])
@pytest.mark.parametrize("cut", [0, 5, 30, 80])
def test_indicator_state_round_trips_exactly(make: Any, cut: int) -> None:
    xs: list[Any] = [b.close for b in _bars(150)]
    xs[100] = Decimal("123.456789")  # a rescale of the Bollinger sums
    xs[110] = 7  # an int
    ref = make()
    want = _feed(ref, xs)
    a = make()
    got = _feed(a, xs[:cut])
    b = make()
    b.set_state(_json(a.get_state()))
    got += _feed(b, xs[cut:])
    assert got == want


def test_bollinger_state_in_decimal_mode_round_trips() -> None:
    xs = [Decimal(10) ** 20 + i for i in range(40)]  # past the integer bound: Decimal arithmetic
    ref = BollingerBands(10)
    want = _feed(ref, xs)
    a = BollingerBands(10)
    got = _feed(a, xs[:25])
    assert a._ibuf is None
    b = BollingerBands(10)
    b.set_state(_json(a.get_state()))
    assert got + _feed(b, xs[25:]) == want
