"""The MEXC adapter's bridge into the core: the feed's BookTop as a BookDepth event, exchangeInfo
rules as the core's InstrumentRules (plain data: the core never imports the adapter)."""

from __future__ import annotations

from decimal import Decimal as D

from claire.adapters.mexc.codec import BookTop, book_depth, instrument_rules, instrument_rules_of
from claire.adapters.mexc.models import SymbolRules
from claire.events import BookDepth, InstrumentRules, decode, encode


def test_book_depth_of_a_book_top() -> None:
    top = BookTop(id="book:BTCUSDT:1704067200000:42", symbol="BTCUSDT", ts_event=1_704_067_200_000_000_000,
                  ts_recv=1_704_067_200_080_000_000,
                  bids=((D("99"), D("1")), (D("98.5"), D("0")), (D("98"), D("2"))),
                  asks=((D("100"), D("1")), (D("101"), D("2")), (D("100"), D("0.5"))), version="42")
    b = book_depth(top)
    assert isinstance(b, BookDepth)
    assert (b.id, b.symbol, b.ts_event, b.ts_recv) == (top.id, top.symbol, top.ts_event, top.ts_recv)
    assert b.bids == ((D("99"), D("1")), (D("98"), D("2")))  # an empty level dropped
    assert b.asks == ((D("100"), D("1.5")), (D("101"), D("2")))  # a repeated price merged, sorted
    assert decode(encode(b)) == b
    assert book_depth(top, depth=1).asks == ((D("100"), D("1.5")),)


def test_instrument_rules_of_exchange_info() -> None:
    btc = SymbolRules(symbol="BTCUSDT", status="1", base_asset="BTC", quote_asset="USDT", tick_size=D("0.01"),
                      step_size=D("0.000001"), min_qty=D("0.000001"), min_notional=D("1"))
    paused = SymbolRules(symbol="XUSDT", status="2", base_asset="X", quote_asset="USDT", tick_size=D("0.0001"),
                         step_size=D("0.01"), min_qty=D("0.01"), min_notional=D("1"))
    assert instrument_rules(btc) == InstrumentRules(tick=D("0.01"), step=D("0.000001"), min_qty=D("0.000001"),
                                                    min_notional=D(1), trading=True, status="online")
    rules = instrument_rules_of({"BTCUSDT": btc, "XUSDT": paused})
    assert set(rules) == {"BTCUSDT", "XUSDT"}
    assert (rules["XUSDT"].trading, rules["XUSDT"].status) == (False, "paused")
