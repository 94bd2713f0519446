"""The papertest's plan and state file, its clock, the resume point and the bounded stream."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from claire.events import Bar, Side, TradeTick
from claire.runtime.papertest.plan import (
    Plan,
    PlanError,
    format_duration,
    load_plan,
    parse_duration,
    parse_symbols,
    update_plan,
)
from claire.runtime.papertest.source import Bounded, ResumePoint, resume_point
from claire.runtime.papertest.status import progress

MIN = 60_000_000_000


@pytest.mark.parametrize(("text", "seconds"), [("7d", 604_800), ("36h", 129_600), ("90m", 5_400), ("45s", 45),
                                               ("1w", 604_800), ("1d12h", 129_600), ("1.5h", 5_400)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "7x", "d7", "1d 2h", "-1d", "0s", "0.2s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(PlanError):
        parse_duration(text)


def test_format_duration() -> None:
    assert format_duration(3 * 86_400 + 4 * 3600 + 5 * 60 + 6) == "3d 04:05:06"
    assert format_duration(59) == "00:00:59"


def test_symbols() -> None:
    assert parse_symbols("btcusdt, ETHUSDT,btcusdt") == ["BTCUSDT", "ETHUSDT"]
    for bad in ("BTC/USDT", "BTC-USDT", "B", ","):
        with pytest.raises(PlanError):
            parse_symbols(bad)


def test_state_file_is_private_and_round_trips(tmp_path: Path) -> None:
    plan = Plan(run_id="pt-1", run_dir=str(tmp_path), duration_s=60, symbols=["BTCUSDT"],
                env_names=["CLAIRE_NOTIFY_URLS"])
    plan.save()
    mode = stat.S_IMODE((tmp_path / "papertest.json").stat().st_mode)
    assert mode == 0o600
    again = load_plan(tmp_path)
    assert again == plan
    update_plan(tmp_path, status="running", restarts={"paper": 2})
    assert load_plan(tmp_path).restarts == {"paper": 2}
    # an unknown field (a newer version) is ignored, a damaged file is one line
    data = json.loads((tmp_path / "papertest.json").read_text())
    (tmp_path / "papertest.json").write_text(json.dumps({**data, "future": 1}))
    assert load_plan(tmp_path).status == "running"
    (tmp_path / "papertest.json").write_text("[1, 2]")
    with pytest.raises(PlanError, match="not a papertest state file"):
        load_plan(tmp_path)


def test_default_database_is_sqlite_in_the_run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLAIRE_DATABASE_URL", raising=False)
    plan = Plan(run_id="pt-1", run_dir=str(tmp_path), duration_s=60, symbols=["BTCUSDT"])
    assert plan.database_url() == f"sqlite:///{tmp_path.resolve() / 'papertest.db'}"
    monkeypatch.setenv("CLAIRE_DATABASE_URL", "postgresql+psycopg://u@h/db")
    assert plan.database_url() == "postgresql+psycopg://u@h/db"


def test_the_run_clock() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    wall = Plan(run_id="a", run_dir=".", duration_s=3600, symbols=["BTCUSDT"], clock="wall",
                started_at=t0.isoformat(), ends_at=(t0 + timedelta(hours=1)).isoformat())
    assert not wall.end_reached(None, t0 + timedelta(minutes=59))
    assert wall.end_reached(None, t0 + timedelta(minutes=60))
    p = progress(wall, None, t0 + timedelta(minutes=15))
    assert p["pct"] == 25.0 and p["elapsed"] == "00:15:00"
    replay = Plan(run_id="b", run_dir=".", duration_s=86_400, symbols=["BTCUSDT"], clock="exchange",
                  start_event_ms=1_000_000, end_event_ms=1_000_000 + 86_400_000)
    assert not replay.end_reached(1_000_000 + 86_399_999)
    assert replay.end_reached(1_000_000 + 86_400_000)
    assert progress(replay, 1_000_000 + 43_200_000)["pct"] == 50.0


def _bar(sym: str, close_ns: int) -> Bar:
    return Bar(id=f"bar:{sym}:60:{close_ns}", ts_event=close_ns, ts_recv=close_ns, symbol=sym, interval_s=60,
               open=Decimal(1), high=Decimal(1), low=Decimal(1), close=Decimal(1), volume=Decimal(1))


def _trade(sym: str, ts: int) -> TradeTick:
    return TradeTick(id=f"t:{sym}:{ts}", ts_event=ts, ts_recv=ts, symbol=sym, price=Decimal(1), size=Decimal(1),
                     aggressor=Side.BUY, trade_id=str(ts))


def test_resume_point_of_a_checkpoint() -> None:
    from claire.events import encode

    state = {"version": 1, "core": {"now": 5 * MIN + 7, "execution": {"last_bar": [
        encode(_bar("BTCUSDT", 5 * MIN)).decode(), encode(_bar("ETHUSDT", 4 * MIN)).decode()]}}}
    rp = resume_point(json.dumps(state).encode())
    assert rp == ResumePoint(bars={"BTCUSDT": 5 * MIN, "ETHUSDT": 4 * MIN}, now_ns=5 * MIN + 7)
    assert rp.next_open_ms("BTCUSDT", 60_000) == 5 * 60_000  # the bar after the last one
    assert rp.next_open_ms("SOLUSDT", 60_000) == 5 * 60_000  # no bar yet: the clock's window
    assert resume_point(b'{"completed": true}') is None
    assert resume_point(None) is None


def test_bounded_drops_what_the_core_has_and_ends_on_time() -> None:
    rp = ResumePoint(bars={"BTCUSDT": 5 * MIN}, now_ns=5 * MIN + 10)
    events = [_bar("BTCUSDT", 4 * MIN), _bar("BTCUSDT", 5 * MIN), _trade("BTCUSDT", 5 * MIN + 5),
              _bar("ETHUSDT", 5 * MIN), _trade("BTCUSDT", 5 * MIN + 20), _bar("BTCUSDT", 6 * MIN),
              _bar("BTCUSDT", 6 * MIN), _bar("BTCUSDT", 7 * MIN), _bar("BTCUSDT", 8 * MIN)]
    ended: list[bool] = []
    stream = Bounded(events, rp, lambda ts: ts >= 7 * MIN, on_end=lambda: ended.append(True))
    out = [(type(e).__name__, e.symbol, e.ts_event) for e in stream]
    assert out == [("Bar", "ETHUSDT", 5 * MIN), ("TradeTick", "BTCUSDT", 5 * MIN + 20), ("Bar", "BTCUSDT", 6 * MIN)]
    assert ended == [True] and stream.ended
