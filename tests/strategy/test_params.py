"""Declared strategy parameters (Param, Rule): conversion, bounds, rules, the older ``defaults``."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, ClassVar

import pytest

from claire.strategy import (
    Momentum,
    Param,
    ParamError,
    Rule,
    SmaCross,
    Strategy,
    coerce_params,
    strategy_params,
)
from claire.strategy.registry import describe_strategy
from tests.strategy.user_strategy import Breakout


class Declared(Strategy):
    name: ClassVar[str] = "declared"
    parameters: ClassVar[dict[str, Param]] = {
        "n": Param(5, min=2, max=50, description="window"),
        "k": Param(Decimal("1.5"), gt=0, description="multiplier"),
        "mode": Param("fast", choices=("fast", "slow")),
        "lo": Param(10.0, min=0),
        "hi": Param(20.0, min=0),
    }
    rules: ClassVar[tuple[Rule, ...]] = (Rule("lo < hi"), Rule("n * 2 <= hi"))


def test_declaration_gives_defaults_and_converts():
    assert Declared.defaults == {"n": 5, "k": Decimal("1.5"), "mode": "fast", "lo": 10.0, "hi": 20.0}
    s = Declared("X", n=7, k=2, lo=1)
    assert s.params == {"n": 7, "k": Decimal(2), "mode": "fast", "lo": 1.0, "hi": 20.0}
    assert isinstance(s.params["lo"], float) and isinstance(s.params["k"], Decimal)
    assert strategy_params(Declared, ["n=3", "k=0.5", "mode=slow"]) == {"n": 3, "k": Decimal("0.5"), "mode": "slow"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 1}, "declared: `n` must be an int in [2, 50], got 1"),
        ({"n": 51}, "`n` must be an int in [2, 50]"),
        ({"n": True}, "`n` must be an int in [2, 50], got True"),
        ({"n": 2.0}, "`n` must be an int"),
        ({"k": 0}, "`k` must be a Decimal > 0, got 0"),
        ({"k": Decimal("NaN")}, "`k` must be a finite Decimal > 0"),
        ({"mode": "medium"}, "`mode` must be a str one of fast, slow"),
        ({"lo": 30.0}, "declared: `lo` must be < `hi`, got lo=30.0, hi=20.0"),
        ({"n": 11}, "declared: need n * 2 <= hi, got n=11, hi=20.0"),
        ({"n": "x"}, "parameter n='x' for strategy 'declared' is not a valid int (n: int in [2, 50])"),
        ({"width": 3}, "unknown parameter(s) for strategy 'declared': width (known: hi, k, lo, mode, n)"),
    ],
)
def test_declaration_refuses(kwargs: dict[str, Any], message: str):
    with pytest.raises(ParamError, match=re.escape(message)):
        Declared("X", **kwargs)


def test_cli_strings_are_checked_with_bounds_and_rules():
    with pytest.raises(ValueError, match=re.escape("sma_cross: `fast` must be an int >= 1, got -5")):
        strategy_params(SmaCross, ["fast=-5"])
    with pytest.raises(ValueError, match=re.escape("sma_cross: `fast` must be < `slow`, got fast=40, slow=30")):
        strategy_params(SmaCross, ["fast=40"])  # the rule sees the defaults too
    with pytest.raises(ValueError, match=re.escape("momentum: `rsi_period` must be an int >= 1, got 0")):
        strategy_params(Momentum, ["rsi_period=0"])
    with pytest.raises(ValueError, match=re.escape("`rsi_oversold` must be a finite float in [0, 100]")):
        coerce_params(Momentum, {"rsi_oversold": "inf"})
    assert strategy_params(SmaCross, ["fast=5", "slow=6"]) == {"fast": 5, "slow": 6}


def test_bare_defaults_still_work():
    """A user strategy that only sets ``defaults`` (the older form): a Param per default, typed
    like it, no bounds; strings converted, other values taken as given (as before)."""
    assert set(Breakout.parameters) == {"lookback", "threshold", "size"}
    assert Breakout.parameters["lookback"].type is int and not Breakout.parameters["lookback"].strict
    assert strategy_params(Breakout, ["lookback=5", "threshold=0.1"]) == {"lookback": 5, "threshold": Decimal("0.1")}
    with pytest.raises(ValueError, match=re.escape("parameter lookback='x' for strategy 'breakout' is not a valid int")):
        strategy_params(Breakout, ["lookback=x"])
    b = Breakout("X", lookback=4, threshold=1)
    assert b.params == {"lookback": 4, "threshold": 1, "size": Decimal("0.5")}

    class Loose(Strategy):
        defaults: ClassVar[dict[str, Any]] = {"script": {}, "label": None}

    assert Loose("X", script={"A": [1]}).params == {"script": {"A": [1]}, "label": None}


def test_subclass_changing_defaults_keeps_the_declared_bounds_and_rules():
    class Slower(SmaCross):
        defaults: ClassVar[dict[str, Any]] = {"fast": 20, "slow": 50}

    assert Slower("X").params == {"fast": 20, "slow": 50}
    assert Slower.parameters["fast"].min == 1 and Slower.rules == SmaCross.rules
    with pytest.raises(ValueError, match="`fast` must be < `slow`"):
        Slower("X", fast=60)
    with pytest.raises(ValueError, match="`slow` must be an int >= 1"):
        Slower("X", slow=0)


def test_bad_declarations_fail_at_class_definition():
    with pytest.raises(TypeError, match="names undeclared parameter"):
        class Typo(Strategy):
            parameters: ClassVar[dict[str, Param]] = {"fast": Param(1)}
            rules: ClassVar[tuple[Rule, ...]] = (Rule("fast < slwo"),)
    with pytest.raises(ValueError, match="only comparisons of parameters and numbers"):
        Rule("__import__('os')")
    with pytest.raises(ValueError, match="needs a message"):
        Rule(lambda p: True)


def test_callable_rule_and_description():
    class Custom(Strategy):
        name: ClassVar[str] = "custom"
        parameters: ClassVar[dict[str, Param]] = {"a": Param(2, min=0, description="first"), "b": Param(3)}
        rules: ClassVar[tuple[Rule, ...]] = (Rule(lambda p: (p["a"] + p["b"]) % 2 == 1, "a + b must be odd"),)

    Custom("X")
    with pytest.raises(ParamError, match=re.escape("custom: a + b must be odd")):
        Custom("X", a=3)
    assert describe_strategy(Custom) == ["a  int >= 0, default 2  first", "b  int, default 3", "rule: a + b must be odd"]
    lines = describe_strategy(SmaCross)
    assert lines[-1] == "rule: fast < slow" and lines[0].startswith("fast  int >= 1, default 10")
