"""Free TCP ports for the tests' servers and services, below the kernel's ephemeral range.

A port the kernel hands out for ``bind(("127.0.0.1", 0))`` lies in the ephemeral range
(``/proc/sys/net/ipv4/ip_local_port_range``, 32768-60999 by default), the same range every
outgoing connection (to Redis, PostgreSQL, a health probe) takes its local port from. Handed to a
service that binds it a moment later, it can be taken in between: CI saw ``address already in use
on port 43190`` once. Ports below that range are never taken by an outgoing connection, so the
only race left is with another test picking the same random port (checked: it must bind).
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterable

from claire.runtime.supervision import ephemeral_port_low

#: where the tests' ports come from: above the well-known and common service ports, below the
#: ephemeral range (its low end read from the kernel)
LOW = 20_000


HIGH = max(LOW + 1_000, ephemeral_port_low())


def bindable(port: int) -> bool:
    """``port`` can be bound on 127.0.0.1 now (as the services' HTTP servers bind: SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_base(offsets: Iterable[int] = (0,)) -> int:
    """A port ``base`` below the ephemeral range with ``base + k`` free for every ``k`` in ``offsets``."""
    offs = sorted(set(offsets))
    rng = random.SystemRandom()  # not the tests' seeded random: parallel workers must differ
    for _ in range(500):
        base = rng.randrange(LOW, HIGH - offs[-1])
        if all(bindable(base + k) for k in offs):
            return base
    raise AssertionError(f"no free ports in {LOW}..{HIGH}")


def free_port() -> int:
    """One free port below the ephemeral range."""
    return free_port_base()
