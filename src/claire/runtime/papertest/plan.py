"""The plan and the state of one papertest: ``<run_dir>/papertest.json`` (0600).

One file holds what the run is (run id, symbols, strategy, duration, the clock it is timed by)
and where it stands (supervisor pid, component pids, restarts, status, report): ``start``
writes it, the supervisor updates it, ``status``/``stop``/``resume``/``report`` read it. No
secrets: a database or notification URL with credentials is never written, only the names of
the environment variables the run reads (``env_names``), so a resume after a reboot needs the
same environment.

The clock: a run on the live exchange is timed by the wall clock (``ends_at``); a run against
an exchange replaying history (``claire mexc-fake``: its server time more than an hour from
the wall clock) is timed by the exchange's own event time (``end_event_ms``), so a replay at
high speed covers ``duration`` of market data.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from claire.runtime.supervision import pid_alive

STATE_FILE = "papertest.json"
#: the exchange's clock more than this from the wall clock: a replay (as the pre-flight decides)
REPLAY_SKEW_MS = 3_600_000
ACTIVE = ("starting", "running", "stopping")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


class PlanError(ValueError):
    """A papertest setting or state the user has to fix (one line, exit 2)."""


def parse_duration(text: str) -> int:
    """``7d``, ``36h``, ``90m``, ``45s``, ``1w``, or ``1d12h``: seconds (> 0)."""
    t = text.strip().lower()
    parts = _DURATION.findall(t)
    if not t or not parts or "".join(f"{n}{u}" for n, u in parts) != t:
        raise PlanError(f"--duration {text!r} is not a duration (e.g. 7d, 36h, 90m, 1d12h)")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds < 1:
        raise PlanError(f"--duration {text!r} must be at least 1 s")
    return int(seconds)


def format_duration(seconds: float) -> str:
    """``3d 04:05:06``-style text of a number of seconds."""
    s = max(0, int(seconds))
    d, rest = divmod(s, 86400)
    h, rest = divmod(rest, 3600)
    m, sec = divmod(rest, 60)
    return (f"{d}d " if d else "") + f"{h:02d}:{m:02d}:{sec:02d}"


def parse_symbols(text: str) -> list[str]:
    """``BTCUSDT,ETHUSDT``: upper-case exchange symbols, once each; PlanError for another form."""
    syms = list(dict.fromkeys(s.strip().upper() for s in text.split(",") if s.strip()))
    if not syms:
        raise PlanError("--symbols is empty (e.g. --symbols BTCUSDT,ETHUSDT)")
    for s in syms:
        if not re.fullmatch(r"[A-Z0-9]{4,20}", s):
            raise PlanError(f"--symbols: {s!r} is not an exchange symbol (letters and digits, e.g. BTCUSDT)")
    return syms


def new_run_id(now: datetime | None = None) -> str:
    """``pt-YYYYMMDD-HHMMSS-xxxx``: sortable, unique, readable."""
    now = now or datetime.now(UTC)
    return f"pt-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def has_password(url: str | None) -> bool:
    try:
        return bool(url) and urlsplit(url).password is not None
    except ValueError:
        return False


@dataclass
class Plan:
    """What a papertest is and where it stands (the state file's content)."""

    run_id: str
    run_dir: str
    duration_s: int
    symbols: list[str]
    strategy: str = "momentum"
    params: list[str] = field(default_factory=list)
    source: str = "mexc"
    distributed: bool = False
    web: bool = False
    web_port: int = 0
    web_url: str = ""  # the live view while the run goes on (--web)
    port: int = 0  # the paper runtime's /health, /metrics (0: a free one)
    db_url: str | None = None  # None: from CLAIRE_DATABASE_URL (env_names)
    redis_url: str | None = None  # None: from CLAIRE_REDIS_URL
    mexc_rest_url: str | None = None  # None: MEXC_REST_URL or the exchange
    mexc_ws_url: str | None = None
    fake_data: list[str] = field(default_factory=list)  # --source mexc-fake: the files it serves
    fake_speed: float = 60.0
    env_names: list[str] = field(default_factory=list)
    created_at: str = ""
    clock: str = "wall"  # wall | exchange (a replay)
    started_at: str = ""  # wall clock, ISO 8601 UTC
    ends_at: str = ""  # wall clock (clock=wall)
    start_event_ms: int | None = None  # the exchange's time at start (clock=exchange)
    end_event_ms: int | None = None
    status: str = "starting"  # starting, running, stopping, finished, failed, interrupted
    reason: str = ""
    supervisor_pid: int | None = None
    components: dict[str, int] = field(default_factory=dict)  # name -> pid
    restarts: dict[str, int] = field(default_factory=dict)
    resumed: int = 0
    finished_at: str = ""
    report: str = ""
    verdict: str = ""
    last_maintenance: dict[str, Any] = field(default_factory=dict)
    version: int = 1

    @property
    def path(self) -> Path:
        return Path(self.run_dir) / STATE_FILE

    @property
    def log_dir(self) -> Path:
        return Path(self.run_dir) / "logs"

    @property
    def out_dir(self) -> Path:
        """The run files (summary.json, trades.csv, ...) and the capture."""
        return Path(self.run_dir) / "run"

    @property
    def report_dir(self) -> Path:
        return Path(self.run_dir) / "report"

    def database_url(self) -> str:
        url = self.db_url or os.environ.get("CLAIRE_DATABASE_URL")
        return url or f"sqlite:///{Path(self.run_dir).resolve() / 'papertest.db'}"

    def save(self) -> None:
        write_state(self.path, asdict(self))

    def active(self) -> bool:
        """The supervisor is alive (the run goes on); after a reboot its pid may belong to
        another process: only a ``papertest supervise`` process counts."""
        pid = self.supervisor_pid
        if pid is None or not pid_alive(pid):
            return False
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                return b"papertest" in fh.read()
        except OSError:
            return True

    def end_reached(self, event_ms: int | None, now: datetime | None = None) -> bool:
        """The run's clock passed its end (``event_ms``: the newest exchange time seen)."""
        if self.clock == "exchange":
            return event_ms is not None and self.end_event_ms is not None and event_ms >= self.end_event_ms
        return bool(self.ends_at) and (now or datetime.now(UTC)) >= datetime.fromisoformat(self.ends_at)


def write_state(path: Path, data: dict[str, Any]) -> None:
    """Write the state file atomically, readable by the user alone (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".papertest-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(data, indent=2, default=str) + "\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load_plan(run_dir: str | Path) -> Plan:
    """The plan in ``run_dir``; PlanError (one line) when there is none or it is damaged."""
    path = Path(run_dir) / STATE_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise PlanError(f"no papertest in {run_dir} (start one with `claire papertest start`)") from None
    except (OSError, ValueError) as exc:
        raise PlanError(f"{path}: cannot read the papertest state: {exc}") from None
    if not isinstance(data, dict):
        raise PlanError(f"{path}: not a papertest state file (not a JSON object)")
    known = set(Plan.__dataclass_fields__)
    try:
        return Plan(**{k: v for k, v in data.items() if k in known})
    except TypeError as exc:
        raise PlanError(f"{path}: not a papertest state file ({exc})") from None


def update_plan(run_dir: str | Path, **changes: Any) -> Plan:
    """Load, change and save the plan (the supervisor is its only writer while it runs)."""
    plan = load_plan(run_dir)
    for k, v in changes.items():
        setattr(plan, k, v)
    plan.save()
    return plan


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def private_dir(path: str | Path) -> Path:
    """The run directory (and its parents), private to the user (0700)."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    p.chmod(0o700)
    return p
