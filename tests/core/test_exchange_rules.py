"""Exchange trading rules and book depth in the core (issue 11): risk sizes to a symbol's step and
minimums, the paper exchange refuses what the exchange would refuse, puts computed prices on the
tick, and walks the top of the book for quantity beyond the best level; R1 on the exchange clock."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from claire.config import DataSettings, RunConfig, StrategySettings
from claire.engine.kernel import build_core
from claire.events import (
    BookDepth,
    Event,
    InstrumentRules,
    Order,
    OrderResult,
    OrderStatus,
    OrderType,
    RiskAction,
    RiskCheck,
    TimeInForce,
    decode,
    encode,
)
from claire.events.topics import MARKET_DATA_TYPES, MARKET_EVENT_TYPES
from claire.execution import ExchangeSimulator, ExecutionConfig
from claire.risk import RiskConfig

from ._util import MIN, SCRIPTED, SEC, T0, D, RiskHarness, bar, decision, of_type, order, quote, signal

BTC, ETH = "BTCUSDT", "ETHUSDT"
MS = 1_000_000
RULES = InstrumentRules(tick=D("0.01"), step=D("0.001"), min_qty=D("0.01"), min_notional=D(5))


def book(sym: str, ts: int, bids: Any = (), asks: Any = (), recv: int | None = None) -> BookDepth:
    return BookDepth(id=f"book:{sym}:{ts}", ts_event=ts, ts_recv=ts if recv is None else recv, symbol=sym,
                     bids=tuple((D(str(p)), D(str(s))) for p, s in bids),
                     asks=tuple((D(str(p)), D(str(s))) for p, s in asks))


def make(slip: Any = 0, qshare: Any = 1, vol: Any = None, rules: dict[str, InstrumentRules] | None = None
         ) -> ExchangeSimulator:
    return ExchangeSimulator(ExecutionConfig(slippage_bps=D(str(slip)), taker_fee_bps=D(0), maker_fee_bps=D(0),
                                             max_quote_share=None if qshare is None else D(str(qshare)),
                                             max_volume_share=None if vol is None else D(str(vol))), rules=rules)


def fills(results: Any) -> list[OrderResult]:
    return [r for r in results if r.is_fill]


ASKS = ((100, 1), (101, 2), (102, 5))
BIDS = ((99, 1), (98, 2), (97, 5))


# --- the types ------------------------------------------------------------------------------


def test_book_depth_round_trips_and_checks_its_levels() -> None:
    b = book(BTC, T0, BIDS, ASKS, recv=T0 + 5 * MS)
    assert decode(encode(b)) == b
    assert b.topic == "market_data" and b.price == D("99.5")
    assert BookDepth in MARKET_DATA_TYPES and BookDepth not in MARKET_EVENT_TYPES  # skipped by the writer
    with pytest.raises(ValueError, match="sorted best first"):
        book(BTC, T0, asks=((101, 1), (100, 1)))
    with pytest.raises(ValueError, match="sorted best first"):
        book(BTC, T0, bids=((98, 1), (99, 1)))
    with pytest.raises(ValueError, match="must be > 0"):
        book(BTC, T0, bids=((0, 1),))
    assert book(BTC, T0).price is None  # an empty side


def test_instrument_rules_round_on_their_grid() -> None:
    r = InstrumentRules(tick=D("0.5"), step=D("0.001"))
    assert r.floor_qty(D("1.23456")) == D("1.234") and r.floor_qty(D("0.0009")) == 0 and r.floor_qty(D(-1)) == 0
    assert r.round_price(D("100.2"), up=True) == D("100.5") and r.round_price(D("100.2"), up=False) == D(100)
    assert r.round_price(D("100.5"), up=True) == D("100.5")
    assert r.on_step(D("1.234")) and not r.on_step(D("1.2345")) and r.on_tick(D("99.5")) and not r.on_tick(D("99.2"))
    with pytest.raises(ValueError):
        InstrumentRules(tick=D(0), step=D(1))


# --- paper fills: walking the book ------------------------------------------------------------


def test_a_market_buy_walks_the_asks_one_fill_per_level() -> None:
    ex = make()
    ex.on_book(book(BTC, T0, BIDS, ASKS))
    ex.on_quote(quote(BTC, T0 + 10 * MS, 99, 100, bid_size=1, ask_size=1))
    o = order(BTC, "buy", "5", T0 + 20 * MS, ref="100")
    rs = fills(ex.on_order(o))
    assert [(r.quantity, r.price, r.status) for r in rs] == [
        (D(1), D(100), OrderStatus.PARTIALLY_FILLED), (D(2), D(101), OrderStatus.PARTIALLY_FILLED),
        (D(2), D(102), OrderStatus.FILLED)]
    assert [r.slippage_bps for r in rs] == [D(0), D(100), D(200)]  # each against the signal's price
    assert [r.cum_quantity for r in rs] == [D(1), D(3), D(5)] and rs[-1].leaves_quantity == 0
    assert all(r.ts_event == o.ts_event and r.latency_ns == 0 for r in rs)  # never before the order
    assert len({r.id for r in rs}) == 3 and ex.working == {}


def test_a_market_sell_walks_the_bids() -> None:
    ex = make()
    ex.on_book(book(BTC, T0, BIDS, ASKS))
    rs = fills(ex.on_order(order(BTC, "sell", "4", T0, ref="99")))
    assert [(r.quantity, r.price) for r in rs] == [(D(1), D(99)), (D(2), D(98)), (D(1), D(97))]
    assert rs[-1].slippage_bps == ((D(99) - D(97)) / D(99) * 10_000).quantize(D("0.0001"))


def test_a_thin_book_fills_partially_and_the_rest_waits_for_the_next_book() -> None:
    ex = make()
    ex.on_book(book(BTC, T0, BIDS, ((100, 1), (101, 2))))
    o = order(BTC, "buy", "5", T0, ref="100")
    rs = fills(ex.on_order(o))
    assert sum(r.quantity for r in rs) == 3 and rs[-1].status is OrderStatus.PARTIALLY_FILLED
    assert rs[-1].leaves_quantity == 2 and BTC in ex.working  # GTC: waits
    later = book(BTC, T0 + SEC, BIDS, ((100.5, 10),), recv=T0 + SEC + 250 * MS)
    r = fills(ex.on_book(later))
    assert [(x.quantity, x.price, x.status) for x in r] == [(D(2), D("100.5"), OrderStatus.FILLED)]
    # latency on the exchange clock, and the receive time of the book it filled on
    assert (r[0].ts_event, r[0].latency_ns, r[0].ts_recv) == (T0 + SEC, SEC, T0 + SEC + 250 * MS)


@pytest.mark.parametrize(("tif", "filled", "reason"), [
    (TimeInForce.IOC, D(3), "immediate or cancel: rest cancelled"),
    (TimeInForce.FOK, D(0), "fill or kill: not enough size in the book to fill at once"),
])
def test_a_thin_book_and_ioc_or_fok(tif: TimeInForce, filled: Decimal, reason: str) -> None:
    ex = make()
    ex.on_book(book(BTC, T0, BIDS, ((100, 1), (101, 2))))
    out = ex.on_order(order(BTC, "buy", "5", T0, ref="100", time_in_force=tif))
    assert sum(r.quantity for r in fills(out)) == filled
    assert (out[-1].status, out[-1].reason) == (OrderStatus.CANCELLED, reason) and ex.working == {}


def test_the_quote_gives_the_touch_and_the_book_the_levels_beyond_it() -> None:
    ex = make()
    ex.on_book(book(BTC, T0, BIDS, ASKS))
    # a newer quote: the ask moved up to 101 (the book's 100 and 101 levels are gone or replaced)
    q = quote(BTC, T0 + 100 * MS, 100, 101, ask_size=1)
    ex.on_quote(q)
    rs = fills(ex.on_order(order(BTC, "buy", "3", T0 + 100 * MS, ref="101")))
    assert [(r.quantity, r.price) for r in rs] == [(D(1), D(101)), (D(2), D(102))]
    assert all(r.ts_recv == q.ts_recv for r in rs)


def test_a_book_newer_than_the_quote_is_the_picture() -> None:
    ex = make()
    ex.on_quote(quote(BTC, T0, 99, 100, ask_size=1))
    ex.on_book(book(BTC, T0 + 100 * MS, BIDS, ((100.5, 1), (101, 2))))
    rs = fills(ex.on_order(order(BTC, "buy", "2", T0 + 100 * MS, ref="100")))
    assert [(r.quantity, r.price) for r in rs] == [(D(1), D("100.5")), (D(1), D(101))]


def test_a_limit_order_takes_only_the_levels_within_its_limit() -> None:
    ex = make()
    ex.on_book(book(BTC, T0, BIDS, ASKS))
    out = ex.on_order(order(BTC, "buy", "5", T0, ref="101", order_type=OrderType.LIMIT, price=D(101)))
    assert [(r.quantity, r.price) for r in fills(out)] == [(D(1), D(100)), (D(2), D(101))]
    assert BTC in ex.working  # the rest rests at the limit
    rs = fills(ex.on_book(book(BTC, T0 + SEC, BIDS, ((100.8, 5),))))
    assert [(r.quantity, r.price, r.liquidity.value) for r in rs] == [(D(2), D("100.8"), "maker")]


def test_the_quote_share_caps_each_level_and_orders_share_the_levels() -> None:
    ex = make(qshare="0.5")
    ex.on_book(book(BTC, T0, BIDS, ASKS))
    ex.on_quote(quote(BTC, T0, 99, 100, ask_size=1))
    a = order(BTC, "buy", "2", T0, ref="100", time_in_force=TimeInForce.IOC)
    rs = fills(ex.on_order(a))
    assert [(r.quantity, r.price) for r in rs] == [(D("0.5"), D(100)), (D(1), D(101)), (D("0.5"), D(102))]


def test_slippage_on_book_fills_goes_on_the_tick() -> None:
    ex = make(slip=3, rules={BTC: RULES})
    ex.on_book(book(BTC, T0, ((99.99, 1),), ((100.01, 1), (100.02, 5))))
    rs = fills(ex.on_order(order(BTC, "buy", "2", T0, ref="100")))
    # 100.01 * 1.0003 = 100.040003 -> 100.05 (up for a buy); 100.02 * 1.0003 = 100.050006 -> 100.06
    assert [r.price for r in rs] == [D("100.05"), D("100.06")]
    rs = fills(ex.on_order(order(BTC, "sell", "0.5", T0, ref="100")))
    assert [r.price for r in rs] == [D("99.96")]  # 99.99 * 0.9997 = 99.960003 -> 99.96 (down for a sell)


# --- paper fills: the exchange's rules ------------------------------------------------------------


@pytest.mark.parametrize(("qty", "kw", "reason"), [
    ("1.0005", {}, "not a multiple of the BTCUSDT quantity step 0.001"),
    ("0.005", {}, "below the BTCUSDT minimum quantity 0.01"),
    ("0.04", {}, "notional 4.00 is below the BTCUSDT minimum notional 5"),
    ("1", {"order_type": OrderType.LIMIT, "price": D("100.005")}, "not a multiple of the BTCUSDT price tick 0.01"),
])
def test_an_order_the_exchange_would_refuse_is_rejected(qty: str, kw: dict[str, Any], reason: str) -> None:
    ex = make(rules={BTC: RULES})
    ex.on_quote(quote(BTC, T0, 99, 100))
    r = ex.on_order(order(BTC, "buy", qty, T0, ref="100", **kw))
    assert len(r) == 1 and r[0].status is OrderStatus.REJECTED and reason in (r[0].reason or "")
    assert ex.working == {}


def test_an_order_for_a_symbol_not_trading_is_rejected() -> None:
    paused = InstrumentRules(tick=D("0.01"), step=D("0.001"), trading=False, status="paused")
    ex = make(rules={BTC: paused})
    ex.on_quote(quote(BTC, T0, 99, 100))
    r = ex.on_order(order(BTC, "buy", "1", T0, ref="100"))
    assert r[0].status is OrderStatus.REJECTED and "not trading on the exchange (status paused)" in (r[0].reason or "")


def test_bar_fills_with_rules_are_on_the_tick_and_in_whole_steps() -> None:
    ex = make(slip=7, vol="0.25", rules={BTC: RULES})
    ex.on_bar(bar(BTC, T0 + MIN, "100", volume="0.0101"))  # a quarter of it: 0.002525 -> 0.002 at the next open
    ex.on_order(order(BTC, "buy", "0.1", T0 + MIN, ref="100"))
    r = fills(ex.on_bar(bar(BTC, T0 + 2 * MIN, "100", open="100.01")))
    # 100.01 * 1.0007 = 100.080007 -> 100.09 (up for a buy)
    assert [(x.quantity, x.price) for x in r] == [(D("0.002"), D("100.09"))]
    # without rules: the same fill, neither rounded
    ex2 = make(slip=7, vol="0.25")
    ex2.on_bar(bar(BTC, T0 + MIN, "100", volume="0.0101"))
    ex2.on_order(order(BTC, "buy", "0.1", T0 + MIN, ref="100"))
    r2 = fills(ex2.on_bar(bar(BTC, T0 + 2 * MIN, "100", open="100.01")))
    assert [(x.quantity, x.price) for x in r2] == [(D("0.002525"), D("100.01") * D("1.0007"))]


def test_book_state_survives_a_restart() -> None:
    ex = make(rules={BTC: RULES})
    ex.on_book(book(BTC, T0, BIDS, ASKS, recv=T0 + MS))
    ex.on_order(order(BTC, "buy", "10", T0, ref="100"))  # 8 fill, 2 wait
    st = decode_state(ex.get_state())
    ex2 = make(rules={BTC: RULES})
    ex2.set_state(st)
    assert ex2.last_book == ex.last_book
    nxt = book(BTC, T0 + SEC, BIDS, ((100, 5),))
    assert ex2.on_book(nxt) == ex.on_book(nxt)


def decode_state(st: dict[str, Any]) -> dict[str, Any]:
    import msgspec

    out: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(st))
    return out


# --- risk: sizing by the rules ----------------------------------------------------------------


def harness(rules: dict[str, InstrumentRules] | None, **cfg: Any) -> RiskHarness:
    h = RiskHarness(RiskConfig(**cfg))
    if rules is not None:
        h.rm.rules = dict(rules)
    return h


def test_sizing_rounds_down_to_the_symbols_step() -> None:
    coarse = InstrumentRules(tick=D("0.01"), step=D("0.01"), min_qty=D("0.01"), min_notional=D(1))
    for rules, expected in ((None, D("99.700897")), ({BTC: coarse}, D("99.70"))):
        h = harness(rules)
        h.bar(BTC, T0 + MIN, "100.3")
        out = h.signal(BTC, "buy", "100.3")
        orders = of_type(out, Order)
        assert len(orders) == 1 and orders[0].quantity == expected, (rules, orders)


def test_a_fixed_quantity_is_rounded_down_to_the_step() -> None:
    h = harness({BTC: RULES})
    h.bar(BTC, T0 + MIN, "100")
    out = h.signal(BTC, "buy", "100", quantity="0.12345")
    ev = decision(out, h.last_signal.id)
    assert ev.passed and ev.approved_quantity == D("0.123")
    assert ev.checks[-1].check is RiskCheck.SIZING and ev.checks[-1].note == "exchange minimum notional"


def test_below_the_exchange_minimum_notional_is_refused_with_the_reason() -> None:
    h = harness({BTC: RULES}, min_notional=D(0))
    h.bar(BTC, T0 + MIN, "100")
    out = h.signal(BTC, "buy", "100", quantity="0.04")
    ev = decision(out, h.last_signal.id)
    assert (ev.passed, ev.action, ev.check) == (False, RiskAction.REJECTED, RiskCheck.SIZING)
    assert ev.reason == "notional 4.000000 is below the BTCUSDT minimum notional 5: order not sent"
    assert (ev.value, ev.limit) == (D("4.000000"), D(5))
    assert not of_type(out, Order)  # nothing sent


def test_below_the_exchange_minimum_quantity_is_refused() -> None:
    h = harness({BTC: RULES}, min_notional=D(0))
    h.bar(BTC, T0 + MIN, "1000")
    ev = decision(h.signal(BTC, "buy", "1000", quantity="0.0099"), h.last_signal.id)
    assert not ev.passed and ev.check is RiskCheck.SIZING
    assert ev.reason == "quantity 0.009 (in steps of 0.001) is below the BTCUSDT minimum quantity 0.01: order not sent"


def test_a_symbol_not_trading_is_refused_and_others_are_not_affected() -> None:
    paused = InstrumentRules(tick=D("0.01"), step=D("0.001"), trading=False, status="paused")
    h = harness({BTC: paused})
    h.bar(BTC, T0 + MIN, "100")
    h.bar(ETH, T0 + MIN, "100")
    ev = decision(h.signal(BTC, "buy", "100"), h.last_signal.id)
    assert not ev.passed and "BTCUSDT is not trading on the exchange (status paused)" in ev.reason
    assert decision(h.signal(ETH, "buy", "100"), h.last_signal.id).passed  # no rules: as before


# --- the core: rules from the config, books routed to execution ----------------------------------


def test_the_core_takes_rules_from_the_config_and_routes_books_to_execution_only() -> None:
    out: list[Event] = []
    cfg = RunConfig(strategy=StrategySettings(name=SCRIPTED, params={"script": {BTC: [["buy", D("2.5")]]}}),
                    risk=RiskConfig(max_position_pct=D(1), max_total_exposure_pct=D(1), max_slippage_pct=D(1),
                                    max_spread_pct=D(1)),
                    rules={BTC: RULES})
    core = build_core(cfg, out.append)
    assert core.execution.rules == {BTC: RULES} and core.risk.rules == {BTC: RULES}  # type: ignore[attr-defined]
    b = book(BTC, T0 + MIN - 500 * MS, BIDS, ASKS, recv=T0 + MIN - 400 * MS)
    core.run([quote(BTC, T0 + MIN - SEC, 99, 100, ask_size=1), b, bar(BTC, T0 + MIN, "100")])
    assert b not in out  # market data is not emitted
    assert core.clock.now == T0 + MIN
    rs = of_type(out, OrderResult)
    assert [(r.quantity, r.price) for r in rs] == [(D(1), D(100)), (D("1.5"), D(101))]
    assert all(r.ts_recv == b.ts_recv for r in rs)  # the book is newer than the quote: it is the picture
    assert core.portfolio.position_qty(BTC) == D("2.5")  # type: ignore[attr-defined]


def test_without_rules_the_config_tree_is_unchanged() -> None:
    assert RunConfig().rules == {}
    cfg = RunConfig(rules={BTC: RULES})
    from claire.config.tree import from_spec, to_spec

    assert from_spec(to_spec(cfg)).rules == {BTC: RULES}
    assert cfg.run_key() == RunConfig().run_key()


# --- R1 on the exchange clock ----------------------------------------------------------------


def test_r1_rejects_a_signal_on_a_symbol_whose_data_stopped_while_another_goes_on() -> None:
    out: list[Event] = []
    cfg = RunConfig(data=DataSettings(), strategy=StrategySettings(name=SCRIPTED, params={"script": {}}))
    core = build_core(cfg, out.append)
    events = [bar(BTC, T0 + MIN, "100"), bar(ETH, T0 + MIN, "50")]
    events += [bar(ETH, T0 + (2 + i) * MIN, "50") for i in range(3)]  # BTC stops, ETH goes on
    core.run(events)
    now = T0 + 4 * MIN
    assert core.clock() == now  # the risk manager's "now": the newest exchange time of the feed
    # a signal on each, computed from each symbol's own latest data (as a strategy's signal is)
    stale = signal(BTC, "buy", "100", now, market_ts=T0 + MIN)
    fresh = signal(ETH, "buy", "50", now, market_ts=now)
    core.route([stale, fresh])
    ev = decision(out, stale.id)
    assert (ev.passed, ev.check) == (False, RiskCheck.DATA_QUALITY)
    assert ev.value == D(180) and ev.reason == "market data is stale (180s old): signal ignored"
    ok = decision(out, fresh.id)
    assert ok.passed and ok.checks[0].check is RiskCheck.DATA_QUALITY and ok.checks[0].value == 0


def test_r1_on_quotes_one_symbol_silent_for_longer_than_the_timeout() -> None:
    h = RiskHarness(RiskConfig(data_stale_timeout_sec=D(5)))
    h.quote(BTC, T0, 99, 100)
    for i in range(1, 8):
        h.quote(ETH, T0 + i * SEC, 49, 50)
    ev = decision(h.signal(BTC, "buy", "100", market_ts=T0), h.last_signal.id)
    assert not ev.passed and ev.check is RiskCheck.DATA_QUALITY and ev.value == D(7)
    assert decision(h.signal(ETH, "buy", "50"), h.last_signal.id).check is not RiskCheck.DATA_QUALITY
