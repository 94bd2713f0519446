"""Find a strategy class by name: a built-in (``sma_cross``, ``momentum``) or ``package.module:ClassName``.

Every failure raises :class:`StrategyLoadError` (a ``ValueError``) with a message meant for
the command line: an unknown name lists the built-ins, a module that cannot be imported says
why, a missing attribute lists the Strategy classes the module does have.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from typing import Any

from claire.strategy.base import Strategy, coerce_params
from claire.strategy.builtin import Momentum, SmaCross
from claire.strategy.params import check_params, describe_params

__all__ = [
    "BUILTINS",
    "StrategyLoadError",
    "describe_strategy",
    "load_strategy",
    "parse_params",
    "strategy_names",
    "strategy_params",
]

#: built-in strategy name -> class
BUILTINS: dict[str, type[Strategy]] = {
    SmaCross.name: SmaCross,
    Momentum.name: Momentum,
}


class StrategyLoadError(ValueError):
    """A strategy spec could not be turned into a Strategy class."""


def strategy_names() -> list[str]:
    """Names of the built-in strategies, sorted."""
    return sorted(BUILTINS)


def _builtins_text() -> str:
    return ", ".join(strategy_names())


def load_strategy(spec: str) -> type[Strategy]:
    """Return the Strategy subclass named by ``spec``.

    ``spec`` is a built-in name (see :func:`strategy_names`) or ``package.module:ClassName``
    (the module is imported; ``ClassName`` may be dotted for a nested class).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise StrategyLoadError(
            f"no strategy given; use a built-in ({_builtins_text()}) or 'package.module:ClassName'"
        )
    spec = spec.strip()
    if ":" not in spec:
        cls = BUILTINS.get(spec)
        if cls is not None:
            return cls
        close = difflib.get_close_matches(spec.lower().replace("-", "_"), strategy_names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise StrategyLoadError(
            f"unknown strategy {spec!r}{hint}; built-in strategies: {_builtins_text()}; "
            "a strategy of your own is given as 'package.module:ClassName'"
        )

    module_name, _, attr = spec.partition(":")
    module_name = module_name.strip()
    attr = attr.strip()
    if not module_name or not attr or ":" in attr:
        raise StrategyLoadError(
            f"bad strategy spec {spec!r}: expected 'package.module:ClassName' or a built-in "
            f"({_builtins_text()})"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise StrategyLoadError(
                f"cannot load strategy {spec!r}: no module named {exc.name!r} "
                "(is it installed, or its folder on PYTHONPATH?)"
            ) from exc
        raise StrategyLoadError(
            f"cannot load strategy {spec!r}: importing module {module_name!r} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    except Exception as exc:  # the module itself raised (syntax error, failing import, ...)
        raise StrategyLoadError(
            f"cannot load strategy {spec!r}: importing module {module_name!r} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc

    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            found = _strategies_in(module)
            listing = f"Strategy classes there: {', '.join(found)}" if found else "it defines no Strategy class"
            raise StrategyLoadError(
                f"cannot load strategy {spec!r}: module {module_name!r} has no attribute {attr!r}; {listing}"
            ) from None
    if not inspect.isclass(obj):
        raise StrategyLoadError(
            f"cannot load strategy {spec!r}: {attr!r} is not a class (it is of type "
            f"{type(obj).__name__}); it must be a subclass of claire.strategy.Strategy"
        )
    if not issubclass(obj, Strategy) or obj is Strategy:
        what = "the Strategy base class itself" if obj is Strategy else f"class {obj.__qualname__!r}"
        raise StrategyLoadError(
            f"cannot load strategy {spec!r}: {what} is not a subclass of claire.strategy.Strategy"
        )
    return obj


def _strategies_in(module: Any) -> list[str]:
    names = []
    for key, val in vars(module).items():
        if inspect.isclass(val) and issubclass(val, Strategy) and val is not Strategy:
            names.append(key)
    return sorted(names)


def parse_params(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Split ``--param k=v`` items into a dict of strings (convert them with ``coerce_params``)."""
    out: dict[str, str] = {}
    for item in pairs:
        key, sep, val = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"bad --param {item!r}: expected key=value")
        if key in out:
            raise ValueError(f"--param {key!r} given more than once")
        out[key] = val.strip()
    return out


def strategy_params(cls: type[Strategy], pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``--param k=v`` items -> keyword arguments of ``cls``, converted to the declared types and
    checked (bounds of each, then the rules over all parameters with the defaults filled in)."""
    params = coerce_params(cls, parse_params(pairs))
    check_params(cls.name, cls.parameters, cls.rules, params)
    return params


def describe_strategy(cls: type[Strategy]) -> list[str]:
    """Lines describing the parameters and rules of ``cls`` (what ``claire strategies`` shows)."""
    return describe_params(cls.parameters, cls.rules)
