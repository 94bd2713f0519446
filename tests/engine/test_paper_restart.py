"""A paper run killed with SIGKILL and started again continues from the database and ends
exactly where an uninterrupted run ends (issue: restart)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.feather as feather
import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.slow


def _small_file(data_dir: Path, tmp: Path, n: int = 4000) -> Path:
    table = feather.read_table(data_dir / "BTC_USDT-1m.feather").slice(0, n)
    out = tmp / "BTC_USDT-1m.feather"
    feather.write_feather(table, out)
    return out


def _cmd(data: Path, db: str, out: Path, speed: str) -> list[str]:
    return [sys.executable, "-m", "claire.cli.main", "paper", "--data", str(data), "--strategy", "sma_cross",
            "--param", "fast=5", "--param", "slow=20", "--db", db, "--out", str(out), "--speed", speed,
            "--port", "0"]


def _db_facts(url: str) -> dict:
    eng = sa.create_engine(url)
    with eng.connect() as c:
        trades = c.execute(sa.text("select id, symbol, side, quantity, price from trades order by id")).all()
        snap = c.execute(sa.text(
            "select equity, cash from portfolio_snapshots where reason = 'final'")).all()
        counts = {t: c.execute(sa.text(f"select count(*) from {t}")).scalar()
                  for t in ("signals", "orders", "trades", "risk_events", "portfolio_snapshots")}
    eng.dispose()
    return {"trades": [tuple(map(str, r)) for r in trades], "final": [tuple(map(str, r)) for r in snap], "counts": counts}


def test_kill_9_and_resume_matches_uninterrupted_run(data_dir: Path, tmp_path: Path) -> None:
    data = _small_file(data_dir, tmp_path)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # the reference: uninterrupted
    ref_db = f"sqlite:///{tmp_path}/ref.db"
    subprocess.run(_cmd(data, ref_db, tmp_path / "ref", "max"), check=True, env=env, capture_output=True)
    # interrupted: 4000 one-minute bars at 20,000x event time take ~12 s; kill -9 once a
    # checkpoint and some events are in the database
    db = f"sqlite:///{tmp_path}/run.db"
    proc = subprocess.Popen(_cmd(data, db, tmp_path / "run", "20000"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    eng = sa.create_engine(db)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            with eng.connect() as c:
                if c.execute(sa.text("select count(*) from checkpoints")).scalar():
                    break
        except sa.exc.OperationalError:
            continue  # schema not there yet
    eng.dispose()
    time.sleep(1.0)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # the checkpoint holds the core's state and a reference into the recorder's journal, not the
    # events themselves: a few kB however long the run
    with sa.create_engine(db).connect() as c:
        state = c.execute(sa.text("select state from checkpoints")).scalar()
    cp = json.loads(state)
    assert "recorder" not in cp and cp["journal"]["offset"] > 0 and len(state) < 64_000
    assert Path(cp["journal"]["path"]) == (tmp_path / "run" / "recorder.journal").resolve()
    partial = _db_facts(db)
    assert 0 < partial["counts"]["portfolio_snapshots"] < _db_facts(ref_db)["counts"]["portfolio_snapshots"]
    # started again: continues from the checkpoint
    subprocess.run(_cmd(data, db, tmp_path / "run", "max"), check=True, env=env, capture_output=True)
    got, want = _db_facts(db), _db_facts(ref_db)
    assert got["counts"] == want["counts"]
    assert got["trades"] == want["trades"] and len(want["trades"]) > 10
    assert got["final"] == want["final"]
    s_got = json.loads((tmp_path / "run" / "summary.json").read_text())
    s_want = json.loads((tmp_path / "ref" / "summary.json").read_text())
    for k in ("final_equity", "trades", "fills", "realized_pnl_gross", "realized_pnl_net", "fees", "max_drawdown",
              "daily_pnl"):
        assert s_got[k] == s_want[k], k
    with (tmp_path / "run" / "trades.csv").open() as a, (tmp_path / "ref" / "trades.csv").open() as b:
        assert list(csv.reader(a)) == list(csv.reader(b))


def test_an_inline_checkpoint_of_before_the_journal_still_restores(tmp_path: Path) -> None:
    """Checkpoints written before the journal (the recorder's events inline) restore, and the
    journal takes over from them: the next checkpoint is small again."""
    from claire.config import DataSettings, RunConfig
    from claire.engine.kernel import build_core
    from claire.marketdata import open_market_data
    from claire.reporting import Recorder
    from claire.runtime.paper import RecorderJournal, checkpoint_bytes, restore_checkpoint

    data = _small_file(Path(__file__).resolve().parents[2] / "data", tmp_path, n=3000)
    cfg = RunConfig(data=DataSettings(paths=[str(data)]))
    recorder = Recorder()
    core = build_core(cfg, recorder.emit)
    core.run(open_market_data([data]))
    assert recorder.signals and recorder.snapshots
    inline = checkpoint_bytes(core, recorder)  # the old form
    journal = RecorderJournal(tmp_path / "recorder.journal")
    core2 = build_core(cfg, Recorder().emit)
    restored = restore_checkpoint(inline, core2, journal)
    assert restored is not None
    assert [e.id for e in restored.signals] == [e.id for e in recorder.signals]
    assert [e.id for e in restored.snapshots] == [e.id for e in recorder.snapshots]
    small = checkpoint_bytes(core2, restored, journal)
    assert len(small) < len(inline) / 10 and json.loads(small)["journal"]["offset"] == journal.offset > 0
    # and from the journal again: the same events
    again = restore_checkpoint(small, build_core(cfg, Recorder().emit), RecorderJournal(tmp_path / "recorder.journal"))
    assert again is not None
    assert [e.id for e in again.results] == [e.id for e in recorder.results]
    assert [e.id for e in again.risk_events] == [e.id for e in recorder.risk_events]
