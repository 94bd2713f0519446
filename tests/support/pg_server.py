"""A private PostgreSQL server for tests that stop, kill and restart it.

initdb into a temporary directory, ``pg_ctl start`` on a free port (listening on 127.0.0.1
only, socket inside the data directory), stop ``-m fast|immediate``, ``kill -9`` of the
postmaster and its children, and restart on the same port. As root (initdb refuses to run as
root) the server runs as the ``postgres`` user through ``runuser``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.ports import free_port


def _bin_dir() -> Path:
    for ver in sorted(
        os.listdir("/usr/lib/postgresql"), key=lambda v: int(v) if v.isdigit() else 0, reverse=True
    ):
        d = Path("/usr/lib/postgresql") / ver / "bin"
        if (d / "initdb").exists():
            return d
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found")




class PgServer:
    def __init__(self, port: int | None = None, user: str = "postgres") -> None:
        self.bin = _bin_dir()
        self.port = port or free_port()
        self.as_root = os.geteuid() == 0
        self.run_user = user if self.as_root else None
        self.base = Path(tempfile.mkdtemp(prefix="claire-pg-", dir="/tmp"))
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        if self.run_user:
            pw = pwd.getpwnam(self.run_user)
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
        self._initdb()

    # --- process helpers ----------------------------------------------------------------
    def _cmd(self, *args: str) -> list[str]:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.run_user:
            return ["runuser", "-u", self.run_user, "--", *cmd]
        return cmd

    def _run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self._cmd(*args), capture_output=True, text=True, check=check, timeout=timeout)

    def _initdb(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--locale=C.UTF-8",
        )
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.data}'\nfsync = off\nfull_page_writes = off\n"
                "max_connections = 50\nshared_buffers = 32MB\n"
            )

    # --- lifecycle ----------------------------------------------------------------------
    def start(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            res = self._run(
                "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "20", "start", check=False
            )
            if res.returncode == 0:
                return
            if time.monotonic() > deadline:
                tail = self.log.read_text()[-2000:] if self.log.exists() else ""
                raise RuntimeError(f"PostgreSQL did not start: {res.stderr}\n{tail}")
            time.sleep(0.3)  # e.g. the old shared memory is still being released

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def postmaster_pid(self) -> int | None:
        pidfile = self.data / "postmaster.pid"
        try:
            return int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _children(self, pid: int) -> list[int]:
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                out.append(int(entry))
        return out

    def kill(self) -> None:
        """kill -9 of the postmaster and of its backends (as a crash would leave them)."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        victims = [pid, *self._children(pid)]
        for p in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(
            Path(f"/proc/{p}").exists() and not _zombie(p) for p in victims
        ):
            time.sleep(0.05)

    def restart(self) -> None:
        self.start()

    def is_ready(self) -> bool:
        res = self._run(
            "pg_isready", "-h", "127.0.0.1", "-p", str(self.port), "-t", "1", check=False, timeout=10
        )
        return res.returncode == 0

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def cleanup(self) -> None:
        self.stop("immediate")
        self.kill()
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PgServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
