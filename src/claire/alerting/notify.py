"""Delivery of alerts through apprise (Telegram, Discord, e-mail, JSON webhooks, ... any apprise URL).

The targets are the URLs in ``CLAIRE_NOTIFY_URLS`` (comma or white space separated). They carry
secrets (bot tokens, webhook tokens, passwords), so a target is only ever named by its label:
scheme and host for the schemes whose host is a host (``json://127.0.0.1:8080``), scheme and
position for the others (``tgram://#1``: Telegram's "host" is the bot token). apprise's own log
lines and urllib3's pass a filter that blanks every secret part of the URLs.

:meth:`Notifier.send` never blocks and never slows the caller: it puts the message into a bounded
queue and returns; a background thread pushes it to every target, three tries per target with
backoff, and logs what failed. A full queue drops its oldest info-level message (else its oldest
message) and counts it in :attr:`Notifier.dropped`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

log = logging.getLogger("claire.notify")

ENV_URLS = "CLAIRE_NOTIFY_URLS"
#: schemes whose host part is a real host name (safe to log); for the others it may be a token
_HOST_SCHEMES = frozenset({"json", "jsons", "xml", "xmls", "form", "forms", "mailto", "mailtos", "ntfy", "ntfys",
                           "gotify", "gotifys", "mqtt", "mqtts", "matrix", "matrixs", "rocket", "rockets",
                           "mmost", "mmosts", "apprise", "apprises", "syslog", "rsyslog"})
_LEVEL_TYPE = {"info": "info", "warning": "warning", "critical": "failure", "success": "success"}


def urls_from_env(env: dict[str, str] | None = None, var: str = ENV_URLS) -> list[str]:
    """The apprise URLs in ``var`` (comma or white space separated)."""
    text = (os.environ if env is None else env).get(var, "")
    return [u for u in text.replace(",", " ").split() if u]


def target_label(url: str, index: int = 1) -> str:
    """How a target is named in logs and reports: never a secret part of its URL."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower() or "?"
        if scheme in _HOST_SCHEMES and parts.hostname:
            return f"{scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    except ValueError:
        scheme = "?"
    return f"{scheme}://#{index}"


def url_secrets(url: str) -> set[str]:
    """The parts of ``url`` that may be secret: user, password, path segments, query values, and
    the host where it is not a host name (at least 4 characters, shorter ones say nothing)."""
    try:
        parts = urlsplit(url)
        out = {parts.username or "", parts.password or ""}
        host_is_host = parts.scheme.lower() in _HOST_SCHEMES
        if not host_is_host:
            out.add(parts.netloc.rpartition("@")[2])
            out.update(parts.netloc.rpartition("@")[2].split(":"))
        out.update(unquote(s) for s in parts.path.split("/"))
        out.update(s for s in parts.path.split("/"))
        out.update(v for _, v in parse_qsl(parts.query))
    except ValueError:
        out = {url}
    return {s for s in out if len(s) >= 4}


class _Redact(logging.Filter):
    """Blanks the secrets of the notification URLs in a log record (apprise, urllib3)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            text = record.getMessage()
        except Exception:  # a record that cannot render: let logging report it
            return True
        clean = text
        for s in sorted(self.secrets, key=len, reverse=True):
            clean = clean.replace(s, "***")
        if clean != text:
            record.msg, record.args = clean, None
        return True


_REDACT = _Redact()
_REDACTED_LOGGERS = ("apprise", "urllib3.connectionpool", "urllib3.util.retry", "requests")


def _install_redaction(urls: list[str]) -> None:
    for u in urls:
        _REDACT.secrets |= url_secrets(u)
    for name in _REDACTED_LOGGERS:
        lg = logging.getLogger(name)
        if _REDACT not in lg.filters:
            lg.addFilter(_REDACT)
    apprise_log = logging.getLogger("apprise")
    if apprise_log.level == logging.NOTSET:  # its "Notifying 1 service(s)" per message: not for the run's log
        apprise_log.setLevel(logging.WARNING)


@dataclass
class _Message:
    title: str
    body: str
    level: str


@dataclass
class _Target:
    label: str
    client: Any  # apprise.Apprise with this one URL (None: the URL is not a valid apprise URL)


class Notifier:
    """Pushes messages to apprise URLs from a background thread (see the module doc).

    ``tries`` per target and message, waiting ``backoff_s``, then twice that, between them."""

    def __init__(self, urls: list[str] | None = None, *, maxsize: int = 1000, tries: int = 3,
                 backoff_s: float = 0.5, timeout_s: float = 4.0) -> None:
        self.urls = list(urls) if urls is not None else urls_from_env()
        self.maxsize = maxsize
        self.tries = tries
        self.backoff_s = backoff_s
        self.sent = 0  # deliveries to one target that succeeded
        self.failed = 0  # deliveries to one target that failed after every try
        self.dropped = 0  # messages dropped because the queue was full
        self._queue: deque[_Message] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self._hurry = False  # closing: the waits between tries are cut short
        self._thread: threading.Thread | None = None
        self.targets: list[_Target] = []
        if self.urls:
            _install_redaction(self.urls)
            self.targets = [self._target(u, i, timeout_s) for i, u in enumerate(self.urls, 1)]

    @staticmethod
    def _target(url: str, index: int, timeout_s: float) -> _Target:
        # start-up time: apprise loads ~190 plugins; only when there is a target
        import apprise

        client = apprise.Apprise()
        label = target_label(url, index)
        if not client.add(url):
            log.warning("notification target %s is not a valid apprise URL: ignored", label)
            return _Target(label, None)
        for server in client:
            server.socket_connect_timeout = server.socket_read_timeout = timeout_s
        return _Target(label, client)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, var: str = ENV_URLS, **kw: Any) -> Notifier:
        return cls(urls_from_env(env, var), **kw)

    @property
    def enabled(self) -> bool:
        return any(t.client is not None for t in self.targets)

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + (1 if self._busy else 0)

    # --- the caller's side: never blocks ----------------------------------------------------
    def send(self, title: str, body: str, level: str = "info") -> bool:
        """Queue a message for every target; False if there is no target (or it is closed)."""
        if not self.enabled or self._closed:
            return False
        msg = _Message(title, body, level)
        with self._cond:
            if len(self._queue) >= self.maxsize:
                self._drop_one()
            self._queue.append(msg)
            self._cond.notify()
        if self._thread is None:
            self._start()
        return True

    def _drop_one(self) -> None:
        for i, m in enumerate(self._queue):
            if m.level == "info":
                del self._queue[i]
                break
        else:
            self._queue.popleft()
        self.dropped += 1

    def _start(self) -> None:
        with self._cond:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)
        self._thread.start()

    # --- the background thread -----------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                msg = self._queue.popleft()
                self._busy = True
            try:
                for t in self.targets:
                    if t.client is not None:
                        self._deliver(t, msg)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _deliver(self, target: _Target, msg: _Message) -> bool:
        wait = self.backoff_s
        reason = ""
        for attempt in range(1, self.tries + 1):
            ok, reason = self._push(target, msg)
            if ok:
                self.sent += 1
                return True
            log.warning("notification to %s failed (try %d of %d): %s", target.label, attempt, self.tries, reason)
            if attempt < self.tries:
                with self._cond:  # close() cuts the wait short, not the tries
                    self._cond.wait(wait if not self._hurry else min(wait, 0.05))
                wait *= 2
        self.failed += 1
        log.error("notification to %s given up after %d tries: %s", target.label, self.tries, reason)
        return False

    def _push(self, target: _Target, msg: _Message) -> tuple[bool, str]:
        """One try to one target: (ok, the reason when not), the reason free of secrets."""
        try:
            result = target.client.notify(body=msg.body, title=msg.title,
                                          notify_type=_LEVEL_TYPE.get(msg.level, "info"))
        except Exception as exc:  # a plugin's bug must not end the thread
            return False, _redacted(f"{type(exc).__name__}: {exc}")
        if result:
            return True, ""
        return False, _redacted(_reason(result))

    # --- pre-flight and end -----------------------------------------------------------------
    def send_test(self, title: str = "Claire de Binare: test", body: str = "A test message of the pre-flight check."
                  ) -> list[dict[str, Any]]:
        """Send a test message to each target now (one try, synchronous): per target its label,
        ``ok`` and the ``reason`` when not."""
        out: list[dict[str, Any]] = []
        for t in self.targets:
            if t.client is None:
                out.append({"target": t.label, "ok": False, "reason": "not a valid apprise URL"})
                continue
            ok, reason = self._push(t, _Message(title, body, "info"))
            out.append({"target": t.label, "ok": ok, "reason": reason})
        return out

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued message was pushed (or given up); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float = 10.0) -> bool:
        """Push what is queued (up to ``timeout`` seconds, the waits between tries cut short),
        then stop the thread."""
        with self._cond:
            self._hurry = True
            self._cond.notify_all()
        done = self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=max(0.1, min(timeout, 5.0)))
        return done


def _reason(result: Any) -> str:
    """The last warning or error apprise logged for a failed notification."""
    try:
        for res in getattr(result, "results", ()) or ():
            msgs = [e.message for e in res.logs() if e.level in ("WARNING", "ERROR", "CRITICAL")]
            if msgs:
                return str(msgs[-1])
    except Exception:  # the result's shape differs between apprise versions
        log.debug("cannot read apprise's result", exc_info=True)
    return "apprise reported a failure"


def _redacted(text: str) -> str:
    for s in sorted(_REDACT.secrets, key=len, reverse=True):
        text = text.replace(s, "***")
    return text
