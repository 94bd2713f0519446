"""Declared strategy parameters: a :class:`Param` per parameter, :class:`Rule` for constraints
between parameters.

A strategy declares its parameters once, as data::

    class SmaCross(Strategy):
        parameters = {
            "fast": Param(10, min=1, description="fast SMA period (bars)"),
            "slow": Param(30, min=1, description="slow SMA period (bars)"),
        }
        rules = (Rule("fast < slow"),)

and that declaration converts ``--param k=v`` strings, refuses values of the wrong type, out of
range or breaking a rule (one message naming the parameter and the bound), and is what
``claire strategies`` shows. A strategy that only sets ``defaults = {name: value}`` (the older
form) gets a ``Param`` per default: typed like its default, without bounds.

A rule is a comparison of parameters and numbers (``"fast < slow"``,
``"0 <= rsi_oversold < rsi_overbought <= 100"``, ``and``/``or``/``not`` and ``+ - * /`` allowed),
or a callable ``params -> bool`` with a ``message``.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["Param", "ParamError", "Rule", "check_params", "coerce_value", "describe_params"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_TYPE_NAMES = {int: "int", float: "float", Decimal: "Decimal", bool: "bool", str: "str"}


class ParamError(ValueError):
    """A strategy parameter is unknown, of the wrong type, out of range or breaks a rule."""


@dataclass(frozen=True)
class Param:
    """One strategy parameter.

    ``type`` defaults to the type of ``default`` (int, float, Decimal, bool or str); ``min`` and
    ``max`` are inclusive bounds, ``gt`` and ``lt`` exclusive ones; ``choices`` limits the value
    to a set.
    """

    default: Any
    min: Any = None
    max: Any = None
    gt: Any = None
    lt: Any = None
    choices: tuple[Any, ...] | None = None
    description: str = ""
    type: type | None = None
    #: False for parameters derived from a bare ``defaults`` dict: strings are still converted
    #: to int/float/Decimal/bool, other Python values are taken as given (the older behaviour)
    strict: bool = True

    def __post_init__(self) -> None:
        if self.type is None:
            object.__setattr__(self, "type", type(self.default))

    @property
    def type_name(self) -> str:
        """The parameter's type as the help text names it (int, float, decimal, bool, ...)."""
        t = self.type
        if t is not None and t in _TYPE_NAMES:
            return _TYPE_NAMES[t]
        return str(getattr(t, "__name__", str(t)))

    def bounds_text(self) -> str:
        """``>= 1``, ``in [0, 100]``, ``> 0``, ``one of a, b``; empty without bounds."""
        parts = []
        if self.min is not None and self.max is not None:
            parts.append(f"in [{self.min}, {self.max}]")
        else:
            if self.min is not None:
                parts.append(f">= {self.min}")
            if self.max is not None:
                parts.append(f"<= {self.max}")
        if self.gt is not None:
            parts.append(f"> {self.gt}")
        if self.lt is not None:
            parts.append(f"< {self.lt}")
        if self.choices:
            parts.append("one of " + ", ".join(map(str, self.choices)))
        return " and ".join(parts)

    def describe(self) -> str:
        """``int >= 1``, ``float in [0, 100]``, ``bool``."""
        b = self.bounds_text()
        return f"{self.type_name} {b}" if b else self.type_name

    def with_default(self, default: Any) -> Param:
        """The same declaration with another default (a subclass's ``defaults``)."""
        return replace(self, default=default)


def _article(text: str) -> str:
    return ("an " if text[:1].lower() in "aeiou" else "a ") + text


def _from_text(t: type | None, text: str) -> Any:
    """A ``--param`` string as type ``t`` (ValueError/ArithmeticError: not a valid one)."""
    if t is bool:
        low = text.lower()
        if low not in _TRUE | _FALSE:
            raise ValueError(text)
        return low in _TRUE
    if t is int:
        return int(text)
    if t is float:
        return float(text)
    if t is Decimal:
        return Decimal(text)
    if t is None:
        raise TypeError
    return t(text)


def _from_value(t: type | None, v: Any) -> Any:
    """A Python value as type ``t``: ints are taken for float and Decimal, nothing is taken for
    bool but a bool (TypeError: the wrong type)."""
    if t is bool:
        if not isinstance(v, bool):
            raise TypeError
    elif t is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError
    elif t is float or t is Decimal:
        if isinstance(v, bool) or not isinstance(v, (int, float, Decimal)):
            raise TypeError
        if t is float:
            return float(v)
        return v if isinstance(v, Decimal) else Decimal(str(v))
    elif t is not None and not isinstance(v, t):
        raise TypeError
    return v


def coerce_value(key: str, spec: Param, value: Any, strategy: str = "strategy") -> Any:
    """``value`` (a ``--param`` string, or a Python value) as ``spec.type``; checks the bounds."""
    t = spec.type
    v = value
    if not spec.strict and (not isinstance(v, str) or t not in (int, float, Decimal, bool)):
        return v
    try:
        from_text = isinstance(v, str) and t is not str
        v = _from_text(t, v.strip()) if from_text else _from_value(t, v)
    except (ValueError, ArithmeticError, InvalidOperation):
        raise ParamError(
            f"parameter {key}={value!r} for strategy {strategy!r} is not a valid {spec.type_name}"
            f" ({key}: {spec.describe()})"
        ) from None
    except TypeError:
        from_text = False
        v = None
        bad_type = True
    else:
        bad_type = False
    if bad_type or (isinstance(v, (float, Decimal)) and not _finite(v)):
        what = "finite " + spec.type_name if isinstance(v, (float, Decimal)) else spec.type_name
        bounds = spec.bounds_text()
        raise ParamError(f"{strategy}: `{key}` must be {_article(what)}{' ' + bounds if bounds else ''}, "
                         f"got {value!r}")
    if not _in_bounds(spec, v):
        raise ParamError(f"{strategy}: `{key}` must be {_article(spec.describe())}, got "
                         f"{value if from_text else repr(value)}")
    return v


def _finite(v: float | Decimal) -> bool:
    return v.is_finite() if isinstance(v, Decimal) else math.isfinite(v)


def _in_bounds(spec: Param, v: Any) -> bool:
    try:
        if spec.min is not None and v < spec.min:
            return False
        if spec.max is not None and v > spec.max:
            return False
        if spec.gt is not None and not v > spec.gt:
            return False
        if spec.lt is not None and not v < spec.lt:
            return False
    except TypeError:
        return False
    return not spec.choices or v in spec.choices


# --- rules -------------------------------------------------------------------------------------

_CMP: dict[type, Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
}
_BIN: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
}
_CMP_TEXT = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}


@dataclass(frozen=True)
class Rule:
    """A constraint between parameters: an expression such as ``"fast < slow"``, or a callable
    ``params -> bool`` (then ``message`` says what it requires)."""

    check: str | Callable[[Mapping[str, Any]], bool]
    message: str | None = None
    _tree: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.check, str):
            try:
                tree = ast.parse(self.check.strip(), mode="eval").body
            except SyntaxError as exc:
                raise ValueError(f"bad parameter rule {self.check!r}: {exc.msg}") from None
            _validate(tree, self.check)
            object.__setattr__(self, "_tree", tree)
        elif not callable(self.check):
            raise TypeError("Rule needs an expression string or a callable")
        elif not self.message:
            raise ValueError("a Rule with a callable needs a message")

    @property
    def text(self) -> str:
        """The rule as written (or its message), for help and errors."""
        return self.check.strip() if isinstance(self.check, str) else str(self.message)

    @property
    def names(self) -> list[str]:
        """The parameters the rule names, in the order written (checked against the declaration)."""
        if self._tree is None:
            return []
        found = sorted((n.col_offset, n.id) for n in ast.walk(self._tree) if isinstance(n, ast.Name))
        return list(dict.fromkeys(name for _, name in found))  # in the order they are written

    def holds(self, params: Mapping[str, Any]) -> bool:
        """Whether the parameters satisfy the rule (a type error counts as no)."""
        if self._tree is None:
            return bool(self.check(params))  # type: ignore[operator]
        try:
            return bool(_eval(self._tree, params))
        except (TypeError, ArithmeticError):
            return False

    def error(self, strategy: str, params: Mapping[str, Any]) -> str:
        """The message for a violated rule, with the values given."""
        got = ", ".join(f"{n}={params[n]}" for n in self.names if n in params)
        tree = self._tree
        if self.message:
            text = self.message
        elif (isinstance(tree, ast.Compare) and len(tree.ops) == 1 and isinstance(tree.left, ast.Name)
              and isinstance(tree.comparators[0], ast.Name)):
            text = f"`{tree.left.id}` must be {_CMP_TEXT[type(tree.ops[0])]} `{tree.comparators[0].id}`"
        else:
            text = f"need {self.text}"
        return f"{strategy}: {text}" + (f", got {got}" if got else "")


def _validate(node: ast.AST, text: str) -> None:
    ok = (ast.Compare, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.BinOp, ast.Name,
          ast.Load, ast.Constant, *_CMP, *_BIN)
    for n in ast.walk(node):
        if not isinstance(n, ok) or (isinstance(n, ast.Constant) and not isinstance(n.value, (int, float))):
            raise ValueError(f"bad parameter rule {text!r}: only comparisons of parameters and numbers")


def _eval(node: ast.AST, params: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return params[node.id]
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, params)
        return (not v) if isinstance(node.op, ast.Not) else -v
    if isinstance(node, ast.BinOp):
        return _BIN[type(node.op)](_eval(node.left, params), _eval(node.right, params))
    if isinstance(node, ast.BoolOp):
        vals = (_eval(v, params) for v in node.values)
        return all(vals) if isinstance(node.op, ast.And) else any(vals)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, params)
        for op, comp in zip(node.ops, node.comparators, strict=True):
            right = _eval(comp, params)
            if not _CMP[type(op)](left, right):
                return False
            left = right
        return True
    raise ValueError(f"unsupported rule element {type(node).__name__}")  # pragma: no cover


# --- the whole set -----------------------------------------------------------------------------

def check_params(strategy: str, schema: Mapping[str, Param], rules: tuple[Rule, ...] | list[Rule],
                 given: Mapping[str, Any]) -> dict[str, Any]:
    """Every parameter (defaults + ``given``), converted and checked, then the rules."""
    unknown = set(given) - set(schema)
    if unknown:
        raise ParamError(
            f"unknown parameter(s) for strategy {strategy!r}: {', '.join(sorted(unknown))}"
            f" (known: {', '.join(sorted(schema)) or 'none'})"
        )
    out: dict[str, Any] = {}
    for key, spec in schema.items():
        out[key] = coerce_value(key, spec, given[key], strategy) if key in given else spec.default
    for rule in rules:
        if not rule.holds(out):
            raise ParamError(rule.error(strategy, out))
    return out


def describe_params(schema: Mapping[str, Param], rules: tuple[Rule, ...] | list[Rule]) -> list[str]:
    """One line per parameter (name, type and bounds, default, description), then the rules."""
    lines = []
    width = max((len(k) for k in schema), default=0)
    for key, spec in schema.items():
        desc = f"  {spec.description}" if spec.description else ""
        lines.append(f"{key:<{width}}  {spec.describe()}, default {spec.default}{desc}")
    lines.extend(f"rule: {r.text}" for r in rules)
    return lines


def schema_from_defaults(defaults: Mapping[str, Any], inherited: Mapping[str, Param] | None = None
                         ) -> dict[str, Param]:
    """``Param`` per default: an inherited declaration with the new default, else untyped-bounds."""
    inherited = inherited or {}
    out: dict[str, Param] = {}
    for key, value in defaults.items():
        base = inherited.get(key)
        if base is not None and (base.type is type(value) or (base.type is float and type(value) is int)):
            out[key] = base.with_default(value)
        else:
            out[key] = Param(value, strict=False)
    return out
