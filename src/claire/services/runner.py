"""Service loops of the distributed runtime: the stages and the writer on a bus.

Every stage service works in batches: read up to ``batch`` messages of its input streams, decode
them (what does not decode goes to the dead-letter stream with the reason), let the stage handle
them, then commit outputs + acks + the stage's checkpoint atomically (``Bus.commit``). On start it
restores the checkpoint and first re-processes the messages it had read but not committed
(its pending entries), so a crash at any point loses nothing and doubles nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from claire.bus.base import Bus, Message
from claire.events import (
    Bar,
    Control,
    DecodeError,
    Order,
    OrderResult,
    PortfolioSnapshot,
    RiskEvent,
    Signal,
    decode,
    encode,
)
from claire.events.time import NS_PER_SEC
from claire.services.metrics import ServiceMetrics
from claire.services.stages import (
    ALERTS,
    MARKET,
    MARKET_DATA,
    ORDER_RESULTS,
    ORDERS,
    PIPE_ORDERS,
    PIPE_RESULTS,
    PIPE_SIGNALS,
    RISK_EVENTS,
    SIGNALS,
    SNAPSHOTS,
    Out,
    partition_of,
    partition_stream,
    with_seq,
)

log = logging.getLogger("claire.services")

_json = msgspec.json.Encoder()


def recover_pending(bus: Bus, inputs: list[str], group: str, consumer: str, batch: int,
                    process: Callable[[list[Message]], None]) -> None:
    """Messages read before a crash but never committed: process them first, in order."""
    for stream in inputs:
        while True:
            msgs = bus.claim_stale(stream, group, consumer, 0, count=batch)
            if not msgs:
                break
            process(msgs)


class StageService:
    """Runs one stage on the bus. ``handle(stream, event, raw)`` returns the stage's outputs."""

    def __init__(self, name: str, bus: Bus, inputs: list[str], handle: Callable[[str, Any, bytes], list[Out]],
                 stage: Any, metrics: ServiceMetrics | None = None, batch: int = 500, block_ms: int = 100,
                 consumer: str | None = None) -> None:
        self.name = name
        self.bus = bus
        self.inputs = inputs
        self.handle = handle
        self.stage = stage
        self.metrics = metrics or ServiceMetrics(name)
        self.batch = batch
        self.block_ms = block_ms
        self.group = name
        self.consumer = consumer or f"{name}-0"
        self.number = 0
        self.processed = 0
        self.last_event_ts = 0
        self.started = False
        self.skip_prefixes: tuple[bytes, ...] = ()  # payloads this stage ignores (not decoded)

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        for stream in self.inputs:
            self.bus.ensure_group(stream, self.group, "0")
        cp = self.bus.load_checkpoint(self.name)
        if cp is not None:
            self.number = cp[0]
            self.stage.set_state(msgspec.json.decode(cp[1]))
            log.info("%s: restored checkpoint %d", self.name, self.number)
        recover_pending(self.bus, self.inputs, self.group, self.consumer, self.batch, self.process)
        self.started = True

    def run(self, stop: threading.Event) -> None:
        """Read, process, commit; each commit travels with the next read (one round trip on
        Redis). On stop, the batch in hand is processed and committed before returning."""
        if not self.started:
            self.start()
        msgs: list[Message] = []
        while True:
            if not msgs:
                if stop.is_set():
                    return
                msgs = self._read()
                continue
            t0 = time.perf_counter()
            commit, outs, counts = self._prepare(msgs)
            if stop.is_set():
                self.bus.commit(*commit)
                self._finish(msgs, outs, counts, time.perf_counter() - t0)
                return
            inputs, count = self._read_args()
            dt = time.perf_counter() - t0  # the commit rides with the next (blocking) read
            _, nxt = self.bus.commit_and_read(*commit, group=self.group, consumer=self.consumer, streams=inputs,
                                              count=count, block_ms=self.block_ms)
            self._finish(msgs, outs, counts, dt)
            msgs = nxt

    def _read_args(self) -> tuple[list[str], int]:
        inputs, count = self.inputs, self.batch
        limit = getattr(self.stage, "read_limit", None)
        if limit is not None:  # the stage says what it can take now (risk: bounded queues)
            inputs, count = limit(inputs, count)
        return inputs, count

    def _read(self) -> list[Message]:
        inputs, count = self._read_args()
        return self.bus.read(self.group, self.consumer, inputs, count=count, block_ms=self.block_ms)

    def step(self) -> int:
        msgs = self._read()
        if msgs:
            self.process(msgs)
        return len(msgs)

    # --- one batch ------------------------------------------------------------------------
    def process(self, msgs: list[Message]) -> None:
        t0 = time.perf_counter()
        commit, outs, counts = self._prepare(msgs)
        self.bus.commit(*commit)
        self._finish(msgs, outs, counts, time.perf_counter() - t0)

    def _prepare(self, msgs: list[Message]) -> tuple[tuple[Any, ...], list[Out], dict[str, int]]:
        """Handle a batch; returns the commit's arguments (outputs, acks, checkpoint)."""
        outs: list[Out] = []
        acks: dict[str, list[str]] = defaultdict(list)
        skip = self.skip_prefixes
        counts: dict[str, int] = defaultdict(int)
        for msg in msgs:
            counts[msg.stream] += 1
            if skip and msg.payload.startswith(skip):
                acks[msg.stream].append(msg.id)  # nothing for this stage (e.g. echoed orders)
                continue
            try:
                ev = decode(msg.payload)
            except DecodeError as exc:
                self._dead(msg, f"malformed event: {exc}")
                continue
            try:
                outs += self.handle(msg.stream, ev, msg.payload)
            except (TypeError, ValueError, KeyError, ArithmeticError) as exc:
                log.exception("%s: cannot process %s %s", self.name, type(ev).__name__, getattr(ev, "id", "?"))
                self._dead(msg, f"{type(exc).__name__} while processing: {exc}")
                continue
            acks[msg.stream].append(msg.id)
            ts = ev.ts_event
            if ts > self.last_event_ts:
                self.last_event_ts = ts
        publish = []
        last_item, last_raw = None, b""
        for stream, item in outs:  # an event sent to a pipe and a topic is encoded once
            if isinstance(item, bytes):
                publish.append((stream, item))
                continue
            if item is not last_item:
                last_item, last_raw = item, encode(item)
            publish.append((stream, last_raw))
        self.number += 1
        state = _json.encode(self.stage.get_state())
        commit = (self.name, self.number, state, publish, [(s, self.group, ids) for s, ids in acks.items()])
        return commit, outs, counts

    def _finish(self, msgs: list[Message], outs: list[Out], counts: dict[str, int], dt: float) -> None:
        """After the commit: counters and metrics."""
        m = self.metrics
        self.processed += len(msgs)
        child, name = m.child, self.name
        for stream, n in counts.items():
            child(m.events_in, name, stream).inc(n)
        out_counts: dict[str, int] = defaultdict(int)
        for stream, item in outs:
            out_counts[stream] += 1
            if not isinstance(item, bytes) and not stream.startswith("pipe."):
                self._observe(item)  # once per event (it is also on a pipe stream)
        for stream, n in out_counts.items():
            child(m.events_out, name, stream).inc(n)
        child(m.commits, name).inc()
        child(m.batch_seconds, name).observe(dt)
        if msgs:
            child(m.event_seconds, name).observe(dt / len(msgs))
        if self.last_event_ts:
            child(m.last_event_ts, name).set(self.last_event_ts / NS_PER_SEC)
            child(m.lag, name).set(time.time() - self.last_event_ts / NS_PER_SEC)

    def _dead(self, msg: Message, reason: str) -> None:
        log.warning("%s: dead letter %s/%s: %s", self.name, msg.stream, msg.id, reason)
        self.bus.dead_letter(msg.stream, self.group, msg, reason)
        self.metrics.dead_letters.labels(self.name, msg.stream).inc()
        self.metrics.errors.labels(self.name, "dead_letter").inc()

    def _observe(self, ev: Any) -> None:
        t = type(ev)
        m = self.metrics
        if t is Signal:
            m.child(m.signals_generated, ev.strategy, ev.symbol).inc()
        elif t is PortfolioSnapshot:
            m.equity.set(float(ev.equity))
            m.drawdown.set(float(ev.drawdown_pct))
            m.exposure.set(float(ev.total_exposure_pct))
        elif t is RiskEvent:
            m.child(m.risk_decisions, ev.check.value, ev.action.value).inc()
        elif t is OrderResult:
            m.child(m.order_processing, self.name).observe(ev.latency_ns / NS_PER_SEC)


class MarketDataService:
    """Publishes market data (files, replayed at ``speed`` times event time, or as fast as it
    goes) with contiguous sequence numbers, partitioned by symbol; then end_of_data."""

    def __init__(self, bus: Bus, events: Iterable[Any], partitions: int = 1, speed: float | None = None,
                 batch: int = 500, metrics: ServiceMetrics | None = None, name: str = "marketdata") -> None:
        self.bus = bus
        self.events = events
        self.partitions = partitions
        self.speed = speed
        self.batch = batch
        self.metrics = metrics or ServiceMetrics(name)
        self.name = name
        self.pos = 0
        self.number = 0
        self.done = False
        self.last_event_ts = 0

    def run(self, stop: threading.Event) -> None:
        cp = self.bus.load_checkpoint(self.name)
        if cp is not None:
            self.number = cp[0]
            st = msgspec.json.decode(cp[1])
            self.pos, self.done = st["pos"], st["done"]
        if self.done:
            stop.wait()
            return
        streams = [partition_stream(MARKET_DATA, i, self.partitions) for i in range(self.partitions)]
        it = iter(self.events)
        for _ in range(self.pos):  # already published before a restart
            next(it, None)
        buf: list[tuple[str, bytes]] = []
        t_wall0 = time.monotonic()
        t_ev0: int | None = None
        last = None
        seq = appended = self.pos
        flush_at = time.monotonic() + 0.05
        stopped = False
        for ev in it:
            if stop.is_set():
                stopped = True
                break
            seq += 1
            ev = with_seq(ev, seq)
            if self.speed:
                if t_ev0 is None:
                    t_ev0 = ev.ts_event
                delay = t_wall0 + (ev.ts_event - t_ev0) / NS_PER_SEC / self.speed - time.monotonic()
                if delay > 0:
                    self._flush(buf, appended)
                    buf = []
                    if stop.wait(delay):
                        stopped = True
                        break
            buf.append((streams[partition_of(ev.symbol, self.partitions)], encode(ev)))
            appended = seq
            last = ev
            self.last_event_ts = ev.ts_event
            if len(buf) >= self.batch or time.monotonic() >= flush_at:
                self._flush(buf, appended)
                buf = []
                flush_at = time.monotonic() + 0.05
        self._flush(buf, appended)
        if stopped:
            return
        ts = last.ts_event if last is not None else self.last_event_ts
        eod = Control(id=f"{self.name}:end_of_data", ts_event=ts, ts_recv=ts, kind="end_of_data", seq=appended + 1)
        raw = encode(eod)
        self.done = True
        self.number += 1
        self.bus.commit(self.name, self.number, _json.encode({"pos": appended, "done": True}),
                        [(s, raw) for s in streams])
        log.info("%s: end of data after %d events", self.name, appended)

    def _flush(self, buf: list[tuple[str, bytes]], pos: int) -> None:
        if not buf:
            return
        self.number += 1
        self.bus.commit(self.name, self.number, _json.encode({"pos": pos, "done": False}), buf)
        self.pos = pos
        counts: dict[str, int] = defaultdict(int)
        for stream, _ in buf:
            counts[stream] += 1
        for stream, n in counts.items():
            self.metrics.child(self.metrics.events_out, self.name, stream).inc(n)


_SKIP_PREFIXES = (b'{"type":"bar"', b'{"type":"trade"', b'{"type":"quote"', b'{"type":"control"')
_ORDER_PREFIX = b'{"type":"order"'


class WriterService:
    """Persists every event of the topic streams through ``EventWriter`` (idempotent), then acks.

    Market events and control messages forwarded on the pipeline streams are skipped, and so are
    the order echoes on ``order_results`` (orders are stored from ``orders``).
    """

    def __init__(self, bus: Bus, writer: Any, partitions: int = 1, batch: int = 1000, block_ms: int = 100,
                 metrics: ServiceMetrics | None = None, name: str = "writer", on_final: Callable[[], None] | None = None) -> None:
        self.bus = bus
        self.writer = writer
        self.name = name
        self.group = name
        self.consumer = f"{name}-0"
        self.inputs = [SIGNALS, ORDERS, ORDER_RESULTS, SNAPSHOTS, RISK_EVENTS, ALERTS]
        self.batch = batch
        self.block_ms = block_ms
        self.metrics = metrics or ServiceMetrics(name)
        self.final_seen = False
        self.final_persisted = False
        self.on_final = on_final
        self.written = 0
        self.consumed = 0  # messages read and acked (persisted or skipped)

    def start(self) -> None:
        for s in self.inputs:
            self.bus.ensure_group(s, self.group, "0")
        recover_pending(self.bus, self.inputs, self.group, self.consumer, self.batch, self.process)

    def run(self, stop: threading.Event) -> None:
        self.start()
        while not stop.is_set():
            self.step()

    def step(self) -> int:
        msgs = self.bus.read(self.group, self.consumer, self.inputs, count=self.batch, block_ms=self.block_ms)
        if msgs:
            self.process(msgs)
        elif self.final_seen and not self.final_persisted:
            self.final_persisted = True  # everything published before the final snapshot is stored
            self.bus.commit(self.name, 1, b'{"final_persisted":true}')
            if self.on_final:
                self.on_final()
        return len(msgs)

    def process(self, msgs: list[Message]) -> None:
        acks: dict[str, list[str]] = defaultdict(list)
        for msg in msgs:
            p = msg.payload
            acks[msg.stream].append(msg.id)
            if p.startswith(_SKIP_PREFIXES):  # market data and control (paper publishes none here)
                continue
            if msg.stream == SNAPSHOTS and b'"reason":"final"' in p:
                self.final_seen = True
            self.writer.write_raw(p, source=msg.stream)
            self.written += 1
        self.writer.flush()
        self.bus.ack_many([(stream, self.group, ids) for stream, ids in acks.items()])
        for stream, ids in acks.items():
            self.metrics.child(self.metrics.events_in, self.name, stream).inc(len(ids))
        self.consumed += len(msgs)


def stage_inputs(kind: str, replica: int, partitions: int) -> list[str]:
    if kind == "signal":
        return [partition_stream(MARKET_DATA, replica, partitions)]
    if kind == "risk":
        return [partition_stream(PIPE_SIGNALS, i, partitions) for i in range(partitions)] + [PIPE_RESULTS]
    if kind == "execution":
        return [PIPE_ORDERS]
    if kind == "portfolio":
        return [PIPE_RESULTS]
    if kind == "account":
        return [partition_stream(PIPE_SIGNALS, i, partitions) for i in range(partitions)]
    raise ValueError(f"unknown stage {kind!r}")


__all__ = ["MARKET", "Bar", "MarketDataService", "Order", "StageService", "WriterService", "stage_inputs"]


class ReportService:
    """Builds the run files of a distributed run from the streams: a portfolio replica fed from
    ``order_results`` (identical to the portfolio service's) plus a Recorder of every topic."""

    def __init__(self, bus: Bus, recorder: Any, portfolio_stage: Any, partitions: int = 1, name: str = "report",
                 batch: int = 2000) -> None:
        self.bus = bus
        self.recorder = recorder
        self.stage = portfolio_stage
        self.name = name
        self.group = name
        self.consumer = f"{name}-0"
        self.inputs = [SIGNALS, ORDERS, PIPE_RESULTS, RISK_EVENTS, ALERTS]
        self.batch = batch

    def ensure_groups(self) -> None:
        for s in self.inputs:
            self.bus.ensure_group(s, self.group, "0")

    @property
    def done(self) -> bool:
        return bool(self.stage.done)

    def step(self, block_ms: int = 100) -> int:
        msgs = self.bus.read(self.group, self.consumer, self.inputs, count=self.batch, block_ms=block_ms)
        acks: dict[str, list[str]] = defaultdict(list)
        rec = self.recorder
        for msg in msgs:
            acks[msg.stream].append(msg.id)
            p = msg.payload
            if msg.stream == PIPE_RESULTS:
                if p.startswith(_ORDER_PREFIX):
                    continue  # echoed orders
                try:
                    ev = decode(p)
                except DecodeError:
                    continue
                if type(ev) is OrderResult:
                    rec(ev)
                for _, snap in self.stage.handle(ev, p):
                    rec(snap)
                continue
            if p.startswith(_SKIP_PREFIXES):
                continue
            try:
                rec(decode(p))
            except (DecodeError, KeyError):
                continue
        for stream, ids in acks.items():
            self.bus.ack(stream, self.group, ids)
        return len(msgs)
