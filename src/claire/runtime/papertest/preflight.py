"""The pre-flight of a papertest: everything a week-long run needs, checked before it starts.

One row per check, each with pass/fail and the reason (``claire papertest check``, and always
before ``start``, which refuses to begin on a failure):

- settings: the strategy and its parameters, the configuration tree, the risk and alert
  variables of the environment (every problem at once);
- database: reachable, at the newest schema or migratable to it, writable (a table created,
  a row inserted, all rolled back);
- redis (distributed runs): answers and takes a write;
- disk: free space in the run directory for the run's estimated volume (below);
- clock: the skew against the exchange's server time under 1 s. An exchange whose clock is more
  than an hour from the wall clock replays history (``claire mexc-fake``): the check is skipped
  and says so;
- exchange: reachable, every symbol known and trading (exchangeInfo status);
- notify: each target of ``CLAIRE_NOTIFY_URLS`` takes a test message;
- ports: every port the run will listen on is free.

The volume estimate follows the seeds' per-day figures: 2.0 MB per day of a complete schema
(~8,000 rows: signals, orders, trades, snapshots, risk events, analysis, market conditions),
taken here per symbol; plus the daily backups kept for 14 days (each the size of the database on
its day) and the logs (2 MB per component and day). The disk-low alert's threshold
(``alerts.disk_min_free_mb``) must still be free at the end, or the run would alert at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claire.config.env import ConfigError, redact_url, risk_config_from_env
from claire.config.tree import AlertSettings, RunConfig, from_spec, to_spec
from claire.runtime.supervision import port_problem

#: the seeds' complete schema: ~2.0 MB per day (taken per symbol)
BYTES_PER_SYMBOL_DAY = 2_000_000
#: log volume per component and day (JSON lines and the readable console)
LOG_BYTES_PER_COMPONENT_DAY = 2_000_000
BACKUP_KEEP_DAYS = 14
MAX_SKEW_S = 1.0
#: an exchange clock further than this from the wall clock replays history
REPLAY_AFTER_S = 3600.0
DISTRIBUTED_COMPONENTS = 7  # market data, signal, risk, execution, portfolio, writer, supervisor
_SYMBOL = re.compile(r"[A-Z0-9]{4,20}")


@dataclass(frozen=True)
class CheckResult:
    """One row of the pre-flight: ``ok`` False is a failure unless ``skipped`` (not applicable)."""

    name: str
    ok: bool
    detail: str
    skipped: bool = False


@dataclass
class PreflightPlan:
    """What a run needs (what is None or empty is not checked, or skipped with the reason)."""

    db_url: str | None = None
    redis_url: str | None = None
    distributed: bool | None = None  # None: Redis is checked when redis_url is given
    run_dir: str | Path = "runs"
    symbols: list[str] = field(default_factory=list)
    duration_s: float = 7 * 86_400
    rest_url: str | None = None  # the exchange's REST base (MEXC: https://api.mexc.com); None: no exchange
    notify_urls: list[str] | None = None  # None: CLAIRE_NOTIFY_URLS of ``env``
    ports: Sequence[int] | Mapping[str, int] = ()
    strategy: str | None = None
    params: list[str] = field(default_factory=list)  # "name=value"
    config: RunConfig | dict[str, Any] | None = None  # the configuration tree (or its spec)
    env: dict[str, str] | None = None  # where the settings come from (default: os.environ)
    host: str = "0.0.0.0"  # noqa: S104 - the address the run's servers bind, checked for free ports
    bytes_per_symbol_day: int = BYTES_PER_SYMBOL_DAY
    timeout_s: float = 5.0

    @property
    def environ(self) -> dict[str, str]:
        return dict(os.environ) if self.env is None else self.env

    @property
    def uses_redis(self) -> bool:
        return bool(self.redis_url) if self.distributed is None else self.distributed


def all_passed(results: Sequence[CheckResult]) -> bool:
    """True when no check failed (skipped ones do not count)."""
    return all(r.ok or r.skipped for r in results)


def run_preflight(plan: PreflightPlan) -> list[CheckResult]:
    """Every check of the plan, in the order of the module doc; never raises for a failed one."""
    steps: list[tuple[str, Callable[[PreflightPlan], list[CheckResult] | CheckResult]]] = [
        ("settings", check_settings),
        ("database", check_database),
        ("redis", check_redis),
        ("disk", check_disk),
        ("clock", check_clock),
        ("exchange", check_exchange),
        ("notify", check_notify),
        ("ports", check_ports),
    ]
    out: list[CheckResult] = []
    for name, fn in steps:
        try:
            res = fn(plan)
        except Exception as exc:  # a check that breaks is a failed check with its reason, not a traceback
            res = CheckResult(name, False, _one_line(exc))
        out.extend(res if isinstance(res, list) else [res])
    return out


def render_checks(results: Sequence[CheckResult]) -> Any:
    """The results as a rich table: check, result (pass, FAIL, skipped), detail."""
    from rich.table import Table  # start-up time: rich only when the table is printed

    table = Table(title="pre-flight", title_justify="left")
    table.add_column("check", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for r in results:
        mark = "[yellow]skipped[/]" if r.skipped else ("[green]pass[/]" if r.ok else "[bold red]FAIL[/]")
        table.add_row(r.name, mark, r.detail)
    return table


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# --- settings -----------------------------------------------------------------------------


def check_settings(plan: PreflightPlan) -> CheckResult:
    """The strategy and its parameters, the configuration tree, the environment's risk and alert
    variables, the symbols and the duration: every problem in one row."""
    problems: list[str] = []
    said: list[str] = []
    env = plan.environ
    if plan.strategy:
        from claire.strategy.registry import load_strategy, strategy_params  # start-up time: strategies

        try:
            params = strategy_params(load_strategy(plan.strategy), list(plan.params))
            said.append(f"strategy {plan.strategy}" + (f" {params}" if params else ""))
        except Exception as exc:  # unknown strategy, bad parameter: the registry's message
            problems.append(_one_line(exc))
    alerts = AlertSettings()
    if plan.config is not None:
        try:
            cfg = from_spec(plan.config if isinstance(plan.config, dict) else to_spec(plan.config))
            alerts = cfg.alerts
            said.append(f"configuration of run {cfg.run_key()}")
        except Exception as exc:  # msgspec.ValidationError, ValueError: names the field
            problems.append(f"configuration: {_one_line(exc)}")
    try:
        risk_config_from_env(env)
    except ConfigError as exc:
        problems.extend(exc.problems)
    try:
        alerts = alerts.with_env(env)
        said.append(f"drawdown alert at {(alerts.drawdown_pct * 100).normalize():f} %")
    except ValueError as exc:
        problems.append(_one_line(exc))
    bad = [s for s in plan.symbols if not _SYMBOL.fullmatch(s)]
    if bad:
        problems.append(f"not exchange symbols: {', '.join(bad)}")
    if not plan.duration_s > 0:
        problems.append(f"duration must be > 0 s, got {plan.duration_s}")
    if problems:
        return CheckResult("settings", False, "; ".join(problems))
    return CheckResult("settings", True, "valid: " + ", ".join(said))


# --- database and Redis ---------------------------------------------------------------------


def check_database(plan: PreflightPlan) -> CheckResult:
    """Reachable, at the newest schema or migratable, writable (all rolled back)."""
    if not plan.db_url:
        return CheckResult("database", False, "no database URL (set CLAIRE_DATABASE_URL or --db)")
    # start-up time: SQLAlchemy and the driver only when the database is checked
    from claire.storage import migrate
    from claire.storage.database import Database, StorageError

    try:
        db = Database(plan.db_url, connect_timeout=max(1, int(plan.timeout_s)))
    except StorageError as exc:
        return CheckResult("database", False, _one_line(exc))
    where = db.safe_url
    try:
        try:
            db.check()
        except StorageError as exc:
            return CheckResult("database", False, f"{where} unreachable: {_one_line(exc)}")
        rev, head = db.current_revision(), migrate.head()
        known = {r["revision"] for r in migrate.revisions()}
        if rev == head:
            schema = f"schema {migrate.version_of(rev)} (newest)"
        elif rev is None:
            schema = f"empty, migrated to schema {migrate.version_of(head)} at start"
        elif rev in known:
            schema = f"schema {migrate.version_of(rev)}, migrated to {migrate.version_of(head)} at start"
        else:
            return CheckResult("database", False, f"{where} is at revision {rev}, unknown to this version "
                                                  "(made by a newer claire?)")
        _write_and_roll_back(db)
        return CheckResult("database", True, f"{where}: reachable, {schema}, writable")
    except Exception as exc:  # SQLAlchemy/driver errors of the write: read-only, no permission, ...
        return CheckResult("database", False, f"{where}: {_one_line(exc)}")
    finally:
        db.dispose()


def _write_and_roll_back(db: Any) -> None:
    """Create a table and insert a row in one transaction, then roll it back: proves the
    rights a run needs without leaving a trace."""
    with db.engine.connect() as conn:
        tx = conn.begin()
        try:
            conn.exec_driver_sql("CREATE TABLE claire_preflight_probe (n integer)")
            conn.exec_driver_sql("INSERT INTO claire_preflight_probe (n) VALUES (1)")
        finally:
            tx.rollback()


def check_redis(plan: PreflightPlan) -> CheckResult:
    """The bus of a distributed run: answers PING and takes a write (a key that expires)."""
    if not plan.uses_redis:
        return CheckResult("redis", True, "not used (one process)", skipped=True)
    if not plan.redis_url:
        return CheckResult("redis", False, "a distributed run needs Redis: set CLAIRE_REDIS_URL")
    import redis  # start-up time: the Redis client only for distributed runs

    where = redact_url(plan.redis_url)
    client = redis.Redis.from_url(plan.redis_url, socket_connect_timeout=plan.timeout_s,
                                  socket_timeout=plan.timeout_s)
    try:
        client.ping()
        key = f"claire:preflight:{uuid.uuid4().hex}"
        client.set(key, b"1", px=10_000)
        client.delete(key)
        version = client.info("server").get("redis_version", "?")
        return CheckResult("redis", True, f"{where}: Redis {version}, writable")
    except redis.exceptions.RedisError as exc:
        return CheckResult("redis", False, f"{where}: {_one_line(exc)}")
    finally:
        client.close()


# --- disk -------------------------------------------------------------------------------------


def estimate_bytes(plan: PreflightPlan) -> dict[str, int]:
    """The run's volume by part (see the module doc): database, backups, logs, and the total."""
    days = max(plan.duration_s / 86_400, 1 / 24)
    symbols = max(len(plan.symbols), 1)
    per_day = plan.bytes_per_symbol_day * symbols
    database = int(per_day * days)
    # one backup a day, kept 14 days, each the size of the database on its day
    full_days = int(days)
    kept = range(max(1, full_days - BACKUP_KEEP_DAYS + 1), full_days + 1)
    backups = int(sum(per_day * d for d in kept))
    components = DISTRIBUTED_COMPONENTS if plan.uses_redis else 1
    logs = int(LOG_BYTES_PER_COMPONENT_DAY * components * days)
    return {"database": database, "backups": backups, "logs": logs, "total": database + backups + logs}


def _existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _mib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def check_disk(plan: PreflightPlan) -> CheckResult:
    """Free space in the run directory for the estimated volume plus the disk-low alert's margin."""
    est = estimate_bytes(plan)
    margin = _alert_margin(plan)
    where = _existing(Path(plan.run_dir))
    free = shutil.disk_usage(where).free
    need = est["total"] + margin
    text = (f"estimate {_mib(est['total'])} (database {_mib(est['database'])}, backups {_mib(est['backups'])}, "
            f"logs {_mib(est['logs'])}; {len(plan.symbols) or 1} symbol(s), {plan.duration_s / 86_400:g} days)"
            f" + {_mib(margin)} alert margin; {_mib(free)} free at {where}")
    return CheckResult("disk", free >= need, text if free >= need else "not enough: " + text)


def _alert_margin(plan: PreflightPlan) -> int:
    alerts = AlertSettings()
    if isinstance(plan.config, RunConfig):
        alerts = plan.config.alerts
    with contextlib.suppress(ValueError):  # a bad variable is the settings check's to report
        alerts = alerts.with_env(plan.environ)
    return alerts.disk_min_free_mb * 2**20


# --- the exchange -------------------------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    """urllib's error without its wrapping (``<urlopen error [Errno 111] Connection refused>``)."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        return _one_line(reason) if isinstance(reason, BaseException) else str(reason)
    return _one_line(exc)


def _get_json(url: str, timeout: float) -> Any:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url}")
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - an http(s) URL, checked above
        return json.loads(resp.read())


def check_clock(plan: PreflightPlan) -> CheckResult:
    """The skew of this machine's clock against the exchange's server time (``/api/v3/time``)."""
    if not plan.rest_url:
        return CheckResult("clock", True, "no exchange to compare with (a local replay)", skipped=True)
    base = plan.rest_url.rstrip("/")
    t0 = time.time()
    try:
        body = _get_json(base + "/api/v3/time", plan.timeout_s)
    except (OSError, ValueError) as exc:
        return CheckResult("clock", False, f"{base}: no server time: {_reason(exc)}")
    t1 = time.time()
    skew = int(body["serverTime"]) / 1000 - (t0 + t1) / 2
    rtt_ms = (t1 - t0) * 1000
    if abs(skew) > REPLAY_AFTER_S:
        hours = abs(skew) / 3600
        when = f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} h"
        return CheckResult("clock", True, f"replay: the exchange's clock is {when} "
                           f"{'behind' if skew < 0 else 'ahead of'} the wall clock (history replayed, "
                           "e.g. claire mexc-fake); skew not checked", skipped=True)
    ok = abs(skew) < MAX_SKEW_S
    amount = f"{skew:+.2f} s" if abs(skew) >= 1 else f"{skew * 1000:+.0f} ms"
    text = f"skew {amount} against the exchange (round trip {rtt_ms:.0f} ms)"
    if not ok:
        text += f": more than {MAX_SKEW_S:g} s, synchronise this machine's clock (NTP, e.g. chrony)"
    return CheckResult("clock", ok, text)


def _symbol_infos(base: str, syms: list[str], timeout: float) -> list[dict[str, Any]]:
    """exchangeInfo's entries of ``syms``. MEXC answers 400 "Invalid symbol" for a request naming
    an unknown one: then each symbol is asked alone, and the unknown ones are left out."""
    def ask(names: list[str]) -> list[dict[str, Any]]:
        query = ""
        if names:
            q = {"symbol": names[0]} if len(names) == 1 else {"symbols": ",".join(names)}
            query = "?" + urllib.parse.urlencode(q)
        return list(_get_json(base + "/api/v3/exchangeInfo" + query, timeout).get("symbols") or ())

    try:
        return ask(syms)
    except urllib.error.HTTPError as exc:
        if exc.code != 400 or len(syms) < 1:
            raise
    out: list[dict[str, Any]] = []
    for name in syms:
        try:
            out.extend(ask([name]))
        except urllib.error.HTTPError as exc:
            if exc.code != 400:
                raise
    return out


def check_exchange(plan: PreflightPlan) -> CheckResult:
    """The exchange answers exchangeInfo and every symbol is known and trading."""
    if not plan.rest_url:
        return CheckResult("exchange", True, "no exchange to check (a local replay)", skipped=True)
    from claire.adapters.mexc.rest import rules_from_info  # start-up time: the adapter only when checked

    base = plan.rest_url.rstrip("/")
    syms = [s.upper() for s in plan.symbols]
    try:
        infos = _symbol_infos(base, syms, plan.timeout_s)
    except (OSError, ValueError) as exc:
        return CheckResult("exchange", False, f"{base}: unreachable: {_reason(exc)}")
    rules = {r.symbol: r for r in (rules_from_info(s) for s in infos)}
    missing = [s for s in syms if s not in rules]
    halted = [f"{s} ({rules[s].status_text})" for s in syms if s in rules and not rules[s].trading]
    problems = ([f"unknown symbol(s): {', '.join(missing)}"] if missing else []) + (
        [f"not trading: {', '.join(halted)}"] if halted else [])
    if problems:
        return CheckResult("exchange", False, f"{base}: " + "; ".join(problems))
    return CheckResult("exchange", True, f"{base}: reachable; trading: {', '.join(syms) or '(no symbols given)'}")


# --- notifications and ports -------------------------------------------------------------------


def _targets(plan: PreflightPlan) -> list[str]:
    if plan.notify_urls is not None:
        return list(plan.notify_urls)
    text = plan.environ.get("CLAIRE_NOTIFY_URLS", "")
    return [u for u in text.replace(",", " ").split() if u]


def check_notify(plan: PreflightPlan) -> list[CheckResult]:
    """One test message to each target, one row each (named without its secrets)."""
    urls = _targets(plan)
    if not urls:
        return [CheckResult("notify", True, "no targets (CLAIRE_NOTIFY_URLS is empty): alerts are only "
                            "stored and logged", skipped=True)]
    try:
        from claire.alerting.notify import Notifier
    except ImportError:
        return [_apprise_test(u, i) for i, u in enumerate(urls, 1)]
    notifier = Notifier(urls, tries=1, timeout_s=plan.timeout_s)
    try:
        rows = notifier.send_test(body="A test message of the pre-flight check of a papertest.")
    finally:
        notifier.close(timeout=1.0)
    return [CheckResult(f"notify {r['target']}", bool(r["ok"]),
                        "accepted a test message" if r["ok"] else f"refused the test message: {r['reason']}")
            for r in rows]


def _apprise_test(url: str, index: int) -> CheckResult:
    import apprise  # start-up time: apprise loads its plugins only when there is a target

    label = f"{urllib.parse.urlsplit(url).scheme or '?'}://#{index}"
    client = apprise.Apprise()
    if not client.add(url):
        return CheckResult(f"notify {label}", False, "not a valid apprise URL")
    ok = bool(client.notify(title="Claire de Binare: test", body="A test message of the pre-flight check."))
    return CheckResult(f"notify {label}", ok, "accepted a test message" if ok else "refused the test message")


def check_ports(plan: PreflightPlan) -> CheckResult:
    """Every port the run will listen on can be bound now (as its HTTP servers bind them)."""
    ports = dict(plan.ports) if isinstance(plan.ports, Mapping) else {str(p): p for p in plan.ports}
    ports = {name: p for name, p in ports.items() if p}  # 0: any free port, chosen at start
    if not ports:
        return CheckResult("ports", True, "none fixed (free ports are chosen at start)", skipped=True)
    taken: list[str] = []
    for name, port in ports.items():
        why = port_problem(port, plan.host)
        if why is not None:
            taken.append(f"{port}" + (f" ({name})" if name != str(port) else "") + f": {why}")
    listed = ", ".join(str(p) for p in ports.values())
    if taken:
        return CheckResult("ports", False, "in use: " + "; ".join(taken))
    return CheckResult("ports", True, f"free: {listed}")
