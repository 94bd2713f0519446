"""Logs (issue 13 point 7): JSON lines through structlog, one file per component and UTC day,
switched at midnight and kept; the readable console; no secret in any line."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog

from claire.runtime import logs
from claire.runtime.logs import DailyFileHandler, configure_logging, current_log_dir, redact, secret_values


@pytest.fixture(autouse=True)
def _restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for h in root.handlers:
        if h not in handlers:
            h.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    logs._secrets[:] = []


def test_one_file_per_utc_day(tmp_path: Path) -> None:
    now = [datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC)]
    handler = DailyFileHandler(tmp_path / "risk", clock=lambda: now[0])
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("test.daily")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("before midnight")
        now[0] += timedelta(seconds=2)
        log.warning("after midnight")
    finally:
        log.removeHandler(handler)
        handler.close()
    assert sorted(p.name for p in (tmp_path / "risk").iterdir()) == ["2026-03-01.log", "2026-03-02.log"]
    assert (tmp_path / "risk" / "2026-03-01.log").read_text() == "before midnight\n"
    assert (tmp_path / "risk" / "2026-03-02.log").read_text() == "after midnight\n"


def test_json_lines_and_console(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("execution", tmp_path, "INFO", console_level="INFO")
    assert current_log_dir() == tmp_path
    logging.getLogger("claire.x").info("filled %d of %s", 3, "BTCUSDT")
    structlog.get_logger("claire.y").warning("order rejected", order_id="o-1", reason="balance")
    try:
        raise ValueError("bad")
    except ValueError:
        logging.getLogger("claire.x").exception("cannot process")
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    lines = [json.loads(x) for x in (tmp_path / "execution" / f"{day}.log").read_text().splitlines()]
    assert [x["event"] for x in lines] == ["filled 3 of BTCUSDT", "order rejected", "cannot process"]
    assert all(x["service"] == "execution" and x["ts"].endswith("Z") for x in lines)
    assert lines[1]["order_id"] == "o-1" and lines[1]["level"] == "warning"
    assert "ValueError: bad" in lines[2]["exception"]
    err = capsys.readouterr().err
    assert "filled 3 of BTCUSDT" in err and "order_id=o-1" in err and "{" not in err.split("\n")[0]


def test_console_only_warnings_when_logging_to_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("writer", tmp_path)
    logging.getLogger("claire.z").info("routine")
    logging.getLogger("claire.z").warning("look at this")
    err = capsys.readouterr().err
    assert "look at this" in err and "routine" not in err


def test_redact_urls_pairs_and_env_values(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"PGPASSWORD": "pg-Secret-1", "CLAIRE_DATABASE_URL": "postgresql://u:dbPw12345@h/db",
           "CLAIRE_NOTIFY_URLS": "json://a:nPw98765@127.0.0.1:9/x, tgram://123456789:AAHsecretToken99/4711",
           "HOME": "/root", "CLAIRE_REDIS_URL": "redis://:rPw4567@h:6379/0"}
    values = secret_values(env)
    for secret in ("pg-Secret-1", "dbPw12345", "nPw98765", "AAHsecretToken99", "rPw4567"):
        assert secret in values, values
    assert "/root" not in values and "127.0.0.1" not in values
    monkeypatch.setattr(logs, "_secrets", values)
    text = ("connect postgresql+psycopg://postgres:hunter2x@127.0.0.1:5432/db failed; password=abc123; "
            "token: zzz999; pg-Secret-1; tgram://123456789:AAHsecretToken99/4711; redis://:rPw4567@h")
    out = redact(text)
    for secret in ("hunter2x", "abc123", "zzz999", "pg-Secret-1", "AAHsecretToken99", "rPw4567"):
        assert secret not in out, out
    assert "postgresql+psycopg://postgres:***@127.0.0.1:5432/db" in out
    assert redact("http://127.0.0.1:8000/health ok") == "http://127.0.0.1:8000/health ok"


def test_no_secret_in_files_or_console(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CLAIRE_NOTIFY_URLS", "json://alerts:Notify-Pw-77@127.0.0.1:9/hook")
    monkeypatch.setenv("REDIS_PASSWORD", "Redis-Pw-66")
    configure_logging("paper", tmp_path, console_level="INFO")
    log = logging.getLogger("claire.paper")
    log.info("pushing to %s", "json://alerts:Notify-Pw-77@127.0.0.1:9/hook")
    log.warning("bus auth with Redis-Pw-66 failed")
    try:
        raise ConnectionError("could not connect to postgresql://u:Db-Pw-55@h/db")
    except ConnectionError:
        log.exception("database unreachable")
    text = "".join(p.read_text() for p in tmp_path.rglob("*.log")) + capsys.readouterr().err
    assert "database unreachable" in text
    for secret in ("Notify-Pw-77", "Redis-Pw-66", "Db-Pw-55"):
        assert secret not in text
