"""The papertest's supervisor: one detached process per run (``claire papertest supervise``).

It starts the run's components under :class:`claire.runtime.supervision.Supervisor` (the
one-process paper runtime, ``papertest worker``, or with ``distributed`` the services of
``claire up``; before them a local ``claire mexc-fake`` for ``--source mexc-fake``), restarts a
crashed one with backoff (counted in the state file, pushed as an alert), runs the daily prune
and backup, and when the run's time is up (or ``papertest stop``: SIGUSR1) finishes the run
cleanly, writes the report and pushes a final summary. SIGTERM/SIGINT (a shutdown) pause it:
the components checkpoint and stop, the state says ``interrupted``, ``papertest resume`` goes on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from claire.runtime.papertest.plan import Plan, load_plan, now_iso, update_plan
from claire.runtime.papertest.worker import COMPLETED_FILE, mexc_env
from claire.runtime.supervision import Component, StartFailure, Supervisor

log = logging.getLogger("claire.papertest")

#: seconds past a wall-clock end before the supervisor asks the paper component to finish
END_GRACE_S = 30.0
#: seconds after which the end is asked again of a component that has not finished
ASK_AGAIN_S = 30.0
#: how often the daily maintenance is tried (it runs once per UTC day of the run's clock)
MAINTENANCE_EVERY_S = 600.0
FAKE_HISTORY = 150  # bars of history a local fake serves (more than any built-in warm-up)


def claire_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "claire.cli.main", *args]


def fake_component(plan: Plan) -> Component:
    """A local ``claire mexc-fake`` serving the plan's files (``--source mexc-fake``)."""
    port = _port_of(plan.mexc_rest_url)
    argv = claire_argv("mexc-fake", *[a for f in plan.fake_data for a in ("--data", f)],
                       "--speed", f"{plan.fake_speed:g}", "--history", str(FAKE_HISTORY), "--port", str(port))
    return Component("mexc-fake", argv, log_path=plan.log_dir / "mexc-fake" / "stderr.log")


def _port_of(url: str | None) -> int:
    from urllib.parse import urlsplit

    return int(urlsplit(url or "").port or 0)


def paper_components(plan: Plan) -> list[Component]:
    comps = [fake_component(plan)] if plan.fake_data else []
    comps.append(Component("paper", claire_argv("papertest", "worker", "--run-dir", str(plan.run_dir)),
                           env=mexc_env(plan), log_path=plan.log_dir / "paper" / "stderr.log",
                           health_port=plan.port or None, after_healthy=bool(plan.fake_data)))
    return comps


class Run:
    """The supervisor of one papertest (see the module doc)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.plan = load_plan(run_dir)
        self.finish_requested = threading.Event()
        self.interrupted = threading.Event()
        self.notifier: Any = None
        self.spec: dict[str, Any] | None = None
        self.sup: Supervisor | None = None
        self.web: Any = None
        self._maintained = 0.0
        self._clock_checked = 0.0
        self._dist_alert: Any = None
        self._restarts_before: dict[str, int] = {}

    @property
    def supervisor(self) -> Supervisor:
        if self.sup is None:
            raise RuntimeError("the components are not started")
        return self.sup

    # --- notifications ----------------------------------------------------------------------
    def notify(self, title: str, body: str, level: str = "info") -> None:
        if self.notifier is None:
            try:
                from claire.alerting.notify import Notifier

                self.notifier = Notifier()
            except Exception as exc:  # no alerting: the run goes on, the log says so
                log.warning("notifications unavailable: %s", exc)
                self.notifier = False
        if self.notifier:
            self.notifier.send(f"[{self.plan.run_id}] {title}", body, level)

    def on_event(self, ev: dict[str, Any]) -> None:
        """A component died / was restarted / given up: counted in the state file, pushed."""
        kind, name = ev["kind"], ev["component"]
        level = "critical" if kind == "gave_up" else "warning"
        text = {"died": "died", "restarted": "was restarted", "gave_up": "keeps crashing: given up"}[kind]
        msg = f"{name} {text} (exit code {ev.get('exit_code')}: {ev.get('reason')}; restarts {ev.get('restarts')})"
        log.warning("%s", msg)
        # one push per event: distributed, the alert goes on the bus and the writer's rules store
        # and push it; pushed from here only when the bus does not take it or the writer itself is
        # given up (nobody would read the bus). One process: stored and pushed from here.
        push = kind != "died"
        if self._dist_alert is not None:
            try:
                self._dist_alert(ev)
                if name == "writer" and kind == "gave_up":
                    raise RuntimeError("the writer is given up")
                push = False
            except Exception as exc:
                log.warning("the %s alert of %s is pushed from the supervisor: %s", kind, name, exc)
        elif kind != "died":
            self._store_alert(ev, level, msg)
        if push:
            self.notify(f"component {text}", msg, level)
        self._save_components()

    def _store_alert(self, ev: dict[str, Any], level: str, msg: str) -> None:
        """The restart as a row of ``alerts`` (the one-process run has no bus to carry it)."""
        try:
            from claire.events import Alert, AlertLevel
            from claire.storage import Database
            from claire.storage.alerts import record_alert

            now = time.time_ns()
            alert = Alert(id=f"{self.plan.run_id}:supervisor:{ev['kind']}:{ev['component']}:{ev.get('restarts')}:{now}",
                          ts_event=now, ts_recv=now, level=AlertLevel(level), source="supervisor",
                          code=f"service_{ev['kind']}", message=msg,
                          details={"category": "service", **{k: v for k, v in ev.items() if v is not None}})
            db = Database(self.plan.database_url())
            try:
                record_alert(db, alert, self.plan.run_id)
            finally:
                db.dispose()
        except Exception as exc:  # the database away: the push and the log have it
            log.warning("restart alert not stored: %s", exc)

    def _save_components(self) -> None:
        if self.sup is None:
            return
        restarts = dict(self.plan.restarts)
        for name, n in self.sup.restarts.items():
            restarts[name] = self._restarts_before.get(name, 0) + n
        self.plan = update_plan(self.run_dir, components=self.sup.pids(), restarts=restarts)

    # --- components -------------------------------------------------------------------------
    def components(self) -> list[Component]:
        if not self.plan.distributed:
            return paper_components(self.plan)
        from claire.runtime.distributed import supervisor as dsv

        self.spec = distributed_spec(self.plan)
        state_dir = self.sv_dir
        secret_env = dsv.prepare(self.spec, state_dir, fresh=not self.plan.resumed)
        os.environ.update(secret_env)
        self._dist_alert = dsv._alert_publisher(self.spec)
        comps = dsv.components(self.spec, state_dir)
        for c in comps:
            c.env = {**(c.env or {}), **mexc_env(self.plan)}
        return ([fake_component(self.plan)] if self.plan.fake_data else []) + comps

    @property
    def sv_dir(self) -> Path:
        return self.run_dir / "supervisor"

    # --- the run ----------------------------------------------------------------------------
    def start(self) -> int:
        plan = self.plan
        self._restarts_before = dict(plan.restarts)
        self.plan = update_plan(self.run_dir, supervisor_pid=os.getpid(), status="starting", reason="")
        try:
            self.sup = Supervisor(self.components(), self.sv_dir, on_event=self.on_event)
            self.sup.start_all(timeout_s=180.0)
        except (StartFailure, Exception) as exc:
            reason = str(exc) if isinstance(exc, StartFailure) else f"{type(exc).__name__}: {exc}"
            log.error("start failed: %s", reason)
            if self.sup is not None:
                self.sup.stop_all(10.0)
            self.plan = update_plan(self.run_dir, status="failed", reason=reason, supervisor_pid=None)
            self.notify("papertest failed to start", reason, "critical")
            self.close()
            return 3
        self.plan = update_plan(self.run_dir, status="running", components=self.sup.pids(),
                                started_at=plan.started_at or now_iso())
        self._start_web()
        self.notify("papertest running", f"{', '.join(plan.symbols)} {plan.strategy}, "
                    f"{'resumed' if plan.resumed else 'started'}; ends {self.end_text()}")
        return 0

    def end_text(self) -> str:
        p = self.plan
        if p.clock == "exchange" and p.end_event_ms is not None:
            return datetime.fromtimestamp(p.end_event_ms / 1000, UTC).isoformat(timespec="seconds") + " (exchange time)"
        return p.ends_at

    def _start_web(self) -> None:
        if not self.plan.web:
            return
        try:
            from claire.runtime.web.server import serve_in_thread

            self.web = serve_in_thread(self.plan.database_url(), self.plan.run_id, "127.0.0.1",
                                       self.plan.web_port, os.environ.get("CLAIRE_WEB_TOKEN"))
            url = f"http://127.0.0.1:{self.web.port}/"
            log.info("live view on %s", url)
            self.plan = update_plan(self.run_dir, web_url=url)
        except Exception as exc:  # the view is a convenience: the run goes on without it
            log.warning("live view not started: %s", exc)

    def loop(self) -> str:
        """Supervise until the run is complete ("finished") or paused ("interrupted")."""
        end_asked = 0.0
        while True:
            if self.interrupted.is_set():
                return "interrupted"
            if self._complete():
                return "finished"
            # asked again after a while: a component restarted meanwhile did not hear it
            due = not end_asked or time.monotonic() - end_asked > ASK_AGAIN_S
            if due and (self.finish_requested.is_set() or self._end_passed()):
                end_asked = time.monotonic()
                self._ask_finish()
            self.supervisor.poll()
            self._maintain()
            time.sleep(0.25)

    def _end_passed(self) -> bool:
        """Paper: a wall-clock end passed by a grace (the worker ends itself on time); distributed:
        the run's clock passed the end (checked every few seconds)."""
        if not self.plan.distributed:
            return self._wall_end_passed()
        if time.monotonic() - self._clock_checked < 2.0:
            return False
        self._clock_checked = time.monotonic()
        from claire.runtime.papertest import distributed as dist

        try:
            self.plan = dist.fix_event_clock(self.plan)
            return dist.end_reached(self.plan)
        except Exception as exc:  # the database away for a moment: ask again later
            log.warning("run clock not known: %s", exc)
            return False

    def _wall_end_passed(self) -> bool:
        p = self.plan
        if p.clock != "wall" or not p.ends_at:
            return False
        return datetime.now(UTC).timestamp() >= datetime.fromisoformat(p.ends_at).timestamp() + END_GRACE_S

    def _ask_finish(self) -> None:
        log.info("finishing the run")
        update_plan(self.run_dir, status="stopping")
        if self.plan.distributed:
            from claire.runtime.distributed.supervisor import finish

            finish(self.sv_dir)
            return
        slot = self.supervisor.slots["paper"]
        if slot.proc is not None and slot.proc.poll() is None:
            slot.proc.send_signal(signal.SIGUSR1)

    def _complete(self) -> bool:
        """The paper component finished the run (distributed: the writer persisted its end)."""
        if self.plan.distributed:
            return self._distributed_complete()
        slot = self.supervisor.slots["paper"]
        return (self.run_dir / COMPLETED_FILE).exists() and slot.proc is not None and slot.proc.poll() is not None

    def _distributed_complete(self) -> bool:
        from claire.runtime.papertest.distributed import finished

        return self.spec is not None and finished(self.spec, self.plan)

    def _maintain(self) -> None:
        """The daily prune and backup, once per UTC day of the run's clock (a replay: its
        event time, so a fast replay prunes by its own dates and backs up once per simulated day)."""
        every = 5.0 if self.plan.clock == "exchange" else MAINTENANCE_EVERY_S
        if self._maintained and time.monotonic() - self._maintained < every:
            return
        self._maintained = time.monotonic()
        try:
            from claire.runtime.papertest.status import last_event_time
            from claire.storage.retention import daily_maintenance

            run_now = datetime.now(UTC)
            if self.plan.clock == "exchange":
                last = last_event_time(self.plan)
                if last is None:
                    return
                run_now = last
            if self.plan.last_maintenance.get("day") == run_now.date().isoformat():
                return
            res = daily_maintenance(self.plan.database_url(), self.run_dir / "backups", run_now,
                                    run=self.plan.run_id)
            self.plan = update_plan(self.run_dir, last_maintenance=res)
            if res.get("errors"):
                self.notify("daily maintenance failed", "; ".join(res["errors"]), "warning")
        except Exception as exc:  # never stops the run
            log.warning("daily maintenance: %s", exc)

    def finish(self) -> None:
        """Stop the components, write the report, push the final summary."""
        res = self.supervisor.stop_all(30.0)
        log.info("components stopped: %s", res)
        self._retire_keys()
        report, verdict = write_report(self.plan)
        self.plan = update_plan(self.run_dir, status="finished", finished_at=now_iso(), report=report,
                                verdict=verdict, supervisor_pid=None, components={}, web_url="")
        self.notify("papertest finished", final_summary(self.plan), "info")

    def pause(self) -> None:
        res = self.supervisor.stop_all(60.0)
        log.info("paused, components stopped: %s", res)
        self._retire_keys()
        self.plan = update_plan(self.run_dir, status="interrupted", supervisor_pid=None, components={}, web_url="",
                                reason="stopped by a signal (shutdown?): `claire papertest resume` goes on")
        self.notify("papertest interrupted", self.plan.reason, "warning")

    def _retire_keys(self) -> None:
        """Distributed: a finished run's bus keys are removed, a paused run's expire in 7 days
        (a resume within them makes them permanent again)."""
        if self.spec is None:
            return
        from claire.runtime.distributed.supervisor import retire_keys

        try:
            log.info("bus keys: %s", retire_keys(self.spec))
        except Exception as exc:  # Redis away: its keys are not ours to worry about then
            log.warning("bus keys not retired: %s", exc)

    def close(self) -> None:
        if self.web is not None:
            with contextlib.suppress(Exception):
                self.web.stop()
        if self.notifier:
            with contextlib.suppress(Exception):
                self.notifier.close()


def distributed_spec(plan: Plan) -> dict[str, Any]:
    """The run spec of the services (``claire up``'s), keyed by the papertest's run id."""
    from claire.config import make_config
    from claire.config.options import RunOptions
    from claire.runtime.distributed.app import run_hash, spec_from_config, with_exchange_rules
    from claire.runtime.distributed.supervisor import with_port_base

    os.environ.update(mexc_env(plan))
    opts = RunOptions(source="mexc", symbols=",".join(plan.symbols), strategy=plan.strategy,
                      param=list(plan.params), out=plan.out_dir, db=plan.database_url(), run_id=plan.run_id,
                      redis=plan.redis_url)
    cfg = with_exchange_rules(make_config(opts, database_from_env=True, bus_from_env=True))
    spec = spec_from_config(cfg)
    spec["runtime"]["prefix"] = f"claire:{{{run_hash(spec)}}}:"
    return with_port_base(spec, plan.port) if plan.port else spec


def write_report(plan: Plan) -> tuple[str, str]:
    """The run's report (the report issue's ``write_report``): (html path, verdict)."""
    try:
        from claire.runtime.report import write_report as report

        res = report(Path(plan.run_dir), db_url=plan.database_url(), run_id=plan.run_id)
        v = res.verdict
        decision = getattr(v, "decision", None)
        text = f"{decision}: {v.reason}" if decision and getattr(v, "reason", "") else str(decision or v)
        return str(res.html), text
    except Exception as exc:  # the run is done either way: say why there is no report
        log.error("report not written: %s", exc)
        return "", f"no report ({type(exc).__name__}: {exc})"


def final_summary(plan: Plan) -> str:
    """The final push: the verdict, the run files, the figures of the summary."""
    lines = [f"verdict: {plan.verdict or '-'}", f"report: {plan.report or '-'}"]
    try:
        s = json.loads((Path(plan.run_dir) / COMPLETED_FILE).read_text())
    except (OSError, ValueError):
        s = {}
    for k in ("final_equity", "net_pnl", "total_return_pct", "max_drawdown", "trades", "fills"):
        if k in s:
            lines.append(f"{k.replace('_', ' ')}: {s[k]}")
    restarts = sum(plan.restarts.values())
    lines.append(f"restarts: {restarts}")
    return "\n".join(lines)


def supervise(run_dir: str | Path) -> int:
    """The supervisor process' main: start, watch, finish or pause; see the module doc."""
    from claire.runtime.logs import configure_logging

    plan = load_plan(run_dir)
    configure_logging("supervisor", plan.log_dir)
    run = Run(run_dir)
    signal.signal(signal.SIGTERM, lambda *_: run.interrupted.set())
    signal.signal(signal.SIGINT, lambda *_: run.interrupted.set())
    signal.signal(signal.SIGUSR1, lambda *_: run.finish_requested.set())
    code = run.start()
    if code:
        return code
    try:
        outcome = run.loop()
        if outcome == "finished":
            run.finish()
        else:
            run.pause()
    except BaseException as exc:
        log.exception("supervisor failed: %s", exc)
        with contextlib.suppress(Exception):
            update_plan(run_dir, status="failed", reason=f"supervisor: {exc}", supervisor_pid=None)
        raise
    finally:
        run.close()
    return 0
