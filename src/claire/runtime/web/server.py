"""Serving the live view: :func:`open_view` checks everything a user can get wrong (database,
run, address, token, port) before anything is served; :func:`serve` runs it in the foreground
(``claire web``), :func:`serve_in_thread` beside a run (``claire paper --web``, the papertest).

The socket is bound here, not by uvicorn, so a busy port is an OSError at start (one line, exit 2
in the CLI) and port 0 works (the handle tells the port). Uvicorn's access log is off: a URL
may carry ``?token=``, and the token is never logged.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from claire.runtime.web import data
from claire.runtime.web.app import create_app
from claire.storage import Database, StorageError

log = logging.getLogger("claire.web")

TOKEN_ENV = "CLAIRE_WEB_TOKEN"  # noqa: S105 - the name of the variable, not a token


class WebError(ValueError):
    """A user error of the live view (bad address, missing token, ...): one line."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_access(host: str, token: str | None) -> None:
    """A token is required when the view is reachable from other machines."""
    if not is_loopback(host) and not token:
        raise WebError(f"--host {host} is reachable from other machines: give a token "
                       f"(--token or the environment variable {TOKEN_ENV})")
    if token is not None and len(token) < 8:
        raise WebError("the token must have at least 8 characters")


def open_database(url: str) -> Database:
    """The run's database, checked: it answers and holds the schema. An SQLite file must exist
    (the view never creates one)."""
    db = Database(url)
    if db.is_sqlite:
        path = db.url.database
        if path and path != ":memory:" and not path.startswith("file:") and not Path(path).is_file():
            db.dispose()
            raise StorageError(f"--db {db.safe_url}: no such file {path}")
    try:
        data.check_database(db)
    except BaseException:
        db.dispose()
        raise
    return db


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); OSError with a one-line reason when it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise WebError(f"--port {port} is not available on {host}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


@dataclass
class WebHandle:
    """A live view served beside something else: its URL, and :meth:`stop`."""

    host: str
    port: int
    run_id: str
    server: Any
    thread: threading.Thread | None
    db: Database
    sock: socket.socket
    view: Any
    _stopped: bool = field(default=False)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving (open streams are ended), release the port and the database."""
        if self._stopped:
            return
        self._stopped = True
        self.view.stopping.set()
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout)
        self.sock.close()
        self.db.dispose()


def open_view(db_url: str, run_id: str | None = None, host: str = "127.0.0.1", port: int = 8080,
              token: str | None = None) -> WebHandle:
    """Everything checked and bound, nothing served yet (see :func:`serve`, :func:`serve_in_thread`)."""
    token = token or os.environ.get(TOKEN_ENV) or None
    check_access(host, token)
    db = open_database(db_url)
    try:
        run = data.resolve_run(db, run_id)
        sock = bind(host, port)
    except BaseException:
        db.dispose()
        raise
    app = create_app(db, run["id"], token)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=1,
                            lifespan="off", server_header=False)
    server = uvicorn.Server(config)
    return WebHandle(host, sock.getsockname()[1], run["id"], server, None, db, sock, app.state.view)


def serve(handle: WebHandle) -> None:
    """Serve in the foreground until SIGINT/SIGTERM (uvicorn's handlers)."""
    try:
        handle.server.run(sockets=[handle.sock])
    finally:
        handle.view.stopping.set()
        handle.sock.close()
        handle.db.dispose()


def serve_in_thread(db_url: str, run_id: str | None = None, host: str = "127.0.0.1", port: int = 0,
                    token: str | None = None, wait_s: float = 10.0) -> WebHandle:
    """Serve the live view of ``run_id`` (None: the latest run) from a daemon thread; returns once
    it answers. ``handle.stop()`` ends it. Raises WebError/StorageError/OSError as :func:`open_view`."""
    handle = open_view(db_url, run_id, host, port, token)
    server = handle.server
    server.install_signal_handlers = lambda: None  # uvicorn < 0.29; newer ones skip off the main thread
    thread = threading.Thread(target=server.run, kwargs={"sockets": [handle.sock]}, name="web", daemon=True)
    handle.thread = thread
    thread.start()
    deadline = time.monotonic() + wait_s
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    if not server.started:
        handle.stop()
        raise WebError(f"the live view did not start on {handle.url}")
    log.info("live view of run %s on %s", handle.run_id, handle.url)
    return handle
