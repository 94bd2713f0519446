"""One contract suite for every bus implementation: in-memory and Redis Streams (real Redis).

Each test gets a ``BusHarness``: ``h.new(**options)`` builds a bus of the implementation under test
(every bus of one test shares the same namespace, like several processes on one Redis), and
``h.advance(ms)`` lets idle time pass: the in-memory bus advances its injected clock, the Redis bus
sleeps.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import pytest

from claire.bus import (
    REASON_MAX_DELIVERIES,
    Bus,
    BusClosedError,
    DeadLetter,
    InMemoryBus,
    Message,
    NoGroupError,
    RedisStreamsBus,
)
from claire.bus.base import parse_id
from claire.events import DecodeError, decode


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class BusHarness:
    def __init__(self, kind: str, redis_url: str | None, prefix: str) -> None:
        self.kind = kind
        self.redis_url = redis_url
        self.prefix = prefix
        self.clock = FakeClock()
        self.buses: list[Bus] = []

    def new(self, **options) -> Bus:
        options.setdefault("trim_every", None)
        if self.kind == "memory":
            # every bus of a test shares the first one's state, like processes sharing one Redis
            share = self.buses[0] if self.buses else None
            bus: Bus = InMemoryBus(self.prefix, clock=self.clock, share_with=share, **options)
        else:
            bus = RedisStreamsBus(self.redis_url, self.prefix, reconnect_timeout_s=5, **options)
        self.buses.append(bus)
        return bus

    def advance(self, ms: float) -> None:
        if self.kind == "memory":
            self.clock.now += ms
        else:
            time.sleep(ms / 1000.0)

    def close(self) -> None:
        for b in self.buses:
            b.close()


@pytest.fixture(params=["memory", "redis"])
def h(request) -> Iterator[BusHarness]:
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
    else:
        url, prefix = None, "mem:"
    harness = BusHarness(request.param, url, prefix)
    yield harness
    harness.close()


def payloads(msgs: list[Message]) -> list[bytes]:
    return [m.payload for m in msgs]


def ids_increasing(ids: list[str]) -> bool:
    parsed = [parse_id(i) for i in ids]
    return all(a < b for a, b in itertools.pairwise(parsed))


# ---------------------------------------------------------------------------------------------


def test_publish_then_read_in_order_with_headers(h: BusHarness) -> None:
    bus = h.new()
    assert bus.ensure_group("orders", "risk") is True
    ids = [bus.publish("orders", f"m{i}".encode(), {"type": "Order", "n": str(i)}) for i in range(5)]
    ids += bus.publish_many("orders", [f"m{i}".encode() for i in range(5, 10)])
    assert len(ids) == 10 and ids_increasing(ids)
    assert bus.length("orders") == 10

    msgs = bus.read("risk", "c1", ["orders"], count=100)
    assert [m.id for m in msgs] == ids
    assert payloads(msgs) == [f"m{i}".encode() for i in range(10)]
    assert {m.stream for m in msgs} == {"orders"}
    assert [m.deliveries for m in msgs] == [1] * 10
    assert msgs[3].headers == {"type": "Order", "n": "3"}
    assert msgs[7].headers == {}
    assert bus.read("risk", "c1", ["orders"]) == []  # '>' semantics: nothing new
    assert bus.pending_count("orders", "risk") == 10


def test_count_limits_per_read_and_reading_several_streams(h: BusHarness) -> None:
    bus = h.new()
    for s in ("a", "b"):
        bus.ensure_group(s, "g")
    bus.publish_many("a", [b"a0", b"a1", b"a2"])
    bus.publish_many("b", [b"b0", b"b1"])
    first = bus.read("g", "c", ["a", "b"], count=2)
    assert [(m.stream, m.payload) for m in first] == [("a", b"a0"), ("a", b"a1"), ("b", b"b0"), ("b", b"b1")]
    rest = bus.read("g", "c", ["a", "b"], count=2)
    assert [(m.stream, m.payload) for m in rest] == [("a", b"a2")]


def test_ensure_group_is_idempotent_and_start_positions(h: BusHarness) -> None:
    bus = h.new()
    bus.publish("s", b"old")  # creates the stream
    assert bus.ensure_group("s", "all", start="0") is True
    assert bus.ensure_group("s", "new", start="$") is True
    bus.publish("s", b"fresh")
    assert payloads(bus.read("all", "c", ["s"])) == [b"old", b"fresh"]
    # calling again neither fails nor resets the position
    assert bus.ensure_group("s", "all", start="0") is False
    assert bus.read("all", "c", ["s"]) == []
    assert payloads(bus.read("new", "c", ["s"])) == [b"fresh"]
    # a group on a stream that does not exist yet creates the stream
    assert bus.ensure_group("empty", "g") is True
    assert bus.length("empty") == 0
    assert bus.read("g", "c", ["empty"]) == []


def test_missing_group_is_an_error(h: BusHarness) -> None:
    bus = h.new()
    bus.publish("s", b"x")
    with pytest.raises(NoGroupError):
        bus.read("nope", "c", ["s"])
    with pytest.raises(NoGroupError):
        bus.read("nope", "c", ["never-created"])
    with pytest.raises(NoGroupError):
        bus.pending_count("s", "nope")
    with pytest.raises(NoGroupError):
        bus.claim_stale("s", "nope", "c", 0)
    assert bus.ack("s", "nope", ["1-0"]) == 0
    # all or nothing: a missing group on one stream delivers nothing from the others
    bus.ensure_group("s", "g")
    with pytest.raises(NoGroupError):
        bus.read("g", "c", ["s", "never-created"])
    assert bus.pending_count("s", "g") == 0
    assert payloads(bus.read("g", "c", ["s"])) == [b"x"]


def test_groups_are_independent(h: BusHarness) -> None:
    bus = h.new()
    bus.ensure_group("fills", "portfolio")
    bus.ensure_group("fills", "reporting")
    bus.publish_many("fills", [b"f1", b"f2", b"f3"])

    p = bus.read("portfolio", "p1", ["fills"])
    assert payloads(p) == [b"f1", b"f2", b"f3"]
    assert bus.ack("fills", "portfolio", [m.id for m in p]) == 3
    assert bus.pending_count("fills", "portfolio") == 0
    # the other group still sees everything and its pending list is its own
    assert bus.pending_count("fills", "reporting") == 0
    r = bus.read("reporting", "r1", ["fills"], count=2)
    assert payloads(r) == [b"f1", b"f2"]
    assert bus.pending_count("fills", "reporting") == 2
    assert bus.pending_count("fills", "portfolio") == 0
    bus.publish("fills", b"f4")
    assert payloads(bus.read("portfolio", "p1", ["fills"])) == [b"f4"]
    assert payloads(bus.read("reporting", "r1", ["fills"])) == [b"f3", b"f4"]


def test_consumers_of_one_group_share_messages_without_duplicates(h: BusHarness) -> None:
    producer = h.new()
    producer.ensure_group("ticks", "strategy")
    n = 2_000
    producer.publish_many("ticks", [str(i).encode() for i in range(n)])
    # two consumers taking turns: disjoint batches, in order
    c1, c2 = h.new(), h.new()
    first = c1.read("strategy", "c1", ["ticks"], count=3)
    second = c2.read("strategy", "c2", ["ticks"], count=3)
    third = c1.read("strategy", "c1", ["ticks"], count=3)
    assert payloads(first + second + third) == [str(i).encode() for i in range(9)]
    for bus, msgs in ((c1, first + third), (c2, second)):
        bus.ack("ticks", "strategy", [m.id for m in msgs])

    # four concurrent consumers share the rest
    got: dict[str, list[bytes]] = {"turns": payloads(first + second + third)}
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def consume(name: str) -> None:
        bus = h.new()  # each consumer its own bus/connection, like separate processes
        mine: list[bytes] = []
        barrier.wait()
        try:
            while True:
                msgs = bus.read("strategy", name, ["ticks"], count=37)
                if not msgs:
                    break
                mine += payloads(msgs)
                time.sleep(0.001)  # "work", so that the consumers interleave
                bus.ack("ticks", "strategy", [m.id for m in msgs])
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)
        got[name] = mine

    threads = [threading.Thread(target=consume, args=(f"c{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    everything = [p for ps in got.values() for p in ps]
    assert len(everything) == n  # no message twice
    assert sorted(everything, key=int) == [str(i).encode() for i in range(n)]  # none missing
    for ps in got.values():  # each consumer sees its share in stream order
        assert [int(p) for p in ps] == sorted(int(p) for p in ps)
    assert sum(1 for name, ps in got.items() if ps and name != "turns") >= 2  # really shared
    assert producer.pending_count("ticks", "strategy") == 0


def test_ack_removes_from_pending(h: BusHarness) -> None:
    bus = h.new()
    bus.ensure_group("s", "g")
    bus.publish_many("s", [b"a", b"b", b"c", b"d"])
    msgs = bus.read("g", "c", ["s"])
    assert bus.pending_count("s", "g") == 4
    assert bus.ack("s", "g", [msgs[0].id, msgs[2].id]) == 2
    assert bus.pending_count("s", "g") == 2
    assert bus.ack("s", "g", [msgs[0].id]) == 0  # already acked
    assert bus.ack("s", "g", []) == 0
    # acked messages are not claimable; the others are
    h.advance(10)
    claimed = bus.claim_stale("s", "g", "other", min_idle_ms=0)
    assert payloads(claimed) == [b"b", b"d"]
    assert bus.ack("s", "g", [m.id for m in claimed]) == 2
    assert bus.pending_count("s", "g") == 0
    assert bus.claim_stale("s", "g", "other", min_idle_ms=0) == []


def test_dead_consumer_messages_are_claimed_after_idle_timeout(h: BusHarness) -> None:
    bus = h.new()
    bus.ensure_group("orders", "exec")
    ids = bus.publish_many("orders", [b"o1", b"o2", b"o3"])
    dying = h.new()
    got = dying.read("exec", "worker-1", ["orders"])
    dying.ack("orders", "exec", [got[0].id])  # processed one, then crashed
    dying.close()

    survivor = h.new()
    assert survivor.claim_stale("orders", "exec", "worker-2", min_idle_ms=300) == []  # not idle long enough
    h.advance(400)
    claimed = survivor.claim_stale("orders", "exec", "worker-2", min_idle_ms=300)
    assert [m.id for m in claimed] == ids[1:]
    assert payloads(claimed) == [b"o2", b"o3"]
    assert [m.deliveries for m in claimed] == [2, 2]
    assert {m.stream for m in claimed} == {"orders"}
    # claiming restarted their idle time: nobody can take them again right away
    assert survivor.claim_stale("orders", "exec", "worker-3", min_idle_ms=300) == []
    # and they are not new messages for '>' readers
    assert survivor.read("exec", "worker-3", ["orders"]) == []
    assert survivor.pending_count("orders", "exec") == 2
    # the count argument bounds a claim
    h.advance(400)
    one = survivor.claim_stale("orders", "exec", "worker-3", min_idle_ms=300, count=1)
    assert [(m.payload, m.deliveries) for m in one] == [(b"o2", 3)]
    assert survivor.ack("orders", "exec", [m.id for m in claimed]) == 2
    assert survivor.pending_count("orders", "exec") == 0


def test_message_is_dead_lettered_after_max_deliveries(h: BusHarness) -> None:
    bus = h.new()  # default max_deliveries = 5
    assert bus.max_deliveries == 5
    bus.ensure_group("signals", "risk")
    payload = b'{"not":"an event", "bytes":"\xc3\xa9"}'
    mid = bus.publish("signals", payload, {"trace": "t-1"})
    seen = [m.deliveries for m in bus.read("risk", "c0", ["signals"])]
    for i in range(1, 10):  # every consumer fails and dies; the next one claims the message
        h.advance(50)
        claimed = bus.claim_stale("signals", "risk", f"c{i}", min_idle_ms=10)
        if not claimed:
            break
        seen += [m.deliveries for m in claimed]
    assert seen == [1, 2, 3, 4, 5]  # delivered 5 times, never a 6th
    assert bus.pending_count("signals", "risk") == 0  # acked on the source

    assert bus.length("signals.dlq") == 1
    bus.ensure_group("signals.dlq", "ops")
    [entry] = bus.read("ops", "op", ["signals.dlq"])
    dl = DeadLetter.from_message(entry)
    assert dl.reason == REASON_MAX_DELIVERIES
    assert dl.stream == "signals"
    assert dl.original_id == mid
    assert dl.group == "risk"
    assert dl.deliveries == 5
    assert dl.payload == payload
    assert dl.headers == {"trace": "t-1"}
    h.advance(50)
    assert bus.claim_stale("signals", "risk", "late", min_idle_ms=10) == []
    assert bus.length("signals.dlq") == 1  # dead-lettered exactly once


def test_max_deliveries_and_dead_letter_name_are_configurable(h: BusHarness) -> None:
    bus = h.new(max_deliveries=2, dlq_names={"fills": "graveyard"})
    bus.ensure_group("fills", "g")
    bus.publish_many("fills", [b"x", b"y"])
    msgs = bus.read("g", "c1", ["fills"])
    bus.ack("fills", "g", [msgs[1].id])
    h.advance(20)
    assert [(m.payload, m.deliveries) for m in bus.claim_stale("fills", "g", "c2", 10)] == [(b"x", 2)]
    h.advance(20)
    assert bus.claim_stale("fills", "g", "c3", 10) == []
    assert bus.length("fills.dlq") == 0
    assert bus.length("graveyard") == 1
    bus.ensure_group("graveyard", "ops")
    dl = DeadLetter.from_message(bus.read("ops", "o", ["graveyard"])[0])
    assert (dl.payload, dl.deliveries, dl.original_id) == (b"x", 2, msgs[0].id)


def test_explicit_dead_letter_of_a_malformed_message(h: BusHarness) -> None:
    bus = h.new()
    bus.ensure_group("orders", "exec")
    bad = b'{"type":"Order","qty":'
    bus.publish("orders", bad, {"source": "fuzz"})
    good_id = bus.publish("orders", b"later")
    msgs = bus.read("exec", "c", ["orders"])
    with pytest.raises(DecodeError) as err:
        decode(msgs[0].payload)
    dlq_id = bus.dead_letter("orders", "exec", msgs[0], f"decode error: {err.value}")
    assert dlq_id is not None
    assert bus.pending_count("orders", "exec") == 1  # only the good one is left
    assert bus.dead_letter("orders", "exec", msgs[0], "again") is None  # nothing pending: no duplicate
    assert bus.length("orders.dlq") == 1

    bus.ensure_group("orders.dlq", "ops")
    [entry] = bus.read("ops", "o", ["orders.dlq"])
    assert entry.id == dlq_id
    dl = DeadLetter.from_message(entry)
    assert dl.reason.startswith("decode error: ")
    assert (dl.stream, dl.original_id, dl.group, dl.deliveries) == ("orders", msgs[0].id, "exec", 1)
    assert dl.payload == bad
    assert dl.headers == {"source": "fuzz"}
    with pytest.raises(ValueError):
        DeadLetter.from_message(msgs[1])
    assert msgs[1].id == good_id


def test_trim_never_removes_unread_or_unacked_entries(h: BusHarness) -> None:
    bus = h.new(max_len=10)
    bus.ensure_group("s", "slow")
    bus.ensure_group("s", "fast")
    ids = bus.publish_many("s", [str(i).encode() for i in range(50)])

    def remaining() -> list[str]:
        """What is physically left, read (and acked) by a fresh group started at 0."""
        aud = f"audit-{time.monotonic_ns()}"
        bus.ensure_group("s", aud, start="0")
        left: list[str] = []
        while batch := bus.read(aud, "a", ["s"], count=1000):
            left += [m.id for m in batch]
            bus.ack("s", aud, [m.id for m in batch])
        return left

    # nobody has read anything: nothing may go, although the stream is 5x over the bound
    assert bus.trim("s") == 0
    assert bus.length("s") == 50

    slow = bus.read("slow", "c", ["s"], count=30)
    bus.ack("s", "slow", [m.id for m in slow[:20]])  # 20 acked, 10 pending, 20 unread
    fast = bus.read("fast", "c", ["s"], count=40)
    bus.ack("s", "fast", [m.id for m in fast])  # 40 acked, 10 unread
    # safe bound = oldest pending of "slow" (ids[20]); the 30 unsafe entries stay although > max_len
    assert bus.trim("s") == 20
    assert bus.length("s") == 30
    assert remaining() == ids[20:]
    assert bus.trim("s") == 0
    assert bus.pending_count("s", "slow") == 10

    bus.ack("s", "slow", [m.id for m in slow[20:]])
    rest = bus.read("slow", "c", ["s"], count=100)  # the last 20, left pending
    assert [m.id for m in slow + rest] == ids
    assert bus.trim("s") == 10  # now the bound is the oldest of those 20
    assert remaining() == ids[30:]
    bus.ack("s", "slow", [m.id for m in rest])
    assert bus.trim("s") == 10  # "fast" has not read ids[40:] yet: the bound (10) is reached anyway
    assert remaining() == ids[40:]
    more = bus.publish_many("s", [b"late"] * 5)
    fast += bus.read("fast", "c", ["s"])  # read, never acked
    assert [m.id for m in fast] == ids + more
    assert bus.length("s") == 15
    assert bus.trim("s") == 0  # 15 > max_len, but "fast" still has all of them pending
    assert bus.pending_count("s", "fast") == 15
    assert remaining() == ids[40:] + more


def test_trim_removes_acked_entries_down_to_the_bound(h: BusHarness) -> None:
    bus = h.new(max_len=10)
    bus.ensure_group("s", "g1")
    bus.ensure_group("s", "g2")
    ids = bus.publish_many("s", [str(i).encode() for i in range(50)])

    m1 = bus.read("g1", "c", ["s"], count=100)
    bus.ack("s", "g1", [m.id for m in m1])
    m2 = bus.read("g2", "c", ["s"], count=45)
    bus.ack("s", "g2", [m.id for m in m2[:30]])  # ids[30:45] pending, ids[45:] unread
    assert bus.trim("s") == 30  # towards the bound of 10, but only up to the oldest pending entry
    assert bus.length("s") == 20
    bus.ack("s", "g2", [m.id for m in m2[30:]])
    assert bus.trim("s") == 10  # now only the unread ids[45:] are protected: the bound decides
    assert bus.length("s") == 10
    assert bus.trim("s") == 0
    m2 += bus.read("g2", "c", ["s"], count=100)
    assert [m.id for m in m2] == ids  # g2 still got every message
    bus.ack("s", "g2", [m.id for m in m2])
    assert bus.trim("s") == 0  # everything acked, but the stream is at its bound already
    bus.publish_many("s", [b"x"] * 5)
    assert bus.trim("s") == 5  # oldest acked entries make room
    assert bus.length("s") == 10
    assert bus.pending_count("s", "g1") == 0


def test_trim_without_bound_drops_every_consumed_entry(h: BusHarness) -> None:
    bus = h.new(max_len=None)
    bus.ensure_group("s", "g")
    bus.publish_many("s", [b"a", b"b", b"c"])
    msgs = bus.read("g", "c", ["s"], count=2)
    assert bus.trim("s") == 0  # 'a' is still pending
    bus.ack("s", "g", [msgs[0].id])
    assert bus.trim("s") == 1
    bus.ack("s", "g", [msgs[1].id])
    bus.read("g", "c", ["s"])
    assert bus.trim("s") == 1  # 'c' is pending
    assert bus.length("s") == 1


def test_stream_without_groups_is_capped_by_max_len(h: BusHarness) -> None:
    bus = h.new(max_len=3)
    ids = bus.publish_many("audit", [str(i).encode() for i in range(8)])
    assert bus.trim("audit") == 5
    bus.ensure_group("audit", "g")
    assert [m.id for m in bus.read("g", "c", ["audit"])] == ids[5:]
    assert h.new(max_len=None).trim("audit") == 0


def test_publish_trims_automatically_every_n_messages(h: BusHarness) -> None:
    bus = h.new(max_len=5, trim_every=10)
    bus.ensure_group("s", "g")
    bus.publish_many("s", [b"x"] * 20)  # triggers a trim, but nothing is read yet
    assert bus.length("s") == 20
    while msgs := bus.read("g", "c", ["s"], count=7):
        bus.ack("s", "g", [m.id for m in msgs])
    for _ in range(9):
        bus.publish("s", b"y")
    assert bus.length("s") == 29  # 9 publishes since the last trim: not yet due
    bus.publish("s", b"y")  # the 10th: trim; the 10 new ones are unread and stay
    assert bus.length("s") == 10
    assert payloads(bus.read("g", "c", ["s"])) == [b"y"] * 10


def test_blocking_read_returns_when_a_message_arrives(h: BusHarness) -> None:
    bus = h.new()
    bus.ensure_group("a", "g")
    bus.ensure_group("b", "g")
    result: list[Message] = []
    elapsed: list[float] = []

    def wait() -> None:
        reader = h.new()
        t0 = time.monotonic()
        result.extend(reader.read("g", "c", ["a", "b"], count=10, block_ms=5_000))
        elapsed.append(time.monotonic() - t0)

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.3)
    assert t.is_alive()  # really blocked
    bus.publish("b", b"wake up")
    t.join(5)
    assert not t.is_alive()
    assert [(m.stream, m.payload) for m in result] == [("b", b"wake up")]
    assert 0.25 <= elapsed[0] < 2.0

    t0 = time.monotonic()
    assert bus.read("g", "c", ["a"], block_ms=300) == []  # times out with nothing
    assert 0.25 <= time.monotonic() - t0 < 2.0
    t0 = time.monotonic()
    assert bus.read("g", "c", ["a"], block_ms=0) == []  # 0 means do not block
    assert time.monotonic() - t0 < 0.2


def test_batch_publish_of_10k_messages_is_read_in_order(h: BusHarness) -> None:
    bus = h.new()
    bus.ensure_group("ticks", "g")
    n = 10_000
    ids = bus.publish_many("ticks", (b"tick-%d" % i for i in range(n)), {"kind": "tick"})
    assert len(ids) == n == len(set(ids))
    assert ids_increasing(ids)
    got: list[Message] = []
    while msgs := bus.read("g", "c", ["ticks"], count=1_000):
        got += msgs
        assert bus.ack("ticks", "g", [m.id for m in msgs]) == len(msgs)
    assert [m.id for m in got] == ids
    assert payloads(got) == [b"tick-%d" % i for i in range(n)]
    assert got[-1].headers == {"kind": "tick"}
    assert bus.pending_count("ticks", "g") == 0


def test_closed_bus_refuses_work(h: BusHarness) -> None:
    bus = h.new()
    bus.ensure_group("s", "g")
    bus.close()
    bus.close()  # idempotent
    with pytest.raises(BusClosedError):
        bus.publish("s", b"x")
    with pytest.raises(BusClosedError):
        bus.read("g", "c", ["s"])
