"""Loading strategies by name and by ``package.module:ClassName``, and every error message."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

import claire.strategy as strategy_pkg
from claire.events import IdFactory, Side
from claire.strategy import (
    Momentum,
    SignalEngine,
    SmaCross,
    Strategy,
    StrategyLoadError,
    coerce_params,
    load_strategy,
    parse_params,
    strategy_names,
    strategy_params,
)
from tests.strategy._data import make_bars
from tests.strategy.user_strategy import Breakout, Outer

USER = "tests.strategy.user_strategy"


def test_package_exports():
    for name in ("load_strategy", "coerce_params", "Strategy", "SignalEngine"):
        assert name in strategy_pkg.__all__ and hasattr(strategy_pkg, name)


def test_builtins_by_name():
    assert strategy_names() == ["momentum", "sma_cross"]
    assert load_strategy("sma_cross") is SmaCross
    assert load_strategy("  momentum ") is Momentum
    assert SmaCross.name == "sma_cross" and Momentum.name == "momentum"
    # a built-in is also reachable by its module path
    assert load_strategy("claire.strategy.builtin:SmaCross") is SmaCross


def test_user_strategy_by_module_and_class():
    cls = load_strategy(f"{USER}:Breakout")
    assert cls is Breakout
    assert load_strategy(f"{USER}:Outer.Inner") is Outer.Inner
    params = strategy_params(cls, ["lookback=2", "threshold=0.5"])
    assert params == {"lookback": 2, "threshold": Decimal("0.5")}
    eng = SignalEngine(cls, params, IdFactory("user"))
    got = []
    for bar in make_bars(["10", "11", "11.4", "11.6", "9"]):
        got.extend(eng.on_bar(bar))
    # 11.4 > 11 + 0.5? no; 11.6 > 11.4 + 0.5? no; 9 < min(11.4, 11.6): close the long
    assert [(s.side, s.reduce_only) for s in got] == [(Side.SELL, True)]
    got = []
    eng = SignalEngine(cls, strategy_params(cls, ["lookback=2"]), IdFactory("user"))
    for bar in make_bars(["10", "11", "12"]):
        got.extend(eng.on_bar(bar))
    (sig,) = got
    assert sig.side is Side.BUY and sig.quantity == Decimal("0.5") and sig.confidence == Decimal("0.75")
    assert sig.strategy == "breakout" and sig.strategy_version == "2"
    assert {k: v for k, v in sig.metadata.items() if k != "market"} == {"high": "11"}


def _fails(spec: str, *fragments: str) -> str:
    with pytest.raises(StrategyLoadError) as info:
        load_strategy(spec)
    msg = str(info.value)
    for frag in fragments:
        assert frag in msg, (frag, msg)
    assert isinstance(info.value, ValueError)
    return msg


def test_unknown_builtin_lists_the_builtins():
    msg = _fails("rsi_reversal", "unknown strategy 'rsi_reversal'", "built-in strategies: momentum, sma_cross",
                 "'package.module:ClassName'")
    assert "did you mean" not in msg
    _fails("sma-cross", "did you mean 'sma_cross'?")
    _fails("Momentum", "did you mean 'momentum'?")


def test_empty_and_malformed_specs():
    _fails("", "no strategy given", "momentum, sma_cross")
    _fails("   ", "no strategy given")
    for spec in (f"{USER}:", ":Breakout", f"{USER}:Breakout:x"):
        _fails(spec, f"bad strategy spec {spec!r}", "expected 'package.module:ClassName'")


def test_module_not_found():
    _fails("tests.strategy.no_such_module:Foo", "cannot load strategy 'tests.strategy.no_such_module:Foo'",
           "no module named 'tests.strategy.no_such_module'", "PYTHONPATH")
    _fails("no_such_top_package.sub:Foo", "no module named 'no_such_top_package'")


def test_module_that_fails_to_import():
    _fails("tests.strategy.broken_strategy:Anything",
           "importing module 'tests.strategy.broken_strategy' failed",
           "RuntimeError: boom: this module is broken on purpose")
    # the module exists but imports something missing: say so, not "no module named <the module>"
    msg = _fails("tests.strategy.missing_dep_strategy:X",
                 "importing module 'tests.strategy.missing_dep_strategy' failed",
                 "ModuleNotFoundError", "claire_no_such_dependency_xyz")
    assert "no module named 'tests.strategy.missing_dep_strategy'" not in msg


def test_missing_class_lists_what_is_there():
    msg = _fails(f"{USER}:Breakot", f"module {USER!r} has no attribute 'Breakot'",
                 "Strategy classes there: Breakout")
    assert "Strategy classes there: Breakout;" not in msg and msg.endswith("Strategy classes there: Breakout")
    _fails("json:Foo", "module 'json' has no attribute 'Foo'", "it defines no Strategy class")
    _fails(f"{USER}:Outer.Missing", "has no attribute 'Outer.Missing'")


def test_not_a_strategy():
    _fails(f"{USER}:NotAStrategy", "class 'NotAStrategy' is not a subclass of claire.strategy.Strategy")
    _fails(f"{USER}:not_a_class", "'not_a_class' is not a class (it is of type function)")
    _fails(f"{USER}:SOME_NUMBER", "'SOME_NUMBER' is not a class (it is of type int)")
    _fails("claire.strategy.base:Strategy", "the Strategy base class itself is not a subclass")


def test_param_strings():
    assert parse_params(["fast=5", " slow = 20 "]) == {"fast": "5", "slow": "20"}
    assert coerce_params(SmaCross, parse_params(["fast=5"])) == {"fast": 5}
    with pytest.raises(ValueError, match=re.escape("bad --param 'fast': expected key=value")):
        parse_params(["fast"])
    with pytest.raises(ValueError, match="given more than once"):
        parse_params(["fast=1", "fast=2"])
    with pytest.raises(ValueError, match=r"unknown parameter 'fats' for strategy 'sma_cross' \(known: fast, slow\)"):
        strategy_params(SmaCross, ["fats=3"])
    with pytest.raises(ValueError, match=re.escape("parameter fast='3.5' for strategy 'sma_cross' is not a valid int")):
        strategy_params(SmaCross, ["fast=3.5"])


def test_loaded_class_is_a_strategy_subclass():
    for name in strategy_names():
        cls = load_strategy(name)
        assert issubclass(cls, Strategy) and cls is not Strategy


@pytest.mark.parametrize(("name", "params"), [("sma_cross", {}), ("momentum", {"allow_short": True})])
def test_engine_state_round_trip_mid_stream(name, params):
    """SignalEngine.get_state/set_state (a restart) in the middle of the data changes nothing."""
    from tests.strategy._data import load_bars

    bars = load_bars("ETH")[:6000]
    whole = SignalEngine(load_strategy(name), params, IdFactory("restart"))
    expected = [s for b in bars for s in whole.on_bar(b)]
    first = SignalEngine(load_strategy(name), params, IdFactory("restart"))
    got = [s for b in bars[:3001] for s in first.on_bar(b)]
    state = first.get_state()
    second = SignalEngine(load_strategy(name), params, IdFactory("restart"))
    second.set_state(state)
    got += [s for b in bars[3001:] for s in second.on_bar(b)]
    assert len(expected) > 50
    assert got == expected
