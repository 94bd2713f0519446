"""Issue 12, acceptance 1, on quote data: spread and depth are filled where the source has quotes
(a bookTicker capture replayed by `claire backtest --db`) and from the book's levels where it has a
book; the 24h volume of tick data is the sum of its trades."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from claire.config import DataSettings, RunConfig, RuntimeSettings, StrategySettings
from claire.events import BookDepth, QuoteTick, TradeTick
from claire.marketdata import open_market_data
from claire.runtime.backtest import run_backtest_cli
from claire.storage.types import json_loads
from claire.strategy import Strategy
from claire.strategy.market_context import MarketContext
from claire.strategy.registry import BUILTINS


class QuoteFlipper(Strategy):
    """Every 40th quote: buy when flat, else close (a strategy of quotes, for this test)."""

    name = "quote_flipper"

    def setup(self) -> None:
        self.n = 0

    def on_quote(self, quote: QuoteTick) -> None:
        self.n += 1
        if self.n % 40:
            return
        if self.position == 0:
            self.buy()
        else:
            self.close()


def test_spread_and_depth_from_quotes(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BUILTINS, QuoteFlipper.name, QuoteFlipper)
    files = [str(data_dir / "btcusdt-quotes.parquet"), str(data_dir / "btcusdt-trades.parquet")]
    url = f"sqlite:///{tmp_path}/ticks.db"
    run_backtest_cli(RunConfig(data=DataSettings(paths=files), strategy=StrategySettings(name=QuoteFlipper.name),
                               runtime=RuntimeSettings(database_url=url, run_id="analytics-ticks")), progress=False)
    # independent: per quote, its spread and top-of-book value, and the trades' volume before it
    at_quote: dict[str, tuple[Decimal, Decimal, Decimal]] = {}
    traded = Decimal(0)
    for ev in open_market_data(files, None):
        if isinstance(ev, TradeTick):
            traded += ev.size
        elif isinstance(ev, QuoteTick):
            mid = (ev.bid + ev.ask) / 2
            at_quote[ev.id] = (((ev.ask - ev.bid) / mid * 10_000).quantize(Decimal("0.0001")),
                               ev.bid * ev.bid_size + ev.ask * ev.ask_size, traded)
    eng = sa.create_engine(url)
    with eng.connect() as c:
        rows = c.execute(sa.text(
            "SELECT s.causation_id, m.spread_bps, m.order_book_depth, m.volume_24h, m.trend_direction, m.metadata "
            "FROM market_conditions m JOIN signals s ON s.id = m.signal_id WHERE s.strategy = :n"),
            {"n": QuoteFlipper.name}).all()
        ea = c.execute(sa.text("SELECT count(*), count(price_after) FROM execution_analysis")).one()
    eng.dispose()
    assert len(rows) > 5
    for quote_id, spread, depth, vol, trend, meta in rows:
        want_spread, want_depth, want_vol = at_quote[quote_id]
        assert Decimal(str(spread)) == want_spread
        assert Decimal(str(depth)) == want_depth.quantize(Decimal("0.00000001"))
        assert Decimal(str(vol)) == want_vol
        m = json_loads(meta) if isinstance(meta, str) else meta
        # 46 s of ticks: the one-minute bars made of them give a trend only once a return exists
        assert trend in ("up", "down", "sideways") or m["unavailable"]["trend_direction"] == "no bar return seen yet"
        assert m["depth_source"] == "quote (top of book)"
        assert not {"spread_bps", "order_book_depth", "volume_24h"} & set(m.get("unavailable", {}))
    assert ea[0] > 0 and ea[0] - ea[1] <= 1


def _quote(ts: int, bid: str, ask: str) -> QuoteTick:
    return QuoteTick(id=f"q{ts}", ts_event=ts, ts_recv=ts, symbol="BTCUSDT", bid=Decimal(bid), bid_size=Decimal(1),
                     ask=Decimal(ask), ask_size=Decimal(2))


def test_depth_from_the_book_levels_when_there_is_a_book() -> None:
    ctx = MarketContext()
    ctx.on_quote(_quote(1_000, "100", "100.2"))
    book = BookDepth(id="b1", ts_event=2_000, ts_recv=2_000, symbol="BTCUSDT",
                     bids=((Decimal("100"), Decimal("1")), (Decimal("99.9"), Decimal("3"))),
                     asks=((Decimal("100.2"), Decimal("2")), (Decimal("100.3"), Decimal("0.5"))))
    ctx.on_book(book)
    figs = ctx.figures("BTCUSDT", 3_000_000_000)
    assert Decimal(figs["order_book_depth"]) == Decimal("100") + Decimal("299.7") + Decimal("200.4") + Decimal("50.15")
    assert figs["depth_source"] == "book (2 bid, 2 ask levels)"
    assert Decimal(figs["spread_bps"]) == (Decimal("0.2") / Decimal("100.1") * 10_000).quantize(Decimal("0.0001"))
    # restored from its checkpoint, the same figures
    again = MarketContext()
    again.set_state(ctx.get_state())
    assert again.figures("BTCUSDT", 3_000_000_000) == figs


def test_restored_bar_context_gives_the_same_figures(data_dir: Path) -> None:
    evs = []
    for ev in open_market_data([str(data_dir / "BTC_USDT-1m.feather")], None):
        evs.append(ev)
        if len(evs) == 3000:
            break
    a, b = MarketContext(), MarketContext()
    for ev in evs[:2000]:
        a.on_bar(ev)
    b.set_state(a.get_state())
    for ev in evs[2000:]:
        a.on_bar(ev)
        b.on_bar(ev)
    now = evs[-1].ts_event
    assert a.figures("BTCUSDT", now) == b.figures("BTCUSDT", now)
    assert "volume_window_h" not in a.figures("BTCUSDT", now)  # a full 24 hours: no coverage note
    assert b.get_state() == a.get_state()


def test_figures_do_not_depend_on_when_they_are_asked(data_dir: Path) -> None:
    """Bars processed one by one (a signal on every bar) or in one go give the same figures."""
    evs = []
    for ev in open_market_data([str(data_dir / "ETH_USDT-1m.feather")], None):
        evs.append(ev)
        if len(evs) == 1600:
            break
    often, once = MarketContext(), MarketContext()
    for i, ev in enumerate(evs):
        often.on_bar(ev)
        once.on_bar(ev)
        if i % 3 == 0 or 500 < i < 560:
            often.figures("ETHUSDT", ev.ts_event)
    now = evs[-1].ts_event
    assert often.figures("ETHUSDT", now) == once.figures("ETHUSDT", now)
