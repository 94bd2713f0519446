"""Service loops of the distributed runtime: the stages and the writer on a bus.

Every stage service works in batches: read up to ``batch`` messages of its input streams, decode
them (what does not decode goes to the dead-letter stream with the reason), let the stage handle
them, then commit outputs + acks + the stage's checkpoint atomically (``Bus.commit``). On start it
restores the checkpoint and first re-processes the messages it had read but not committed
(its pending entries), so a crash at any point loses nothing and doubles nothing.

Shape: :class:`ServiceLoop` is what every loop has (a name that keys its checkpoint, the bus,
its metrics, the commit number); :class:`GroupConsumer` adds reading input streams in a consumer
group (groups, recovery of pending entries, reads, acks). The loops keep only their own part:
:class:`StageService` (a stage; commit travels with the next read), :class:`WriterService` (into
the database), :class:`ReportService` (run files) and :class:`MarketDataService` (a producer).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import msgspec

from claire.bus.base import Bus, DeadLetter, Message
from claire.events import (
    Bar,
    Control,
    DecodeError,
    Order,
    OrderResult,
    decode,
    encode,
)
from claire.events.time import NS_PER_SEC
from claire.events.topics import (
    ALERTS,
    MARKET_DATA,
    ORDER_RESULTS,
    ORDERS,
    PIPE_ORDERS,
    PIPE_RESULTS,
    PIPE_SIGNALS,
    RISK_EVENTS,
    SIGNALS,
    SNAPSHOTS,
)
from claire.runtime.distributed.stages import (
    MARKET,
    Out,
    SequenceGap,
    partition_of,
    partition_stream,
    with_seq,
)
from claire.runtime.metrics import ServiceMetrics
from claire.strategy.market_context import PriceAfter

__all__ = ["MARKET", "Bar", "GroupConsumer", "MarketDataService", "Order", "ReportService", "ServiceLoop",
           "StageService", "WriterService", "stage_inputs"]

log = logging.getLogger("claire.runtime.distributed")

_json = msgspec.json.Encoder()

#: the arguments of one ``Bus.commit``: (name, number, state, publish, acks)
Commit = tuple[str, int, bytes, Sequence[tuple[str, bytes]], Sequence[tuple[str, str, Sequence[str]]]]


class ServiceLoop:
    """What every service loop on the bus has: a ``name`` (it keys the loop's checkpoint), the
    bus, its metrics, and the number of its last commit.

    The number grows with every commit, so a commit retried after a lost reply is skipped by
    ``Bus.commit`` (exactly once on the bus), and a restart carries on from the stored one.
    """

    def __init__(self, name: str, bus: Bus, metrics: ServiceMetrics | None = None) -> None:
        self.name = name
        self.bus = bus
        self.metrics = metrics or ServiceMetrics(name)
        self.number = 0

    def restore(self) -> Any:
        """The state of the last commit (decoded JSON), or None on a first start; the commit
        number then carries on from the stored one, so the next commit is not skipped."""
        cp = self.bus.load_checkpoint(self.name)
        if cp is None:
            return None
        self.number = cp[0]
        return msgspec.json.decode(cp[1])

    def next_commit(self, state: bytes, publish: Sequence[tuple[str, bytes]] = (),
                    acks: Sequence[tuple[str, str, Sequence[str]]] = ()) -> Commit:
        """The arguments of the next ``Bus.commit`` (its number taken). Apart from sending it, so
        that a loop can send it on its own or together with its next read (``commit_and_read``)."""
        self.number += 1
        return (self.name, self.number, state, publish, acks)

    def count(self, metric: Any, counts: Mapping[str, int]) -> None:
        """Add per-stream message counts to ``metric`` (events in/out): once per batch, not per
        message, because a labelled counter update costs more than the count."""
        child, name = self.metrics.child, self.name
        for stream, n in counts.items():
            child(metric, name, stream).inc(n)


class GroupConsumer(ServiceLoop):
    """A consumer of ``inputs`` in the consumer group ``name`` (consumer ``<name>-0`` unless given).

    It exists so that every loop that consumes streams does it the same way: :meth:`start` makes
    the groups exist (from the streams' start), lets the loop restore its own state
    (:meth:`load_state`), then re-processes its pending entries (read before a crash, never
    acked) in order; after that :meth:`step` / :meth:`run` read new messages and hand each batch
    to :meth:`process`, which the loop defines (and which acks, alone or in its commit).
    """

    def __init__(self, name: str, bus: Bus, inputs: list[str], metrics: ServiceMetrics | None = None,
                 batch: int = 500, block_ms: int = 100, consumer: str | None = None) -> None:
        super().__init__(name, bus, metrics)
        self.inputs = inputs
        self.group = name
        self.consumer = consumer or f"{name}-0"
        self.batch = batch
        self.block_ms = block_ms
        self.started = False

    # --- lifecycle ------------------------------------------------------------------------
    def ensure_groups(self) -> None:
        """Create the group on every input (from the start, ``"0"``) unless it exists: created
        before anything is published, no message is missed."""
        for stream in self.inputs:
            self.bus.ensure_group(stream, self.group, "0")

    def load_state(self) -> None:
        """Restore the loop's own state (from :meth:`restore`); called by :meth:`start` before
        the pending entries are re-processed. Nothing by default: the loop keeps none."""

    def recover(self) -> None:
        """Messages read before a crash but never acked: process them first, in order, so
        nothing is lost (the commit or idempotent sink keeps them from being doubled)."""
        bus, group, consumer, batch, process = self.bus, self.group, self.consumer, self.batch, self.process
        for stream in self.inputs:
            while True:
                msgs = bus.claim_stale(stream, group, consumer, 0, count=batch)
                if not msgs:
                    break
                process(msgs)

    def start(self) -> None:
        """Groups, own state, pending entries: what must happen before new messages are read."""
        self.ensure_groups()
        self.load_state()
        self.recover()
        self.started = True

    def run(self, stop: threading.Event) -> None:
        """Start unless started, then one :meth:`step` after the other until ``stop`` is set (the
        batch in hand is finished first)."""
        if not self.started:
            self.start()
        while not stop.is_set():
            self.step()

    # --- one batch ------------------------------------------------------------------------
    def read_args(self) -> tuple[list[str], int]:
        """The streams to read and the count per stream: all inputs, ``batch`` each, unless the
        loop says otherwise (a stage with bounded queues)."""
        return self.inputs, self.batch

    def read(self, block_ms: int | None = None) -> list[Message]:
        """New messages for this consumer, waiting up to ``block_ms`` (default: the loop's)."""
        streams, count = self.read_args()
        return self.bus.read(self.group, self.consumer, streams, count=count,
                             block_ms=self.block_ms if block_ms is None else block_ms)

    def step(self, block_ms: int | None = None) -> int:
        """Read one batch and process it (or :meth:`idle` when nothing came); returns its size,
        so a caller can tell when the streams are drained."""
        msgs = self.read(block_ms)
        if msgs:
            self.process(msgs)
        else:
            self.idle()
        return len(msgs)

    def process(self, msgs: list[Message]) -> None:
        """Handle one batch and ack it; the loop's own part."""
        raise NotImplementedError

    def idle(self) -> None:
        """Called by :meth:`step` when a read brought nothing; nothing by default."""

    def ack_list(self, acks: Mapping[str, list[str]]) -> list[tuple[str, str, list[str]]]:
        """Ids by stream -> the ``(stream, group, ids)`` triples of ``Bus.commit`` / ``ack_many``."""
        group = self.group
        return [(stream, group, ids) for stream, ids in acks.items()]


class StageService(GroupConsumer):
    """Runs one stage on the bus. ``handle(stream, event, raw)`` returns the stage's outputs.

    Its own part: decoding (dead letters for what cannot be decoded or handled), encoding the
    outputs once, the stage's state as the checkpoint, and a run loop whose commit travels with
    the next read.
    """

    def __init__(self, name: str, bus: Bus, inputs: list[str], handle: Callable[[str, Any, bytes], list[Out]],
                 stage: Any, metrics: ServiceMetrics | None = None, batch: int = 500, block_ms: int = 100,
                 consumer: str | None = None) -> None:
        super().__init__(name, bus, inputs, metrics, batch, block_ms, consumer)
        self.handle = handle
        self.stage = stage
        self.processed = 0
        self.last_event_ts = 0
        self.skip_prefixes: tuple[bytes, ...] = ()  # payloads this stage ignores (not decoded)
        self.metrics.watch_stage(stage)  # the risk owner's trading state on /metrics

    # --- lifecycle ------------------------------------------------------------------------
    def load_state(self) -> None:
        """The stage's state as of its last commit, so re-processed and new input continue it."""
        st = self.restore()
        if st is not None:
            self.stage.set_state(st)
            log.info("%s: restored checkpoint %d", self.name, self.number)

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
                msgs = self.read()
                continue
            t0 = time.perf_counter()
            commit, outs, counts = self._prepare(msgs)
            if stop.is_set():
                self.bus.commit(*commit)
                self._finish(msgs, outs, counts, time.perf_counter() - t0)
                return
            inputs, count = self.read_args()
            dt = time.perf_counter() - t0  # the commit rides with the next (blocking) read
            _, nxt = self.bus.commit_and_read(*commit, group=self.group, consumer=self.consumer, streams=inputs,
                                              count=count, block_ms=self.block_ms)
            self._finish(msgs, outs, counts, dt)
            msgs = nxt

    def read_args(self) -> tuple[list[str], int]:
        """All inputs unless the stage says what it can take now (risk: bounded queues)."""
        inputs, count = self.inputs, self.batch
        limit = getattr(self.stage, "read_limit", None)
        if limit is not None:
            inputs, count = limit(inputs, count)
        return inputs, count

    # --- one batch ------------------------------------------------------------------------
    def process(self, msgs: list[Message]) -> None:
        """Handle a batch and commit it on its own (recovery, :meth:`step`)."""
        t0 = time.perf_counter()
        commit, outs, counts = self._prepare(msgs)
        self.bus.commit(*commit)
        self._finish(msgs, outs, counts, time.perf_counter() - t0)

    def _prepare(self, msgs: list[Message]) -> tuple[Commit, list[Out], dict[str, int]]:
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
            except SequenceGap as exc:  # the position stays where it is: later events still flow
                log.warning("%s: %s/%s: %s", self.name, msg.stream, msg.id, exc)
                self._dead(msg, str(exc))
                self.metrics.errors.labels(self.name, "sequence_gap").inc()
                continue
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
        commit = self.next_commit(_json.encode(self.stage.get_state()), publish, self.ack_list(acks))
        return commit, outs, counts

    def _finish(self, msgs: list[Message], outs: list[Out], counts: dict[str, int], dt: float) -> None:
        """After the commit: counters and metrics."""
        m = self.metrics
        self.processed += len(msgs)
        self.count(m.events_in, counts)
        out_counts: dict[str, int] = defaultdict(int)
        for stream, item in outs:
            out_counts[stream] += 1
            if not isinstance(item, bytes) and not stream.startswith("pipe."):
                self._observe(item)  # once per event (it is also on a pipe stream)
        self.count(m.events_out, out_counts)
        child, name = m.child, self.name
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
        """The seeds' metrics of an event the stage published (only those the service owns:
        ``ServiceMetrics.observe``)."""
        self.metrics.observe(ev)


class MarketDataService(ServiceLoop):
    """Publishes market data with contiguous sequence numbers, partitioned by symbol.

    Two kinds of source:

    - a replay (files, synthetic bars): published at ``speed`` times event time (or as fast as it
      goes), then ``end_of_data``. Its checkpoint is its position in the source, committed with
      each published chunk, so a restart skips what is already on the bus;
    - a live source (``live``: e.g. :class:`claire.adapters.mexc.MexcMarketData`, an iterable with
      ``stop()``/``close()``, read in a thread of its own so that chunks go out every 50 ms and a
      stop is answered at once). It never ends by itself: :attr:`finish` (SIGUSR1 in a service)
      ends it with ``end_of_data``, ``stop`` (SIGTERM) without (a restart carries on). The
      checkpoint then also holds the event time of the last published event and the ids
      published at that time: a restarted source (which replays its warm-up bars) publishes only
      what comes after, so the stream stays in event-time order and nothing is doubled.

    Book depth (:class:`~claire.events.BookDepth`, a live MEXC source's top-5 books) is published
    like any market event, with its seq: the stages forward it to the paper exchange, which fills
    against its levels as the one-process core's does (strategy, risk and portfolio skip it).

    Per symbol it keeps when the last event came (wall clock) and its event time: the service's
    freshness (``/ready``, ``/metrics``).
    """

    #: warm-up bars a live source fetches again after a restart (the bars closed while it was down)
    RESTART_WARMUP = 60
    #: seconds a live source gets to deliver what it holds once asked to stop
    STOP_GRACE_S = 10.0

    def __init__(self, bus: Bus, events: Iterable[Any], partitions: int = 1, speed: float | None = None,
                 batch: int = 500, metrics: ServiceMetrics | None = None, name: str = "marketdata",
                 live: bool = False, finite: bool = False, symbols: Sequence[str] = ()) -> None:
        super().__init__(name, bus, metrics)
        self.events = events
        self.partitions = partitions
        self.speed = speed
        self.batch = batch
        self.live = live
        self.finite = finite  # live: the source ends by itself (a capture replayed): then end_of_data
        self.symbols = tuple(symbols)  # the subscribed symbols (live): fresh or not from the start
        self.pos = 0
        self.done = False
        self.last_event_ts = 0
        self.finish = threading.Event()  # live: end the stream with end_of_data
        self.started_at = time.monotonic()
        self.last_seen: dict[str, float] = {}  # symbol -> time.monotonic() of its last event
        self.last_ts: dict[str, int] = {}  # symbol -> event time (ns) of its last event
        self.per_symbol: dict[str, int] = defaultdict(int)  # symbol -> events published
        self.error: BaseException | None = None  # what ended a live source, if it failed
        self._resume_ts = 0  # live: events up to this event time were published before a restart
        self._resume_ids: set[str] = set()  # ... those of them at exactly that time
        self._last_ids: list[str] = []  # ids published at the last event time
        self._closing = threading.Event()  # the loop no longer reads the source's queue
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=10_000)  # live: source thread -> loop
        self.live_from: int | None = None  # live: ms, the end of the source's warm-up (its history)

    @property
    def processed(self) -> int:
        """Events published (the position in the stream)."""
        return self.pos

    def run(self, stop: threading.Event) -> None:
        """Publish from the checkpointed position to the end (or until ``stop``), in chunks of
        ``batch`` events or 50 ms, paced by event time when ``speed`` is set (a replay)."""
        st = self.restore()
        if st is not None:
            self.pos, self.done = st["pos"], st["done"]
            self._resume_ts, self._resume_ids = st.get("ts", 0), set(st.get("ids", ()))
            self.last_event_ts, self._last_ids = self._resume_ts, list(st.get("ids", ()))
            self.live_from = st.get("live_from")
        if self.done:
            stop.wait()
            return
        if self.live:
            self._run_live(stop)
        else:
            self._run_replay(stop)

    def _run_replay(self, stop: threading.Event) -> None:
        streams = [partition_stream(MARKET_DATA, i, self.partitions) for i in range(self.partitions)]
        it = iter(self.events)
        for _ in range(self.pos):  # already published before a restart
            next(it, None)
        buf: list[tuple[str, bytes]] = []
        t_wall0 = time.monotonic()
        t_ev0: int | None = None
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
            self._seen(ev)
            if len(buf) >= self.batch or time.monotonic() >= flush_at:
                self._flush(buf, appended)
                buf = []
                flush_at = time.monotonic() + 0.05
        self._flush(buf, appended)
        if not stopped:
            self._end(streams, appended)

    def _warm_up_since_restart(self, src: Any) -> None:
        """After a restart, the live source fetches every bar closed since the last one published
        (a source without that: at least RESTART_WARMUP bars)."""
        if not self._resume_ts:
            return
        if hasattr(src, "resume_after"):
            src.resume_after(self._resume_ts)
        elif hasattr(src, "warmup"):
            src.warmup = max(int(src.warmup or 0), self.RESTART_WARMUP)

    def _run_live(self, stop: threading.Event) -> None:
        """Read the live source through a queue (its own thread), publish in chunks of ``batch``
        events or 50 ms; on ``stop`` or :attr:`finish` ask the source to stop and publish what it
        still delivers (at most :attr:`STOP_GRACE_S`); with :attr:`finish`, then end_of_data."""
        streams = [partition_stream(MARKET_DATA, i, self.partitions) for i in range(self.partitions)]
        src = self.events
        self._warm_up_since_restart(src)
        q = self._queue
        reader = threading.Thread(target=self._read_source, args=(src, q), name=f"{self.name}-source", daemon=True)
        reader.start()
        buf: list[tuple[str, bytes]] = []
        appended = self.pos
        flush_at = time.monotonic() + 0.05
        stop_asked_at: float | None = None
        ended = False
        while True:
            if stop_asked_at is None and (stop.is_set() or self.finish.is_set()):
                stop_asked_at = time.monotonic()
                self._stop_source(src)
            elif stop_asked_at is not None and time.monotonic() - stop_asked_at > self.STOP_GRACE_S:
                log.warning("%s: the source did not stop within %.0f s; closing it", self.name, self.STOP_GRACE_S)
                break
            try:
                item = q.get(timeout=max(0.001, flush_at - time.monotonic()))
            except queue.Empty:
                item = None
            if item is _SOURCE_END:
                ended = True
                break
            if item is not None:
                appended = self._take(item, src, streams, buf, appended)
            if len(buf) >= self.batch or time.monotonic() >= flush_at:
                self._flush(buf, appended)
                buf = []
                flush_at = time.monotonic() + 0.05
        self._flush(buf, appended)
        self._closing.set()
        close = getattr(src, "close", None)
        if close is not None:
            close()
        reader.join(timeout=5)
        if self.error is not None and stop_asked_at is None:
            raise self.error  # the source failed on its own: the service exits non-zero
        if ended and (self.finish.is_set() or self.finite) and not stop.is_set() and self.error is None:
            self._end(streams, appended)

    def _take(self, item: Any, src: Any, streams: list[str], buf: list[tuple[str, bytes]], appended: int) -> int:
        """One item of the live source into ``buf``; the new position. A side output goes to its
        stream; a market event gets the next seq unless it was published before a restart."""
        if type(item) is tuple:  # a side output of the source (e.g. a data-quality alert)
            buf.append((item[0], encode(item[1])))
            return appended
        ts, resume_ts = item.ts_event, self._resume_ts
        if ts < resume_ts or (ts == resume_ts and item.id in self._resume_ids):
            return appended  # on the bus already (a restarted source repeats its warm-up)
        if self.live_from is None:  # known once the first event came
            self.live_from = int(getattr(src, "live_from_ms", None) or 0)
        appended += 1
        ev = with_seq(item, appended)
        buf.append((streams[partition_of(ev.symbol, self.partitions)], encode(ev)))
        self._seen(ev)
        return appended

    def side_output(self, stream: str, event: Any) -> None:
        """Publish ``event`` on ``stream`` (not market data, no seq) in the source's order; called
        from the source's thread (while it is iterated), e.g. its data-quality alerts."""
        self._put((stream, event))

    def _put(self, item: Any) -> bool:
        """Into the queue to the loop, unless the loop is gone."""
        while not self._closing.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read_source(self, src: Iterable[Any], q: queue.Queue[Any]) -> None:
        put = self._put

        try:
            for ev in src:
                if not put(ev):
                    return
        except BaseException as exc:  # handed to the service loop
            log.exception("%s: the market data source failed", self.name)
            self.error = exc
        finally:
            put(_SOURCE_END)

    def _stop_source(self, src: Any) -> None:
        stop = getattr(src, "stop", None)
        if stop is not None:
            try:
                stop()
            except Exception:
                log.exception("%s: cannot stop the source", self.name)

    def _seen(self, ev: Any) -> None:
        """Freshness per symbol (and the ids at the last event time, for a live checkpoint)."""
        sym, ts = ev.symbol, ev.ts_event
        self.last_seen[sym] = time.monotonic()
        self.last_ts[sym] = ts
        self.per_symbol[sym] += 1
        if self.live:
            if ts != self.last_event_ts:
                self._last_ids = []
            self._last_ids.append(ev.id)
        self.last_event_ts = ts

    def _end(self, streams: list[str], appended: int) -> None:
        ts = self.last_event_ts
        eod = Control(id=f"{self.name}:end_of_data", ts_event=ts, ts_recv=ts, kind="end_of_data", seq=appended + 1)
        raw = encode(eod)
        self.done = True
        self.bus.commit(*self.next_commit(self._state(appended, True), [(s, raw) for s in streams]))
        log.info("%s: end of data after %d events", self.name, appended)

    def _state(self, pos: int, done: bool) -> bytes:
        if not self.live:
            return _json.encode({"pos": pos, "done": done})
        return _json.encode({"pos": pos, "done": done, "ts": self.last_event_ts, "ids": self._last_ids,
                             "live_from": self.live_from})

    def _flush(self, buf: list[tuple[str, bytes]], pos: int) -> None:
        if not buf:
            return
        self.bus.commit(*self.next_commit(self._state(pos, False), buf))
        self.pos = pos
        counts: dict[str, int] = defaultdict(int)
        for stream, _ in buf:
            counts[stream] += 1
        self.count(self.metrics.events_out, counts)

    # --- freshness ------------------------------------------------------------------------
    def ages(self, now: float | None = None) -> dict[str, float | None]:
        """Seconds since each symbol's last event (None: none yet); the subscribed symbols first."""
        now = time.monotonic() if now is None else now
        seen = dict(self.last_seen)
        out: dict[str, float | None] = {s: None for s in self.symbols}
        for sym, t in seen.items():
            out[sym] = now - t
        return out

    def feed_stats(self) -> dict[str, Any]:
        """What a live MEXC source tells about its data (frames, decode errors, connections,
        data-quality records); empty for a replay."""
        feed = getattr(self.events, "feed", None)
        if feed is None:
            return {}
        codec = getattr(feed, "codec", None)
        stream = getattr(feed, "source", None)
        skipped = dict(getattr(codec, "skipped", {}) or {})
        return {
            "frames": int(getattr(codec, "frames", 0)) - int(skipped.get("undecodable frame", 0)),
            "decode_errors": skipped,
            "reconnects": int(getattr(stream, "reconnects", 0)),
            "connections": int(getattr(stream, "connected", 0)),
            "quality": list(getattr(feed, "quality", ())),
        }


_SOURCE_END = object()  # the live source ended (or failed)


_SKIP_PREFIXES = (b'{"type":"bar"', b'{"type":"trade"', b'{"type":"quote"', b'{"type":"book"', b'{"type":"control"')
_ORDER_PREFIX = b'{"type":"order"'


class WriterService(GroupConsumer):
    """Persists every event of the topic streams through ``EventWriter`` (idempotent), then acks.

    Market events and control messages forwarded on the pipeline streams are skipped, and so are
    the order echoes on ``order_results`` (orders are stored from ``orders``). Once the final
    snapshot is stored and nothing else is waiting, it checkpoints ``final_persisted``: the
    run's end as far as the database is concerned.
    """

    def __init__(self, bus: Bus, writer: Any, partitions: int = 1, batch: int = 1000, block_ms: int = 100,
                 metrics: ServiceMetrics | None = None, name: str = "writer", on_final: Callable[[], None] | None = None,
                 dlq_streams: Sequence[str] = (), store_dead: Callable[[list[DeadLetter]], None] | None = None) -> None:
        super().__init__(name, bus, [SIGNALS, ORDERS, ORDER_RESULTS, SNAPSHOTS, RISK_EVENTS, ALERTS, *dlq_streams],
                         metrics, batch, block_ms)
        # the dead letters of every service (their .dlq streams) go to the database too
        self.dlq_streams = frozenset(dlq_streams)
        self.store_dead = store_dead
        self.writer = writer
        db = getattr(writer, "db", None)
        if db is not None and hasattr(db, "check"):  # claire_database_up on /metrics
            self.metrics.database_check = db.check
        self.final_seen = False
        self.final_persisted = False
        self.on_final = on_final
        self.written = 0
        self.consumed = 0  # messages read and acked (persisted or skipped)
        #: called with (stream, payload) for every message once its batch is stored: the alert rules
        #: (claire.runtime.alerts.AlertService.observe) see the run's events in both runtimes
        self.observe: Callable[[str, bytes], None] | None = None
        self.alerts: Any = None  # the AlertService behind ``observe`` (claire.runtime.alerts.attach_alerts)
        #: the analytics rows completed as the run goes (claire.runtime.analytics): performance_metrics
        #: at each UTC day boundary of the stored snapshots; the fills' prices after, from the
        #: pipeline's market events and fills (pipe.order_results: the core's order; empty in paper,
        #: whose core hands them over itself)
        self.analytics = run_analytics(writer)
        self.follow = PriceAfter()
        if self.analytics is not None:
            self.inputs.append(PIPE_RESULTS)

    def _store_dead(self, dead: list[DeadLetter]) -> None:
        """Dead letters of the services: into the database, then an alert (never silently lost)."""
        if self.store_dead is not None:
            self.store_dead(dead)
        if self.alerts is not None:
            self.alerts.on_dead_letters(dead)

    def idle(self) -> None:
        """Nothing more to read after the final snapshot: everything published before it is stored."""
        if self.final_seen and not self.final_persisted:
            self._analytics(None, final=True)
            self.final_persisted = True
            self.bus.commit(self.name, 1, b'{"final_persisted":true}')
            if self.on_final:
                self.on_final()

    def process(self, msgs: list[Message]) -> None:
        """Store a batch (one flush), then ack it: acked only once in the database."""
        acks: dict[str, list[str]] = defaultdict(list)
        dead: list[DeadLetter] = []
        dlq = self.dlq_streams
        boundary: int | None = None  # a UTC day began with a snapshot of this batch
        for msg in msgs:
            p = msg.payload
            acks[msg.stream].append(msg.id)
            if msg.stream == PIPE_RESULTS:  # for the prices after only (stored from the topics)
                self._follow(p)
                continue
            if msg.stream == SNAPSHOTS and self.analytics is not None:
                with contextlib.suppress(msgspec.DecodeError):
                    boundary = self.analytics.snapshot_at(_ts_decoder.decode(p).ts_event) or boundary
            if dlq and msg.stream in dlq:
                with contextlib.suppress(ValueError):  # not a dead letter: nothing to store
                    dead.append(DeadLetter.from_message(msg))
                continue
            if p.startswith(_SKIP_PREFIXES):  # market data and control (paper publishes none here)
                continue
            if msg.stream == SNAPSHOTS and b'"reason":"final"' in p:
                self.final_seen = True
            self.writer.write_raw(p, source=msg.stream)
            self.written += 1
        if dead:
            self._store_dead(dead)
        self.writer.flush()
        if self.analytics is not None:
            self._analytics(boundary)
        if self.observe is not None:
            for msg in msgs:
                if msg.stream not in dlq and msg.stream != PIPE_RESULTS:
                    self.observe(msg.stream, msg.payload)
        self.bus.ack_many(self.ack_list(acks))
        self.count(self.metrics.events_in, {stream: len(ids) for stream, ids in acks.items()})
        self.consumed += len(msgs)


    def _follow(self, p: bytes) -> None:
        """A message of pipe.order_results: a fill waits for its symbol's next price; a market
        event of a symbol with waiting fills gives it (decoded only then)."""
        follow = self.follow
        if p.startswith(_RESULT_PREFIX):
            with contextlib.suppress(msgspec.DecodeError):
                r = _mark_decoder.decode(p)
                if r.status in ("filled", "partially_filled"):
                    follow.on_fill(r.id, r.symbol, r.ts_event)
            return
        if not follow.waiting or not p.startswith(_PRICE_PREFIXES):
            return
        try:
            m = _mark_decoder.decode(p)
        except msgspec.DecodeError:
            return
        if m.symbol in follow.waiting:
            price = m.close if m.type == "bar" else m.price if m.type == "trade" else \
                (m.bid + m.ask) / 2 if m.bid is not None and m.ask is not None else None
            if price is not None:
                follow.on_price(m.symbol, m.ts_event, price)

    def _analytics(self, boundary: int | None, final: bool = False) -> None:
        """After a stored batch: the prices after found, the performance rows at a day boundary
        (all of them at the end). A failure (the database away) is logged; it is done again later."""
        a = self.analytics
        if a is None:
            return
        try:
            a.prices_after(self.follow.take())
            if final:
                a.finish()
                return
            a.flush()
            if boundary is not None:
                a.refresh_performance(until_ns=boundary)
        except Exception as exc:  # one line a minute while the database is away, not a traceback a batch
            now = time.monotonic()
            if now - getattr(self, "_analytics_logged", -1e9) >= 60.0:
                self._analytics_logged = now
                log.warning("%s: the analytics rows could not be completed now (done again later): %s: %s",
                            self.name, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")


class _Mark(msgspec.Struct):
    """What the prices after need of a message of pipe.order_results (the rest is skipped)."""

    type: str
    id: str = ""
    symbol: str = ""
    ts_event: int = 0
    status: str = ""
    close: Decimal | None = None
    price: Decimal | None = None
    bid: Decimal | None = None
    ask: Decimal | None = None


class _Ts(msgspec.Struct):
    ts_event: int


_mark_decoder = msgspec.json.Decoder(_Mark)
_ts_decoder = msgspec.json.Decoder(_Ts)
_RESULT_PREFIX = b'{"type":"order_result"'
_PRICE_PREFIXES = (b'{"type":"bar"', b'{"type":"trade"', b'{"type":"quote"')


def run_analytics(writer: Any) -> Any:
    """The :class:`claire.runtime.analytics.RunAnalytics` of a writer's run (an EventWriter, or a
    writer wrapping one, e.g. the spooling writer); None without a database."""
    inner = writer if hasattr(writer, "run_id") else getattr(writer, "writer", None)
    db, run_id = getattr(inner, "db", None), getattr(inner, "run_id", None)
    if db is None or not isinstance(run_id, str) or not hasattr(db, "begin"):
        return None
    from claire.runtime.analytics import (
        RunAnalytics,  # start-up time: SQLAlchemy only for the runtimes that write a database
    )

    return RunAnalytics(db, run_id)


def dead_letter_streams(bus: Bus, partitions: int, topology: str = "seeds") -> list[str]:
    """The dead-letter streams of every service of a run (each stage's inputs, the writer's topics)."""
    kinds = ["signal", "account"] if topology == "account" else ["signal", "risk", "execution", "portfolio"]
    streams: list[str] = []
    for kind in kinds:
        for replica in range(partitions if kind == "signal" else 1):
            streams += stage_inputs(kind, replica, partitions)
    streams += [SIGNALS, ORDERS, ORDER_RESULTS, SNAPSHOTS, RISK_EVENTS, ALERTS]
    return [bus.dlq_name(s) for s in dict.fromkeys(streams)]


def stage_inputs(kind: str, replica: int, partitions: int) -> list[str]:
    """The input streams of a stage service: one place, so the services and the supervisor (which
    creates the groups before anything is published) agree."""
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


class ReportService(GroupConsumer):
    """Builds the run files of a distributed run from the streams: a portfolio replica fed from
    ``order_results`` (identical to the portfolio service's) plus a Recorder of every topic.

    Driven by ``claire up --wait`` (:meth:`ensure_groups`, then :meth:`step` until :attr:`done`);
    what it cannot decode it skips (the stages dead-letter it already).
    """

    def __init__(self, bus: Bus, recorder: Any, portfolio_stage: Any, partitions: int = 1, name: str = "report",
                 batch: int = 2000) -> None:
        super().__init__(name, bus, [SIGNALS, ORDERS, PIPE_RESULTS, RISK_EVENTS, ALERTS], batch=batch)
        self.recorder = recorder
        self.stage = portfolio_stage

    @property
    def done(self) -> bool:
        """The portfolio replica has seen the end of data."""
        return bool(self.stage.done)

    def process(self, msgs: list[Message]) -> None:
        """Record a batch (results through the portfolio replica, for its snapshots), then ack it."""
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
        self.bus.ack_many(self.ack_list(acks))


# --- heartbeats in service_status (issue 12) --------------------------------------------------


def start_status(database_url: str | None, run_id: str, service: str, replica: int, loop: Any,
                 ready: Callable[[], tuple[bool, Any]], live: bool, interval: float = 1.0) -> Any:
    """Heartbeats of one service replica into ``service_status`` every ``interval`` seconds (a
    thread, its own small engine; a database away is logged, never fatal). Returns the heartbeat
    (``.stop("stopped")`` at a clean end), or None without a database URL."""
    if not database_url:
        return None
    # start-up time: SQLAlchemy only for the services that report to a database
    from datetime import UTC, datetime

    from claire.storage.service_status import StatusHeartbeat

    def sample() -> dict[str, Any]:
        processed = getattr(loop, "processed", None)
        if processed is None:
            processed = getattr(loop, "written", 0)
        last = int(getattr(loop, "last_event_ts", 0) or 0)
        details: dict[str, Any] = {"source": "live" if live else "replay"}
        per_symbol = dict(list((getattr(loop, "last_ts", None) or {}).items()))
        if per_symbol:
            details["symbols"] = {s: datetime.fromtimestamp(ts / NS_PER_SEC, UTC).isoformat()
                                  for s, ts in per_symbol.items() if ts}
        lag = max(time.time() * 1000 - last / 1e6, 0.0) if live and last else None
        return {"status": "running", "ready": bool(ready()[0]), "events_processed": int(processed or 0),
                "last_event_ts": last or None, "lag_ms": lag, "details": details}

    return StatusHeartbeat(database_url, run_id, service, replica, sample, interval).start()
