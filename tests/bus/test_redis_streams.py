"""Redis-specific behaviour, plus a model check: the Redis bus and the in-memory bus agree."""

from __future__ import annotations

import time

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claire.bus import InMemoryBus, RedisStreamsBus, make_bus, redact_url
from claire.bus.base import Bus


def test_make_bus_picks_the_implementation(redis_url: str, redis_prefix: str, monkeypatch) -> None:
    mem = make_bus("memory://", "x:")
    assert isinstance(mem, InMemoryBus) and mem.prefix == "x:"
    rb = make_bus(redis_url, redis_prefix, max_deliveries=7)
    assert isinstance(rb, RedisStreamsBus) and rb.prefix == redis_prefix and rb.max_deliveries == 7
    rb.close()
    rs = make_bus("rediss://127.0.0.1:1/0", "p:")  # TLS scheme accepted (no connection made yet)
    assert isinstance(rs, RedisStreamsBus)
    rs.close()
    with pytest.raises(ValueError):
        make_bus("kafka://broker:9092", "p:")
    monkeypatch.delenv("CLAIRE_REDIS_URL", raising=False)
    with pytest.raises(ValueError):
        make_bus(None, "p:")
    monkeypatch.setenv("CLAIRE_REDIS_URL", redis_url)
    env_bus = make_bus(None, redis_prefix)
    assert isinstance(env_bus, RedisStreamsBus)
    env_bus.close()


def test_redact_url() -> None:
    assert redact_url("redis://u:p%40ss@h:6379/1") == "redis://u:***@h:6379/1"
    assert redact_url("redis://:secret@h/0") == "redis://:***@h/0"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"
    assert redact_url("rediss://h:6380/0", password="pw") == "rediss://:***@h:6380/0"


def test_keys_are_namespaced_by_the_prefix(redis_url: str, redis_prefix: str) -> None:
    bus = RedisStreamsBus(redis_url, redis_prefix)
    bus.ensure_group("orders", "exec")
    bus.publish("orders", b"x", {"type": "Order"})
    [m] = bus.read("exec", "c", ["orders"])
    bus.dead_letter("orders", "exec", m, "test")
    raw = redis.Redis.from_url(redis_url)
    keys = sorted(k.decode() for k in raw.scan_iter(match=redis_prefix + "*"))
    assert keys == [redis_prefix + "orders", redis_prefix + "orders.dlq"]
    [(_, fields)] = raw.xrange(redis_prefix + "orders")
    assert fields == {b"payload": b"x", b"h:type": b"Order"}  # readable with redis-cli
    assert raw.xinfo_groups(redis_prefix + "orders")[0]["name"] == b"exec"
    raw.close()
    bus.close()


def test_blocking_read_longer_than_the_socket_timeout(redis_url: str, redis_prefix: str) -> None:
    bus = RedisStreamsBus(redis_url, redis_prefix, socket_timeout=1.2)  # reads are split in 200 ms pieces
    bus.ensure_group("s", "g")
    t0 = time.monotonic()
    assert bus.read("g", "c", ["s"], block_ms=1_500) == []
    assert 1.4 <= time.monotonic() - t0 < 3.0
    bus.close()


def test_large_trims_run_in_bounded_chunks(redis_url: str, redis_prefix: str) -> None:
    bus = RedisStreamsBus(redis_url, redis_prefix, max_len=3, trim_every=None, trim_chunk=7)
    ids = bus.publish_many("s", [b"%d" % i for i in range(50)])
    bus.ensure_group("s", "g", start=ids[39])  # ids[40:] are still unread by "g"
    assert bus.trim("s") == 40
    assert bus.length("s") == 10
    assert [m.id for m in bus.read("g", "c", ["s"])] == ids[40:]
    bus.close()


# -- model check: same operations, same observable results ---------------------------------------

ops = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.integers(1, 6)),
        st.tuples(
            st.just("read"), st.sampled_from(["g1", "g2"]), st.sampled_from(["a", "b"]), st.integers(1, 5)
        ),
        st.tuples(st.just("ack"), st.sampled_from(["g1", "g2"]), st.integers(0, 4)),
        st.tuples(
            st.just("claim"), st.sampled_from(["g1", "g2"]), st.sampled_from(["a", "b"]), st.integers(1, 4)
        ),
        st.tuples(st.just("dead"), st.sampled_from(["g1", "g2"])),
        st.tuples(
            st.just("trim"),
        ),
    ),
    max_size=25,
)


def run(bus: Bus, script: list[tuple]) -> list:
    """Apply ``script``; return what was observed, with ids replaced by payloads (ids differ)."""
    bus.ensure_group("s", "g1")
    bus.ensure_group("s", "g2")
    counter = 0
    held: dict[str, list] = {"g1": [], "g2": []}  # delivered, not yet acked (by this script)
    seen: list = []
    for op in script:
        kind = op[0]
        if kind == "publish":
            bus.publish_many("s", [b"%d" % (counter + i) for i in range(op[1])])
            counter += op[1]
        elif kind == "read":
            msgs = bus.read(op[1], op[2], ["s"], count=op[3])
            held[op[1]] += msgs
            seen.append(("read", [(m.payload, m.deliveries) for m in msgs]))
        elif kind == "ack":
            take, held[op[1]] = held[op[1]][: op[2]], held[op[1]][op[2] :]
            seen.append(("ack", bus.ack("s", op[1], [m.id for m in take])))
        elif kind == "claim":
            msgs = bus.claim_stale("s", op[1], op[2], 0, count=op[3])
            held[op[1]] = [m for m in held[op[1]] if m.id not in {x.id for x in msgs}] + msgs
            seen.append(("claim", [(m.payload, m.deliveries) for m in msgs]))
        elif kind == "dead" and held[op[1]]:
            m = held[op[1]].pop(0)
            seen.append(("dead", bus.dead_letter("s", op[1], m, "bad") is not None))
        elif kind == "trim":
            seen.append(("trim", bus.trim("s")))
        seen.append(("state", bus.length("s"), bus.pending_count("s", "g1"), bus.pending_count("s", "g2")))
    seen.append(("dlq", bus.length("s.dlq")))
    return seen


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=ops)
def test_redis_and_memory_buses_agree(script: list[tuple], redis_url: str, redis_prefix: str) -> None:
    opts = {"max_deliveries": 2, "max_len": 4, "trim_every": None}
    mem = InMemoryBus("m:", **opts)
    rb = RedisStreamsBus(redis_url, redis_prefix, trim_chunk=2, **opts)  # several trim script calls
    raw = redis.Redis.from_url(redis_url)
    raw.delete(redis_prefix + "s", redis_prefix + "s.dlq")  # hypothesis reuses the fixture's prefix
    raw.close()
    try:
        assert run(rb, script) == run(mem, script)
    finally:
        rb.close()
        mem.close()
