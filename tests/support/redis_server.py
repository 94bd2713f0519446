"""A private redis-server for tests that need to restart it or configure authentication.

Starts the ``redis-server`` binary (``$REDIS_SERVER_BIN`` or the one on ``PATH``) on a free port of
127.0.0.1 with its own directory, optionally with ``requirepass``, ACL users and AOF persistence,
waits until it answers, and can stop (SHUTDOWN), kill -9 and restart it on the same port and
directory (so an AOF written before is replayed). A missing binary raises, it never skips.

    with RedisServer(tmp_path, password="s3cret", appendonly=True) as srv:
        url = srv.url()            # with the password
        srv.kill(); srv.start()    # crash and come back
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.ports import free_port


@dataclass(frozen=True)
class AclUser:
    name: str
    password: str
    rules: str = "~* &* +@all"


class RedisServer:
    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        password: str | None = None,
        acl_users: list[AclUser] | tuple[AclUser, ...] = (),
        disable_default_user: bool = False,
        appendonly: bool = False,
        appendfsync: str = "always",
        binary: str | None = None,
    ) -> None:
        self.binary = binary or os.environ.get("REDIS_SERVER_BIN") or shutil.which("redis-server")
        if not self.binary:
            raise RuntimeError("redis-server binary not found (set REDIS_SERVER_BIN)")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.password = password
        self.acl_users = tuple(acl_users)
        self.disable_default_user = disable_default_user
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = self.dir / "redis.conf"
        self.log = self.dir / "redis.log"
        self._write_conf()

    # -- config -------------------------------------------------------------------------------

    def _write_conf(self) -> None:
        lines = [
            "bind 127.0.0.1",
            f"port {self.port}",
            f'dir "{self.dir}"',
            f'logfile "{self.log}"',
            "daemonize no",
            "protected-mode no",
            'save ""',
            "databases 2",
            f"appendonly {'yes' if self.appendonly else 'no'}",
            f"appendfsync {self.appendfsync}",
        ]
        if self.password:
            lines.append(f"requirepass {self.password}")
        for u in self.acl_users:
            lines.append(f"user {u.name} on >{u.password} {u.rules}")
        if self.disable_default_user:
            lines.append("user default off")
        self.conf.write_text("\n".join(lines) + "\n")

    # -- urls ---------------------------------------------------------------------------------

    def url(self, username: str | None = None, password: str | None = None, *, db: int = 0) -> str:
        """URL with the given credentials (default: the requirepass password, if any)."""
        if password is None and username is None:
            password = self.password
        userinfo = ""
        if username or password:
            userinfo = (
                (quote(username, safe="") if username else "")
                + (":" + quote(password, safe="") if password else "")
                + "@"
            )
        return f"redis://{userinfo}127.0.0.1:{self.port}/{db}"

    def bare_url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def admin_client(self) -> redis.Redis:
        """A client with full rights, without redis-py's own retries (this helper polls itself)."""
        opts = {
            "port": self.port,
            "socket_timeout": 5,
            "socket_connect_timeout": 2,
            "retry": Retry(NoBackoff(), 0),
        }
        if self.acl_users and (self.disable_default_user or not self.password):
            u = self.acl_users[0]
            return redis.Redis(username=u.name, password=u.password, **opts)
        return redis.Redis(password=self.password, **opts)

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> RedisServer:
        if self.running:
            return self
        self.proc = subprocess.Popen(
            [self.binary, str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.dir,
        )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the server answers PING (and has finished loading its AOF)."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {self._log_tail()}")
            client = self.admin_client()
            try:
                if client.ping():
                    return
            except redis.RedisError as exc:  # refused, LOADING, ...
                last = exc
            finally:
                client.close()
            time.sleep(0.02)
        raise TimeoutError(f"redis-server on port {self.port} not ready after {timeout}s: {last}")

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful SHUTDOWN (the AOF is flushed); falls back to SIGTERM/SIGKILL."""
        if not self.running:
            return
        assert self.proc is not None
        client = self.admin_client()
        try:
            client.shutdown(nosave=not self.appendonly)
        except redis.ConnectionError:
            pass  # the connection closes as the server exits
        except redis.RedisError:
            self.proc.send_signal(signal.SIGTERM)
        finally:
            client.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)

    def kill(self) -> None:
        """kill -9: no chance to flush anything."""
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def restart(self, *, hard: bool = False, down_for: float = 0.0, timeout: float = 10.0) -> None:
        """Stop (or kill -9 with ``hard``), stay down ``down_for`` seconds, start on the same port."""
        if hard:
            self.kill()
        else:
            self.stop()
        if down_for:
            time.sleep(down_for)
        self.start(timeout)

    def _log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()
