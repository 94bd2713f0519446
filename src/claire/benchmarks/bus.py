"""Tiny throughput benchmark of a bus: publish, then read + ack, in batches.

    python -m claire.benchmarks.bus [redis://127.0.0.1:6379/0] [n]

``bench_bus`` measures one bus; ``run_benchmarks`` both implementations over several batch sizes.
Numbers are single-threaded, one producer then one consumer, on whatever machine runs them.
"""

from __future__ import annotations

import sys
import time
import uuid
from typing import Any

from claire.bus.base import Bus
from claire.bus.memory import InMemoryBus
from claire.bus.redis_streams import RedisStreamsBus


def bench_bus(
    bus: Bus, n: int = 20_000, batch: int = 100, payload_size: int = 256, stream: str = "bench"
) -> dict[str, Any]:
    """Publish ``n`` messages in batches of ``batch`` (``publish`` when batch is 1, else
    ``publish_many``), then read them in batches of ``batch`` and ack each batch. Returns msgs/s."""
    payload = (b'{"event_id":"%s",' % uuid.uuid4().hex.encode()).ljust(payload_size - 1, b"x") + b"}"
    group = "bench"
    bus.ensure_group(stream, group, start="$")
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        k = min(batch, n - start)
        if k == 1:
            bus.publish(stream, payload)
        else:
            bus.publish_many(stream, [payload] * k)
    t1 = time.perf_counter()
    got = 0
    while got < n:
        msgs = bus.read(group, "c", [stream], count=batch)
        if not msgs:
            raise RuntimeError(f"only {got} of {n} messages came back")
        bus.ack(stream, group, [m.id for m in msgs])
        got += len(msgs)
    t2 = time.perf_counter()
    return {
        "impl": type(bus).__name__,
        "n": n,
        "batch": batch,
        "payload_bytes": len(payload),
        "publish_msgs_per_s": round(n / (t1 - t0)),
        "read_ack_msgs_per_s": round(n / (t2 - t1)),
        "end_to_end_msgs_per_s": round(n / (t2 - t0)),
    }


def run_benchmarks(
    redis_url: str | None = "redis://127.0.0.1:6379/0",
    n: int = 20_000,
    batches: tuple[int, ...] = (1, 10, 100, 1_000),
    prefix: str | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Benchmark the in-memory bus and (if ``redis_url``) the Redis bus; Redis keys are removed after."""
    out: dict[str, list[dict[str, Any]]] = {"memory": [], "redis": []}
    for b in batches:
        with InMemoryBus(trim_every=None) as mem:
            out["memory"].append(bench_bus(mem, n, b))
    if redis_url:
        prefix = prefix or f"claire-bench:{uuid.uuid4().hex[:8]}:"
        with RedisStreamsBus(redis_url, prefix, trim_every=None) as rb:
            try:
                for b in batches:
                    count = min(n, 5_000) if b == 1 else n  # one round trip per message: keep it short
                    out["redis"].append(bench_bus(rb, count, b, stream=f"bench-{b}"))
            finally:
                keys = list(rb.client.scan_iter(match=prefix + "*"))
                if keys:
                    rb.client.delete(*keys)
    return out


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    url = argv[0] if argv else "redis://127.0.0.1:6379/0"
    n = int(argv[1]) if len(argv) > 1 else 20_000
    for impl, rows in run_benchmarks(url, n).items():
        for r in rows:
            print(
                f"{impl:6} batch={r['batch']:>5}  publish {r['publish_msgs_per_s']:>9,}/s"
                f"  read+ack {r['read_ack_msgs_per_s']:>9,}/s  end-to-end {r['end_to_end_msgs_per_s']:>9,}/s"
            )


if __name__ == "__main__":
    main()
