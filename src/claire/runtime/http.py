"""Each service's HTTP endpoints: /health (alive), /ready (dependencies reachable, data fresh),
/metrics (Prometheus). A small threaded server from the standard library, so a service starts in
milliseconds and carries no web framework for three endpoints."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class HealthServer:
    def __init__(self, port: int, name: str, registry: CollectorRegistry,
                 health: Callable[[], dict[str, Any]], ready: Callable[[], tuple[bool, dict[str, Any]]],
                 host: str = "127.0.0.1") -> None:
        self.name = name

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt: str, *args: Any) -> None:  # quiet
                pass

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                try:
                    if path == "/health":
                        self._send(200, json.dumps({"service": name, "status": "alive", "pid": os.getpid(), **health()},
                                                   default=str).encode(), "application/json")
                    elif path == "/ready":
                        ok, detail = ready()
                        body = json.dumps({"service": name, "ready": ok, **detail}, default=str).encode()
                        self._send(200 if ok else 503, body, "application/json")
                    elif path == "/metrics":
                        self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                    else:
                        self._send(404, b'{"error":"not found"}', "application/json")
                except Exception as exc:  # a failing check must not kill the server
                    self._send(500, json.dumps({"error": str(exc)}).encode(), "application/json")

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name=f"http-{name}", daemon=True)

    def start(self) -> HealthServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
