"""The strategy interface that users subclass.

One strategy instance serves one symbol: the signal engine makes an instance per symbol the
first time it sees that symbol, so a strategy keeps plain per-symbol state and never has to
look up which symbol an event belongs to. (This is also what lets the distributed signal
service run as several replicas that share the symbols.)

Override any of ``on_bar``, ``on_trade``, ``on_quote``; inside them call ``self.buy``,
``self.sell`` or ``self.close`` to emit signals. Return nothing. Parameters arrive as keyword
arguments (``--param k=v`` on the command line, strings converted by ``coerce_params``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

import msgspec

from claire.events import Bar, IdFactory, QuoteTick, Side, Signal, TradeTick

HALF = Decimal("0.5")
ONE = Decimal(1)
_replace = msgspec.structs.replace
_BUY, _SELL = Side.BUY, Side.SELL  # module constants: reading a member from its Enum class is slow on 3.11


class Strategy:
    name: ClassVar[str] = "strategy"
    version: ClassVar[str] = "1"
    #: parameter name -> default value; the default's type converts ``--param`` strings
    defaults: ClassVar[dict[str, Any]] = {}
    #: template of this instance's signals (see ``_emit``); at class level too, for instances
    #: restored from a checkpoint taken before it existed
    _sig_base: Signal | None = None

    def __init__(self, symbol: str, ids: IdFactory | None = None, **params: Any) -> None:
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise ValueError(
                f"unknown parameter(s) for strategy {self.name!r}: {', '.join(sorted(unknown))}"
                f" (known: {', '.join(sorted(self.defaults)) or 'none'})"
            )
        self.symbol = symbol
        self.ids = ids or IdFactory()
        self.params = {**self.defaults, **params}
        self._event: Bar | TradeTick | QuoteTick | None = None
        self._out: list[Signal] = []
        self._n = 0
        self._sig_base = None
        self.setup()

    # --- hooks for subclasses -----------------------------------------------------------
    def setup(self) -> None:
        """Called once after parameters are set."""

    def on_bar(self, bar: Bar) -> None:
        pass

    def on_trade(self, tick: TradeTick) -> None:
        pass

    def on_quote(self, quote: QuoteTick) -> None:
        pass

    # --- emitting signals ----------------------------------------------------------------
    def buy(self, confidence: Decimal = ONE, *, quantity: Decimal | None = None,
            price: Decimal | None = None, metadata: dict[str, Any] | None = None) -> Signal:
        return self._emit(_BUY, confidence, quantity, price, False, metadata)

    def sell(self, confidence: Decimal = ONE, *, quantity: Decimal | None = None,
             price: Decimal | None = None, metadata: dict[str, Any] | None = None) -> Signal:
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
    """Convert ``--param k=v`` strings to the types of the strategy's defaults."""
    out: dict[str, Any] = {}
    for key, text in raw.items():
        if key not in cls.defaults:
            raise ValueError(
                f"unknown parameter {key!r} for strategy {cls.name!r}"
                f" (known: {', '.join(sorted(cls.defaults)) or 'none'})"
            )
        default = cls.defaults[key]
        try:
            if isinstance(default, bool):
                low = text.strip().lower()
                if low not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                    raise ValueError(text)
                out[key] = low in {"1", "true", "yes", "on"}
            elif isinstance(default, int):
                out[key] = int(text)
            elif isinstance(default, Decimal):
                out[key] = Decimal(text)
            elif isinstance(default, float):
                out[key] = float(text)
            else:
                out[key] = text
        except (ValueError, ArithmeticError):
            raise ValueError(
                f"parameter {key}={text!r} for strategy {cls.name!r} is not a valid "
                f"{type(default).__name__}"
            ) from None
    return out
