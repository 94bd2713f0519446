"""Settings from the environment (and a `.env` file), validated at start.

Every bad value is reported with its variable name and what is wrong, all at once. Secrets
(database and Redis passwords) come only from the environment and are never printed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from claire.risk.config import ACTIONS, ENV_VARS, RiskConfig

DEFAULT_DATABASE_URL = "sqlite:///claire.db"
DEFAULT_BUS_URL = "redis://127.0.0.1:6379/0"


class ConfigError(ValueError):
    """One or more bad settings, each named (variable or flag) with what is wrong.

    A run must not start on a half-read configuration, and a user fixing it should see every
    problem at once rather than one per attempt: ``problems`` keeps them all, the message lists them.
    """

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:
            text = self.problems[0]
        else:
            text = "invalid configuration:\n  - " + "\n  - ".join(self.problems)
        super().__init__(text)


def load_dotenv(path: str | Path = ".env") -> dict[str, str]:
    """Read KEY=VALUE lines of a .env file (no interpolation); the environment wins."""
    p = Path(path)
    values: dict[str, str] = {}
    if not p.is_file():
        return values
    for raw in p.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, val = line.partition("=")
        key = key.strip().removeprefix("export ").strip()
        val = val.strip()
        if len(val) >= 2 and val[0] == val[-1] and val[0] in "'\"":
            val = val[1:-1]
        values[key] = val
    return values


def environment(dotenv: str | Path | None = ".env") -> dict[str, str]:
    """The variables a run is configured from: the `.env` file, overridden by the real environment."""
    env = load_dotenv(dotenv) if dotenv else {}
    env.update(os.environ)
    return env


def _parse(var: str, text: str, kind: type) -> Any:
    if kind is bool:
        low = text.strip().lower()
        if low in {"1", "true", "yes", "on"}:
            return True
        if low in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"{var}={text!r}: expected true or false")
    if kind is str:
        low = text.strip().lower()
        if low not in ACTIONS:
            raise ValueError(f"{var}={text!r}: expected {' or '.join(ACTIONS)}")
        return low
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"{var}={text!r}: not a number") from None
    if not value.is_finite():
        raise ValueError(f"{var}={text!r}: not a finite number")
    return value


def _kind(default: Any) -> type:
    return bool if isinstance(default, bool) else str if isinstance(default, str) else Decimal


def risk_config_from_env(env: dict[str, str] | None = None, **overrides: Any) -> RiskConfig:
    """RiskConfig from the seeds' environment variables; ``overrides`` (CLI flags) win.

    Raises :class:`ConfigError` naming every bad variable."""
    env = environment() if env is None else env
    values: dict[str, Any] = {}
    errors: list[str] = []
    defaults = RiskConfig()
    for field, var in ENV_VARS.items():
        if var in env and env[var].strip() != "":
            try:
                values[field] = _parse(var, env[var], _kind(getattr(defaults, field)))
            except ValueError as exc:
                errors.append(str(exc))
    values.update({k: v for k, v in overrides.items() if v is not None})
    if not errors:
        try:
            return RiskConfig(**values)
        except (ValueError, TypeError) as exc:
            errors.append(str(exc))
    raise ConfigError(errors)


def database_url(env: dict[str, str] | None = None) -> str:
    """The system of record: ``CLAIRE_DATABASE_URL``, else a local SQLite file."""
    env = environment() if env is None else env
    return env.get("CLAIRE_DATABASE_URL") or DEFAULT_DATABASE_URL


def bus_url(env: dict[str, str] | None = None) -> str:
    """The bus of the distributed runtime: ``CLAIRE_REDIS_URL``, else Redis on this machine."""
    env = environment() if env is None else env
    return env.get("CLAIRE_REDIS_URL") or DEFAULT_BUS_URL


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))
