"""The distributed stages, wired by queues and scheduled at random, give exactly the trades of the
one-process core. (No bus here: this tests the ordering protocol itself.)"""

from __future__ import annotations

import random
from collections import deque
from decimal import Decimal

import msgspec
import pytest

from claire.config import RunConfig, RuntimeSettings, StrategySettings
from claire.engine.kernel import build_core
from claire.events import Control, IdFactory, OrderResult, PortfolioSnapshot, RiskEvent, decode, encode
from claire.events.topics import PIPE_ORDERS, PIPE_RESULTS, PIPE_SIGNALS, RISK_EVENTS, SIGNALS, SNAPSHOTS
from claire.execution import ExecutionConfig
from claire.marketdata import read_bars_feather
from claire.portfolio import Portfolio
from claire.runtime.backtest import run_backtest
from claire.runtime.distributed.stages import (
    AccountStage,
    ExecutionStage,
    PortfolioStage,
    RiskStage,
    SignalStage,
    partition_of,
)


def _bars(data_dir, n=6000):
    bars = []
    for name in ("BTC_USDT-1m.feather", "ETH_USDT-1m.feather", "SOL_USDT-1m.feather"):
        bars += read_bars_feather(data_dir / name)[:n]
    bars.sort(key=lambda b: b.ts_event)  # stable: ties keep file order
    return [msgspec.structs.replace(b, seq=i + 1) for i, b in enumerate(bars)]


def _market_queues(bars, partitions: int) -> list[deque]:
    """The market data service's partitions: encoded bars by symbol, then end of data."""
    market = [deque() for _ in range(partitions)]
    for b in bars:
        market[partition_of(b.symbol, partitions)].append(encode(b))
    eod = encode(Control(id="eod", ts_event=bars[-1].ts_event, ts_recv=bars[-1].ts_event, kind="end_of_data",
                         seq=len(bars) + 1))
    for q in market:
        q.append(eod)
    return market


def run_stages(cfg: RunConfig, bars, seed: int, partitions: int = 1, checkpoint_every: int = 0,  # noqa: C901 - the test's random scheduler over every stage, one loop on purpose
               signals_out: list | None = None):
    """Run the four stages over in-memory queues with a random scheduler (the signals topic's
    events into ``signals_out``)."""
    ids = IdFactory(cfg.run_key())
    proto = build_core(cfg, lambda e: None, ids)  # the same components, configured the same way
    sig_stages = [SignalStage(build_core(cfg, lambda e: None, ids).signals) for _ in range(partitions)]
    risk = RiskStage(proto.risk, proto.risk.portfolio, partitions, clock=proto.clock)  # as the app wires it
    ex = ExecutionStage(proto.execution)
    pf = PortfolioStage(Portfolio(cfg.portfolio.start_cash, ids))
    market = _market_queues(bars, partitions)
    sig_q = [deque() for _ in range(partitions)]
    orders_q, results_q_risk, results_q_pf = deque(), deque(), deque()
    fills, snaps, risk_events = [], [], []
    rng = random.Random(seed)
    steps = 0

    def route(outs, part=0):
        for stream, item in outs:
            raw = item if isinstance(item, bytes) else encode(item)
            if stream.startswith(PIPE_SIGNALS):
                sig_q[part].append(raw)
            elif stream == PIPE_ORDERS:
                orders_q.append(raw)
            elif stream == PIPE_RESULTS:
                results_q_risk.append(raw)
                results_q_pf.append(raw)
                ev = decode(raw)
                if type(ev) is OrderResult and ev.is_fill:
                    fills.append(ev)
            elif stream == SNAPSHOTS:
                snaps.append(decode(raw))
            elif stream == RISK_EVENTS:
                risk_events.append(decode(raw))
            elif stream == SIGNALS and signals_out is not None:
                signals_out.append(decode(raw))

    while any(market) or any(sig_q) or orders_q or results_q_risk or results_q_pf:
        choices = [k for k, q in [("m", any(market)), ("s", any(sig_q)), ("o", orders_q), ("r", results_q_risk),
                                  ("p", results_q_pf)] if q]
        k = rng.choice(choices)
        burst = rng.randint(1, 20)
        for _ in range(burst):
            if k == "m":
                parts = [i for i, q in enumerate(market) if q]
                if not parts:
                    break
                i = rng.choice(parts)
                raw = market[i].popleft()
                route(sig_stages[i].handle(decode(raw), raw), i)
            elif k == "s":
                parts = [i for i, q in enumerate(sig_q) if q]
                if not parts:
                    break
                i = rng.choice(parts)
                raw = sig_q[i].popleft()
                route(risk.handle_signal_stream(decode(raw), raw, i))
            elif k == "o" and orders_q:
                raw = orders_q.popleft()
                route(ex.handle(decode(raw), raw))
            elif k == "r" and results_q_risk:
                raw = results_q_risk.popleft()
                route(risk.handle_feedback(decode(raw), raw))
            elif k == "p" and results_q_pf:
                raw = results_q_pf.popleft()
                route(pf.handle(decode(raw), raw))
            steps += 1
            if checkpoint_every and steps % checkpoint_every == 0:
                # restart every stage from its checkpoint (as after kill -9 right after a commit)
                for st in [*sig_stages, risk, ex, pf]:
                    state = msgspec.json.decode(msgspec.json.encode(st.get_state()))
                    st.set_state(state)
    return fills, snaps, risk_events, pf.portfolio


def _key(f: OrderResult):
    return (f.symbol, f.side, f.quantity, f.price, f.fee, f.ts_event, f.status)


@pytest.mark.parametrize("fill", ["next_open", "close"])
@pytest.mark.parametrize("seed", [1, 2])
def test_stages_match_core(data_dir, fill, seed):
    bars = _bars(data_dir)
    cfg = RunConfig(strategy=StrategySettings(name="sma_cross", params={"fast": 10, "slow": 30}),
                    execution=ExecutionConfig(fill=fill, max_volume_share=Decimal("0.05")),
                    runtime=RuntimeSettings(run_id="parity"))
    ref = run_backtest(cfg, events=bars)
    fills, snaps, risk_events, pf = run_stages(cfg, bars, seed)
    assert len(ref.fills) > 50
    assert [_key(f) for f in fills] == [_key(f) for f in ref.fills]
    assert [f.id for f in fills] == [f.id for f in ref.fills]
    assert pf.equity() == ref.portfolio.equity()
    ref_snaps = [(s.ts_event, s.equity, s.reason) for s in ref.recorder.snapshots]
    assert [(s.ts_event, s.equity, s.reason) for s in snaps] == ref_snaps
    assert [(r.id, r.action, r.check) for r in risk_events] == [(r.id, r.action, r.check) for r in ref.recorder.risk_events]


def test_two_signal_partitions_and_restarts_match_core(data_dir):
    bars = _bars(data_dir, 3000)
    cfg = RunConfig(strategy=StrategySettings(name="sma_cross", params={"fast": 10, "slow": 30}),
                    execution=ExecutionConfig(fill="close"), runtime=RuntimeSettings(run_id="parity2"))
    ref = run_backtest(cfg, events=bars)
    fills, snaps, _, pf = run_stages(cfg, bars, seed=7, partitions=2, checkpoint_every=97)
    assert len(ref.fills) > 20
    assert [_key(f) for f in fills] == [_key(f) for f in ref.fills]
    assert pf.equity() == ref.portfolio.equity()
    assert isinstance(snaps[-1], PortfolioSnapshot) and snaps[-1].reason == "final"
    assert isinstance(RiskEvent, type)


def run_account(cfg: RunConfig, bars, seed: int, partitions: int = 1, checkpoint_every: int = 0):  # noqa: C901 - the test's random scheduler over every stage, one loop on purpose
    """Signal stage(s) -> AccountStage over in-memory queues with a random scheduler; also feeds
    the report's portfolio replica from the account's pipe.order_results."""
    ids = IdFactory(cfg.run_key())
    sig_stages = [SignalStage(build_core(cfg, lambda e: None, ids).signals) for _ in range(partitions)]
    acc = AccountStage(build_core(cfg, lambda e: None, ids), partitions)
    replica = PortfolioStage(Portfolio(cfg.portfolio.start_cash, ids))
    market = _market_queues(bars, partitions)
    sig_q = [deque() for _ in range(partitions)]
    fills, snaps, risk_events, replica_snaps = [], [], [], []
    rng = random.Random(seed)
    steps = 0
    while any(market) or any(sig_q):
        k = rng.choice([k for k, q in (("m", any(market)), ("s", any(sig_q))) if q])
        for _ in range(rng.randint(1, 20)):
            src = market if k == "m" else sig_q
            parts = [i for i, q in enumerate(src) if q]
            if not parts:
                break
            i = rng.choice(parts)
            raw = src[i].popleft()
            if k == "m":
                for stream, item in sig_stages[i].handle(decode(raw), raw):
                    if stream.startswith(PIPE_SIGNALS):
                        sig_q[i].append(item if isinstance(item, bytes) else encode(item))
                continue
            for stream, item in acc.handle_signal_stream(decode(raw), raw, i):
                ev = decode(item if isinstance(item, bytes) else encode(item))
                if stream == PIPE_RESULTS:
                    replica_snaps += [s for _, s in replica.handle(ev, b"")]
                    if type(ev) is OrderResult and ev.is_fill:
                        fills.append(ev)
                elif stream == SNAPSHOTS:
                    snaps.append(ev)
                elif stream == RISK_EVENTS:
                    risk_events.append(ev)
            steps += 1
            if checkpoint_every and steps % checkpoint_every == 0:
                for st in [*sig_stages, acc]:
                    st.set_state(msgspec.json.decode(msgspec.json.encode(st.get_state())))
    return fills, snaps, risk_events, replica_snaps, acc


@pytest.mark.parametrize(("fill", "partitions", "checkpoint_every"), [("next_open", 1, 0), ("close", 2, 89)])
def test_account_stage_matches_core(data_dir, fill, partitions, checkpoint_every):
    """Risk, execution and portfolio as one stage (``--topology account``): the core's fills,
    snapshots and risk decisions, also with two signal partitions and restarts from checkpoints;
    the report's replica fed from its pipe.order_results sees the same snapshots."""
    bars = _bars(data_dir, 4000)
    cfg = RunConfig(strategy=StrategySettings(name="sma_cross", params={"fast": 10, "slow": 30}),
                    execution=ExecutionConfig(fill=fill, max_volume_share=Decimal("0.05")),
                    runtime=RuntimeSettings(run_id="parity-account"))
    ref = run_backtest(cfg, events=bars)
    fills, snaps, risk_events, replica_snaps, acc = run_account(cfg, bars, seed=3, partitions=partitions,
                                                                 checkpoint_every=checkpoint_every)
    assert len(ref.fills) > 30
    assert [f.id for f in fills] == [f.id for f in ref.fills]
    assert [_key(f) for f in fills] == [_key(f) for f in ref.fills]
    ref_snaps = [(s.ts_event, s.equity, s.reason) for s in ref.recorder.snapshots]
    assert [(s.ts_event, s.equity, s.reason) for s in snaps] == ref_snaps
    assert [(s.ts_event, s.equity, s.reason) for s in replica_snaps] == ref_snaps
    assert [(r.id, r.action, r.check) for r in risk_events] == [(r.id, r.action, r.check) for r in ref.recorder.risk_events]
    assert acc.done and acc.core.portfolio.equity() == ref.portfolio.equity()


def _with_books(bars):
    """The bars with a thin 3-level book of the symbol 20 s after each: the paper exchange fills a
    working order on its levels (beyond the best one), as on a live MEXC feed."""
    from claire.events import BookDepth

    out = []
    for b in bars:
        out.append(b)
        c = b.close
        tick = c / Decimal(10_000)
        out.append(BookDepth(id=f"book:{b.symbol}:{b.ts_event}", ts_event=b.ts_event + 20_000_000_000,
                             ts_recv=b.ts_event + 20_000_000_000, symbol=b.symbol,
                             bids=tuple((c - k * tick, Decimal("0.01") * k) for k in (1, 2, 3)),
                             asks=tuple((c + k * tick, Decimal("0.01") * k) for k in (1, 2, 3))))
    out.sort(key=lambda e: e.ts_event)
    return [msgspec.structs.replace(e, seq=i + 1) for i, e in enumerate(out)]


@pytest.mark.parametrize("topology", ["seeds", "account"])
def test_books_reach_the_paper_exchange_of_the_stages(data_dir, topology):
    """Book depth (a live feed's) goes through the stages to the paper exchange, which fills on its
    levels as the one-process core's does; strategy, risk and portfolio skip it. The books change
    the fills here (without them: others), so the equality says the stages carry them."""
    events = _with_books(_bars(data_dir, 1500))
    cfg = RunConfig(strategy=StrategySettings(name="sma_cross", params={"fast": 10, "slow": 30}),
                    execution=ExecutionConfig(fill="next_open"), runtime=RuntimeSettings(run_id="parity-books"))
    ref = run_backtest(cfg, events=events)
    without = run_backtest(cfg, events=[e for e in events if type(e).__name__ != "BookDepth"])
    assert len(ref.fills) > 10
    assert [_key(f) for f in ref.fills] != [_key(f) for f in without.fills]
    # the market context at each signal: book depth from the book's levels (both sides)
    book_list = [e for e in events if type(e).__name__ == "BookDepth"]
    assert ref.recorder.signals
    for sig in ref.recorder.signals:
        book = [b for b in book_list if b.symbol == sig.symbol and b.ts_event <= sig.ts_event][-1]
        want = sum(p * q for p, q in (*book.bids, *book.asks))
        market = sig.metadata["market"]
        assert market["depth_source"] == "book (3 bid, 3 ask levels)", market
        assert Decimal(market["order_book_depth"]) == want.quantize(Decimal("0.00000001"))
    if topology == "seeds":
        signals: list = []
        fills, snaps, _, pf = run_stages(cfg, events, seed=5, signals_out=signals)
        equity = pf.equity()
        assert [(s.id, s.metadata) for s in signals] == [(s.id, s.metadata) for s in ref.recorder.signals]
    else:
        fills, snaps, _, replica_snaps, acc = run_account(cfg, events, seed=5)
        equity = acc.core.portfolio.equity()
        assert [(s.ts_event, s.equity, s.reason) for s in replica_snaps] == [
            (s.ts_event, s.equity, s.reason) for s in ref.recorder.snapshots]
    assert [f.id for f in fills] == [f.id for f in ref.fills]
    assert [_key(f) for f in fills] == [_key(f) for f in ref.fills]
    assert [(s.ts_event, s.equity, s.reason) for s in snaps] == [
        (s.ts_event, s.equity, s.reason) for s in ref.recorder.snapshots]
    assert equity == ref.portfolio.equity()
