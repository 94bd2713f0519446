"""What the live-view tests share: real runs made by the real CLI, `claire web` as a subprocess on
a free port, Debian's chromium through Playwright (never a downloaded browser), and rows put into
the database the way a running writer would (a new fill, a heartbeat)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from claire.storage import Database
from claire.storage.models import metadata

CLAIRE = str(Path(sys.executable).with_name("claire"))
ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
T = metadata.tables


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **extra}


def make_run(db_url: str, bars: int = 400, cwd: Path | None = None) -> None:
    """A finished paper run of ``bars`` synthetic 1m bars per symbol (two symbols), as fast as it goes."""
    res = subprocess.run([CLAIRE, "paper", "--synthetic", str(bars), "--speed", "max", "--db", db_url,
                          "--port", "0"], cwd=cwd, env=env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]


class WebProcess:
    """``claire web ARGS`` on a free port (``--port 0``); ``url`` from the line it prints."""

    def __init__(self, *args: str, extra_env: dict[str, str] | None = None) -> None:
        self.stderr = ""
        self.proc = subprocess.Popen([CLAIRE, "web", "--port", "0", *args], env=env(**(extra_env or {})),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if " on http" not in line:
            raise AssertionError(f"claire web did not start: {line!r} {self.stop()}")
        self.first_line = line
        self.url = line.split(" on ", 1)[1].split()[0]
        self.run_id = line.split("live view of run ", 1)[1].split()[0]

    def stop(self) -> str:
        """SIGTERM, wait; returns everything it wrote (to check the token is never in it)."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            out, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        self.stderr = err
        return (out or "") + (err or "")


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def latest_run(db_url: str) -> str:
    db = Database(db_url)
    try:
        runs = T["runs"]
        with db.connect() as conn:
            return str(conn.execute(select(runs.c.id).order_by(runs.c.started_at.desc()).limit(1)).scalar_one())
    finally:
        db.dispose()


def count(db_url: str, table: str, run_id: str) -> int:
    db = Database(db_url)
    try:
        t = T[table]
        with db.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t).where(t.c.run_id == run_id)).scalar_one())
    finally:
        db.dispose()


def insert_trade(db_url: str, run_id: str) -> str:
    """A new fill of ``run_id`` (a copy of its latest, a new id, one second later), as the writer
    would store it; returns its id."""
    db = Database(db_url)
    try:
        t = T["trades"]
        with db.begin(write=True) as conn:
            last = conn.execute(select(t).where(t.c.run_id == run_id).order_by(t.c.ts.desc()).limit(1)).mappings().one()
            row = dict(last)
            row.pop("created_at", None)
            row["id"] = f"test-{uuid.uuid4()}"
            row["ts"] = last["ts"] + timedelta(seconds=1)
            row["recv_ts"] = row["ts"]
            conn.execute(t.insert().values(**row))
        return str(row["id"])
    finally:
        db.dispose()


def wait_for(predicate: Any, timeout: float = 20.0, step: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"not within {timeout} s: {predicate}")


#: non-blank pixels of the equity chart's canvas (drawn by uPlot)
CANVAS_PIXELS = """() => {
  const c = document.querySelector('#equity-chart canvas');
  if (!c) return 0;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) n++;
  return n;
}"""
