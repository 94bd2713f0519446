"""Structures and errors shared by the MEXC client, stream, feed and recorder."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

# --- errors ------------------------------------------------------------------------------


class MexcError(Exception):
    """Anything the MEXC adapter cannot work around."""


class MexcApiError(MexcError):
    """A REST error answer: HTTP ``status``, MEXC ``code`` and ``msg``."""

    def __init__(self, message: str, *, status: int = 0, code: int | None = None, path: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.path = path


class UnknownSymbolError(MexcApiError):
    """MEXC does not know the symbol (codes -1121, 10007, 30014, 30021, or absent from exchangeInfo)."""


class SymbolNotTradingError(MexcApiError):
    """The symbol exists but is not trading (status paused/offline, code 30016)."""


class RateLimitError(MexcApiError):
    """429/418 answers kept coming (or the ``Retry-After`` asked for is longer than allowed)."""


class SubscriptionError(MexcError):
    """A subscription was refused (an ack whose ``msg`` is not the topic, e.g. "Blocked") or not acked."""

    def __init__(self, message: str, *, topic: str = "", reply: str = "") -> None:
        super().__init__(message)
        self.topic = topic
        self.reply = reply


class ReplayMismatchError(MexcError):
    """A replay asked for a REST response the capture does not hold (different code or settings)."""


# --- exchange facts ----------------------------------------------------------------------

STATUS_TEXT = {"1": "online", "2": "paused", "3": "offline"}


class SymbolRules(msgspec.Struct, frozen=True, kw_only=True):
    """The trading rules of one symbol from ``/api/v3/exchangeInfo``."""

    symbol: str
    status: str  # "1" online, "2" paused, "3" offline
    base_asset: str
    quote_asset: str
    tick_size: Decimal  # price increment (10 ** -quotePrecision)
    step_size: Decimal  # quantity increment (10 ** -baseAssetPrecision)
    min_qty: Decimal  # baseSizePrecision
    min_notional: Decimal  # quoteAmountPrecision
    max_notional: Decimal | None = None  # maxQuoteAmount
    maker_fee: Decimal | None = None
    taker_fee: Decimal | None = None
    spot_allowed: bool = True
    order_types: tuple[str, ...] = ()
    side_type: str = "1"  # 1 both sides, 2 buy only, 3 sell only, 4 close only

    @property
    def trading(self) -> bool:
        return self.status == "1" and self.spot_allowed

    @property
    def status_text(self) -> str:
        return STATUS_TEXT.get(self.status, self.status)


class Ticker24h(msgspec.Struct, frozen=True, kw_only=True):
    """``/api/v3/ticker/24hr`` of one symbol (``price_change_pct`` is a fraction: 0.0173 = 1.73 %)."""

    symbol: str
    last: Decimal | None
    open: Decimal | None
    high: Decimal | None
    low: Decimal | None
    volume: Decimal | None  # base
    quote_volume: Decimal | None
    bid: Decimal | None
    bid_qty: Decimal | None
    ask: Decimal | None
    ask_qty: Decimal | None
    price_change: Decimal | None
    price_change_pct: Decimal | None
    open_time: int | None  # ms
    close_time: int | None  # ms
    ts_recv: int


class DataQualityRecord(msgspec.Struct, frozen=True, kw_only=True):
    """Something that went wrong with the market data and what was done about it.

    ``kind``: ``gap_repaired`` (missing closed bars fetched by REST), ``gap_unrepaired`` (REST had
    no bars either), ``kline_mismatch`` (the last kline push differed from REST; REST was used),
    ``unverified`` (REST did not confirm a live bar; the live one was used), ``disconnect``
    (a connection dropped: ticks between ``from_ts`` and ``to_ts`` are missing), ``stale`` (no data
    for the watchdog's time: reconnected), ``late_ticks`` (ticks held back too long). ``cause``:
    ``reconnect``, ``stale``, ``closed``, ``error``, ``proactive``, ``skipped_window``, ``startup``,
    ``rest``. ``from_ts``/``to_ts`` are ns (bar open times for gaps: ``[from_ts, to_ts)``).
    """

    symbol: str
    kind: str
    cause: str
    from_ts: int
    to_ts: int
    bars_repaired: int = 0
    ts_recv: int = 0
    details: dict[str, Any] = {}


# --- stream items ------------------------------------------------------------------------


class Frame(msgspec.Struct, frozen=True, gc=False):
    """One binary push as received (``conn``: the connection number)."""

    conn: int
    data: bytes
    ts_recv: int


class ConnEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A connection went up (all topics acked) or down; ``symbols`` are the ones it carries."""

    conn: int
    kind: str  # connected | disconnected
    symbols: tuple[str, ...]
    reason: str = ""  # disconnected: closed | error | stale | proactive
    ts_recv: int = 0
    stale: tuple[str, ...] = ()  # the symbols the watchdog found silent


StreamItem = Frame | ConnEvent


class TransportError(Exception):
    """The request got no HTTP answer (connection refused, timeout, ...)."""


class RestResponse(msgspec.Struct, frozen=True):
    """One REST answer as the client saw it (recorded in captures, replayed by ReplayTransport)."""

    status: int
    body: bytes
    retry_after: float | None
    ts_recv: int
