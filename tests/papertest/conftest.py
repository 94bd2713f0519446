"""Fixtures of the papertest tests: the fake exchange in its own process, a local apprise
json:// receiver, and helpers that drive `claire papertest` as a user does (subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from claire.runtime.supervision import pid_alive
from tests.support.notify_receiver import NotifyReceiver, serve_receiver

CLAIRE = str(Path(sys.executable).with_name("claire"))
DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture()
def receiver() -> Iterator[tuple[NotifyReceiver, str]]:
    """(receiver, apprise URL) of a local apprise json:// receiver."""
    with serve_receiver() as (rec, port):
        yield rec, f"json://127.0.0.1:{port}/"


#: bars per second of the fake
SPEED = 70


class FakeHandle:
    """A started :class:`FakeMexc` in a thread of the test; its clock held until :meth:`release`."""

    def __init__(self, fake: Any, loop: Any) -> None:
        self.fake = fake
        self.loop = loop
        self.rest_url = fake.rest_url

    def release(self) -> None:
        """Start the exchange clock: the stream begins at the first bar after the history."""
        self.fake._t0 = time.monotonic()


@pytest.fixture()
def fake_exchange() -> Iterator[Callable[..., FakeHandle]]:
    """``make(history)``: `claire mexc-fake`'s exchange (:class:`FakeMexc`, the same code) serving
    the bundled BTC and ETH files at ``SPEED`` bars per second, its first ``history`` bars the past,
    its clock held at the first streamed bar until ``release()``; it outlives the run's processes
    (the tests kill those), as MEXC does."""
    import asyncio

    from claire.adapters.mexc.fake import FakeMexc

    made: list[tuple[Any, Any, threading.Thread]] = []

    def make(history: int, speed: float = SPEED, steps: int = 2) -> FakeHandle:
        fake = FakeMexc([DATA / "BTC_USDT-1m.feather", DATA / "ETH_USDT-1m.feather"], speed=speed,
                        history=history, steps=steps)
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(fake.start())
            fake._t0 = None  # held: now_ms() is the first streamed bar's open
            ready.set()
            loop.run_forever()

        thread = threading.Thread(target=run, name="fake-mexc", daemon=True)
        thread.start()
        assert ready.wait(30)
        made.append((fake, loop, thread))
        return FakeHandle(fake, loop)

    yield make
    for fake, loop, thread in made:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def claire(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLAIRE, *args], env=env, capture_output=True, text=True, timeout=timeout)


def state(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "papertest.json").read_text())


def wait_until(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


alive = pid_alive  # a zombie counts as dead, as the supervisor sees it


def kill9(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive(pid), 10, f"pid {pid} to die")


def cleanup_run(run_dir: Path) -> None:
    """Whatever of the run still lives (a failed test) is stopped."""
    try:
        st = state(run_dir)
    except (OSError, ValueError):
        return
    for pid in [st.get("supervisor_pid"), *(st.get("components") or {}).values()]:
        if pid and alive(int(pid)):
            os.kill(int(pid), signal.SIGKILL)
