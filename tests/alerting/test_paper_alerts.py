"""`claire paper` end to end: a forced drawdown (a tiny threshold) ends with the drawdown alert in
the database and at a local apprise json:// receiver, with one daily summary per simulated UTC day,
and no secret of the notification URL in any output or log file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from claire.storage import Database
from claire.storage.alerts import list_alerts
from tests.support.notify_receiver import NotifyReceiver

CLAIRE = str(Path(sys.executable).with_name("claire"))
ROOT = Path(__file__).resolve().parents[2]
SECRET = "Pa55wordInUrl"


def test_paper_run_forced_drawdown_alert_and_daily_summaries(receiver: tuple[NotifyReceiver, int], tmp_path: Path) -> None:
    rec, port = receiver
    db_url = f"sqlite:///{tmp_path / 'paper.db'}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CLAIRE_ALERT_DRAWDOWN_PCT": "0.0005",
           "CLAIRE_NOTIFY_URLS": f"json://alerts:{SECRET}@127.0.0.1:{port}/hook"}
    env.pop("CLAIRE_DATABASE_URL", None)
    # 3,000 synthetic 1m bars per symbol from 2026-01-01 00:00 UTC: two UTC midnights
    res = subprocess.run([CLAIRE, "paper", "--synthetic", "3000", "--speed", "200000", "--db", db_url, "--port", "0",
                          "--out", str(tmp_path / "out")], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    db = Database(db_url)
    try:
        rows = list_alerts(db, rules_only=True)
    finally:
        db.dispose()
    codes = [r["code"] for r in rows]
    assert "drawdown" in codes
    dd = next(r for r in rows if r["code"] == "drawdown")
    assert dd["category"] == "risk" and dd["level"] == "warning" and dd["details"]["threshold_pct"] == "0.0005"
    summaries = sorted(r["details"]["date"] for r in rows if r["code"] == "daily_summary" and not r["details"]["final"])
    assert summaries == ["2026-01-01", "2026-01-02"]
    titles = [m["title"] for m in rec.messages]
    assert "Claire [warning] drawdown" in titles
    assert titles.count("Claire daily summary 2026-01-01") == 1 and "Claire daily summary 2026-01-02" in titles
    assert len(rec.messages) == len(rows)  # every stored alert pushed once
    logs = "".join(p.read_text() for p in (tmp_path / "out").rglob("*.log"))
    assert "alert drawdown" in logs
    for text in (res.stdout, res.stderr, logs):
        assert SECRET not in text
