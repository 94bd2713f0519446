"""Delivery through apprise: a json:// target against a local HTTP receiver; a failing target is
retried and logged, never slows the caller, and no secret of a URL reaches the log."""

from __future__ import annotations

import logging
import socket
import time

import pytest

from claire.alerting.notify import Notifier, target_label, url_secrets, urls_from_env
from tests.support.notify_receiver import NotifyReceiver


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


def test_json_target_receives_the_message(receiver: tuple[NotifyReceiver, int]) -> None:
    rec, port = receiver
    n = Notifier([f"json://user:hunter2secret@127.0.0.1:{port}/hook"])
    try:
        assert n.send("Claire [warning] drawdown", "drawdown 3.10 %", "warning")
        got = rec.wait_for(lambda m: m.get("title") == "Claire [warning] drawdown")
    finally:
        assert n.close(10)
    assert got[0]["message"] == "drawdown 3.10 %" and got[0]["type"] == "warning"
    assert rec.paths == ["/hook"] and n.sent == 1 and n.failed == 0


def test_send_test_reports_per_target(receiver: tuple[NotifyReceiver, int]) -> None:
    rec, port = receiver
    bad = closed_port()
    n = Notifier([f"json://127.0.0.1:{port}/ok", f"json://127.0.0.1:{bad}/down", "notascheme://x"])
    res = n.send_test()
    n.close(1)
    assert [r["ok"] for r in res] == [True, False, False]
    assert res[0]["target"] == f"json://127.0.0.1:{port}" and res[0]["reason"] == ""
    assert res[1]["target"] == f"json://127.0.0.1:{bad}" and "127.0.0.1" in res[1]["reason"]
    assert res[2]["reason"] == "not a valid apprise URL"
    assert len(rec.messages) == 1


def test_a_failing_target_is_retried_logged_and_does_not_slow_the_caller(caplog: pytest.LogCaptureFixture) -> None:
    port = closed_port()
    secret = "s3cretPassw0rd"
    n = Notifier([f"json://admin:{secret}@127.0.0.1:{port}/path/tok3nPart"], backoff_s=0.05)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="apprise")  # its debug lines name the whole URL: redacted
    caplog.set_level(logging.DEBUG, logger="urllib3")
    t0 = time.perf_counter()
    for i in range(20):
        n.send(f"alert {i}", "body", "critical")
    per_send = (time.perf_counter() - t0) / 20
    assert per_send < 0.005, per_send  # < 5 ms each, while the target refuses every try
    assert n.close(30)
    assert n.failed == 20 and n.sent == 0
    tries = [r for r in caplog.records if r.name == "claire.notify" and "failed (try" in r.getMessage()]
    assert len(tries) == 60  # 3 tries per message
    assert f"json://127.0.0.1:{port}" in tries[0].getMessage()
    gave_up = [r for r in caplog.records if "given up after 3 tries" in r.getMessage()]
    assert len(gave_up) == 20 and gave_up[0].levelno == logging.ERROR
    text = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    apprise_lines = [r.getMessage() for r in caplog.records if r.name == "apprise"]
    assert any("POST URL" in m and "***" in m for m in apprise_lines), apprise_lines[:5]
    assert secret not in text and "tok3nPart" not in text and "admin" not in text


def test_a_full_queue_drops_the_oldest_info_message() -> None:
    port = closed_port()
    n = Notifier([f"json://127.0.0.1:{port}/x"], maxsize=3, tries=1, backoff_s=0)
    n._start = lambda: None  # type: ignore[method-assign]  # no worker: the queue only fills
    n.send("w1", "", "warning")
    n.send("i1", "", "info")
    n.send("w2", "", "warning")
    n.send("w3", "", "warning")  # full: i1 goes
    assert [m.title for m in n._queue] == ["w1", "w2", "w3"] and n.dropped == 1
    n.send("w4", "", "warning")  # no info left: the oldest goes
    assert [m.title for m in n._queue] == ["w2", "w3", "w4"] and n.dropped == 2


def test_labels_and_secrets_of_urls() -> None:
    assert target_label("tgram://123456:ABCDEF_token/987654", 2) == "tgram://#2"  # the host is the bot token
    assert target_label("mailtos://me:pw@smtp.example.com:465", 1) == "mailtos://smtp.example.com:465"
    assert {"123456:ABCDEF_token", "987654"} <= url_secrets("tgram://123456:ABCDEF_token/987654")
    assert "webhooktoken" in url_secrets("discord://4174216298/webhooktoken")
    assert urls_from_env({"CLAIRE_NOTIFY_URLS": "json://a/b, tgram://x/y  mailto://c"}) == [
        "json://a/b", "tgram://x/y", "mailto://c"]
    assert not Notifier([]).send("t", "b")  # no target: nothing queued
