"""The atomic processing step: publish + ack + checkpoint, skipped when retried."""

from __future__ import annotations

import pytest

from claire.bus import InMemoryBus, RedisStreamsBus


@pytest.fixture(params=["memory", "redis"])
def bus(request):
    if request.param == "memory":
        b = InMemoryBus("t:")
    else:
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        b = RedisStreamsBus(url, prefix)
    yield b
    b.close()


def test_commit_publishes_acks_and_checkpoints_atomically(bus):
    bus.ensure_group("in", "svc")
    bus.ensure_group("out", "next")
    bus.publish_many("in", [b"a", b"b", b"c"])
    msgs = bus.read("svc", "svc-0", ["in"], count=10)
    assert [m.payload for m in msgs] == [b"a", b"b", b"c"]
    assert bus.load_checkpoint("svc") is None
    ok = bus.commit("svc", 1, b"state-1", publish=[("out", b"A"), ("out", b"B")],
                    acks=[("in", "svc", [m.id for m in msgs[:2]])])
    assert ok is True
    assert bus.pending_count("in", "svc") == 1
    assert bus.load_checkpoint("svc") == (1, b"state-1")
    out = bus.read("next", "n-0", ["out"], count=10)
    assert [m.payload for m in out] == [b"A", b"B"]
    # a retried commit (same number) changes nothing
    assert bus.commit("svc", 1, b"other", publish=[("out", b"A")], acks=[("in", "svc", [msgs[2].id])]) is False
    assert bus.read("next", "n-0", ["out"], count=10) == []
    assert bus.pending_count("in", "svc") == 1
    assert bus.load_checkpoint("svc") == (1, b"state-1")
    assert bus.commit("svc", 2, b"state-2", acks=[("in", "svc", [msgs[2].id])]) is True
    assert bus.pending_count("in", "svc") == 0
    assert bus.load_checkpoint("svc") == (2, b"state-2")


def test_commit_of_binary_payloads_round_trips(bus):
    bus.ensure_group("out", "g")
    payload = bytes(range(256)) * 10
    assert bus.commit("x", 5, b"\x00\xff", publish=[("out", payload)])
    (m,) = bus.read("g", "c", ["out"], count=5)
    assert m.payload == payload
    assert bus.load_checkpoint("x") == (5, b"\x00\xff")
