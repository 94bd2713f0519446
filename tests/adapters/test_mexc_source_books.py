"""MexcSource puts the feed's books (``MexcFeed.on_book``, ahead of its reorder buffer) into the
stream as BookDepth, each just before the first market event not older than it, the rest at the
end; ``books=False`` drops them (the distributed market-data service)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal as D
from types import SimpleNamespace
from typing import Any

import pytest

import claire.adapters.mexc as mexc_pkg
from claire.adapters.mexc.codec import BookTop
from claire.events import BookDepth, QuoteTick, Side, TradeTick
from claire.runtime.sources import MexcSource

SYM = "BTCUSDT"


def _book(ts: int, asks: tuple[tuple[str, str], ...] = (("101", "1"), ("102", "2"))) -> BookTop:
    return BookTop(id=f"book:{SYM}:{ts}", symbol=SYM, ts_event=ts, ts_recv=ts + 1,
                   bids=(((D("99"), D("1")),)), asks=tuple((D(p), D(q)) for p, q in asks), version=str(ts))


def _trade(ts: int) -> TradeTick:
    return TradeTick(id=f"trade:{ts}", ts_event=ts, ts_recv=ts, symbol=SYM, price=D("100"), size=D("1"),
                     aggressor=Side.BUY, trade_id=str(ts))


def _quote(ts: int) -> QuoteTick:
    return QuoteTick(id=f"quote:{ts}", ts_event=ts, ts_recv=ts, symbol=SYM, bid=D("99"), ask=D("101"),
                     bid_size=D("1"), ask_size=D("1"))


def _fake_events(script: list[tuple[str, Any]]) -> Any:
    """A stand-in for ``MexcMarketData._events``: a feed object whose ``on_book`` gets the
    script's books as they "arrive", and the script's market events yielded in between."""

    def _events(self: Any) -> AsyncIterator[Any]:
        feed = SimpleNamespace(on_book=None, on_quality=None, live_from_ms=None, quality=[], rules={})
        self.feed = feed

        async def gen() -> AsyncIterator[Any]:
            for kind, x in script:
                if kind == "book":
                    if feed.on_book is not None:
                        feed.on_book(x)
                else:
                    yield x

        return gen()

    return _events


# books arrive ahead of the reorder buffer: the trade at 5 is released after the book at 7 came
SCRIPT = [("book", _book(3)), ("book", _book(7)), ("ev", _trade(5)), ("book", _book(6)),
          ("ev", _quote(7)), ("book", _book(9)), ("ev", _trade(8)), ("book", _book(12))]


@pytest.mark.parametrize("books", [True, False])
def test_books_go_out_before_the_first_event_not_older_and_the_rest_at_the_end(monkeypatch: pytest.MonkeyPatch,
                                                                              books: bool) -> None:
    monkeypatch.setattr(mexc_pkg.MexcMarketData, "_events", _fake_events(SCRIPT))
    src = MexcSource([SYM], books=books)
    try:
        got = [(type(ev).__name__, ev.ts_event) for ev in src]
    finally:
        src.close()
    if books:
        assert got == [("BookDepth", 3), ("TradeTick", 5), ("BookDepth", 7), ("BookDepth", 6), ("QuoteTick", 7),
                       ("TradeTick", 8), ("BookDepth", 9), ("BookDepth", 12)]
        assert src.books == 5 and src.events == 8
    else:
        assert got == [("TradeTick", 5), ("QuoteTick", 7), ("TradeTick", 8)]
        assert src.books == 0 and src.events == 3


def test_a_book_is_the_feeds_top_five_as_book_depth(monkeypatch: pytest.MonkeyPatch) -> None:
    asks = tuple((str(100 + k), "1") for k in range(1, 8))  # seven levels: five kept
    monkeypatch.setattr(mexc_pkg.MexcMarketData, "_events",
                        _fake_events([("book", _book(3, asks)), ("ev", _trade(4))]))
    src = MexcSource([SYM])
    try:
        first = next(iter(src))
    finally:
        src.close()
    assert isinstance(first, BookDepth)
    assert first.id == f"book:{SYM}:3" and first.ts_recv == 4
    assert [p for p, _ in first.asks] == [D(101), D(102), D(103), D(104), D(105)]


def test_the_paper_exchange_walks_the_streamed_book_beyond_the_best_level(monkeypatch: pytest.MonkeyPatch) -> None:
    """The live quote's touch holds 1; the book streamed with it holds more: an order of 2.5 fills
    at the touch and the next level (two prices), as on the live feed."""
    from claire.execution import ExchangeSimulator, ExecutionConfig
    from tests.core._util import order

    script = [("book", _book(7, (("101", "1"), ("102", "2"), ("103", "5")))), ("ev", _quote(7))]
    monkeypatch.setattr(mexc_pkg.MexcMarketData, "_events", _fake_events(script))
    src = MexcSource([SYM])
    ex = ExchangeSimulator(ExecutionConfig(slippage_bps=D(0), taker_fee_bps=D(0), max_quote_share=D(1)))
    try:
        for ev in src:
            ex.on_market(ev)
    finally:
        src.close()
    fills = [r for r in ex.on_order(order(SYM, "buy", "2.5", 8, "101")) if r.is_fill]
    assert [(f.price, f.quantity) for f in fills] == [(D(101), D(1)), (D(102), D("1.5"))]
