"""A TCP proxy in front of Redis that can lose one reply: the command reaches the server and runs,
its reply never reaches the client, whose connection is closed (what a Redis crash between
executing a command and sending its reply looks like to a client)."""

from __future__ import annotations

import contextlib
import socket
import threading


class ReplyCuttingProxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self._marker: bytes | None = None
        self._lock = threading.Lock()
        self.cut = 0  # replies dropped
        self._closed = False
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, db: int = 0) -> str:
        return f"redis://{self.target[0]}:{self.port}/{db}"

    def cut_next_reply(self, marker: bytes) -> None:
        """Drop the reply of the next command whose request contains ``marker``."""
        with self._lock:
            self._marker = marker

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._socks += [client, upstream]
            state = {"cut": False}
            threading.Thread(target=self._up, args=(client, upstream, state), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client, state), daemon=True).start()

    def _up(self, client: socket.socket, upstream: socket.socket, state: dict) -> None:
        try:
            while data := client.recv(65536):
                with self._lock:
                    if self._marker is not None and self._marker in data.upper():
                        state["cut"] = True
                        self._marker = None
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            self._close(client, upstream)

    def _down(self, upstream: socket.socket, client: socket.socket, state: dict) -> None:
        try:
            while data := upstream.recv(65536):
                if state["cut"]:  # the server ran the command: its reply is lost
                    self.cut += 1
                    break
                client.sendall(data)
        except OSError:
            pass
        finally:
            self._close(client, upstream)

    @staticmethod
    def _close(*socks: socket.socket) -> None:
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def close(self) -> None:
        self._closed = True
        self._close(self.listener, *self._socks)

    def __enter__(self) -> ReplyCuttingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
