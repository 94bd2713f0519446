"""The shared part of the service loops (services.runner): a consumer in a group recovers its
pending entries before it reads new ones, acks what it processed, and a loop's commit number
carries on from its checkpoint after a restart."""

from __future__ import annotations

import threading

from claire.bus import InMemoryBus
from claire.runtime.distributed.runner import GroupConsumer, ServiceLoop


class Collect(GroupConsumer):
    def __init__(self, bus, calls=None, **kw):
        super().__init__("collect", bus, ["a", "b"], batch=2, **kw)
        self.batches: list[list[bytes]] = []
        self.calls = calls if calls is not None else []

    def load_state(self):
        self.calls.append(("load_state", self.bus.pending_count("a", self.group)))

    def process(self, msgs):
        self.batches.append([m.payload for m in msgs])
        acks: dict[str, list[str]] = {}
        for m in msgs:
            acks.setdefault(m.stream, []).append(m.id)
        self.bus.ack_many(self.ack_list(acks))


def test_pending_entries_first_then_new_ones_all_acked():
    bus = InMemoryBus("t:")
    first = Collect(bus)
    first.ensure_groups()
    bus.publish_many("a", [b"a1", b"a2", b"a3"])
    bus.publish_many("b", [b"b1"])
    assert len(first.read()) == 3  # a1 a2 (batch 2 per stream) and b1 ... then it "crashes"

    calls: list = []
    again = Collect(bus, calls)
    again.start()  # groups (exist), own state, then the pending entries in order, per stream
    assert calls == [("load_state", 2)]
    assert again.batches == [[b"a1", b"a2"], [b"b1"]]
    assert again.step(block_ms=0) == 1 and again.batches[-1] == [b"a3"]
    assert again.step(block_ms=0) == 0
    assert bus.pending_count("a", "collect") == bus.pending_count("b", "collect") == 0


def test_run_starts_once_and_stops():
    bus = InMemoryBus("t:")
    calls: list = []
    loop = Collect(bus, calls, block_ms=1)
    loop.start()
    stop = threading.Event()
    stop.set()
    loop.run(stop)
    assert calls == [("load_state", 0)]  # not started a second time


def test_commit_number_carries_on_from_the_checkpoint():
    bus = InMemoryBus("t:")
    one = ServiceLoop("svc", bus)
    assert one.restore() is None
    assert bus.commit(*one.next_commit(b'{"n":1}', [("out", b"x")]))
    assert bus.commit(*one.next_commit(b'{"n":2}'))
    two = ServiceLoop("svc", bus)
    assert two.restore() == {"n": 2}
    assert bus.commit(*two.next_commit(b'{"n":3}'))  # not skipped as a repeat
    assert bus.load_checkpoint("svc") == (3, b'{"n":3}')
