"""The component contract: what every state machine of the core offers the engine.

The strategy host (``SignalEngine``), the risk manager, the paper exchange and the portfolio all
take market data through the same four handlers and save and restore themselves through the
same pair, so the engine (``TradingCore``) and the stages of the distributed runtime can drive
any of them without knowing which one it is. The contract is written down once here, as
``typing.Protocol`` classes (structural: a component does not inherit from them, it only has to
have the methods), in the lowest layer so that every core package may name it.

``Component[Out]`` is the shared part; ``Out`` is what a market event yields (signals, events,
order results, or the periodic snapshot). The four roles below add what ``TradingCore`` calls on
each component besides market data. Handler parameters are positional-only: implementations
may name them as they like.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from claire.events.types import (
    Bar,
    BookDepth,
    Event,
    Order,
    OrderResult,
    PortfolioSnapshot,
    QuoteTick,
    Signal,
    TradeTick,
)

__all__ = ["Component", "ExchangeRole", "LedgerRole", "RiskRole", "SignalRole"]

Out_co = TypeVar("Out_co", covariant=True)


class Component(Protocol[Out_co]):
    """Market data in, ``Out_co`` out; state out and back in for restarts.

    ``get_state`` returns plain data that msgspec encodes (str, int, float, bool, None, lists,
    dicts with str keys; Decimals as their exact strings, so that any JSON encoder takes it);
    ``set_state`` takes that data back *after* a JSON round trip (tuples arrive as lists) and
    must leave the component exactly where it was, so that what it emits next is identical (the
    restart tests compare events).
    """

    def on_bar(self, bar: Bar, /) -> Out_co:
        """A bar closed."""
        ...

    def on_trade(self, tick: TradeTick, /) -> Out_co:
        """A trade printed."""
        ...

    def on_quote(self, quote: QuoteTick, /) -> Out_co:
        """The top of book changed."""
        ...

    def on_market(self, ev: Bar | TradeTick | QuoteTick, /) -> Out_co:
        """Any market event (dispatches to the three above)."""
        ...

    def get_state(self) -> dict[str, Any]:
        """The component's state as plain, msgspec-encodable data (see the class doc)."""
        ...

    def set_state(self, state: dict[str, Any], /) -> None:
        """Restore what ``get_state`` returned (after a JSON round trip)."""
        ...


class SignalRole(Component[Sequence[Signal]], Protocol):
    """The strategy host: market data in, signals out; told of orders and their results so the
    strategies can see their position."""

    def on_order(self, order: Order, /) -> None:
        """An order approved for one of its signals."""
        ...

    def on_order_result(self, result: OrderResult, /) -> None:
        """A result (fill, cancel, reject) of one of its orders."""
        ...

    def on_book(self, book: BookDepth, /) -> Sequence[Signal]:
        """The top levels of a book: market context only (no strategy sees it, no signals)."""
        ...


class RiskRole(Component[Sequence[Event]], Protocol):
    """The risk gate: signals in, orders and risk events out; follows the account through the
    portfolio's snapshots and the exchange's order results."""

    def on_signal(self, sig: Signal, /) -> Sequence[Event]:
        """Decide a signal: an order, or a risk event saying why not (or why later)."""
        ...

    def on_snapshot(self, snap: PortfolioSnapshot, /) -> Sequence[Event]:
        """A portfolio snapshot: may change the trading state (halt, circuit breaker)."""
        ...

    def on_order_result(self, result: OrderResult, /) -> Sequence[Event]:
        """An order result: the working orders it keeps move on."""
        ...

    def flush_delayed(self, ts: int, reason: str, /) -> Sequence[Event]:
        """Decide every signal still waiting (end of a replay)."""
        ...


class ExchangeRole(Component[Sequence[OrderResult]], Protocol):
    """The (paper) exchange: orders in, order results out."""

    def on_order(self, order: Order, /) -> Sequence[OrderResult]:
        """Take an order: it may fill at once, or wait for market data."""
        ...

    def cancel_all(self, ts: int, reason: str, /) -> Sequence[OrderResult]:
        """Cancel every working order."""
        ...

    def on_book(self, book: BookDepth, /) -> Sequence[OrderResult]:
        """The top levels of the book changed: working orders may fill against them."""
        ...


class LedgerRole(Component[PortfolioSnapshot | None], Protocol):
    """The portfolio: fills in, snapshots out (a market event yields the periodic one, if due)."""

    @property
    def last_ts(self) -> int:
        """Event time of the last event it saw."""
        ...

    def on_fill(self, fill: OrderResult, /) -> Sequence[PortfolioSnapshot]:
        """Apply a fill; the snapshots it causes."""
        ...

    def snapshot(self, ts: int, reason: str, /) -> PortfolioSnapshot:
        """A snapshot now (e.g. the final one)."""
        ...
