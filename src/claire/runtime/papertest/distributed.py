"""The distributed papertest (``--distributed``): the services of ``claire up`` under the
papertest's supervisor. Its end: the supervisor reads the run's clock from the database (the
newest persisted snapshot); once it passes the end it asks the market-data service to end its
stream (SIGUSR1, as ``claire up``'s live end), the services finish the run, and the writer's
checkpoint on the bus says when everything is persisted."""

from __future__ import annotations

from typing import Any

from claire.runtime.papertest.plan import Plan


def finished(spec: dict[str, Any], plan: Plan) -> bool:
    """The writer persisted the end of the run (its bus checkpoint says ``final_persisted``)."""
    from claire.bus import make_bus
    from claire.runtime.distributed.app import config_from_spec

    runtime = config_from_spec(spec).runtime
    bus = make_bus(runtime.bus_url, prefix=runtime.prefix)
    try:
        cp = bus.load_checkpoint("writer")
    finally:
        bus.close()
    return cp is not None and b"final_persisted" in cp[1]


def end_reached(plan: Plan) -> bool:
    """The run's clock (event time in the database for a replay, else the wall clock) passed its end."""
    if plan.clock != "exchange":
        return plan.end_reached(None)
    if plan.end_event_ms is None:
        return False
    from claire.runtime.papertest.status import last_event_time, scrape_freshness

    # the market data service's newest event time (its /metrics), else the newest stored snapshot
    fresh = scrape_freshness(plan.port or 8000)
    times = [v["last_event_ms"] for v in fresh.values() if v.get("last_event_ms")]
    if times:
        return bool(min(times) >= plan.end_event_ms)
    last = last_event_time(plan)
    return last is not None and int(last.timestamp() * 1000) >= plan.end_event_ms


def fix_event_clock(plan: Plan) -> Plan:
    """A distributed replay timed by event time starts at the first persisted event."""
    if plan.clock != "exchange" or plan.end_event_ms is not None:
        return plan
    from claire.runtime.papertest.plan import update_plan
    from claire.runtime.papertest.status import first_event_time

    first = first_event_time(plan)
    if first is None:
        return plan
    start = int(first.timestamp() * 1000)
    return update_plan(plan.run_dir, start_event_ms=start, end_event_ms=start + plan.duration_s * 1000)
