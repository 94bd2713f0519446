"""Typed, versioned events: round trips, validation naming the field, ids, time."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claire.events import (
    SCHEMA_VERSION,
    Alert,
    AlertLevel,
    Bar,
    CheckResult,
    Control,
    DecodeError,
    IdFactory,
    Order,
    OrderResult,
    OrderStatus,
    OrderType,
    PortfolioSnapshot,
    PositionSide,
    PositionState,
    QuoteTick,
    RiskAction,
    RiskCheck,
    RiskEvent,
    Side,
    Signal,
    TimeInForce,
    TradeTick,
    decode,
    decode_as,
    encode,
    iso_from_ns,
    make_id,
    ns_from_iso,
)
from claire.events.ids import BoundedSet

T = 1_774_271_880_000_000_000
BASE = dict(ts_event=T, ts_recv=T + 5)


def samples():
    bar = Bar(id="bar:BTCUSDT:60:1", **BASE, symbol="BTCUSDT", interval_s=60, open=D("70000.01"),
              high=D("70100"), low=D("69950.5"), close=D("70050.25"), volume=D("12.345678"))
    trade = TradeTick(id="trade:BTCUSDT:1", **BASE, symbol="BTCUSDT", price=D("61837.63000000"),
                      size=D("0.00123"), aggressor=Side.SELL, trade_id="3735693015")
    quote = QuoteTick(id="quote:BTCUSDT:9", **BASE, symbol="BTCUSDT", bid=D("61837.62"), bid_size=D("1.5"),
                      ask=D("61837.63"), ask_size=D("0.25"))
    sig = Signal(id="s1", **BASE, correlation_id="s1", causation_id=bar.id, symbol="BTCUSDT", side=Side.BUY,
                 price=D("70050.25"), confidence=D("0.8125"), strategy="momentum", strategy_version="1",
                 market_ts=T, metadata={"rsi": 28.5, "macd_hist": "0.12"})
    order = Order(id="o1", **BASE, correlation_id="s1", causation_id="s1", symbol="BTCUSDT", side=Side.BUY,
                  quantity=D("0.142"), signal_id="s1", reference_price=D("70050.25"))
    limit = Order(id="o2", **BASE, symbol="BTCUSDT", side=Side.SELL, quantity=D("1"), order_type=OrderType.LIMIT,
                  price=D("71000"), time_in_force=TimeInForce.DAY, signal_id="s2", reference_price=D("70000"))
    fill = OrderResult(id="f1", **BASE, correlation_id="s1", causation_id="o1", order_id="o1", signal_id="s1",
                       symbol="BTCUSDT", side=Side.BUY, status=OrderStatus.PARTIALLY_FILLED, quantity=D("0.1"),
                       price=D("70051"), order_quantity=D("0.142"), cum_quantity=D("0.1"), leaves_quantity=D("0.042"),
                       fee=D("7.0051"), slippage_bps=D("1.0707"), latency_ns=60_000_000_000)
    rejected = OrderResult(id="r1", **BASE, order_id="o9", signal_id="s9", symbol="BTCUSDT", side=Side.SELL,
                           status=OrderStatus.REJECTED, reason="no market data for BTCUSDT")
    pos = PositionState(symbol="BTCUSDT", side=PositionSide.LONG, quantity=D("0.1"), avg_price=D("70051"),
                        mark_price=D("70100"), cost_basis=D("7005.1"), unrealized_pnl=D("4.9"),
                        realized_pnl=D(0), fees=D("7.0051"), exposure=D("7010"), opened_ts=T)
    snap = PortfolioSnapshot(id="p1", **BASE, start_cash=D(100000), cash=D("92987.8949"), equity=D("99997.8949"),
                             realized_pnl=D(0), unrealized_pnl=D("4.9"), fees=D("7.0051"), total_exposure=D("7010"),
                             total_exposure_pct=D("0.0701"), high_water_mark=D(100000), drawdown_pct=D("0.0000211"),
                             day_start_equity=D(100000), daily_pnl=D("-2.1051"), num_positions=1, positions=(pos,),
                             reason="fill")
    risk = RiskEvent(id="re1", **BASE, signal_id="s1", symbol="BTCUSDT", check=RiskCheck.POSITION_LIMIT,
                     action=RiskAction.REJECTED, passed=False, value=D("0.12"), limit=D("0.10"),
                     reason="position would be 12% of equity", checks=(
                         CheckResult(check=RiskCheck.DATA_QUALITY, passed=True, value=D(0), limit=D(60)),
                         CheckResult(check=RiskCheck.POSITION_LIMIT, passed=False, value=D("0.12"), limit=D("0.10"))),
                     portfolio={"equity": "100000"}, config={"max_position_pct": "0.10"})
    alert = Alert(id="a1", **BASE, level=AlertLevel.CRITICAL, source="risk", code="trading_circuit_broken",
                  message="stop", details={"value": "0.11"})
    ctl = Control(id="eod", **BASE, kind="end_of_data", seq=7)
    return [bar, trade, quote, sig, order, limit, fill, rejected, snap, risk, alert, ctl]


@pytest.mark.parametrize("event", samples(), ids=lambda e: type(e).__name__)
def test_round_trip_is_exact(event):
    raw = encode(event)
    back = decode(raw)
    assert back == event and type(back) is type(event)
    assert decode_as(raw, type(event)) == event
    data = json.loads(raw)
    assert data["type"] and data["v"] == SCHEMA_VERSION and data["id"] == event.id
    # money travels as text: no float anywhere
    for key in ("price", "quantity", "equity", "close", "bid", "fee"):
        if key in data and data[key] is not None:
            assert isinstance(data[key], str)


def test_every_event_has_identity_time_and_correlation():
    sig, order, fill = samples()[3], samples()[4], samples()[6]
    assert order.correlation_id == sig.id == fill.correlation_id
    assert order.causation_id == sig.id and fill.causation_id == order.id
    for ev in samples():
        assert ev.id and ev.ts_event > 0 and ev.ts_recv > 0


@given(st.decimals(min_value=D("0.00000001"), max_value=D("1e9"), allow_nan=False, places=8),
       st.decimals(min_value=D("0.00000001"), max_value=D("1e6"), allow_nan=False, places=8))
def test_decimal_values_survive_the_wire(price, qty):
    t = TradeTick(id="t", ts_event=1, ts_recv=1, symbol="X", price=price, size=qty, aggressor=Side.BUY, trade_id="1")
    back = decode(encode(t))
    assert back.price == price and back.size == qty
    assert str(back.price) == str(price)


@pytest.mark.parametrize(("patch", "field"), [
    ({"symbol": 5}, "$.symbol"),
    ({"price": "abc"}, "$.price"),
    ({"side": "hold"}, "$.side"),
    ({"ts_event": "yesterday"}, "$.ts_event"),
    ({"confidence": "1.5"}, "confidence"),
    ({"price": "-3"}, "price"),
])
def test_invalid_payload_is_rejected_naming_the_field(patch, field):
    data = json.loads(encode(samples()[3]))
    data.update(patch)
    with pytest.raises(DecodeError) as exc:
        decode(json.dumps(data))
    assert field in str(exc.value)


def test_missing_field_unknown_type_and_garbage_are_rejected():
    data = json.loads(encode(samples()[4]))
    del data["quantity"]
    with pytest.raises(DecodeError, match="quantity"):
        decode(json.dumps(data))
    with pytest.raises(DecodeError, match="type"):
        decode(b'{"type":"teleport","id":"x","ts_event":1,"ts_recv":1}')
    with pytest.raises(DecodeError):
        decode(b"\x00\xff not json")


def test_order_status_any_case_and_unknown_status():
    raw = encode(samples()[7]).replace(b'"rejected"', b'"REJECTED"')
    assert decode(raw).status is OrderStatus.REJECTED
    raw = encode(samples()[7]).replace(b'"rejected"', b'"Cancelled"')
    assert decode(raw).status is OrderStatus.CANCELLED
    with pytest.raises(DecodeError, match="status"):
        decode(encode(samples()[7]).replace(b'"rejected"', b'"exploded"'))


def test_constructor_validation():
    with pytest.raises(ValueError, match="price"):
        Order(id="o", ts_event=1, ts_recv=1, symbol="X", side=Side.BUY, quantity=D(1), price=D(5), signal_id="s",
              reference_price=D(5))  # a market order has no price
    with pytest.raises(ValueError, match="price"):
        Order(id="o", ts_event=1, ts_recv=1, symbol="X", side=Side.BUY, quantity=D(1), order_type=OrderType.LIMIT,
              signal_id="s", reference_price=D(5))
    with pytest.raises(ValueError, match="quantity"):
        OrderResult(id="r", ts_event=1, ts_recv=1, order_id="o", signal_id="s", symbol="X", side=Side.BUY,
                    status=OrderStatus.FILLED, quantity=D(0), price=D(1))
    with pytest.raises(ValueError, match="bar prices"):
        Bar(id="b", ts_event=1, ts_recv=1, symbol="X", interval_s=60, open=D(0), high=D(1), low=D(1), close=D(1),
            volume=D(1))


def test_ids_are_deterministic_uuid5():
    ids = IdFactory("run-a")
    assert ids("order", "s1") == ids("order", "s1")
    assert ids("order", "s1") != IdFactory("run-b")("order", "s1")
    ns = uuid.uuid4()
    for i in range(200):
        assert make_id(ns, "x", i) == str(uuid.uuid5(ns, f"x:{i}"))
    assert str(uuid.UUID(ids("fill", "o1", 3))) == ids("fill", "o1", 3)


def test_bounded_set_keeps_the_newest():
    s = BoundedSet(maxlen=3)
    for x in "abcd":
        s.add(x)
    assert "a" not in s and all(x in s for x in "bcd") and len(s) == 3
    assert BoundedSet(s.to_list(), maxlen=3).to_list() == ["b", "c", "d"]


def test_time_helpers():
    assert iso_from_ns(T) == "2026-03-23T13:18:00Z"
    assert ns_from_iso("2026-03-23T13:18:00Z") == T
    assert iso_from_ns(T + 1_500_000) == "2026-03-23T13:18:00.0015Z"
    assert samples()[0].ts_open == T - 60_000_000_000
