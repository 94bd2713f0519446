"""The strategy interface that users subclass.

One strategy instance serves one symbol: the signal engine makes an instance per symbol the
first time it sees that symbol, so a strategy keeps plain per-symbol state and never has to
look up which symbol an event belongs to. (This is also what lets the distributed signal
service run as several replicas that share the symbols.)

Override any of ``on_bar``, ``on_trade``, ``on_quote``; inside them call ``self.buy``,
``self.sell`` or ``self.close`` to emit signals. Return nothing. Parameters arrive as keyword
arguments (``--param k=v`` on the command line, strings converted by ``coerce_params``).

Checkpoints (restarts) save a strategy as plain data, never as a Python object (see
:mod:`claire.events.state`). The framework saves the parameters, the signal counter and the
position view itself; ``get_state``/``set_state`` save the strategy's own state. The default
saves every instance attribute (``self.x = ...``, in ``setup`` or later) whose value is of a
plain type (None, bool, int, float, str, Decimal, and lists, tuples, dicts, sets and
deques of them, the enums and events of ``claire.events``); an attribute holding an object with
its own ``get_state``/``set_state`` (the indicators of :mod:`claire.strategy.indicators`) is
saved through those; functions and bound methods are skipped (``setup`` makes them again). On
restore the strategy is constructed afresh with the saved parameters (``setup`` runs), then
``set_state`` puts the saved values back. Anything else raises :class:`StateError` naming the
attribute: then override both methods, e.g.::

    def get_state(self) -> dict[str, Any]:
        return {"levels": [str(x) for x in self.levels], "book": self.book.to_dict()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.levels = [Decimal(x) for x in state["levels"]]
        self.book = OrderBook.from_dict(state["book"])

``get_state`` must return what msgspec encodes to JSON (str, int, float, bool, None, lists,
dicts with str keys; Decimals best as their strings, as above); ``set_state`` receives it back
after a JSON round trip (tuples as lists) and must leave the strategy emitting exactly what it
would have.
"""

from __future__ import annotations

import types
from decimal import Decimal
from typing import Any, ClassVar

import msgspec

from claire.events import Bar, IdFactory, QuoteTick, Side, Signal, StateError, TradeTick, from_plain, to_plain
from claire.strategy.params import Param, ParamError, Rule, check_params, coerce_value, schema_from_defaults

HALF = Decimal("0.5")
ONE = Decimal(1)
_replace = msgspec.structs.replace
_BUY, _SELL = Side.BUY, Side.SELL  # module constants: reading a member from its Enum class is slow on 3.11


class WorkingOrder(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An order of this strategy's signals that the exchange still holds (``Strategy.working_orders``)."""

    order_id: str
    signal_id: str
    side: Side
    quantity: Decimal  # the order's quantity
    leaves: Decimal  # what still waits to be filled
    reduce_only: bool = False


_NO_WORKING_ORDERS: dict[str, WorkingOrder] = {}  # never written: instances get their own dict
#: attributes of the framework (saved by the signal engine, or transient): not in ``get_state``
_FRAMEWORK = frozenset({"symbol", "ids", "params", "_event", "_out", "_n", "_sig_base", "position",
                        "working_orders"})
#: values the default ``get_state`` skips: ``setup`` makes them again
_CODE = (types.FunctionType, types.MethodType, types.BuiltinFunctionType, types.BuiltinMethodType)


class Strategy:
    """Base class of strategies (see the module docstring).

    The position view: ``self.position`` (signed Decimal, > 0 long: the net quantity filled
    on its symbol: its signals' orders, and the risk manager's when it flattens at a trip) and
    ``self.working_orders`` (order id -> :class:`WorkingOrder`: side and ``leaves``, the
    quantity still waiting), kept up to date from the orders and order results before the
    strategy sees the next event, and saved with it in checkpoints. Read them, do not write them. Only the single-process
    core (backtest, ``claire paper``) feeds them: in the distributed runtime the signal service
    receives no order results yet, so there they stay flat and empty. The built-in strategies
    therefore do not decide on them (the same signals in every runtime).
    """

    name: ClassVar[str] = "strategy"
    version: ClassVar[str] = "1"
    #: declared parameters: name -> Param(default, min/max, description); see claire.strategy.params
    parameters: ClassVar[dict[str, Param]] = {}
    #: constraints between parameters, e.g. Rule("fast < slow")
    rules: ClassVar[tuple[Rule, ...]] = ()
    #: parameter name -> default value (derived from ``parameters``; a subclass that sets only
    #: ``defaults`` gets a Param per default, typed like it, without bounds)
    defaults: ClassVar[dict[str, Any]] = {}
    #: template of this instance's signals (see ``_emit``); at class level too, for instances
    #: restored from a checkpoint taken before it existed
    _sig_base: Signal | None = None
    #: the position view (also at class level, for instances restored from older checkpoints)
    position: Decimal = Decimal(0)
    working_orders: dict[str, WorkingOrder] = _NO_WORKING_ORDERS

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__
        inherited: dict[str, Param] = next(
            (b.__dict__["parameters"] for b in cls.__mro__[1:] if "parameters" in b.__dict__), {})
        if "parameters" in own:
            cls.parameters = dict(own["parameters"])
            cls.defaults = {k: p.default for k, p in cls.parameters.items()}
        elif "defaults" in own:
            cls.parameters = schema_from_defaults(own["defaults"], inherited)
            cls.rules = tuple(r for r in cls.rules if set(r.names) <= set(cls.parameters))
        cls.rules = tuple(cls.rules)
        for rule in cls.rules:
            missing = set(rule.names) - set(cls.parameters)
            if missing:
                raise TypeError(f"{cls.__qualname__}: rule {rule.text!r} names undeclared parameter(s) "
                                f"{', '.join(sorted(missing))}")

    def __init__(self, symbol: str, ids: IdFactory | None = None, **params: Any) -> None:
        self.symbol = symbol
        self.ids = ids or IdFactory()
        # every parameter converted and checked against its declaration and the rules
        self.params = check_params(self.name, self.parameters, self.rules, params)
        self._event: Bar | TradeTick | QuoteTick | None = None
        self._out: list[Signal] = []
        self._n = 0
        self._sig_base = None
        self.position = Decimal(0)
        self.working_orders = {}
        self.setup()

    @classmethod
    def warmup_bars(cls, params: dict[str, Any]) -> int:
        """How many closed bars before its first decision the strategy needs (``params``: its
        checked parameters). A live run (``claire paper --source mexc``) loads that many bars of
        history per symbol first; their signals are dropped (history is not traded). Default 0."""
        return 0

    # --- hooks for subclasses -----------------------------------------------------------
    def setup(self) -> None:
        """Called once after parameters are set."""

    def on_bar(self, bar: Bar) -> None:
        """A bar of this strategy's symbol closed."""

    def on_trade(self, tick: TradeTick) -> None:
        """A trade of this strategy's symbol printed."""

    def on_quote(self, quote: QuoteTick) -> None:
        """The top of book of this strategy's symbol changed."""

    # --- restart (see the module doc) ----------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """This strategy's own state, as plain data for a checkpoint (the default: its
        instance attributes, see the module doc). Raises StateError naming an attribute that
        cannot be saved."""
        cls = type(self).__qualname__
        attrs: dict[str, Any] = {}
        components: dict[str, Any] = {}
        for name, value in vars(self).items():
            if name in _FRAMEWORK or isinstance(value, _CODE):
                continue
            where = f"{cls}.{name}"
            try:
                if hasattr(value, "get_state") and hasattr(value, "set_state") and not isinstance(value, type):
                    components[name] = to_plain(value.get_state(), f"{where}.get_state()")
                else:
                    attrs[name] = to_plain(value, where)
            except StateError as exc:
                raise StateError(f"strategy {self.name!r} cannot be saved in a checkpoint: {exc}; override "
                                 f"get_state() and set_state() of {cls} (see claire.strategy.base)") from None
        return {"attrs": attrs, "components": components}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what ``get_state`` returned, on an instance just made with the saved
        parameters (``setup`` has run)."""
        cls = type(self).__qualname__
        for name, plain in state.get("attrs", {}).items():
            self._check_name(name)
            setattr(self, name, from_plain(plain))
        for name, plain in state.get("components", {}).items():
            self._check_name(name)
            target = getattr(self, name, None)
            if target is None or not hasattr(target, "set_state"):
                raise StateError(f"checkpoint of strategy {self.name!r}: `{cls}.{name}` was saved with its "
                                 "get_state(), but setup() made no object with set_state() there")
            target.set_state(from_plain(plain))

    def _check_name(self, name: str) -> None:
        if not name.isidentifier() or name.startswith("__") or name in _FRAMEWORK:
            raise StateError(f"checkpoint of strategy {self.name!r}: not an attribute it may restore: {name!r}")

    # --- emitting signals ----------------------------------------------------------------
    def buy(self, confidence: Decimal = ONE, *, quantity: Decimal | None = None,
            price: Decimal | None = None, metadata: dict[str, Any] | None = None) -> Signal:
        """Ask to buy (open or add to a long; quantity None: the risk manager sizes it)."""
        return self._emit(_BUY, confidence, quantity, price, False, metadata)

    def sell(self, confidence: Decimal = ONE, *, quantity: Decimal | None = None,
             price: Decimal | None = None, metadata: dict[str, Any] | None = None) -> Signal:
        """Ask to sell (open or add to a short; quantity None: the risk manager sizes it)."""
        return self._emit(_SELL, confidence, quantity, price, False, metadata)

    def close(self, side: Side = Side.SELL, confidence: Decimal = ONE, *,
              price: Decimal | None = None, metadata: dict[str, Any] | None = None) -> Signal:
        """Ask to close the position (``side`` SELL closes a long, BUY closes a short)."""
        return self._emit(side, confidence, None, price, True, metadata)

    def _emit(self, side: Side, confidence: Decimal, quantity: Decimal | None,
              price: Decimal | None, reduce_only: bool, metadata: dict[str, Any] | None) -> Signal:
        ev = self._event
        if ev is None:
            raise RuntimeError("signals can only be emitted from on_bar/on_trade/on_quote")
        if not isinstance(confidence, Decimal):
            confidence = Decimal(str(confidence))
        n = self._n = self._n + 1
        eid = ev.id
        sid = self.ids.of(f"signal:{eid}:{n}")
        ts = ev.ts_event
        # replace() of a template holding the fields fixed per instance, rather than the
        # constructor's 15 keyword arguments (msgspec on Python 3.11 takes them through a dict,
        # which costs several times more past 14); replace() runs the same validation
        base = self._sig_base
        if base is None or base.symbol is not self.symbol or base.strategy is not self.name \
                or base.strategy_version is not self.version:
            base = self._sig_base = Signal(id="", ts_event=0, ts_recv=0, symbol=self.symbol, side=side, price=ONE,
                                           confidence=ONE, strategy=self.name, strategy_version=self.version)
        sig = _replace(
            base,
            id=sid,
            ts_event=ts,
            ts_recv=ts,
            correlation_id=sid,
            causation_id=eid,
            side=side,
            price=price if price is not None else ev.price,
            confidence=confidence,
            quantity=quantity,
            reduce_only=reduce_only,
            market_ts=ts,
            metadata=metadata or {},
        )
        self._out.append(sig)
        return sig


def coerce_params(cls: type[Strategy], raw: dict[str, str]) -> dict[str, Any]:
    """Convert ``--param k=v`` strings to the declared types, checking each one's bounds."""
    out: dict[str, Any] = {}
    for key, text in raw.items():
        if key not in cls.parameters:
            raise ParamError(
                f"unknown parameter {key!r} for strategy {cls.name!r}"
                f" (known: {', '.join(sorted(cls.parameters)) or 'none'})"
            )
        spec = cls.parameters[key]
        out[key] = coerce_value(key, spec, text, cls.name) if isinstance(text, str) else text
    return out
