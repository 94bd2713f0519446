"""A local HTTP receiver for apprise's ``json://`` target: the notification tests' stand-in for
Telegram or Discord (a real HTTP server on a free port of 127.0.0.1, no mock of apprise)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class NotifyReceiver:
    """What apprise's json:// target POSTed: one decoded JSON body per request, and its path."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.cond = threading.Condition()

    def add(self, message: dict[str, Any], path: str) -> None:
        with self.cond:
            self.messages.append(message)
            self.paths.append(path)
            self.cond.notify_all()

    def wait_for(self, pred: Callable[[dict[str, Any]], Any], timeout: float = 10.0) -> list[dict[str, Any]]:
        """The messages matching ``pred``, once there is one (or ``timeout`` passed: maybe none)."""
        with self.cond:
            self.cond.wait_for(lambda: any(pred(m) for m in self.messages), timeout)
            return [m for m in self.messages if pred(m)]

    def texts(self) -> list[str]:
        """Each message as ``title\\nmessage``."""
        with self.cond:
            return [f"{m.get('title', '')}\n{m.get('message', '')}" for m in self.messages]

    def has(self, needle: str) -> bool:
        """Some message contains ``needle`` (case-insensitive)."""
        return any(needle.lower() in t.lower() for t in self.texts())


@contextlib.contextmanager
def serve_receiver() -> Iterator[tuple[NotifyReceiver, int]]:
    """(receiver, port): an HTTP server on a free port of 127.0.0.1 collecting POSTed JSON."""
    rec = NotifyReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            rec.add(json.loads(body), self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
