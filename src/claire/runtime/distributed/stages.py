"""Pipeline stages of the distributed runtime: the core components behind ordered streams.

Each stage is a deterministic state machine like the components it wraps: ``handle`` takes one
decoded input event (plus its raw bytes, so forwarded events are not re-encoded) and returns the
outputs as ``(stream, event_or_raw_bytes)`` pairs. The service loop (``services.runner``) adds the
bus: reading, committing outputs + acks + checkpoint atomically, dead letters, metrics.

Every stage forwards the market events it has processed, in order, between its own outputs, so
the next stage consumes one totally ordered stream and does exactly what ``TradingCore`` does in
one process (see docs/architecture.md).
"""

from __future__ import annotations

import base64
import zlib
from collections import deque
from typing import Any

import msgspec

from claire.engine.core import TradingCore
from claire.events import (
    Bar,
    BookDepth,
    Control,
    Event,
    Order,
    OrderResult,
    OrderStatus,
    PortfolioSnapshot,
    Signal,
    check_version,
    decode,
    versioned,
)
from claire.events.topics import (
    MARKET_DATA_TYPES,
    ORDER_RESULTS,
    PIPE_ORDERS,
    PIPE_RESULTS,
    PIPE_SIGNALS,
    SIGNALS,
    SNAPSHOTS,
    topic_out,
)
from claire.execution import ExchangeSimulator
from claire.portfolio import Portfolio
from claire.risk import RiskManager
from claire.strategy.signal_engine import SignalEngine, encode_strategy

#: what market data carries, each with its seq: bars, trades, quotes and book depth (the last for
#: the paper exchange only, as in the one-process core: strategy, risk and portfolio skip it)
MARKET = MARKET_DATA_TYPES
Out = tuple[str, Any]  # (stream, Event or raw bytes)

TERMINAL = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED})


def partition_stream(base: str, index: int, partitions: int) -> str:
    return base if partitions <= 1 else f"{base}.p{index}"


def partition_of(symbol: str, partitions: int) -> int:
    return zlib.crc32(symbol.encode()) % partitions if partitions > 1 else 0


class SequenceGap(ValueError):
    """A market event whose ``seq`` is ahead of the next one expected on its stream: it is
    dead-lettered with this reason and the position does not move, so later events still flow."""


def with_seq(ev: Event, seq: int) -> Event:
    return ev if ev.seq == seq else msgspec.structs.replace(ev, seq=seq)


class SignalStage:
    """market_data[.pN] -> pipe.signals[.pN]: forwards each market event, then its signals
    (which also go to the ``signals`` topic)."""

    def __init__(self, engine: SignalEngine, out_stream: str = PIPE_SIGNALS, contiguous: bool = False) -> None:
        self.engine = engine
        self.out = out_stream
        self.last_seq = 0
        # sequence integrity: with one partition every seq is the last + 1; with several, a
        # partition sees a rising subsequence, bounded by what market data has published
        # (``published``: its committed position, set by the service; None: no bound known)
        self.contiguous = contiguous
        self.published: Any = None
        self._published_max = 0
        self.duplicates = 0  # redelivered market events skipped (seq at or behind the position)
        # checkpoint: each symbol's strategy as JSON (msgspec.Raw, embedded as it is), encoded again
        # only for the symbols a batch touched (with many symbols, encoding all per commit would not do)
        self._encoded: dict[str, msgspec.Raw] = {}
        self._dirty: set[str] = set()
        self._market: dict[str, msgspec.Raw] = {}  # each symbol's market context, as the strategies

    def handle(self, ev: Event, raw: bytes) -> list[Out]:
        t = type(ev)
        if t in MARKET:
            if ev.seq:
                if ev.seq <= self.last_seq:
                    self.duplicates += 1
                    return []  # already processed (redelivery)
                self._check_ahead(ev.seq)
            self.last_seq = ev.seq
            if t is BookDepth:  # for the paper exchange, and the market context (as in the core)
                self.engine.on_book(ev)  # type: ignore[arg-type]
                self._dirty.add(ev.symbol)  # type: ignore[attr-defined]
                return [(self.out, raw)]
            self._dirty.add(ev.symbol)  # type: ignore[attr-defined]
            out: list[Out] = [(self.out, raw)]
            for s in self.engine.on_market(ev):  # type: ignore[arg-type]
                s = with_seq(s, ev.seq)
                out.append((self.out, s))
                out.append((SIGNALS, s))
            return out
        if t is Control:
            return [(self.out, raw)]
        raise TypeError(f"signal stage does not take {t.__name__}")

    def _check_ahead(self, seq: int) -> None:
        """Raise :class:`SequenceGap` for a seq that cannot be the next one of this stream."""
        if self.contiguous:
            if seq != self.last_seq + 1:
                raise SequenceGap(f"seq {seq} ahead of expected {self.last_seq + 1}")
            return
        if self.published is None or seq <= self._published_max:
            return
        self._published_max = max(self._published_max, int(self.published()))
        if seq > self._published_max:
            raise SequenceGap(f"seq {seq} ahead of the {self._published_max} events market data has published "
                              f"(expected after {self.last_seq})")

    def get_state(self) -> dict[str, Any]:
        """The checkpoint: the last sequence number and every strategy's plain state
        (``claire.strategy.signal_engine.strategy_state``): data only, no objects."""
        strategies = self.engine.strategies
        for sym in self._dirty:
            strat = strategies.get(sym)
            if strat is not None:
                self._encoded[sym] = msgspec.Raw(encode_strategy(strat))
            market = self.engine.encode_market(sym)
            if market is not None:
                self._market[sym] = msgspec.Raw(market)
        self._dirty.clear()
        return versioned({"last_seq": self.last_seq, "strategies": dict(self._encoded), "market": dict(self._market)})

    def set_state(self, st: dict[str, Any]) -> None:
        """Restore a checkpoint of ``get_state`` (StateError for another version)."""
        check_version(st, "signal stage")
        self.last_seq = st["last_seq"]
        engine = self.engine
        strategies = {}
        for sym, s in st["strategies"].items():
            plain = msgspec.json.decode(s) if isinstance(s, msgspec.Raw) else s  # Raw: not through JSON
            strategies[sym] = engine.restore_strategy(sym, plain)
        engine.strategies = strategies
        engine.set_market({sym: msgspec.json.decode(m) if isinstance(m, msgspec.Raw) else m
                           for sym, m in (st.get("market") or {}).items()})
        self._encoded = {}
        self._market = {}
        self._dirty = set(strategies) | set(engine.market.symbols)  # encoded again at the next checkpoint


def merge_head(queues: list[deque[tuple[Event, bytes]]], cur: int, cur_part: int,
           partitions: int) -> tuple[int, Event, bytes] | None:
    """The next input of the partitions' queues in the one-process order: signals of the current
    event (``cur``, from ``cur_part``), else the next event.

    The signals of event N follow it in its partition, so the merge only moves past N once
    that partition shows what comes after them.
    """
    q = queues[cur_part]
    if not q and cur:
        return None
    if q:
        ev = q[0][0]
        if type(ev) is Signal and ev.seq == cur:
            return cur_part, ev, q[0][1]
    for i, q in enumerate(queues):
        if q:
            ev = q[0][0]
            if type(ev) in MARKET and ev.seq == cur + 1:
                return i, ev, q[0][1]
    if partitions == 1 and queues[0]:
        ev, raw = queues[0][0]
        if type(ev) is Control or (type(ev) in MARKET and ev.seq > cur):
            return 0, ev, raw  # gaps are allowed with one partition
    if all(q and type(q[0][0]) is Control for q in queues):
        return 0, queues[0][0][0], queues[0][0][1]
    return None


def _dump_queues(queues: list[deque[tuple[Event, bytes]]]) -> list[list[str]]:
    return [[base64.b64encode(raw).decode() for _, raw in q] for q in queues]


def _load_queues(dumped: list[list[str]]) -> list[deque[tuple[Event, bytes]]]:
    queues = []
    for q in dumped:
        dq: deque[tuple[Event, bytes]] = deque()
        for b in q:
            raw = base64.b64decode(b)
            dq.append((decode(raw), raw))
        queues.append(dq)
    return queues


class RiskStage:
    """pipe.signals[.pN] (+ feedback from pipe.order_results) -> pipe.orders (+ topics orders,
    risk_events, alerts).

    Keeps a mirror portfolio fed in stream order from order_results. Before it decides anything
    while orders are outstanding, it waits until execution has echoed everything risk sent it
    (``echoed >= sent``): then every fill that the one-process core would have applied by now has
    been applied to the mirror.
    """

    def __init__(self, risk: RiskManager, mirror: Portfolio, partitions: int = 1, clock: Any = None) -> None:
        self.risk = risk
        self.clock = clock  # the risk manager's event clock: advanced to each market event decided
        self.mirror = mirror
        self.partitions = partitions
        self.queues: list[deque[tuple[Event, bytes]]] = [deque() for _ in range(partitions)]
        self.cur = 0  # seq of the market event being processed
        self.cur_part = 0  # the partition it came from
        self.forwarded = False  # the current head market event has been forwarded to execution
        self.sent = 0
        self.echoed = 0
        self.outstanding: set[str] = set()
        self.mirror_seq = 0
        self.eod_seen: set[int] = set()
        self.done = False
        self.lagging = False  # moved past bars while fills were still coming: the mirror catches up

    # --- inputs ---------------------------------------------------------------------------
    def handle_signal_stream(self, ev: Event, raw: bytes, partition: int = 0) -> list[Out]:
        self.queues[partition].append((ev, raw))
        return self.drain()

    def handle_feedback(self, ev: Event, raw: bytes) -> list[Out]:
        out: list[Out] = []
        t = type(ev)
        if t is OrderResult:
            # as in TradingCore.route: the risk manager's working orders first, then the fill
            if ev.status in TERMINAL:
                self.outstanding.discard(ev.order_id)
            later = self.risk.on_order_result(ev)
            if ev.is_fill:
                for snap in self.mirror.on_fill(ev):
                    self._risk_out(self.risk.on_snapshot(snap), out)
            if later:
                self._risk_out(later, out)
        elif t in MARKET:
            self.echoed += 1
            if ev.seq > self.mirror_seq and t is not BookDepth:
                self._mirror_market(ev, out)
        elif t is Order or t is Control:
            self.echoed += 1
        return out + self.drain()

    # --- core -----------------------------------------------------------------------------
    QUEUE_READ = 50

    def read_limit(self, inputs: list[str], count: int) -> tuple[list[str], int]:
        """What the service should read next: only feedback while blocked (the queue does not
        grow with the backlog, so checkpoints stay small), else a few messages at a time."""
        if self._blocked():
            return [PIPE_RESULTS], count
        return inputs, min(count, self.QUEUE_READ)

    def _blocked(self) -> bool:
        return (bool(self.outstanding) or self.lagging) and self.echoed < self.sent

    def _may_skip_ahead(self, i: int, ev: Event) -> bool:
        """A bar followed by something other than its signals needs no decision now: risk may
        move past it without waiting for the fills (the mirror applies them, in order, later;
        signals and end of data still wait for the mirror). Not when a trip may flatten: its
        orders come from the mirror's snapshots and must reach execution where the core sends them."""
        if type(ev) is not Bar or self.partitions != 1 or self.risk.delayed or self.risk.flattens:
            return False
        q = self.queues[i]
        return len(q) > 1 and type(q[1][0]) is not Signal

    def _mirror_market(self, ev: Any, out: list[Out]) -> None:
        snap = self.mirror.on_market(ev)
        self.mirror_seq = ev.seq
        if snap is not None:
            self._risk_out(self.risk.on_snapshot(snap), out)

    def _risk_out(self, events: Any, out: list[Out]) -> None:
        """The risk manager's outputs to their streams: orders (e.g. those that flatten at a
        trip) to execution like signal-decided ones, signals of its own to the signals topic."""
        for e in events:
            if type(e) is Order:
                e = with_seq(e, self.cur)
                self.sent += 1
                self.outstanding.add(e.id)
                out.append((PIPE_ORDERS, e))
            elif type(e) is Signal:
                e = with_seq(e, self.cur)
            out.append(topic_out(e))

    def _head(self) -> tuple[int, Event, bytes] | None:
        return merge_head(self.queues, self.cur, self.cur_part, self.partitions)

    def drain(self) -> list[Out]:  # noqa: C901 - the risk stage's per-event loop: a split costs a call per market event
        out: list[Out] = []
        while True:
            head = self._head()
            if head is None:
                return out
            i, ev, raw = head
            t = type(ev)
            if t is Signal:
                if self._blocked():
                    return out
                self.queues[i].popleft()
                self._risk_out(self.risk.on_signal(ev), out)
                continue
            if t is Control:
                if self._blocked():
                    return out
                self._on_control(ev, raw, out)  # once, at the end: off the per-event path
                continue
            # a market event
            if not self.forwarded:
                out.append((PIPE_ORDERS, raw))
                self.sent += 1
                self.forwarded = True
            if self._blocked():
                if not self._may_skip_ahead(i, ev):
                    return out
                self.lagging = True
            elif self.lagging:
                self.lagging = False  # every echo is in: the mirror is up to date
            self.queues[i].popleft()
            self.forwarded = False
            self.cur = ev.seq
            self.cur_part = i
            if self.clock is not None:
                self.clock.now = ev.ts_event
            if t is BookDepth:  # forwarded to execution above; risk and the mirror do not see books
                continue
            if not self.lagging and ev.seq > self.mirror_seq:
                self._mirror_market(ev, out)
            self._risk_out(self.risk.on_market(ev), out)  # type: ignore[arg-type]

    def _on_control(self, ev: Control, raw: bytes, out: list[Out]) -> None:
        """The end of the market data: flush the delayed orders, forward the control, done."""
        for e in self.risk.flush_delayed(ev.ts_event):
            out.append(topic_out(e))
        if not self.forwarded:
            out.append((PIPE_ORDERS, raw))
            self.sent += 1
            self.forwarded = True
        for q in self.queues:
            q.popleft()
        self.forwarded = False
        self.done = True

    # --- checkpoint -----------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """The checkpoint: risk manager, mirror portfolio, the merge queues and the counters."""
        return versioned({
            "risk": self.risk.get_state(), "mirror": self.mirror.get_state(),
            "queues": _dump_queues(self.queues),
            "cur": self.cur, "cur_part": self.cur_part, "forwarded": self.forwarded, "sent": self.sent, "echoed": self.echoed,
            "outstanding": sorted(self.outstanding), "mirror_seq": self.mirror_seq, "done": self.done,
            "lagging": self.lagging, "now": self.clock.now if self.clock is not None else 0,
        })

    def set_state(self, st: dict[str, Any]) -> None:
        """Restore a checkpoint of ``get_state`` (StateError for another version)."""
        check_version(st, "risk stage")
        self.risk.set_state(st["risk"])
        self.mirror.set_state(st["mirror"])
        self.queues = _load_queues(st["queues"])
        self.cur, self.forwarded, self.sent, self.echoed = st["cur"], st["forwarded"], st["sent"], st["echoed"]
        self.cur_part = st["cur_part"]
        self.outstanding = set(st["outstanding"])
        self.mirror_seq, self.done = st["mirror_seq"], st["done"]
        self.lagging = st.get("lagging", False)
        if self.clock is not None:
            self.clock.now = st.get("now", 0)


class ExecutionStage:
    """pipe.orders -> pipe.order_results: results (also on the ``order_results`` topic), then an
    echo of each market event and order processed."""

    def __init__(self, execution: ExchangeSimulator) -> None:
        self.execution = execution
        self.cur = 0
        self.last_ts = 0

    def handle(self, ev: Event, raw: bytes) -> list[Out]:
        t = type(ev)
        cur = self.cur
        if t in MARKET:
            self.cur = cur = ev.seq
            self.last_ts = ev.ts_event
            results = self.execution.on_market(ev)  # type: ignore[arg-type]
        elif t is Order:
            results = self.execution.on_order(ev)
        elif t is Control:
            results = self.execution.cancel_all(max(ev.ts_event, self.last_ts), "end of data")
        else:
            raise TypeError(f"execution stage does not take {t.__name__}")
        out: list[Out] = []
        for r in results:
            r = with_seq(r, cur)
            out.append((PIPE_RESULTS, r))
            out.append((ORDER_RESULTS, r))
        out.append((PIPE_RESULTS, raw))  # the echo: execution has processed this
        return out

    def get_state(self) -> dict[str, Any]:
        """The checkpoint: the position in the stream and the exchange."""
        return versioned({"cur": self.cur, "last_ts": self.last_ts, "execution": self.execution.get_state()})

    def set_state(self, st: dict[str, Any]) -> None:
        """Restore a checkpoint of ``get_state`` (StateError for another version)."""
        check_version(st, "execution stage")
        self.cur, self.last_ts = st["cur"], st["last_ts"]
        self.execution.set_state(st["execution"])


class PortfolioStage:
    """pipe.order_results -> portfolio_snapshots, in the stream's (the core's) order."""

    def __init__(self, portfolio: Portfolio) -> None:
        self.portfolio = portfolio
        self.cur = 0
        self.done = False
        self.now = 0

    def handle(self, ev: Event, raw: bytes) -> list[Out]:
        t = type(ev)
        pf = self.portfolio
        if t is OrderResult:
            if not ev.is_fill:
                return []
            return [(SNAPSHOTS, with_seq(s, self.cur)) for s in pf.on_fill(ev)]
        if t in MARKET:
            self.cur = ev.seq
            self.now = ev.ts_event  # a book too: the core's clock (the final snapshot's time) moves with it
            if t is BookDepth:
                return []
            snap = pf.on_market(ev)  # type: ignore[arg-type]
            return [(SNAPSHOTS, with_seq(snap, ev.seq))] if snap is not None else []
        if t is Control:
            self.done = True
            ts = max(ev.ts_event, self.now, pf.last_ts)
            return [(SNAPSHOTS, with_seq(pf.snapshot(ts, "final"), self.cur))]
        return []  # echoed orders

    def get_state(self) -> dict[str, Any]:
        """The checkpoint: the position in the stream and the portfolio."""
        return versioned({"cur": self.cur, "done": self.done, "now": self.now,
                          "portfolio": self.portfolio.get_state()})

    def set_state(self, st: dict[str, Any]) -> None:
        """Restore a checkpoint of ``get_state`` (StateError for another version)."""
        check_version(st, "portfolio stage")
        self.cur, self.done, self.now = st["cur"], st["done"], st["now"]
        self.portfolio.set_state(st["portfolio"])


class _NoSignals:
    """The account's core has no strategy: its signals come from the signal service's stream."""

    def on_bar(self, ev: Any) -> tuple[Signal, ...]:
        return ()

    on_market = on_trade = on_quote = on_book = on_bar

    def on_order_result(self, ev: Any) -> None:
        pass  # no strategy here to show its position to

    on_order = on_order_result

    def get_state(self) -> dict[str, Any]:
        return {}

    def set_state(self, st: dict[str, Any]) -> None:
        pass


class _MarkTap:
    """The account's portfolio, telling the stage when it marks a market event (so the event is
    forwarded to ``pipe.order_results`` exactly where the split pipeline's execution echoes it:
    after the fills it caused, before anything the event's signals cause)."""

    def __init__(self, portfolio: Portfolio, tap: Any) -> None:
        self._pf = portfolio
        self._tap = tap

    def on_bar(self, ev: Bar) -> PortfolioSnapshot | None:
        self._tap(ev)
        return self._pf.on_bar(ev)

    def on_market(self, ev: Any) -> PortfolioSnapshot | None:
        self._tap(ev)
        return self._pf.on_market(ev)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pf, name)


class AccountStage:
    """pipe.signals[.pN] -> the topics (orders, order_results, risk_events, alerts,
    portfolio_snapshots) and pipe.order_results (for the run-file report).

    Risk manager, paper execution and portfolio of one account in one process (``claire up
    --topology account``): the one-process core itself (``TradingCore``, its strategy replaced by
    the signals read from the stream), so no echo round trip between risk and execution and two
    hops fewer per market event than the seeds' split. Each market event runs the core's steps
    1-3 when it arrives; each signal after it goes through risk and execution as in step 4. The
    partitions of signal replicas are merged in sequence order as in :class:`RiskStage`.
    """

    def __init__(self, core: Any, partitions: int = 1) -> None:
        self.out: list[Out] = []
        self._ev: Event | None = None  # the market event being handled, and its raw bytes
        self._raw = b""
        self.core = TradingCore(_NoSignals(), core.risk, core.execution,  # type: ignore[arg-type]
                                _MarkTap(core.portfolio, self._marked), core.clock, self._emit)  # type: ignore[arg-type]
        self.partitions = partitions
        self.queues: list[deque[tuple[Event, bytes]]] = [deque() for _ in range(partitions)]
        self.cur = 0
        self.cur_part = 0
        self.done = False
        self._sig: Event | None = None  # the signal from the stream being routed

    def _marked(self, ev: Event) -> None:
        self.out.append((PIPE_RESULTS, self._raw if ev is self._ev else ev))

    def _emit(self, ev: Event) -> None:
        t = type(ev)
        if t is Signal:
            if ev is self._sig:
                return  # already on the signals topic (the signal service)
            ev = with_seq(ev, self.cur)  # the risk manager's own (flatten at a trip)
        elif t is OrderResult:
            ev = with_seq(ev, self.cur)
            self.out.append((PIPE_RESULTS, ev))
        elif t is Order or t is PortfolioSnapshot:
            ev = with_seq(ev, self.cur)
        self.out.append(topic_out(ev))

    def handle_signal_stream(self, ev: Event, raw: bytes, partition: int = 0) -> list[Out]:
        self.queues[partition].append((ev, raw))
        return self.drain()

    def drain(self) -> list[Out]:
        self.out = out = []
        core = self.core
        while True:
            head = merge_head(self.queues, self.cur, self.cur_part, self.partitions)
            if head is None:
                return out
            i, ev, raw = head
            t = type(ev)
            if t is Signal:
                self.queues[i].popleft()
                self._sig = ev
                core.route((ev,))
                self._sig = None
                continue
            if t is Control:
                for q in self.queues:
                    q.popleft()
                core.finish()
                out.append((PIPE_RESULTS, raw))
                self.done = True
                continue
            self.queues[i].popleft()
            self.cur, self.cur_part = ev.seq, i
            self._ev, self._raw = ev, raw
            core.on_market(ev)  # type: ignore[arg-type]
            if t is BookDepth:  # the portfolio does not mark it: forwarded after its fills, as execution echoes it
                out.append((PIPE_RESULTS, raw))
            self._ev, self._raw = None, b""

    def get_state(self) -> dict[str, Any]:
        """The checkpoint: the core (versioned itself), the merge queues and the position."""
        return versioned({"core": self.core.get_state(), "cur": self.cur, "cur_part": self.cur_part,
                          "done": self.done, "queues": _dump_queues(self.queues)})

    def set_state(self, st: dict[str, Any]) -> None:
        """Restore a checkpoint of ``get_state`` (StateError for another version)."""
        check_version(st, "account stage")
        self.core.set_state(st["core"])
        self.cur, self.cur_part, self.done = st["cur"], st["cur_part"], st["done"]
        self.queues = _load_queues(st["queues"])
