"""The project's .proto, the generated classes, the golden frames of the research note, the codec."""

from __future__ import annotations

from decimal import Decimal

import pytest
from google.protobuf.json_format import MessageToDict

from claire.adapters.mexc import mexc_pb2 as pb
from claire.adapters.mexc.codec import (
    BookTop,
    KlineUpdate,
    MexcCodec,
    bar_from_rest,
    bench_decode,
    depth_topic,
    symbol_of_channel,
    topics_for,
)
from claire.adapters.mexc.protogen import TARGET, generate
from claire.events import Bar, QuoteTick, Side, TradeTick

# the golden frames of the research note on MEXC wire formats (section 2.6), verbatim
DEALS = ("0a2f73706f74407075626c69632e61676772652e6465616c732e76332e6170692e7062403130306d7340425443555344541a"
         "074254435553445430bca9d9d0c432d2134a0a1f0a0839333232302e3030120a302e3034343338323433180220bba9d9d0c4"
         "32122773706f74407075626c69632e61676772652e6465616c732e76332e6170692e7062403130306d73")
KLINE = ("0a2973706f74407075626c69632e6b6c696e652e76332e6170692e70624042544355534454404d696e31351a074254435553"
         "44542220326662393432313534656634346134616232656639386338616662366134613728f3ec92d1c432a2134e0a054d69"
         "6e313510848bfebb061a053932393235220839333135382e34372a0839333135382e3437320539323830303a0b33362e3833"
         "383033323234420a333432343831312e3035488892febb06")
DEPTH = ("0a2f73706f74407075626c69632e61676772652e64657074682e76332e6170692e7062403130306d7340425443555344541a"
         "074254435553445430bad2c3d1c432ca135b12160a0839323837372e3538120a302e30303030303030301a2773706f744070"
         "75626c69632e61676772652e64657074682e76332e6170692e7062403130306d73220b31303538393633323335392a0b3130"
         "353839363332333539")
BOOK = ("0a3473706f74407075626c69632e61676772652e626f6f6b5469636b65722e76332e6170692e7062403130306d7340425443"
        "555344541a07425443555344543091b0e7d1c432da13270a0839333338372e32381207332e37333438351a0839333338372e"
        "32392208372e363639383735")
DEALS_TRADE_ID = ("0a2f73706f74407075626c69632e61676772652e6465616c732e76332e6170692e7062403130306d7340425443555344541a"
                  "074254435553445430bca9d9d0c432d213490a1e0a0839333232302e30301203302e35180120bba9d9d0c4322a0454313233"
                  "122773706f74407075626c69632e61676772652e6465616c732e76332e6170692e7062403130306d73")

GOLDEN = {
    "deals": (DEALS, {
        "channel": "spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT", "symbol": "BTCUSDT",
        "sendTime": "1736409765052",
        "publicAggreDeals": {"deals": [{"price": "93220.00", "quantity": "0.04438243", "tradeType": 2,
                                        "time": "1736409765051"}],
                             "eventType": "spot@public.aggre.deals.v3.api.pb@100ms"}}),
    "kline": (KLINE, {
        "channel": "spot@public.kline.v3.api.pb@BTCUSDT@Min15", "symbol": "BTCUSDT",
        "symbolId": "2fb942154ef44a4ab2ef98c8afb6a4a7", "createTime": "1736410707571",
        "publicSpotKline": {"interval": "Min15", "windowStart": "1736410500", "openingPrice": "92925",
                            "closingPrice": "93158.47", "highestPrice": "93158.47", "lowestPrice": "92800",
                            "volume": "36.83803224", "amount": "3424811.05", "windowEnd": "1736411400"}}),
    "depth": (DEPTH, {
        "channel": "spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT", "symbol": "BTCUSDT",
        "sendTime": "1736411507002",
        "publicAggreDepths": {"bids": [{"price": "92877.58", "quantity": "0.00000000"}],
                              "eventType": "spot@public.aggre.depth.v3.api.pb@100ms",
                              "fromVersion": "10589632359", "toVersion": "10589632359"}}),
    "bookTicker": (BOOK, {
        "channel": "spot@public.aggre.bookTicker.v3.api.pb@100ms@BTCUSDT", "symbol": "BTCUSDT",
        "sendTime": "1736412092433",
        "publicAggreBookTicker": {"bidPrice": "93387.28", "bidQuantity": "3.73485", "askPrice": "93387.29",
                                  "askQuantity": "7.669875"}}),
}


def test_generated_classes_match_the_proto():
    """`make proto` output is committed: it must equal a fresh generation with the pinned compiler."""
    pytest.importorskip("grpc_tools")
    assert TARGET.read_text() == generate()


@pytest.mark.parametrize("name", list(GOLDEN))
def test_golden_frames_decode_exactly(name: str):
    hexdata, expected = GOLDEN[name]
    msg = pb.PushDataWrapper.FromString(bytes.fromhex(hexdata))
    assert MessageToDict(msg) == expected
    assert msg.SerializeToString() == bytes.fromhex(hexdata)  # nothing lost, field order kept


def test_golden_frame_with_trade_id():
    msg = pb.PushDataWrapper.FromString(bytes.fromhex(DEALS_TRADE_ID))
    d = msg.public_aggre_deals.deals[0]
    assert (d.price, d.quantity, d.trade_type, d.trade_id) == ("93220.00", "0.5", 1, "T123")
    [tick] = MexcCodec().decode(bytes.fromhex(DEALS_TRADE_ID), 5)
    assert tick.id == "trade:BTCUSDT:T123" and tick.trade_id == "T123" and tick.aggressor is Side.BUY


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def test_unknown_fields_are_ignored():
    base = bytes.fromhex(DEALS)
    # an unknown varint field 999 and an unknown string field 7 on the wrapper (MEXC adds fields)
    extra = _varint(999 << 3) + _varint(42) + _varint((7 << 3) | 2) + _varint(3) + b"new"
    msg = pb.PushDataWrapper.FromString(base + extra)
    assert MessageToDict(msg) == GOLDEN["deals"][1]
    codec = MexcCodec()
    assert codec.decode(base + extra, 1) == codec.decode(base, 1)
    # an undeclared body (a number this file does not declare): no events, no error
    other = _varint(1 << 3 | 2) + _varint(3) + b"x@y" + _varint((304 << 3) | 2) + _varint(2) + b"\x0a\x00"
    assert codec.decode(other, 1) == []
    assert codec.decode(b"\xff\xff\xff", 1) == [] and codec.skipped["undecodable frame"] == 1


def test_deals_become_trade_ticks_with_exact_decimals():
    [t] = MexcCodec().decode(bytes.fromhex(DEALS), 1_736_409_765_100_000_000)
    assert isinstance(t, TradeTick)
    assert t.symbol == "BTCUSDT" and t.aggressor is Side.SELL
    assert t.price == Decimal("93220.00") and str(t.price) == "93220.00"  # the wire's text, not a float
    assert t.size == Decimal("0.04438243") and type(t.size) is Decimal
    assert t.ts_event == 1_736_409_765_051_000_000 and t.ts_recv == 1_736_409_765_100_000_000
    assert t.id == "trade:BTCUSDT:1736409765051-sell-0.04438243-93220.00"
    # the same content gives the same id; a repeat inside a frame gets its own
    again = MexcCodec().decode(bytes.fromhex(DEALS), 7)[0]
    assert again.id == t.id
    msg = pb.PushDataWrapper.FromString(bytes.fromhex(DEALS))
    msg.public_aggre_deals.deals.append(msg.public_aggre_deals.deals[0])
    ids = [x.id for x in MexcCodec().decode(msg.SerializeToString(), 1)]
    assert ids == [t.id, t.id + "#1"]


def test_book_ticker_becomes_a_quote():
    [q] = MexcCodec().decode(bytes.fromhex(BOOK), 99)
    assert isinstance(q, QuoteTick)
    assert (q.bid, q.bid_size, q.ask, q.ask_size) == (Decimal("93387.28"), Decimal("3.73485"), Decimal("93387.29"),
                                                      Decimal("7.669875"))
    assert q.ts_event == 1_736_412_092_433_000_000 and q.ts_recv == 99
    assert q.id == "quote:BTCUSDT:1736412092433"


def test_kline_becomes_a_candle_in_progress():
    [k] = MexcCodec().decode(bytes.fromhex(KLINE), 3)
    assert isinstance(k, KlineUpdate)
    assert k.interval_s == 900 and k.window_start == 1_736_410_500_000 and k.window_end == 1_736_411_400_000
    assert (k.open, k.high, k.low, k.close) == (Decimal("92925"), Decimal("93158.47"), Decimal("92800"),
                                                Decimal("93158.47"))
    assert k.volume == Decimal("36.83803224") and k.amount == Decimal("3424811.05")
    assert k.ts_event == 1_736_410_707_571_000_000
    bar = k.to_bar(10)
    assert isinstance(bar, Bar) and bar.ts_event == 1_736_411_400_000_000_000 and bar.ts_recv == 10
    assert bar.id == "bar:BTCUSDT:900:1736411400000000000"  # named like the feather reader names bars


def test_limit_depth_becomes_a_book_and_diff_depth_is_skipped():
    m = pb.PushDataWrapper(channel=depth_topic("BTCUSDT"), symbol="BTCUSDT", send_time=1_700_000_000_123)
    d = m.public_limit_depths
    d.version = "77"
    for i in range(5):
        d.bids.add(price=f"{100 - i}.5", quantity=f"{i + 1}")
        d.asks.add(price=f"{101 + i}.5", quantity=f"0.{i + 1}")
    codec = MexcCodec()
    [book] = codec.decode(m.SerializeToString(), 4)
    assert isinstance(book, BookTop)
    assert book.best_bid == (Decimal("100.5"), Decimal("1")) and book.best_ask == (Decimal("101.5"), Decimal("0.1"))
    assert len(book.bids) == len(book.asks) == 5 and book.version == "77" and book.id == "book:BTCUSDT:1700000000123:77"
    assert codec.decode(bytes.fromhex(DEPTH), 1) == []  # diff depth: not used by the feed


def test_rest_kline_row_becomes_the_file_bar():
    row = [1640804880000, "47482.36", "47482.36", "47416.57", "47436.1", "3.550717", 1640804940000, "168387.3"]
    bar = bar_from_rest("BTCUSDT", row, 60, 5)
    assert bar.id == "bar:BTCUSDT:60:1640804940000000000" and bar.ts_event == 1640804940000 * 1_000_000
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == (
        Decimal("47482.36"), Decimal("47482.36"), Decimal("47416.57"), Decimal("47436.1"), Decimal("3.550717"))


def test_topics_and_channels():
    assert topics_for("BTCUSDT") == [
        "spot@public.kline.v3.api.pb@BTCUSDT@Min1",
        "spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT",
        "spot@public.aggre.bookTicker.v3.api.pb@100ms@BTCUSDT",
        "spot@public.limit.depth.v3.api.pb@BTCUSDT@5",
    ]
    for t in topics_for("ETHUSDT"):
        assert symbol_of_channel(t) == "ETHUSDT"
    with pytest.raises(ValueError, match="unknown MEXC channel"):
        topics_for("BTCUSDT", ["trades"])


def test_decode_benchmark_runs():
    out = bench_decode(frames=2000)
    assert out["deals_frames_per_s"] > 1000 and out["bookTicker_frames_per_s"] > 1000
