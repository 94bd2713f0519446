"""Event types of the trading pipeline.

Every event carries:
- ``id``: unique (deterministic per run, see :mod:`claire.events.ids`),
- ``ts_event``: when it happened (ns since epoch, UTC; exchange time for market data),
- ``ts_recv``: when the system received or produced it (ns),
- ``v``: schema version of the event type,
- ``correlation_id``: the id of the signal that started the chain (signal -> order -> fill),
- ``causation_id``: the id of the event that directly caused this one,
- ``seq``: the position in the market data feed of the market event this event derives from
  (set by the market data service of the distributed runtime; 0 where not used).

Money, prices and quantities are ``Decimal``; they travel as strings on the wire so nothing is
lost between processes or on the way into NUMERIC columns.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Any

import msgspec

SCHEMA_VERSION = 1
ZERO = Decimal(0)
ONE = Decimal(1)


class Side(StrEnum):
    """The side of a signal, order or fill."""

    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    """Market (fills at the market) or limit (fills at the limit or better)."""

    MARKET = "market"
    LIMIT = "limit"


class TimeInForce(StrEnum):
    """What happens to the rest of an order that cannot fill at once."""

    GTC = "gtc"  # good till cancelled: the rest waits for more volume
    IOC = "ioc"  # immediate or cancel: the rest is cancelled at once
    FOK = "fok"  # fill or kill: all at once or nothing
    DAY = "day"  # the rest is cancelled at the end of the UTC day


class OrderStatus(StrEnum):
    """What an order result reports (a fill, or why nothing more will fill)."""

    FILLED = "filled"
    PARTIALLY_FILLED = "partially_filled"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


FILL_STATUSES = frozenset({OrderStatus.FILLED, OrderStatus.PARTIALLY_FILLED})
#: the same as the text stored in the database and written to fills.csv
FILL_STATUS_VALUES = (OrderStatus.FILLED.value, OrderStatus.PARTIALLY_FILLED.value)


class Liquidity(StrEnum):
    """Whether a fill took liquidity (taker fee) or rested and was taken (maker fee)."""

    MAKER = "maker"
    TAKER = "taker"
    NONE = "none"


class PositionSide(StrEnum):
    """The direction of a position."""

    LONG = "long"
    SHORT = "short"
    FLAT = "flat"


class RiskCheck(StrEnum):
    """The risk checks (R1-R7 and the bookkeeping ones), named in every risk event."""

    DATA_QUALITY = "data_quality"  # R1
    POSITION_LIMIT = "position_limit"  # R2
    DAILY_DRAWDOWN = "daily_drawdown"  # R3
    TOTAL_EXPOSURE = "total_exposure"  # R4
    CIRCUIT_BREAKER = "circuit_breaker"  # R5
    SLIPPAGE = "slippage"  # R6
    SPREAD = "spread"  # R7
    SIZING = "sizing"  # order size could not be formed (nothing to close, below minimum)
    ALL = "all"  # every check passed
    STATE = "state"  # a change of trading state, not a decision on a signal


class RiskAction(StrEnum):
    """What the risk manager did with a signal, or which change of trading state happened."""

    APPROVED = "approved"
    RESIZED = "resized"  # approved with a smaller quantity than asked for
    REJECTED = "rejected"
    DELAYED = "delayed"  # held back (wide spread), decided again on the next quote
    HALTED = "halted"  # trading halted for the rest of the UTC day
    CIRCUIT_BROKEN = "circuit_broken"  # trading stopped until an explicit reset
    RESUMED = "resumed"  # back to active (new day or reset)


class TradingState(StrEnum):
    """Whether new risk may be taken: active, halted for the day, or stopped until reset."""

    ACTIVE = "active"
    HALTED = "halted"  # R3: for the rest of the UTC day; reducing orders still pass
    CIRCUIT_BROKEN = "circuit_broken"  # R5: nothing passes until reset


class AlertLevel(StrEnum):
    """How urgent an alert is."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


def _positive(name: str, value: Decimal) -> None:
    if not value > 0:
        raise ValueError(f"`{name}` must be > 0, got {value}")


def _not_negative(name: str, value: Decimal) -> None:
    if value < 0:
        raise ValueError(f"`{name}` must be >= 0, got {value}")


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", gc=False):
    """The fields every event carries (see the module doc); the ``type`` tag tells them apart on the wire."""

    id: str
    ts_event: int
    ts_recv: int
    v: int = SCHEMA_VERSION
    correlation_id: str | None = None
    causation_id: str | None = None
    seq: int = 0

    @property
    def topic(self) -> str:
        """The topic stream this event is published on."""
        return TOPIC_OF[type(self)]


# --- market data -------------------------------------------------------------------------


class Bar(Event, frozen=True, kw_only=True, tag="bar", gc=False):
    """An OHLCV bar. ``ts_event`` is the bar's close time; it opened ``interval_s`` earlier."""

    symbol: str
    interval_s: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal

    def __post_init__(self) -> None:
        # against the Decimal ZERO, not the int 0: Decimal compares with a Decimal without
        # converting it first (~0.1 us less per bar, every replay builds one Bar per row)
        if not (self.open > ZERO and self.high > ZERO and self.low > ZERO and self.close > ZERO):
            raise ValueError(f"bar prices must be > 0 (symbol {self.symbol})")
        if self.volume < ZERO:
            raise ValueError("`volume` must be >= 0")
        if self.interval_s <= 0:
            raise ValueError("`interval_s` must be > 0")

    @property
    def price(self) -> Decimal:
        """The reference price of a bar: its close."""
        return self.close

    @property
    def ts_open(self) -> int:
        """When the bar opened (ns)."""
        return self.ts_event - self.interval_s * 1_000_000_000


class TradeTick(Event, frozen=True, kw_only=True, tag="trade", gc=False):
    """One trade on the exchange (``aggressor``: the side that took liquidity)."""

    symbol: str
    price: Decimal
    size: Decimal
    aggressor: Side
    trade_id: str

    def __post_init__(self) -> None:
        if not (self.price > ZERO and self.size > ZERO):  # one test of both: the hot path of live trades
            _positive("price", self.price)  # which one, and why
            _positive("size", self.size)


class QuoteTick(Event, frozen=True, kw_only=True, tag="quote", gc=False):
    """Top of book."""

    symbol: str
    bid: Decimal
    bid_size: Decimal
    ask: Decimal
    ask_size: Decimal

    def __post_init__(self) -> None:
        if not (self.bid > ZERO and self.ask > ZERO and self.bid_size >= ZERO and self.ask_size >= ZERO):
            _positive("bid", self.bid)  # which one, and why
            _positive("ask", self.ask)
            _not_negative("bid_size", self.bid_size)
            _not_negative("ask_size", self.ask_size)

    @property
    def price(self) -> Decimal:
        """The reference price of a quote: the mid."""
        return (self.bid + self.ask) / 2


#: one level of a book: (price, size)
BookLevel = tuple[Decimal, Decimal]


class BookDepth(Event, frozen=True, kw_only=True, tag="book", gc=False):
    """The top levels of the order book (e.g. MEXC's 5-level limit depth), best level first.

    ``ts_event`` is the exchange time of the snapshot, ``ts_recv`` when it was received. Market
    data for the paper exchange only: :class:`claire.engine.core.TradingCore` routes it to
    execution (fills beyond the best level, see :mod:`claire.execution.simulator`); strategy,
    risk and portfolio do not see it, and it is not persisted (like all market data). Not part
    of :data:`MarketEvent`: the runtimes that feed only bars, trades and quotes are unchanged.
    """

    symbol: str
    bids: tuple[BookLevel, ...] = ()  # best (highest) first
    asks: tuple[BookLevel, ...] = ()  # best (lowest) first

    def __post_init__(self) -> None:
        for name, levels, desc in (("bids", self.bids, True), ("asks", self.asks, False)):
            prev: Decimal | None = None
            for price, size in levels:
                _positive(f"{name} price", price)
                _not_negative(f"{name} size", size)
                if prev is not None and (price >= prev if desc else price <= prev):
                    raise ValueError(f"`{name}` must be sorted best first ({self.symbol}: {price} after {prev})")
                prev = price

    @property
    def price(self) -> Decimal | None:
        """The mid of the best levels (None when a side is empty)."""
        if not self.bids or not self.asks:
            return None
        return (self.bids[0][0] + self.asks[0][0]) / 2


MarketEvent = Bar | TradeTick | QuoteTick


class InstrumentRules(msgspec.Struct, frozen=True, kw_only=True):
    """The exchange's trading rules of one symbol (e.g. from MEXC ``exchangeInfo``): what an order
    must satisfy for the exchange to accept it. Given to the core in the run configuration
    (``RunConfig.rules``, symbol -> rules); the risk manager sizes by them and the paper exchange
    fills by them. Not an event.

    ``tick``: price increment; ``step``: quantity increment; ``min_qty``: smallest order quantity;
    ``min_notional``: smallest quantity x price (quote currency); ``trading``: False when the
    symbol does not take orders (``status`` says why, e.g. ``paused``).
    """

    tick: Decimal
    step: Decimal
    min_qty: Decimal = ZERO
    min_notional: Decimal = ZERO
    trading: bool = True
    status: str = "online"

    def __post_init__(self) -> None:
        _positive("tick", self.tick)
        _positive("step", self.step)
        _not_negative("min_qty", self.min_qty)
        _not_negative("min_notional", self.min_notional)

    def floor_qty(self, qty: Decimal) -> Decimal:
        """``qty`` rounded down to a multiple of ``step`` (0 for anything below one step)."""
        if qty <= 0:
            return ZERO
        step = self.step
        return (qty // step) * step

    def round_price(self, price: Decimal, up: bool) -> Decimal:
        """``price`` on the tick grid: rounded up (``up``, e.g. a buy's price after slippage) or
        down (a sell's), so rounding never improves a taker's price."""
        tick = self.tick
        n = price // tick
        if up and n * tick < price:
            n += 1
        return n * tick

    def on_step(self, qty: Decimal) -> bool:
        """Whether ``qty`` is a whole number of steps."""
        return qty % self.step == 0

    def on_tick(self, price: Decimal) -> bool:
        """Whether ``price`` is a whole number of ticks."""
        return price % self.tick == 0


# --- trading -----------------------------------------------------------------------------


class Signal(Event, frozen=True, kw_only=True, tag="signal", gc=False):
    """A strategy's wish. The risk manager turns it into an order, or says why not.

    ``quantity`` is a fixed size asked for (None: the risk manager sizes it from equity and
    limits). ``reduce_only`` asks to reduce or close the position rather than open one.
    ``market_ts`` is the event time of the market data the signal was computed from (R1).
    """

    symbol: str
    side: Side
    price: Decimal
    confidence: Decimal
    strategy: str
    strategy_version: str = "1"
    quantity: Decimal | None = None
    reduce_only: bool = False
    market_ts: int = 0
    metadata: dict[str, Any] = {}

    def __post_init__(self) -> None:
        _positive("price", self.price)
        if not (ZERO <= self.confidence <= ONE):
            raise ValueError(f"`confidence` must be within 0..1, got {self.confidence}")
        if self.quantity is not None:
            _positive("quantity", self.quantity)


class Order(Event, frozen=True, kw_only=True, tag="order", gc=False):
    """An order approved by the risk manager. ``price`` is the limit price, None for market."""

    symbol: str
    side: Side
    quantity: Decimal
    order_type: OrderType = OrderType.MARKET
    price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    signal_id: str
    reference_price: Decimal  # the decision price; slippage is measured against it
    reduce_only: bool = False
    strategy: str = ""
    metadata: dict[str, Any] = {}

    def __post_init__(self) -> None:
        _positive("quantity", self.quantity)
        _positive("reference_price", self.reference_price)
        if self.order_type is OrderType.MARKET and self.price is not None:
            raise ValueError("`price` must be null for market orders")
        if self.order_type is OrderType.LIMIT:
            if self.price is None:
                raise ValueError("`price` is required for limit orders")
            _positive("price", self.price)


class OrderResult(Event, frozen=True, kw_only=True, tag="order_result", gc=False):
    """What the (paper) exchange did with an order: one fill, or a rejection/cancellation.

    For a fill, ``quantity``/``price`` are this fill's; ``cum_quantity`` and
    ``leaves_quantity`` tell how much of the order is done and how much still waits.
    Statuses are accepted in any letter case on input and normalised to lower case.
    """

    order_id: str
    signal_id: str
    symbol: str
    side: Side
    status: OrderStatus
    order_type: OrderType = OrderType.MARKET
    quantity: Decimal = ZERO
    price: Decimal | None = None
    order_quantity: Decimal = ZERO
    cum_quantity: Decimal = ZERO
    leaves_quantity: Decimal = ZERO
    fee: Decimal = ZERO
    fee_asset: str = "USDT"
    liquidity: Liquidity = Liquidity.NONE
    reference_price: Decimal | None = None
    slippage_bps: Decimal | None = None
    latency_ns: int = 0
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.status in FILL_STATUSES:
            _positive("quantity", self.quantity)
            if self.price is None:
                raise ValueError("`price` is required for a fill")
            _positive("price", self.price)
        _not_negative("fee", self.fee)

    @property
    def is_fill(self) -> bool:
        """Whether this result is a (partial) fill."""
        return self.status in FILL_STATUSES

    @property
    def notional(self) -> Decimal:
        """Quantity times price of this fill (0 for a non-fill)."""
        return self.quantity * self.price if self.price is not None else ZERO


class PositionState(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One position inside a portfolio snapshot."""

    symbol: str
    side: PositionSide
    quantity: Decimal  # signed: > 0 long, < 0 short
    avg_price: Decimal
    mark_price: Decimal
    cost_basis: Decimal  # signed quantity times average entry
    unrealized_pnl: Decimal
    realized_pnl: Decimal
    fees: Decimal
    exposure: Decimal  # |quantity| * mark (its share of equity: exposure / snapshot equity)
    opened_ts: int | None = None


class PortfolioSnapshot(Event, frozen=True, kw_only=True, tag="portfolio_snapshot", gc=False):
    """The account at one moment: cash, equity, PnL, exposure, drawdown and the positions."""

    start_cash: Decimal
    cash: Decimal
    equity: Decimal
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    fees: Decimal
    total_exposure: Decimal
    total_exposure_pct: Decimal
    high_water_mark: Decimal
    drawdown_pct: Decimal  # (hwm - equity) / hwm, unrealized PnL included
    day_start_equity: Decimal
    daily_pnl: Decimal
    num_positions: int
    positions: tuple[PositionState, ...] = ()
    reason: str = "periodic"  # fill | periodic | final


class CheckResult(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One risk check evaluated for a decision: passed or not, its value against its limit."""

    check: RiskCheck
    passed: bool
    value: Decimal | None = None
    limit: Decimal | None = None
    note: str = ""


class RiskEvent(Event, frozen=True, kw_only=True, tag="risk_event", gc=False):
    """One risk decision (pass or fail) or one change of trading state.

    ``check`` is the deciding check (the failed one; for an approval the binding one, or
    ``all``); ``checks`` lists every check evaluated, in order.
    """

    signal_id: str | None
    symbol: str | None
    check: RiskCheck
    action: RiskAction
    passed: bool
    value: Decimal | None = None
    limit: Decimal | None = None
    reason: str
    trading_state: TradingState = TradingState.ACTIVE
    order_id: str | None = None
    requested_quantity: Decimal | None = None
    approved_quantity: Decimal | None = None
    checks: tuple[CheckResult, ...] = ()
    portfolio: dict[str, Any] = {}
    config: dict[str, Any] = {}


class Alert(Event, frozen=True, kw_only=True, tag="alert", gc=False):
    """Something an operator should see (a trip of the risk limits, a data problem)."""

    level: AlertLevel
    source: str
    code: str
    message: str
    details: dict[str, Any] = {}


class Control(Event, frozen=True, kw_only=True, tag="control", gc=False):
    """A control message that flows down the pipeline with the market data (e.g. end of data)."""

    kind: str  # end_of_data
    details: dict[str, Any] = {}


AnyEvent = (Bar | TradeTick | QuoteTick | Signal | Order | OrderResult | PortfolioSnapshot | RiskEvent | Alert
            | Control | BookDepth)

TOPIC_OF: dict[type, str] = {
    Bar: "market_data",
    TradeTick: "market_data",
    QuoteTick: "market_data",
    BookDepth: "market_data",
    Signal: "signals",
    Order: "orders",
    OrderResult: "order_results",
    PortfolioSnapshot: "portfolio_snapshots",
    RiskEvent: "risk_events",
    Alert: "alerts",
    Control: "control",
}
