"""A process supervisor: start components, fail loudly when one cannot start, restart a crashed
one with backoff, count restarts, and keep its state on disk for ``status``.

Used by ``claire up`` (the detached ``claire supervise`` process) and by the papertest for both
runtimes. A component is a command line with its environment, a log file (its stdout and stderr)
and, optionally, the port of its ``/health`` endpoint.

Why the reason of a failure comes from the log: a service that cannot bind its port or reach its
database says why on stderr and exits; the supervisor reads the last lines of that log and names
the cause in one line (``address already in use on port 8101``), so the user does not have to.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Component", "StartFailure", "Supervisor", "failure_reason", "read_state"]

STATE_FILE = "supervisor.json"
#: seconds a restarted component must stay up before its backoff starts again from the first step
STABLE_S = 60.0
#: quick failures in a row after which the supervisor gives a component up
MAX_STREAK = 12


@dataclass
class Component:
    """One supervised process: ``argv`` (no shell), ``env`` (added to the supervisor's own),
    ``log_path`` (stdout and stderr, appended), ``health_port`` (``/health`` answers 200 once it
    is up; None: alive is enough). ``after_healthy``: start it only once every component before it
    answers /health (e.g. a replay that must not begin before its consumers are up)."""

    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    log_path: Path | None = None
    health_port: int | None = None
    after_healthy: bool = False


class StartFailure(Exception):
    """A component exited or failed its health check while starting."""

    def __init__(self, component: str, reason: str) -> None:
        super().__init__(f"{component} failed to start: {reason}")
        self.component = component
        self.reason = reason


@dataclass
class _Slot:
    """What the supervisor knows of one component."""

    component: Component
    proc: subprocess.Popen[bytes] | None = None
    pid: int | None = None
    restarts: int = 0
    streak: int = 0  # quick failures in a row (the backoff step)
    started_at: float = 0.0
    restart_at: float | None = None  # monotonic time of the next start (dead, waiting for backoff)
    exit_code: int | None = None
    reason: str | None = None
    gave_up: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


_ADDR_IN_USE = re.compile(r"address already in use", re.IGNORECASE)
_PORT_IN_MSG = re.compile(r"port (\d+)")


def _tail(path: Path | None, n: int = 40) -> list[str]:
    if path is None:
        return []
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 16_384))
            text = fh.read().decode(errors="replace")
    except OSError:
        return []
    return [line.strip() for line in text.splitlines() if line.strip()][-n:]


def failure_reason(log_path: Path | None, port: int | None = None, since: int = 0) -> str:
    """One line saying why a component stopped, from the last lines of its log (what it wrote
    after byte ``since``): a busy port is named as such, else the last error line."""
    lines = _tail(log_path)
    if since and log_path is not None:
        try:
            with log_path.open("rb") as fh:
                fh.seek(since)
                lines = [line.strip() for line in fh.read().decode(errors="replace").splitlines() if line.strip()][-40:]
        except OSError:
            pass
    for line in reversed(lines):
        if _ADDR_IN_USE.search(line):
            m = _PORT_IN_MSG.search(line)
            where = port if port is not None else (int(m.group(1)) if m else None)
            return "address already in use" + (f" on port {where}" if where else "")
    for line in reversed(lines):
        if re.match(r"^[\w.]+(Error|Exception|Exit|Interrupt)\b", line) or line.lower().startswith("error"):
            return line[:300]
    return lines[-1][:300] if lines else "no output"


def local_get(port: int, path: str, timeout: float = 1.0) -> tuple[int, bytes]:
    """GET ``http://127.0.0.1:{port}{path}``: (status, body); (0, b"") when nothing answers.

    A probe of a port in the kernel's ephemeral range that nobody listens on yet can connect to
    itself (TCP self-connect: the kernel picked the target port as the probe's own) and read its
    own request back as the answer (``BadStatusLine: GET /health HTTP/1.1`` stopped a papertest's
    start once). Such a connection is dropped at once, and anything but an HTTP answer (refused,
    reset, garbage) is "no answer", never an error. (The ports the project hands out are below
    the ephemeral range, :func:`free_port`, where a self-connect cannot happen at all.)"""
    import http.client

    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError:
        return 0, b""
    try:
        if sock.getsockname() == sock.getpeername():  # connected to itself: nobody listens there
            return 0, b""
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.sock = sock
        try:
            conn.request("GET", path, headers={"Connection": "close"})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()
    except (OSError, http.client.HTTPException):
        return 0, b""
    finally:
        sock.close()


def _health_ok(port: int, pid: int | None, timeout: float = 1.0) -> bool:
    """``/health`` answers 200 (and, when it names a pid, it is ours: not another process on the port)."""
    status, raw = local_get(port, "/health", timeout)
    if status != 200:
        return False
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return False
    return pid is None or not isinstance(body, dict) or body.get("pid") in (None, pid)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.replace(tmp, path)


def port_problem(port: int, host: str = "127.0.0.1") -> str | None:
    """Why ``port`` cannot be bound now (as the HTTP servers bind, SO_REUSEADDR), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def ephemeral_port_low() -> int:
    """The low end of the kernel's range for the local ports of outgoing connections."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port(host: str = "127.0.0.1") -> int:
    """A free port to hand to a component that binds it later: below the kernel's ephemeral range
    when one is free there, so that no outgoing connection (to the database, Redis, a health probe)
    can take it in between, as one taken with ``bind(0)`` can."""
    import random

    low = ephemeral_port_low()
    if low > 20_000:
        rng = random.SystemRandom()
        for _ in range(200):
            port = rng.randrange(20_000, low)
            if port_problem(port, host) is None:
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def pid_alive(pid: int) -> bool:
    """A process with ``pid`` runs (a zombie counts as dead; 0 or less is no process, not a group)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(") ", 1)[1][0] not in "ZX"
    except OSError:
        return True


def read_state(state_dir: Path) -> dict[str, Any]:
    """The supervisor's state file (empty when there is none or it is being replaced)."""
    try:
        data = json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class Supervisor:
    """Starts, watches and restarts ``components`` (see the module doc). Not thread-safe: one
    thread drives it (``start_all``, then ``poll`` / ``run``, then ``stop_all``)."""

    def __init__(self, components: Sequence[Component], state_dir: Path, *,
                 backoff_s: Sequence[float] = (1, 2, 4, 8, 16, 30, 60),
                 on_event: Callable[[dict[str, Any]], None] | None = None,
                 stable_s: float = STABLE_S, max_streak: int = MAX_STREAK) -> None:
        if not backoff_s:
            raise ValueError("backoff_s must not be empty")
        self.slots = {c.name: _Slot(c) for c in components}
        if len(self.slots) != len(components):
            raise ValueError("component names must be unique")
        self.state_dir = Path(state_dir)
        self.backoff_s = tuple(float(b) for b in backoff_s)
        self.on_event = on_event
        self.stable_s = stable_s
        self.max_streak = max_streak
        self.phase = "new"
        self.error: dict[str, str] | None = None

    # --- state ----------------------------------------------------------------------------
    @property
    def restarts(self) -> dict[str, int]:
        """Restarts per component since the supervisor started."""
        return {name: s.restarts for name, s in self.slots.items()}

    def pids(self) -> dict[str, int]:
        return {name: s.pid for name, s in self.slots.items() if s.pid is not None}

    def save(self) -> None:
        """Write the state (``supervisor.json``) and the pids (``pids.json``) to ``state_dir``."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        comps = {name: {"pid": s.pid, "alive": s.proc is not None and s.proc.poll() is None,
                        "restarts": s.restarts, "exit_code": s.exit_code, "reason": s.reason,
                        "gave_up": s.gave_up, "port": s.component.health_port}
                 for name, s in self.slots.items()}
        _write_json(self.state_dir / STATE_FILE, {"pid": os.getpid(), "state": self.phase, "error": self.error,
                                                 "updated": time.time(), "components": comps})
        _write_json(self.state_dir / "pids.json", self.pids())

    def _emit(self, kind: str, slot: _Slot) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event({"kind": kind, "component": slot.component.name, "restarts": slot.restarts,
                           "exit_code": slot.exit_code, "reason": slot.reason})
        except Exception:  # an alert that cannot be sent must not stop the supervision
            import logging

            logging.getLogger("claire.runtime.supervision").exception("on_event failed")

    # --- processes ------------------------------------------------------------------------
    def _spawn(self, slot: _Slot) -> None:
        c = slot.component
        if c.log_path is not None:
            c.log_path.parent.mkdir(parents=True, exist_ok=True)
            out: Any = os.open(c.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            slot.extra["log_offset"] = os.lseek(out, 0, os.SEEK_END)
        else:
            out = subprocess.DEVNULL
        try:
            # argv from our own component list, no shell
            slot.proc = subprocess.Popen(c.argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL,  # noqa: S603
                                         start_new_session=True, env={**os.environ, **(c.env or {})},
                                         umask=0o077)
        finally:
            if isinstance(out, int) and out >= 0:
                os.close(out)
        slot.pid = slot.proc.pid
        slot.started_at = time.monotonic()
        slot.restart_at = None

    def _exited(self, slot: _Slot) -> int | None:
        """Exit code when the process has ended, else None."""
        return None if slot.proc is None else slot.proc.poll()

    def _reason(self, slot: _Slot, code: int | None = None) -> str:
        """Why the component ended: the signal that killed it, else what its log says."""
        if code is not None and code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        c = slot.component
        return failure_reason(c.log_path, c.health_port, since=int(slot.extra.get("log_offset", 0)))

    def _wait_healthy(self, slots: Sequence[_Slot], deadline: float) -> None:
        waiting = list(slots)
        while waiting:
            for slot in list(waiting):
                code = self._exited(slot)
                if code is not None:
                    slot.exit_code = code
                    slot.reason = self._reason(slot, code)
                    raise StartFailure(slot.component.name, f"{slot.reason} (exit code {code})")
                port = slot.component.health_port
                if port is None or _health_ok(port, slot.pid):
                    waiting.remove(slot)
            if not waiting:
                return
            if time.monotonic() > deadline:
                slot = waiting[0]
                raise StartFailure(slot.component.name,
                                   f"no answer on /health (port {slot.component.health_port}) in time")
            time.sleep(0.1)

    def start_all(self, timeout_s: float = 60.0) -> None:
        """Start every component in order and wait until each is healthy; raises
        :class:`StartFailure` as soon as one exits or does not get healthy within ``timeout_s``
        (the ones started are left running: the caller decides, usually ``stop_all``)."""
        self.phase = "starting"
        self.save()
        deadline = time.monotonic() + timeout_s
        started: list[_Slot] = []
        try:
            for slot in self.slots.values():
                if slot.component.after_healthy:
                    self._wait_healthy(started, deadline)
                self._spawn(slot)
                started.append(slot)
                self.save()
            self._wait_healthy(started, deadline)
        except StartFailure as exc:
            self.phase = "failed"
            self.error = {"component": exc.component, "reason": exc.reason}
            self.save()
            raise
        self.phase = "running"
        self.save()

    def _backoff(self, slot: _Slot) -> float:
        return self.backoff_s[min(slot.streak, len(self.backoff_s) - 1)]

    def _on_death(self, slot: _Slot, code: int | None, now: float, reason: str | None = None) -> None:
        slot.exit_code = code
        slot.reason = reason or self._reason(slot, code)
        if now - slot.started_at >= self.stable_s:
            slot.streak = 0
        self._emit("died", slot)
        if slot.streak >= self.max_streak:
            slot.gave_up = True
            slot.proc = None
            self._emit("gave_up", slot)
        else:
            slot.restart_at = now + self._backoff(slot)
            slot.streak += 1

    def poll(self) -> None:
        """One pass: note components that died, restart those whose backoff has passed."""
        if self.phase not in ("running",):
            return
        now = time.monotonic()
        changed = False
        for slot in self.slots.values():
            if slot.gave_up or slot.proc is None:
                continue
            if slot.restart_at is None:
                code = self._exited(slot)
                if code is None:
                    continue
                self._on_death(slot, code, now)
                changed = True
            if slot.restart_at is not None and now >= slot.restart_at:
                try:
                    self._spawn(slot)
                except OSError as exc:  # e.g. the program is gone: counts as one more crash
                    self._on_death(slot, None, now, f"cannot start: {exc}")
                    changed = True
                    continue
                slot.restarts += 1
                self._emit("restarted", slot)
                changed = True
        if changed:
            self.save()

    def run(self, stop_event: threading.Event, interval_s: float = 0.2) -> None:
        """``poll`` until ``stop_event`` is set."""
        while not stop_event.is_set():
            self.poll()
            stop_event.wait(interval_s)

    def stop_all(self, timeout_s: float = 20.0) -> dict[str, str]:
        """SIGTERM every component (each finishes its batch in hand), SIGKILL what is still up
        after ``timeout_s``; returns ``{name: "stopped" | "killed" | "not running"}``."""
        self.phase = "stopping"
        result: dict[str, str] = {}
        live = []
        for name, slot in self.slots.items():
            slot.restart_at = None
            if slot.proc is not None and slot.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    slot.proc.send_signal(signal.SIGTERM)
                live.append((name, slot.proc))
            else:
                result[name] = "not running"
        deadline = time.monotonic() + timeout_s
        for name, proc in live:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                result[name] = "stopped"
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                result[name] = "killed"
            self.slots[name].exit_code = proc.returncode
        self.phase = "stopped"
        self.save()
        _write_json(self.state_dir / "pids.json", {})
        return result
