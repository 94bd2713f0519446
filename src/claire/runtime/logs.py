"""Logs per component and per UTC day: ``<log_dir>/<component>/<YYYY-MM-DD>.log``, JSON lines
through structlog (one object per line: ``ts``, ``level``, ``logger``, ``service``, ``event``,
``exception``), plus a readable console on stderr.

Files switch at UTC midnight and are kept (a run's logs live as long as its directory). No secret
is ever written: every line passes :func:`redact`, which masks the password of any URL
(``scheme://user:***@host``), ``password=...``-style pairs, and the values of the secret
environment variables (``*PASSWORD*``, ``*TOKEN*``, ``*SECRET*``, ``*API_KEY*``, and the passwords
of the URLs in ``CLAIRE_*_URL*`` and ``CLAIRE_NOTIFY_URLS``) as they were when logging was set up.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import structlog

_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s/:@'\"]*:)(?P<pw>[^\s@/'\"]+)(?=@)")
_PAIR_SECRET = re.compile(r"(?i)(?P<head>\b[\w.-]*(?:password|passwd|pwd|secret|token|api_?key)[\w.-]*\s*[=:]\s*['\"]?)"
                          r"(?P<pw>[^\s'\",;&}]+)")
_SECRET_ENV = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|REDISCLI_AUTH|CREDENTIAL)", re.I)
_URL_ENV = re.compile(r"^CLAIRE_.*URLS?$|_URLS?$")
MASK = "***"

_secrets: list[str] = []
_log_root: Path | None = None


def secret_values(env: dict[str, str] | None = None) -> list[str]:
    """The secret values of the environment: variables named like a secret, and the passwords
    (and apprise tokens: every path part of a notify URL is kept out too) of URL variables."""
    env = dict(os.environ) if env is None else env
    found: set[str] = set()
    for name, value in env.items():
        if not value:
            continue
        if _SECRET_ENV.search(name):
            found.add(value)
        if _URL_ENV.search(name):
            for url in re.split(r"[\s,]+", value):
                m = _URL_PASSWORD.search(url)
                if m:
                    found.add(m.group("pw"))
                if name == "CLAIRE_NOTIFY_URLS" and "://" in url:  # tokens sit in the path (tgram://TOKEN/CHAT)
                    found.update(_token_parts(url))
    return sorted((v for v in found if len(v) >= 4), key=len, reverse=True)


def _token_parts(url: str) -> list[str]:
    """The parts of a notification URL that may be tokens (long, not a host name or address)."""
    rest = url.split("://", 1)[1]
    return [p for p in re.split(r"[/:@?&=,]", rest) if len(p) >= 12 and "." not in p and p != "localhost"]


def redact(text: str) -> str:
    """``text`` with every password of a URL, secret pair and known secret value masked."""
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    text = _PAIR_SECRET.sub(lambda m: m.group("head") + MASK, text)
    for value in _secrets:
        if value in text:
            text = text.replace(value, MASK)
    return text


class DailyFileHandler(logging.Handler):
    """Writes to one file per UTC day, switching files at midnight."""

    def __init__(self, directory: Path, clock: Callable[[], datetime] | None = None) -> None:
        super().__init__()
        self.clock = clock or (lambda: datetime.now(UTC))
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._day = ""
        self._fh: IO[str] | None = None

    def _file_for_now(self) -> IO[str]:
        day = self.clock().strftime("%Y-%m-%d")
        if day != self._day or self._fh is None:
            if self._fh is not None:
                self._fh.close()
            self._fh = (self.directory / f"{day}.log").open("a", buffering=1, encoding="utf-8")
            self._day = day
        return self._fh

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            self.acquire()
            try:
                self._file_for_now().write(line + "\n")
            finally:
                self.release()
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        super().close()


class _RedactingFormatter(structlog.stdlib.ProcessorFormatter):
    """structlog's formatter with :func:`redact` over the finished line (tracebacks included)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def _utc_iso(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    event["ts"] = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return event


def _pre_chain(service: str) -> list[Any]:
    """What every line gets before rendering: level, logger, UTC time, the component."""

    def add_service(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        event.setdefault("service", service)
        return event

    pre: list[Any] = [structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name, _utc_iso, add_service,
                      structlog.stdlib.PositionalArgumentsFormatter()]
    return pre


def _formatters(service: str) -> tuple[logging.Formatter, logging.Formatter]:
    pre = _pre_chain(service)
    json_fmt = _RedactingFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer(sort_keys=False)],
        foreign_pre_chain=pre)
    console_fmt = _RedactingFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.dev.ConsoleRenderer(colors=False, timestamp_key="ts")],
        foreign_pre_chain=pre)
    return json_fmt, console_fmt


def current_log_dir() -> Path | None:
    """The log directory of this process (None: logging only to the console)."""
    return _log_root


def configure_logging(service: str, log_dir: str | Path | None, level: str = "INFO",
                      console_level: str | None = None) -> None:
    """Log ``service`` to ``log_dir/<service>/<YYYY-MM-DD>.log`` (JSON lines) and to stderr.

    Without ``log_dir`` only the console, at ``level``. With it the console shows ``console_level``
    (default WARNING: a supervised service's stderr is a file of its own, kept for what goes wrong).
    """
    global _log_root
    _secrets[:] = secret_values()
    json_fmt, console_fmt = _formatters(service)
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, DailyFileHandler):
            old.close()
    root.setLevel(level)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(console_fmt)
    handlers: list[logging.Handler] = [console]
    if log_dir:
        _log_root = Path(log_dir)
        files = DailyFileHandler(Path(log_dir) / service)
        files.setFormatter(json_fmt)
        handlers.append(files)
        console.setLevel(console_level or "WARNING")
    else:
        _log_root = None
        console.setLevel(console_level or level)
    root.handlers[:] = handlers
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the schema steps of every start: noise
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # a line per request of a local server: noise
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *_pre_chain(service),
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
