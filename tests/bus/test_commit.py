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


def test_commit_and_read_commits_first_then_reads(bus):
    """The service loop's step: the commit of the last batch and the next read, in that order."""
    bus.ensure_group("in", "svc")
    bus.ensure_group("out", "next")
    bus.publish_many("in", [b"a", b"b"])
    first = bus.read("svc", "svc-0", ["in"], count=1)
    assert [m.payload for m in first] == [b"a"]
    done, msgs = bus.commit_and_read("svc", 1, b"s1", [("out", b"A")], [("in", "svc", [first[0].id])],
                                     group="svc", consumer="svc-0", streams=["in"], count=10, block_ms=50)
    assert done is True
    assert [m.payload for m in msgs] == [b"b"]
    assert bus.load_checkpoint("svc") == (1, b"s1")
    assert bus.pending_count("in", "svc") == 1  # b: read, not yet committed
    assert [m.payload for m in bus.read("next", "n-0", ["out"], count=10)] == [b"A"]
    # nothing left: the read part times out empty; a retried commit is skipped, not repeated
    done, msgs = bus.commit_and_read("svc", 1, b"other", [("out", b"A")], [("in", "svc", [msgs[0].id])],
                                     group="svc", consumer="svc-0", streams=["in"], count=10, block_ms=20)
    assert (done, msgs) == (False, [])
    assert bus.load_checkpoint("svc") == (1, b"s1")
    assert bus.pending_count("in", "svc") == 1
    assert bus.read("next", "n-0", ["out"], count=10) == []


def test_commit_and_read_sees_what_its_own_commit_published(bus):
    bus.ensure_group("loop", "svc")
    bus.publish("loop", b"x")
    msgs = bus.read("svc", "svc-0", ["loop"], count=10)
    done, again = bus.commit_and_read("svc", 1, b"", [("loop", b"y")], [("loop", "svc", [m.id for m in msgs])],
                                      group="svc", consumer="svc-0", streams=["loop"], count=10)
    assert done is True
    assert [m.payload for m in again] == [b"y"]


def test_ack_many_acks_several_streams(bus):
    for s in ("s1", "s2", "s3"):
        bus.ensure_group(s, "g")
        bus.publish_many(s, [b"1", b"2"])
    msgs = bus.read("g", "c", ["s1", "s2", "s3"], count=10)
    assert len(msgs) == 6
    by: dict[str, list[str]] = {}
    for m in msgs:
        by.setdefault(m.stream, []).append(m.id)
    assert bus.ack_many([("s1", "g", by["s1"]), ("s2", "g", by["s2"][:1]), ("s3", "g", [])]) == 3
    assert [bus.pending_count(s, "g") for s in ("s1", "s2", "s3")] == [0, 1, 2]
    assert bus.ack_many([("s1", "g", by["s1"])]) == 0  # idempotent


def test_commit_and_read_reloads_a_forgotten_script(redis_url, redis_prefix):
    """After a server restart (SCRIPT FLUSH here) the commit script is loaded again; the read
    that travelled with the failed commit is not lost."""
    b = RedisStreamsBus(redis_url, redis_prefix)
    try:
        b.ensure_group("in", "svc")
        b.publish_many("in", [b"a", b"b"])
        first = b.read("svc", "svc-0", ["in"], count=1)
        b.client.script_flush()
        done, msgs = b.commit_and_read("svc", 1, b"s", [], [("in", "svc", [first[0].id])],
                                       group="svc", consumer="svc-0", streams=["in"], count=10)
        assert done is True
        assert [m.payload for m in msgs] == [b"b"]
        assert b.load_checkpoint("svc") == (1, b"s")
        b.client.script_flush()
        assert b.commit("svc", 2, b"t", [], [("in", "svc", [msgs[0].id])]) is True
        assert b.pending_count("in", "svc") == 0
    finally:
        b.close()


def test_commit_and_read_retry_never_hands_back_the_batch_it_commits(redis_url, redis_prefix):
    """The connection is lost and the server has forgotten the commit script (a restart): the
    retry must finish the commit before it looks for entries left pending by a lost read, or the
    batch being committed (still pending until then) comes back as new work and is processed
    twice."""
    b = RedisStreamsBus(redis_url, redis_prefix, backoff_base_s=0.01)
    try:
        b.ensure_group("in", "svc")
        b.publish_many("in", [b"a", b"b"])
        first = b.read("svc", "svc-0", ["in"], count=1)
        assert [m.payload for m in first] == [b"a"]
        b.client.script_flush()
        conn_id = b._raw("CLIENT", "ID")
        b.client.execute_command("CLIENT", "KILL", "ID", conn_id)  # the service's connection dies
        done, msgs = b.commit_and_read("svc", 1, b"s", [("out", b"A")], [("in", "svc", [first[0].id])],
                                       group="svc", consumer="svc-0", streams=["in"], count=10)
        assert [m.payload for m in msgs] == [b"b"]
        assert done is True
        assert b.pending_count("in", "svc") == 1  # b, read and not yet committed
        assert b.length("out") == 1
    finally:
        b.close()
