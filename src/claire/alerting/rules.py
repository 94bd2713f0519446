"""The alert rules, in one place: events of a run in, :class:`~claire.events.Alert` events out.

Pure and deterministic: no I/O, no wall clock. Time is the event time of what is fed (a status
without a time of its own, e.g. a restart reported by the supervisor, takes the time of the last
event seen), so a replay gives the same alerts with the same ids as the live run, and the
one-process and the distributed runtime give the same alerts on the same data.

Every alert carries ``details["category"]`` (the ``alerts.category`` column) and
``details["key"]`` (the symbol, service or path it is about). A rule that fires again for the same
``(code, key)`` within the cool-down (``AlertSettings.cooldown_s``, event time) is a *repeat*: its
alert has ``details["repeat_of"]`` (the id of the alert it repeats) and ``details["occurrences"]``
(how often it fired in that cool-down); the adapter counts it on the stored alert instead of
storing and pushing it again (see :func:`is_repeat`).

:data:`RULES` is the table of the rules (code, level, category, condition, what to do); the
operator documentation (docs/alerts.md) is rendered from it by :func:`rules_markdown`.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any, ClassVar

from claire.config.tree import AlertSettings
from claire.events import (
    Alert,
    AlertLevel,
    OrderResult,
    OrderStatus,
    PortfolioSnapshot,
    RiskAction,
    RiskEvent,
)

NS_PER_SEC = 1_000_000_000
#: a component's alert or status stamped this far ahead of the run's events carries the wall clock
#: of a replay (history served fast): it goes on the run's clock (see AlertRules._on_run_clock)
WALL_AHEAD_NS = 3_600 * NS_PER_SEC
SOURCE = "alerting"


@dataclasses.dataclass(frozen=True)
class Rule:
    """One alert rule: what fires, how urgent, and what the operator should do about it."""

    code: str
    level: AlertLevel
    category: str
    condition: str
    action: str


_W, _C, _I = AlertLevel.WARNING, AlertLevel.CRITICAL, AlertLevel.INFO

#: every rule, in one place (rendered into docs/alerts.md)
RULES: tuple[Rule, ...] = (
    Rule("drawdown", _W, "risk",
         "The portfolio's drawdown from its high-water mark reaches `alerts.drawdown_pct` "
         "(3 % by default, `CLAIRE_ALERT_DRAWDOWN_PCT`); fires again only after it went back below.",
         "Look at the open positions and the strategy's recent trades (`claire papertest status`). "
         "Nothing stops by itself before the daily-loss halt (R3); stop the run if the strategy misbehaves."),
    Rule("daily_loss_halt", _C, "risk",
         "R3: the day's loss reached `MAX_DAILY_DRAWDOWN_PCT`; the risk manager halted new risk for the rest "
         "of the UTC day (reducing orders still pass).",
         "Nothing to do to resume: trading resumes at the next UTC midnight. Check why the day went so badly "
         "(market move, strategy, fills) before the next day starts."),
    Rule("circuit_breaker", _C, "risk",
         "R5: the drawdown from the high-water mark reached `CIRCUIT_BREAKER_THRESHOLD_PCT`; trading is "
         "stopped until an explicit reset.",
         "The run does not trade any more. Decide whether to stop the run and review the strategy; "
         "a restart with the same run resumes the stopped state."),
    Rule("trading_resumed", _I, "risk",
         "The trading state went back to active (a new UTC day after a halt, or a reset).",
         "Information only."),
    Rule("order_rejected", _W, "execution",
         "The (paper) exchange rejected an order for a reason that is not a risk limit "
         "(no market data, the symbol's trading rules, ...).",
         "Read the reason in the alert; repeated rejections mean the configuration (symbols, rules, sizes) "
         "does not fit the exchange."),
    Rule("execution_error", _C, "execution",
         "An execution component reported a failure (an Alert from `execution*`).",
         "Check the execution component's log in the run directory; restart the run if it persists."),
    Rule("event_dead_lettered", _C, "system",
         "A service could not process an event (malformed, invalid, a sequence gap, an error while "
         "handling it) and set it aside in its dead-letter stream and the `dead_letters` table: the event "
         "did not reach the core (counted per service and stream).",
         "Read the reason in the alert and the rows of `dead_letters` (stream, reason, payload). A lost order "
         "or fill means the account may not be what the exchange would hold: stop the run if it repeats."),
    Rule("service_unhealthy", _C, "service",
         "A component has input pending without progress (stalled), died, or the supervisor gave up "
         "restarting it.",
         "Check `claire papertest status` and the component's log; the supervisor restarts a crashed "
         "component by itself, a stalled one needs a look."),
    Rule("service_restarted", _W, "service",
         "The supervisor restarted a crashed component (counted per component).",
         "Read the end of the component's previous log for the cause. Repeated restarts: stop the run "
         "and fix the cause."),
    Rule("data_stale", _W, "data",
         "No market data for a symbol for longer than the feed's staleness limit, or the feed "
         "disconnected.",
         "Check the network and the exchange's status; the feed reconnects by itself and repairs the gap by REST."),
    Rule("data_gap", _W, "data",
         "A gap in a symbol's bars that could not be repaired (yet) from the exchange's REST history.",
         "The strategy saw no data for that window; the report lists the gaps. Nothing to do unless it repeats."),
    Rule("data_gap_repaired", _I, "data",
         "A gap in a symbol's bars was repaired from the exchange's REST history.",
         "Information only (counted in the daily summary)."),
    Rule("data_quality", _I, "data",
         "Any other data-quality record of the feed (unverified windows, a kline mismatch, late ticks).",
         "Information; look at it when it repeats for a symbol."),
    Rule("database_unreachable", _C, "system",
         "The database could not be reached (a write or a check failed).",
         "Start or reach the database again; the run keeps trading and writes what it holds once the "
         "database is back."),
    Rule("disk_low", _C, "system",
         "Free space on the run's disk fell below `alerts.disk_min_free_mb` (`CLAIRE_ALERT_DISK_MIN_FREE_MB`).",
         "Free space (old run directories, backups beyond retention, `claire db prune`) before the "
         "database or the logs cannot be written."),
    Rule("component_alert", _W, "other",
         "Any other warning or critical alert a component raised that no rule above covers.",
         "Read its message and source; the component's log has the details."),
    Rule("daily_summary", _I, "summary",
         "At each UTC midnight of the run's clock (exchange event time: a fast replay sends one per "
         "simulated day): equity, the day's PnL and trades, drawdown, alerts and data gaps.",
         "Read it; nothing to do if the figures look as expected."),
)
RULE_BY_CODE: dict[str, Rule] = {r.code: r for r in RULES}
#: the events that carry the run's own clock (exchange event time): only they, or anything within
#: WALL_AHEAD_NS of them, move AlertRules.now
_RUN_CLOCK_KINDS = (PortfolioSnapshot, OrderResult, RiskEvent)

#: words in a status or alert code that say a component is not well
_UNHEALTHY_WORDS = ("stall", "unhealthy", "not_ready", "unready", "died", "crash", "gave_up", "given_up")
#: the feed's data-quality kinds -> the rule code (anything else: data_quality)
_DATA_KINDS = {"stale": "data_stale", "disconnect": "data_stale", "gap_unrepaired": "data_gap",
               "repair_pending": "data_gap", "gap_repaired": "data_gap_repaired"}


@dataclasses.dataclass(frozen=True)
class ServiceStatus:
    """A component's health as the supervisor or a service reports it (not a trading event).

    ``kind``: ``restarted``, ``unhealthy`` (stalled, not ready, died) or ``healthy``."""

    service: str
    kind: str
    reason: str = ""
    restarts: int = 0
    ts_event: int | None = None


@dataclasses.dataclass(frozen=True)
class DatabaseStatus:
    """Whether the database answered (a write or a check)."""

    ok: bool
    reason: str = ""
    ts_event: int | None = None


@dataclasses.dataclass(frozen=True)
class DiskStatus:
    """Free space on the disk of the run's directory."""

    path: str
    free_bytes: int
    total_bytes: int = 0
    ts_event: int | None = None


def is_repeat(alert: Alert) -> bool:
    """Whether ``alert`` repeats one fired within the cool-down (count it, do not push it)."""
    return bool(alert.details.get("repeat_of"))


def service_status_of(event: dict[str, Any]) -> ServiceStatus | None:
    """A supervisor's ``on_event`` dict as a :class:`ServiceStatus` (None if it is not one).

    Accepted: ``{"event"|"kind"|"type": "restart[ed]"|"stalled"|"unhealthy"|"died"|..., "service"|
    "name": ..., "reason"?, "restarts"?, "ts_event"?}``."""
    what = str(event.get("event") or event.get("kind") or event.get("type") or "").lower()
    service = str(event.get("service") or event.get("name") or event.get("component") or "")
    if not what or not service:
        return None
    if "restart" in what:
        kind = "restarted"
    elif any(w in what for w in (*_UNHEALTHY_WORDS, "fail", "exit")):
        kind = "unhealthy"
    elif any(w in what for w in ("healthy", "ready", "recover", "started")):
        kind = "healthy"
    else:
        return None
    ts = event.get("ts_event")
    return ServiceStatus(service=service, kind=kind, reason=str(event.get("reason") or event.get("error") or ""),
                         restarts=int(event.get("restarts") or 0), ts_event=int(ts) if ts else None)


def _pct(x: Decimal) -> str:
    return f"{x * 100:.2f} %"


class AlertRules:
    """The rules of :data:`RULES` over one run's events (see the module doc).

    ``feed(event)`` takes any event of the run (unknown kinds are ignored) and returns the alerts
    it raises, repeats included. Its state is small (the last firing per key, the conditions that
    are on) and plain (:meth:`get_state` / :meth:`set_state` for a resume)."""

    def __init__(self, config: AlertSettings | None = None, run_id: str = "run") -> None:
        self.config = config or AlertSettings()
        self.run_id = run_id
        self.cooldown_ns = int(self.config.cooldown_s * NS_PER_SEC)
        self.now = 0  # the latest event time seen
        #: (code, key) -> [id of the alert that fired, its event time, occurrences]
        self.fired: dict[tuple[str, str], list[Any]] = {}
        #: conditions that are on (drawdown above, database down, disk low, ...): fire on the edge only
        self.active: set[tuple[str, str]] = set()

    # --- state ------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        return {"now": self.now, "fired": [[c, k, *v] for (c, k), v in sorted(self.fired.items())],
                "active": sorted([c, k] for c, k in self.active)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.now = int(state.get("now", 0))
        self.fired = {(c, k): [i, int(t), int(n)] for c, k, i, t, n in state.get("fired", [])}
        self.active = {(c, k) for c, k in state.get("active", [])}

    # --- the rules ----------------------------------------------------------------------------
    def feed(self, event: Any) -> list[Alert]:
        """The alerts ``event`` raises (empty for most events)."""
        ts = getattr(event, "ts_event", None)
        if isinstance(ts, int) and ts > self.now and not (
                self.now and ts - self.now > WALL_AHEAD_NS and not isinstance(event, _RUN_CLOCK_KINDS)):
            self.now = ts
        handler = self._handlers.get(type(event))
        if handler is None:
            if isinstance(event, dict):
                status = service_status_of(event)
                return self._service(status) if status is not None else []
            return []
        out: list[Alert] = handler(self, event)
        return out

    def _snapshot(self, snap: PortfolioSnapshot) -> list[Alert]:
        threshold = self.config.drawdown_pct
        above = snap.drawdown_pct >= threshold
        if above == (("drawdown", "") in self.active):  # no edge: nothing to say (the common case)
            return []
        msg = (f"drawdown {_pct(snap.drawdown_pct)} from the high-water mark {snap.high_water_mark:.2f} "
               f"(equity {snap.equity:.2f}), alert threshold {_pct(threshold)}")
        return self._condition("drawdown", "", above, snap.ts_event, msg, {
            "drawdown_pct": str(snap.drawdown_pct), "threshold_pct": str(threshold),
            "equity": str(snap.equity), "high_water_mark": str(snap.high_water_mark)}, snap.id)

    def _risk(self, ev: RiskEvent) -> list[Alert]:
        code = {RiskAction.HALTED: "daily_loss_halt", RiskAction.CIRCUIT_BROKEN: "circuit_breaker",
                RiskAction.RESUMED: "trading_resumed"}.get(ev.action)
        if code is None:
            return []
        what = {"daily_loss_halt": "daily-loss halt (R3): no new risk until the next UTC day",
                "circuit_breaker": "circuit breaker (R5): trading stopped until reset",
                "trading_resumed": "trading resumed"}[code]
        details = {"value": str(ev.value) if ev.value is not None else None,
                   "limit": str(ev.limit) if ev.limit is not None else None,
                   "trading_state": str(ev.trading_state), "risk_event_id": ev.id}
        return self._fire(code, "", ev.ts_event, f"{what}: {ev.reason}", details, ev.id)

    def _result(self, ev: OrderResult) -> list[Alert]:
        if ev.status is not OrderStatus.REJECTED:
            return []
        return self._fire("order_rejected", ev.symbol, ev.ts_event,
                          f"{ev.symbol}: the exchange rejected order {ev.order_id}: {ev.reason or 'no reason given'}",
                          {"symbol": ev.symbol, "order_id": ev.order_id, "signal_id": ev.signal_id,
                           "reason": ev.reason}, ev.id)

    def _alert(self, ev: Alert) -> list[Alert]:
        """Another component's alert, classified by a rule (the risk manager's trading-state
        alerts are covered by its risk events; this module's own alerts are not fed back)."""
        src, code = ev.source, ev.code
        ts = self._on_run_clock(ev.ts_event)
        if src == SOURCE or (src == "risk" and code.startswith("trading_")):
            return []
        details = dict(ev.details or {})
        if code.startswith("data_quality."):
            kind = code.partition(".")[2]
            rule = _DATA_KINDS.get(kind, "data_quality")
            key = str(details.get("symbol") or "")
            return self._fire(rule, key, ts, ev.message, {**details, "source_alert_id": ev.id}, ev.id)
        low = code.lower()
        service = str(details.get("service") or details.get("component") or src)
        if "restart" in low:
            return self._service(ServiceStatus(service, "restarted", ev.message, int(details.get("restarts") or 0),
                                               ts))
        if any(w in low for w in _UNHEALTHY_WORDS):
            return self._service(ServiceStatus(service, "unhealthy", ev.message, 0, ts))
        if "database" in low or low.startswith("db_"):
            return self._database(DatabaseStatus("unreachable" not in low and "down" not in low, ev.message,
                                                 ts))
        if code == "dead_letter":
            key = f"{service}:{details.get('stream') or ''}"
            return self._fire("event_dead_lettered", key, ts, ev.message,
                              {**details, "source": src, "source_alert_id": ev.id}, ev.id)
        if src.startswith("execution") or "execution" in low:
            return self._fire("execution_error", service, ts, ev.message,
                              {**details, "source": src, "source_code": code, "source_alert_id": ev.id}, ev.id)
        if ev.level is AlertLevel.INFO:
            return []
        return self._fire("component_alert", f"{src}:{code}", ts, f"{src}: {ev.message}",
                          {**details, "source": src, "source_code": code, "source_level": str(ev.level),
                           "source_alert_id": ev.id}, ev.id)

    def _on_run_clock(self, ts: int | None) -> int:
        """``ts`` of a component's alert or a status, on the run's clock: a wall-clock stamp more
        than :data:`WALL_AHEAD_NS` ahead of the run's events (a replay of history, e.g. against
        ``claire mexc-fake``) is put at the run's latest event time, so it neither moves the
        cool-downs nor lands days after the run's own events."""
        if not ts:
            return self.now
        if self.now and ts - self.now > WALL_AHEAD_NS:
            return self.now
        return ts

    def _service(self, st: ServiceStatus) -> list[Alert]:
        ts = self._on_run_clock(st.ts_event)
        if st.kind == "restarted":
            n = f" (restart {st.restarts})" if st.restarts else ""
            return self._fire("service_restarted", st.service, ts,
                              f"{st.service} was restarted{n}" + (f": {st.reason}" if st.reason else ""),
                              {"service": st.service, "restarts": st.restarts, "reason": st.reason})
        if st.kind != "unhealthy":  # the reporters say when it goes wrong (once), not each check
            return []
        return self._fire("service_unhealthy", st.service, ts,
                          f"{st.service} is unhealthy" + (f": {st.reason}" if st.reason else ""),
                          {"service": st.service, "reason": st.reason})

    def _database(self, st: DatabaseStatus) -> list[Alert]:
        ts = self._on_run_clock(st.ts_event)
        return self._condition("database_unreachable", "", not st.ok, ts,
                               "the database is unreachable" + (f": {st.reason}" if st.reason else ""),
                               {"reason": st.reason})

    def _disk(self, st: DiskStatus) -> list[Alert]:
        ts = self._on_run_clock(st.ts_event)
        limit = self.config.disk_min_free_mb * 1024 * 1024
        free_mb = st.free_bytes // (1024 * 1024)
        return self._condition("disk_low", st.path, st.free_bytes < limit, ts,
                               f"only {free_mb} MiB free on the disk of {st.path} "
                               f"(alert below {self.config.disk_min_free_mb} MiB)",
                               {"path": st.path, "free_bytes": st.free_bytes, "total_bytes": st.total_bytes,
                                "min_free_mb": self.config.disk_min_free_mb})

    _handlers: ClassVar[dict[type, Any]] = {
        PortfolioSnapshot: _snapshot, RiskEvent: _risk, OrderResult: _result, Alert: _alert,
        ServiceStatus: _service, DatabaseStatus: _database, DiskStatus: _disk,
    }

    # --- firing, cool-down ----------------------------------------------------------------
    def _condition(self, code: str, key: str, on: bool, ts: int, message: str, details: dict[str, Any],
                   cause: str | None = None) -> list[Alert]:
        """A rule on a condition that stays on for a while: fires when it turns on, re-armed when off."""
        k = (code, key)
        if not on:
            self.active.discard(k)
            return []
        if k in self.active:
            return []
        self.active.add(k)
        return self._fire(code, key, ts, message, details, cause)

    def _fire(self, code: str, key: str, ts: int, message: str, details: dict[str, Any],
              cause: str | None = None) -> list[Alert]:
        rule = RULE_BY_CODE[code]
        k = (code, key)
        last = self.fired.get(k)
        extra: dict[str, Any] = {"category": rule.category, "key": key}
        if last is not None and ts - last[1] < self.cooldown_ns:
            last[2] += 1
            extra.update(repeat_of=last[0], occurrences=last[2])
            alert_id = f"{last[0]}:repeat:{last[2]}"
        else:
            alert_id = f"{self.run_id}:alert:{code}:{key}:{ts}"
            self.fired[k] = [alert_id, ts, 1]
            extra["occurrences"] = 1
        return [Alert(id=alert_id, ts_event=ts, ts_recv=ts, causation_id=cause, level=rule.level, source=SOURCE,
                      code=code, message=message, details={**details, **extra})]


def rules_markdown() -> str:
    """The table of :data:`RULES` as Markdown (the body of docs/alerts.md)."""
    lines = ["| Code | Level | Category | When it fires | What to do |", "|---|---|---|---|---|"]
    for r in RULES:
        lines.append(f"| `{r.code}` | {r.level.value} | {r.category} | {r.condition} | {r.action} |")
    return "\n".join(lines) + "\n"
