"""The alerts of a run: the rules fed from the run's events, stored in the database, pushed.

:class:`AlertService` is the adapter around the pure parts (:mod:`claire.alerting.rules`,
:mod:`claire.alerting.daily`): it is fed every event the writer of the run persists (the same
service in the one-process paper runtime and in the distributed one, so both raise the same
alerts on the same data), the supervisor's status events, the database's and the disk's state;
it stores each alert once (a repeat within the cool-down only counts), and pushes new ones through
the :class:`~claire.alerting.notify.Notifier` (never blocking the caller).

When the database cannot be written, the alerts wait in memory (in order) and are stored once it
answers again; the outage itself raises ``database_unreachable``, pushed at once.

A resumed run replays the events after its checkpoint: their alerts have the same ids, so they are
neither stored nor pushed twice, and the repeat counts are set, not added. The cool-downs start
afresh on a resume (a condition still on after a restart is alerted once more).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from typing import Any

from claire.alerting.daily import DailySummary
from claire.alerting.notify import Notifier, urls_from_env
from claire.alerting.rules import AlertRules, DatabaseStatus, DiskStatus, is_repeat
from claire.config.tree import AlertSettings
from claire.events import Alert, AlertLevel, decode

log = logging.getLogger("claire.alerts")

#: the payloads the rules look at (the others are decoded for nothing)
_PREFIXES = (b'{"type":"portfolio_snapshot"', b'{"type":"order_result"', b'{"type":"alert"')
_RISK_PREFIX = b'{"type":"risk_event"'
_STATE_MARK = b'"check":"state"'
#: alerts waiting for the database at most (a long outage drops the oldest repeat counts first)
MAX_PENDING = 10_000


class AlertService:
    """Rules + daily summary + storage + push for one run (see the module doc). Thread-safe; the
    caller never waits for the database or a notification target (each has its own thread)."""

    def __init__(self, run_id: str, settings: AlertSettings | None = None, *, db: Any = None,
                 notifier: Notifier | None = None, disk_path: str | None = None,
                 disk_check_every_s: float = 60.0, retry_db_after_s: float = 5.0) -> None:
        self.run_id = run_id
        self.settings = settings or AlertSettings()
        self.rules = AlertRules(self.settings, run_id)
        self.daily = DailySummary(run_id) if self.settings.daily_summary else None
        self.db = db
        self.notifier = notifier
        self.disk_path = disk_path
        self.disk_check_every_s = disk_check_every_s
        self.retry_db_after_s = retry_db_after_s
        self._cond = threading.Condition(threading.RLock())
        self._pending: list[tuple[str, Alert]] = []  # ("new" | "repeat", alert) not yet in the database
        self._busy = False  # the thread is storing the first of them
        self._closed = False
        self._gave_up = False  # closed and the database still away: the thread ends
        self._thread: threading.Thread | None = None
        self._db_down_until = 0.0
        self._next_disk = 0.0
        self._pushed: set[str] = set()  # ids pushed already (an alert pushed while the database was down)
        self.fired: list[Alert] = []  # new alerts (not repeats), in order
        self.stats = {"alerts": 0, "repeats": 0, "stored": 0, "pushed": 0, "errors": 0, "dropped": 0}

    @classmethod
    def from_env(cls, run_id: str, settings: AlertSettings | None = None, *, db: Any = None,
                 env: dict[str, str] | None = None, disk_path: str | None = None) -> AlertService:
        """The service with the ``CLAIRE_ALERT_*`` overrides and the notification targets of ``env``."""
        env = dict(os.environ) if env is None else env
        s = (settings or AlertSettings()).with_env(env)
        urls = urls_from_env(env, s.notify_urls_env)
        return cls(run_id, s, db=db, notifier=Notifier(urls) if urls else None, disk_path=disk_path)

    # --- input -----------------------------------------------------------------------------
    def observe(self, stream: str, payload: bytes) -> None:
        """One message the writer persisted (raw): fed to the rules if they look at its kind.
        Never raises (a broken alert must not stop the writer)."""
        if not (payload.startswith(_PREFIXES) or (payload.startswith(_RISK_PREFIX) and _STATE_MARK in payload)):
            return
        try:
            self.feed(decode(payload))
        except Exception:
            self.stats["errors"] += 1
            log.exception("alerts: cannot handle a %s message", stream)

    def on_supervisor_event(self, event: dict[str, Any]) -> None:
        """A supervisor's status event (a restart, a stall): see :func:`claire.alerting.rules.service_status_of`."""
        try:
            self.feed(event)
        except Exception:
            self.stats["errors"] += 1
            log.exception("alerts: cannot handle a supervisor event")

    def on_dead_letters(self, dead: list[Any]) -> None:
        """Dead letters the writer stored (:class:`claire.bus.base.DeadLetter`): one alert per
        consuming service and stream of the batch, with their count and the first reason (its
        time: the latest event time the rules saw, so the cool-down runs on the run's clock).
        Never raises."""
        groups: dict[tuple[str, str], list[Any]] = {}
        for d in dead:
            groups.setdefault((d.group, d.stream), []).append(d)
        for (service, stream), items in groups.items():
            try:
                with self._cond:
                    now = self.rules.now or time.time_ns()
                n = len(items)
                alert = Alert(id=f"dead_letter:{service}:{stream}:{items[0].id}", ts_event=now, ts_recv=time.time_ns(),
                              level=AlertLevel.CRITICAL, source=service, code="dead_letter",
                              message=f"{service}: {n} event(s) of {stream} dead-lettered: {items[0].reason}",
                              details={"service": service, "stream": stream, "count": n,
                                       "reason": items[0].reason, "dead_letter_id": items[0].id})
                self.feed(alert)
            except Exception:
                self.stats["errors"] += 1
                log.exception("alerts: cannot handle the dead letters of %s", stream)

    def feed(self, event: Any) -> list[Alert]:
        """Feed one event (or status); the alerts it raised (repeats included). Never waits for the
        database: storing (and the push that follows it) happens on the service's own thread."""
        with self._cond:
            out = self.daily.feed(event) if self.daily is not None else []
            raised = self.rules.feed(event)
            if self.daily is not None:
                for a in raised:
                    self.daily.feed(a)
            out += raised
            out += self._check_disk()
            for a in out:
                self._handle(a)
            return out

    def final_summary(self) -> Alert | None:
        """The summary of the day so far (the end of a run), stored and pushed; None without events."""
        with self._cond:
            if self.daily is None or self.daily.day is None:
                return None
            a = self.daily.summary(final=True)
            self._handle(a)
            return a

    def _check_disk(self) -> list[Alert]:
        if self.disk_path is None or time.monotonic() < self._next_disk:
            return []
        self._next_disk = time.monotonic() + self.disk_check_every_s
        try:
            usage = shutil.disk_usage(self.disk_path)
        except OSError as exc:
            log.warning("alerts: cannot read the free space of %s: %s", self.disk_path, exc.strerror or exc)
            return []
        return self.rules.feed(DiskStatus(self.disk_path, usage.free, usage.total))

    # --- output ----------------------------------------------------------------------------
    def _handle(self, alert: Alert) -> None:
        """Called with the lock held."""
        if is_repeat(alert):
            self.stats["repeats"] += 1
            self._enqueue("repeat", alert)
            return
        self.stats["alerts"] += 1
        self.fired.append(alert)
        log.log(logging.INFO if alert.level.value == "info" else logging.WARNING, "alert %s [%s]: %s",
                alert.code, alert.level.value, alert.message)
        if self.db is None or self._db_down_until > 0:  # nothing to check a repeat of a replay against
            self._push(alert)
        self._enqueue("new", alert)

    def _enqueue(self, kind: str, alert: Alert) -> None:
        if self.db is None:
            return
        if len(self._pending) >= MAX_PENDING:  # a long outage: the oldest repeat count goes first
            drop = next((i for i, (k, _) in enumerate(self._pending) if k == "repeat"), 0)
            del self._pending[drop]
            self.stats["dropped"] += 1
        self._pending.append((kind, alert))
        if self._thread is None:
            self._thread = threading.Thread(target=self._store_loop, name="alerts-store", daemon=True)
            self._thread.start()
        self._cond.notify_all()

    def _push(self, alert: Alert) -> None:
        if self.notifier is None or alert.id in self._pushed:
            return
        self._pushed.add(alert.id)
        title = f"Claire [{alert.level.value}] {alert.code}" if alert.code != "daily_summary" else \
            f"Claire daily summary {alert.details.get('date', '')}"
        body = f"{alert.message}\n(run {self.run_id}, alert {alert.id})"
        if self.notifier.send(title, body, alert.level.value):
            self.stats["pushed"] += 1

    def _next_item(self) -> tuple[str, Alert] | None:
        """The next alert to store, waiting for one (and out the database's retry delay); None: closed."""
        with self._cond:
            while True:
                if self._closed and (not self._pending or self._gave_up):
                    return None
                wait = self._db_down_until - time.monotonic() if self._db_down_until else 0.0
                if self._pending and wait <= 0:
                    self._busy = True
                    return self._pending[0]
                self._cond.wait(wait if self._pending else None)

    def _store_loop(self) -> None:
        """The service's thread: stores what waits, in order; on a database error keeps it,
        alerts (pushed at once), and tries again after ``retry_db_after_s``."""
        from claire.storage.alerts import (  # start-up time: SQLAlchemy only with a database
            bump_occurrence,
            record_alert,
        )

        while (item := self._next_item()) is not None:
            kind, alert = item
            try:
                if kind == "new":
                    stored = record_alert(self.db, alert, self.run_id)
                else:
                    stored = False
                    bump_occurrence(self.db, alert.details["repeat_of"], alert.ts_event,
                                    int(alert.details["occurrences"]))
            except Exception as exc:
                with self._cond:
                    self._busy = False
                    self._db_down(exc)
                continue
            with self._cond:
                self._busy = False
                self._pending.pop(0)
                if kind == "new":
                    self.stats["stored"] += int(stored)
                    if stored:  # a replay of a stored run repeats its alerts: stored already means pushed already
                        self._push(alert)
                if self._db_down_until:
                    self._db_down_until = 0.0
                    self.rules.feed(DatabaseStatus(True))
                self._cond.notify_all()

    def _db_down(self, exc: Exception) -> None:
        """Called with the lock held."""
        self._db_down_until = time.monotonic() + self.retry_db_after_s
        if self._closed:
            self._gave_up = True
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        log.warning("alerts: cannot store alerts (%d waiting): %s", len(self._pending), reason)
        for a in self.rules.feed(DatabaseStatus(False, type(exc).__name__)):
            if not is_repeat(a):
                self.stats["alerts"] += 1
                self.fired.append(a)
                self._push(a)
                self._enqueue("new", a)
        self._cond.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every alert is stored (False on timeout, e.g. the database is away)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0 or (self._gave_up and not self._busy):
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Store what waits (the database gets one more try) and push what is queued."""
        with self._cond:
            self._closed = True
            self._db_down_until = 0.0
            self._cond.notify_all()
        if not self.flush(timeout):
            log.warning("alerts: %d alert(s) could not be stored before the end", len(self._pending))
        with self._cond:
            self._gave_up = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        if self.notifier is not None:
            self.notifier.close(timeout)


def attach_alerts(loop: Any, run_id: str, settings: AlertSettings | None, db: Any,
                  disk_path: str | None = ".") -> AlertService:
    """The alert service of a run on its writer loop (a
    :class:`~claire.runtime.distributed.runner.WriterService`): fed every message the loop stores,
    in the one-process and the distributed runtime alike. Close it with ``loop.alerts.close()``."""
    service = AlertService.from_env(run_id, settings, db=db, disk_path=disk_path)
    loop.alerts = service
    loop.observe = service.observe
    return service
