"""The topics (P7) and the pipeline streams, and which topic each event type is published on.

One module for the names, so the market-data reader, the stages, the writer and the one-process
runtime cannot disagree about where an event goes.
"""

from __future__ import annotations

from claire.events.types import (
    Alert,
    Bar,
    BookDepth,
    Event,
    Order,
    OrderResult,
    PortfolioSnapshot,
    QuoteTick,
    RiskEvent,
    Signal,
    TradeTick,
)

#: the event types of market data (what a runtime feeds the core)
MARKET_EVENT_TYPES = (Bar, TradeTick, QuoteTick)
#: every market data type: those above plus the book depth only the paper exchange reads (the
#: writer skips them all: market data is not persisted)
MARKET_DATA_TYPES = (Bar, TradeTick, QuoteTick, BookDepth)

# topic streams (P7): each event type once, for the writer and anyone else
MARKET_DATA = "market_data"
SIGNALS = "signals"
ORDERS = "orders"
ORDER_RESULTS = "order_results"
SNAPSHOTS = "portfolio_snapshots"
RISK_EVENTS = "risk_events"
ALERTS = "alerts"
# pipeline streams: a stage's outputs in order between the market events it forwards, read by
# the next stage (one totally ordered input each)
PIPE_SIGNALS = "pipe.signals"
PIPE_ORDERS = "pipe.orders"
PIPE_RESULTS = "pipe.order_results"

#: event type -> its topic stream (market data has its own, partitioned, streams)
TOPIC_OF: dict[type, str] = {
    Signal: SIGNALS,
    Order: ORDERS,
    OrderResult: ORDER_RESULTS,
    PortfolioSnapshot: SNAPSHOTS,
    RiskEvent: RISK_EVENTS,
    Alert: ALERTS,
}


def topic_out(ev: Event) -> tuple[str, Event]:
    """``(topic, event)`` for publishing an event of the core on its topic."""
    try:
        return (TOPIC_OF[type(ev)], ev)
    except KeyError:
        raise TypeError(f"no topic for {type(ev).__name__}") from None
