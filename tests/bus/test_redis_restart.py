"""Redis going away mid-stream: the bus reconnects with backoff and nothing is lost.

A private redis-server with AOF (``appendfsync always``) is restarted, by kill -9 or SHUTDOWN,
while a producer publishes and a consumer reads and acks. Every published message must reach the
consumer. Redeliveries are allowed (a lost ack reply, a retried publish) and are counted as
duplicates; the set of received messages must be complete.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from claire.bus import BusUnavailableError, RedisStreamsBus
from tests.support.redis_server import RedisServer

OPTS = {"reconnect_timeout_s": 20.0, "backoff_base_s": 0.02, "backoff_cap_s": 0.4, "socket_timeout": 5.0}


@pytest.mark.parametrize("hard", [True, False], ids=["kill-9", "shutdown"])
def test_nothing_lost_across_a_restart(tmp_path: Path, hard: bool, caplog: pytest.LogCaptureFixture) -> None:  # noqa: C901 - one restart scenario, read top to bottom
    caplog.set_level(logging.WARNING, logger="claire.bus.redis")
    n, batch = 3_000, 20
    with RedisServer(tmp_path, appendonly=True, appendfsync="always") as srv:
        producer = RedisStreamsBus(srv.url(), "rt:", **OPTS)
        consumer = RedisStreamsBus(srv.url(), "rt:", **OPTS)
        producer.ensure_group("orders", "exec")
        received: Counter[int] = Counter()
        errors: list[BaseException] = []
        third = threading.Event()
        published = threading.Event()

        def produce() -> None:
            try:
                for start in range(0, n, batch):
                    producer.publish_many("orders", [b"%d" % i for i in range(start, start + batch)])
                    time.sleep(0.003)
            except BaseException as exc:
                errors.append(exc)
            finally:
                published.set()

        def consume() -> None:
            deadline = time.monotonic() + 40
            try:
                while time.monotonic() < deadline:
                    msgs = consumer.read("exec", "c1", ["orders"], count=50, block_ms=100)
                    if not msgs:
                        # entries whose read reply was lost in the crash are pending for c1 itself
                        msgs = consumer.claim_stale("orders", "exec", "c1", min_idle_ms=500)
                    for m in msgs:
                        received[int(m.payload)] += 1
                    if msgs:
                        consumer.ack("orders", "exec", [m.id for m in msgs])
                    if len(received) >= n // 3:
                        third.set()
                    if published.is_set() and len(received) == n:
                        return
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
        for t in threads:
            t.start()
        assert third.wait(20), "consumer made no progress before the restart"
        t_down = time.monotonic()
        srv.restart(hard=hard, down_for=0.5)
        outage = time.monotonic() - t_down
        for t in threads:
            t.join(45)
        assert not errors, errors
        assert not any(t.is_alive() for t in threads)

        assert set(received) == set(range(n))  # complete: nothing lost
        duplicates = sum(c - 1 for c in received.values())
        # what the stream holds after the restart: every message, retried publishes maybe twice
        stored = Counter(int(f[b"payload"]) for _, f in srv.admin_client().xrange("rt:orders"))
        assert set(stored) == set(range(n))
        assert consumer.pending_count("orders", "exec") == 0
        reconnects = [r for r in caplog.records if "retry" in r.getMessage()]
        assert reconnects, "the restart went unnoticed?"
        print(
            f"\n[{'kill -9' if hard else 'SHUTDOWN'}] outage {outage:.2f}s, {len(reconnects)} retries logged,"
            f" {duplicates} duplicate deliveries, {sum(stored.values()) - n} duplicate entries in the stream"
        )
        producer.close()
        consumer.close()


def test_publish_waits_for_the_server_and_is_not_lost(tmp_path: Path) -> None:
    with RedisServer(tmp_path, appendonly=True) as srv:
        bus = RedisStreamsBus(srv.url(), "w:", **OPTS)
        bus.ensure_group("s", "g")
        bus.publish("s", b"before")
        srv.kill()
        result: list[str] = []
        t = threading.Thread(target=lambda: result.append(bus.publish("s", b"during outage")))
        t0 = time.monotonic()
        t.start()
        time.sleep(0.6)
        assert t.is_alive()  # still retrying
        srv.start()
        t.join(10)
        assert result and time.monotonic() - t0 >= 0.6
        msgs = bus.read("g", "c", ["s"], block_ms=1000)
        assert [m.payload for m in msgs] == [b"before", b"during outage"]
        assert msgs[1].id == result[0]
        bus.close()


def test_gives_up_after_the_reconnect_budget(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as srv:
        bus = RedisStreamsBus(srv.url(), "g:", reconnect_timeout_s=0.5, backoff_base_s=0.05)
        bus.publish("s", b"x")
        srv.kill()
        t0 = time.monotonic()
        with pytest.raises(BusUnavailableError):
            bus.publish("s", b"y")
        assert 0.3 <= time.monotonic() - t0 < 2.0
        bus.close()
