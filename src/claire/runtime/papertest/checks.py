"""The pre-flight of a papertest plan (:mod:`claire.runtime.papertest.preflight`: settings,
database, Redis, disk, clock skew, exchange and symbols, notification targets, ports), and the
exchange's clock, which decides how the run is timed (see :mod:`.plan`)."""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.request
from typing import Any

from claire.runtime.papertest.plan import REPLAY_SKEW_MS, Plan

log = logging.getLogger("claire.papertest")


def rest_base(plan: Plan) -> str:
    return (plan.mexc_rest_url or os.environ.get("MEXC_REST_URL") or "https://api.mexc.com").rstrip("/")


def _get(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - the exchange's http(s) URL
        return json.loads(resp.read())


def exchange_time_ms(plan: Plan) -> int:
    """The exchange's server time (ms); OSError/ValueError when it does not answer."""
    return int(_get(rest_base(plan) + "/api/v3/time")["serverTime"])


def decide_clock(plan: Plan) -> tuple[str, int | None]:
    """("exchange", server ms) for an exchange replaying history, else ("wall", server ms or None)."""
    if plan.fake_data:
        return "exchange", None
    try:
        server = exchange_time_ms(plan)
    except (OSError, ValueError, KeyError) as exc:
        log.info("exchange time not known (%s): timed by the wall clock", exc)
        return "wall", None
    replay = abs(server - time.time() * 1000) > REPLAY_SKEW_MS
    return ("exchange" if replay else "wall"), server


def run_checks(plan: Plan) -> list[Any]:
    """The pre-flight's rows (each with name, ok, detail, skipped) for ``plan``."""
    from claire.runtime.papertest.preflight import PreflightPlan, run_preflight

    return run_preflight(PreflightPlan(
        db_url=plan.database_url(), redis_url=plan.redis_url or os.environ.get("CLAIRE_REDIS_URL"),
        distributed=plan.distributed, run_dir=plan.run_dir, symbols=list(plan.symbols),
        duration_s=plan.duration_s, rest_url=None if plan.fake_data else rest_base(plan),
        ports=ports_of(plan), strategy=plan.strategy, params=list(plan.params), host="127.0.0.1"))


def ports_of(plan: Plan) -> dict[str, int]:
    """The ports the run will listen on: the paper component's (and a local fake's), or the services'."""
    from urllib.parse import urlsplit

    ports: dict[str, int] = {}
    if plan.fake_data and plan.mexc_rest_url:
        ports["mexc-fake"] = int(urlsplit(plan.mexc_rest_url).port or 0)
    if not plan.distributed:
        if plan.port:
            ports["paper"] = plan.port
        return ports
    from claire.config import DEFAULT_PORTS

    for i, (name, port) in enumerate(DEFAULT_PORTS.items()):
        if name != "account":
            ports[name] = plan.port + i if plan.port else port
    return ports


def render_checks(rows: list[Any]) -> Any:
    from claire.runtime.papertest.preflight import render_checks as render

    return render(rows)
