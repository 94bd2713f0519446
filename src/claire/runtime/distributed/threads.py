"""Run every service of the distributed runtime as threads of one process (tests, `paper --threads`).

The same service loops as `claire up`, sharing one bus; useful to check the distributed protocol
without processes, and on the in-memory bus without any server.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from claire.bus.base import Bus
from claire.runtime.distributed.app import build_service, config_from_spec


def run_services_threads(spec: dict[str, Any], bus_factory: Any, timeout: float = 300.0,
                         with_writer: bool = True) -> dict[str, Any]:
    """Start all services, wait until the final snapshot is persisted (or the portfolio is done),
    stop them, return the built services by name."""
    partitions = config_from_spec(spec).runtime.partitions
    names: list[tuple[str, int]] = [("signal", i) for i in range(partitions)]
    names += [("risk", 0), ("execution", 0), ("portfolio", 0)]
    if with_writer:
        names.append(("writer", 0))
    stop = threading.Event()
    services = {}
    threads = []
    buses: list[Bus] = []
    for name, replica in names:
        bus = bus_factory()
        buses.append(bus)
        svc = build_service(name, spec, bus, replica)
        svc.loop.start()  # groups exist before market data flows
        services[svc.name] = svc
    md_bus = bus_factory()
    buses.append(md_bus)
    md = build_service("marketdata", spec, md_bus)
    services["marketdata"] = md
    for svc in services.values():
        t = threading.Thread(target=svc.loop.run, args=(stop,), name=svc.name, daemon=True)
        t.start()
        threads.append(t)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if with_writer and services["writer"].loop.final_persisted:
                break
            if not with_writer and services["portfolio"].loop.stage.done:
                break
            time.sleep(0.02)
        else:
            raise TimeoutError("services did not finish in time")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        if with_writer:
            services["writer"].loop.writer.close()
        for b in buses:
            b.close()
    return services
