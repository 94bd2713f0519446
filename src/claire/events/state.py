"""Checkpoints: a version on every one, and a typed plain-data form for values of any plain type.

Checkpoints are JSON written with msgspec, never Python object serialisation: a checkpoint
travels through Redis and the database, and restoring serialised objects runs whatever code the
bytes name, so anyone able to write a checkpoint could run code in every service. Plain data
can only be data.

- Every checkpoint's top level (``TradingCore``, each stage of the distributed runtime, the
  paper runtime) carries ``"version": CHECKPOINT_VERSION``. ``check_version`` refuses anything
  else with a clear error, so a future change of the format can migrate old checkpoints
  explicitly instead of misreading them.
- ``to_plain`` / ``from_plain``: a lossless JSON form for values whose type JSON does not keep
  (Decimal, tuple, deque with its maxlen, dicts with non-str keys, sets, non-finite floats,
  the enums and events of :mod:`claire.events`). Used for the instance attributes of user
  strategies, whose types are not known in advance. In that form every JSON object is a tag
  (``{"decimal": "1.50"}``, ``{"dict": [[k, v], ...]}``, ...), so nothing is ambiguous.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from decimal import Decimal
from enum import Enum
from typing import Any

import msgspec

from claire.events import types as _t

__all__ = ["CHECKPOINT_VERSION", "StateError", "check_version", "from_plain", "to_plain", "versioned"]

#: the version of the checkpoint format written now
CHECKPOINT_VERSION = 1


class StateError(ValueError):
    """A state that cannot be saved (the message names the attribute) or a checkpoint that
    cannot be read (unknown version, wrong strategy)."""


def versioned(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with the current checkpoint version in front."""
    return {"version": CHECKPOINT_VERSION, **state}


def check_version(state: Mapping[str, Any], what: str) -> None:
    """Raise StateError unless ``state`` is a checkpoint of the current version."""
    v = state.get("version") if isinstance(state, Mapping) else None
    if v == CHECKPOINT_VERSION and type(v) is int:
        return
    if v is None:
        raise StateError(
            f"the checkpoint of the {what} has no version: it was written by an older claire (which "
            "serialised strategies as Python objects) and is not read, for safety; start the run afresh (a new run key, "
            "or clear the old checkpoint)")
    raise StateError(f"the checkpoint of the {what} has version {v!r}; this claire reads version "
                     f"{CHECKPOINT_VERSION} only")


# --- the typed plain form --------------------------------------------------------------------

#: the enums a plain value may hold, by name (a fixed list: a checkpoint never names code to load)
_ENUMS: dict[str, type[Enum]] = {
    e.__name__: e for e in (_t.Side, _t.OrderType, _t.TimeInForce, _t.OrderStatus, _t.Liquidity,
                            _t.PositionSide, _t.RiskCheck, _t.RiskAction, _t.TradingState, _t.AlertLevel)
}
_EVENT_TYPES = (_t.Bar, _t.TradeTick, _t.QuoteTick, _t.Signal, _t.Order, _t.OrderResult, _t.PortfolioSnapshot,
                _t.RiskEvent, _t.Alert, _t.Control)
_NATIVE = (str, int, bool)


def to_plain(value: Any, where: str = "value") -> Any:
    """``value`` in the typed plain form (see the module doc). ``where`` names the value in the
    error raised for a type that has no plain form, e.g. ``Breakout.window[3]``."""
    t = type(value)
    if value is None or t in _NATIVE:
        return value
    if t is float:
        return value if math.isfinite(value) else {"float": repr(value)}
    if t is Decimal:
        return {"decimal": str(value)}
    if t is list:
        return [to_plain(x, f"{where}[{i}]") for i, x in enumerate(value)]
    if t is tuple:
        return {"tuple": [to_plain(x, f"{where}[{i}]") for i, x in enumerate(value)]}
    if t is deque:
        return {"deque": [to_plain(x, f"{where}[{i}]") for i, x in enumerate(value)], "maxlen": value.maxlen}
    if t is dict:
        return {"dict": [[to_plain(k, f"{where} key {k!r}"), to_plain(v, f"{where}[{k!r}]")]
                         for k, v in value.items()]}
    if t is set or t is frozenset:
        items = [to_plain(x, f"{where} item") for x in value]
        items.sort(key=lambda x: msgspec.json.encode(x))  # a stable order: the same set, the same bytes
        return {t.__name__: items}
    if isinstance(value, Enum) and _ENUMS.get(t.__name__) is t:
        return {"enum": t.__name__, "value": value.value}
    if t in _EVENT_TYPES:
        return {"event": msgspec.to_builtins(value)}
    raise StateError(f"`{where}` is a {t.__module__}.{t.__qualname__}, which has no plain form "
                     "(plain: None, bool, int, float, str, Decimal, list, tuple, dict, set, deque, "
                     "the enums and events of claire.events)")


_FROM_TAG: dict[str, Callable[[dict[str, Any]], Any]] = {
    "float": lambda x: float(x["float"]),
    "decimal": lambda x: Decimal(x["decimal"]),
    "tuple": lambda x: tuple(from_plain(v) for v in x["tuple"]),
    "deque": lambda x: deque((from_plain(v) for v in x["deque"]), maxlen=x["maxlen"]),
    "dict": lambda x: {from_plain(k): from_plain(v) for k, v in x["dict"]},
    "set": lambda x: {from_plain(v) for v in x["set"]},
    "frozenset": lambda x: frozenset(from_plain(v) for v in x["frozenset"]),
    "enum": lambda x: _ENUMS[x["enum"]](x["value"]),
    "event": lambda x: msgspec.convert(x["event"], _t.AnyEvent),
}


def from_plain(data: Any) -> Any:
    """The value ``to_plain`` made ``data`` of (also after a JSON round trip)."""
    if type(data) is list:
        return [from_plain(x) for x in data]
    if type(data) is not dict:
        return data
    for tag in data:
        fn = _FROM_TAG.get(tag)
        if fn is not None:
            try:
                return fn(data)
            except (KeyError, TypeError, ValueError, ArithmeticError, msgspec.ValidationError) as exc:
                raise StateError(f"bad {tag!r} value in a checkpoint: {exc}") from None
        break
    raise StateError(f"unknown value in a checkpoint: {str(data)[:80]}")
