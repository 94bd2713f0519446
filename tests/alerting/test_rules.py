"""The alert rules (pure): each fires at its threshold and not below; the cool-down counts repeats."""

from __future__ import annotations

from decimal import Decimal

import pytest

from claire.alerting.rules import (
    RULE_BY_CODE,
    RULES,
    AlertRules,
    DatabaseStatus,
    DiskStatus,
    ServiceStatus,
    is_repeat,
    service_status_of,
)
from claire.config.tree import AlertSettings
from claire.events import (
    AlertLevel,
    OrderResult,
    OrderStatus,
    RiskAction,
    RiskCheck,
    RiskEvent,
    Side,
    TradingState,
)
from tests.alerting.conftest import DAY0, NS_PER_SEC, component_alert, snap

MIN = 60 * NS_PER_SEC


def rules(**kw: object) -> AlertRules:
    return AlertRules(AlertSettings(**kw), "run-t")  # type: ignore[arg-type]


def codes(alerts: list) -> list[str]:
    return [a.code for a in alerts]


def test_drawdown_fires_at_the_threshold_and_not_below() -> None:
    r = rules()  # 3 %
    assert r.feed(snap(DAY0 + MIN, "97001")) == []  # 2.999 %
    out = r.feed(snap(DAY0 + 2 * MIN, "97000"))  # exactly 3 %
    assert codes(out) == ["drawdown"]
    a = out[0]
    assert a.level is AlertLevel.WARNING and a.source == "alerting"
    assert a.details["category"] == "risk" and a.details["occurrences"] == 1
    assert a.details["drawdown_pct"] == "0.03" and a.ts_event == DAY0 + 2 * MIN
    assert "3.00 %" in a.message
    # stays above: no new alert per snapshot
    assert r.feed(snap(DAY0 + 3 * MIN, "96000")) == []


def test_drawdown_threshold_is_configurable() -> None:
    r = rules(drawdown_pct=Decimal("0.001"))
    assert r.feed(snap(DAY0, "99901")) == []
    assert codes(r.feed(snap(DAY0 + MIN, "99900"))) == ["drawdown"]


def test_cool_down_counts_repeats_and_fires_again_after_it() -> None:
    r = rules(cooldown_s=900)
    first = r.feed(snap(DAY0, "96000"))[0]
    assert not is_repeat(first)
    r.feed(snap(DAY0 + MIN, "99000"))  # back below: re-armed
    rep = r.feed(snap(DAY0 + 2 * MIN, "96000"))[0]  # within 15 min: a repeat
    assert is_repeat(rep) and rep.details["repeat_of"] == first.id and rep.details["occurrences"] == 2
    r.feed(snap(DAY0 + 3 * MIN, "99000"))
    rep3 = r.feed(snap(DAY0 + 4 * MIN, "96000"))[0]
    assert rep3.details["occurrences"] == 3 and rep3.id != rep.id
    r.feed(snap(DAY0 + 5 * MIN, "99000"))
    # 15 minutes after the first firing (event time): a new alert, counted from 1
    new = r.feed(snap(DAY0 + 15 * MIN, "96000"))[0]
    assert not is_repeat(new) and new.id != first.id and new.details["occurrences"] == 1


def test_cool_down_is_per_code_and_symbol() -> None:
    r = rules()
    a = r.feed(component_alert(DAY0, "data_quality.gap_repaired", symbol="BTCUSDT", bars_repaired=3))
    b = r.feed(component_alert(DAY0 + 1, "data_quality.gap_repaired", symbol="ETHUSDT", bars_repaired=1))
    c = r.feed(component_alert(DAY0 + 2, "data_quality.gap_repaired", symbol="BTCUSDT", bars_repaired=1))
    assert codes(a) == codes(b) == codes(c) == ["data_gap_repaired"]
    assert not is_repeat(a[0]) and not is_repeat(b[0]) and is_repeat(c[0])
    assert c[0].details["repeat_of"] == a[0].id


def _state_event(action: RiskAction, state: TradingState, check: RiskCheck) -> RiskEvent:
    return RiskEvent(id=f"risk:{action}", ts_event=DAY0 + MIN, ts_recv=DAY0 + MIN, signal_id=None, symbol=None,
                     check=RiskCheck.STATE, action=action, passed=state is TradingState.ACTIVE,
                     value=Decimal("0.051"), limit=Decimal("0.05"), reason=f"{check} tripped", trading_state=state)


@pytest.mark.parametrize(("action", "state", "code", "level"), [
    (RiskAction.HALTED, TradingState.HALTED, "daily_loss_halt", AlertLevel.CRITICAL),
    (RiskAction.CIRCUIT_BROKEN, TradingState.CIRCUIT_BROKEN, "circuit_breaker", AlertLevel.CRITICAL),
    (RiskAction.RESUMED, TradingState.ACTIVE, "trading_resumed", AlertLevel.INFO),
])
def test_trading_state_changes(action: RiskAction, state: TradingState, code: str, level: AlertLevel) -> None:
    out = rules().feed(_state_event(action, state, RiskCheck.DAILY_DRAWDOWN))
    assert codes(out) == [code] and out[0].level is level
    assert out[0].causation_id == f"risk:{action}" and out[0].details["limit"] == "0.05"


def test_risk_decisions_and_the_risk_managers_own_alerts_raise_nothing() -> None:
    r = rules()
    rejected = RiskEvent(id="r1", ts_event=DAY0, ts_recv=DAY0, signal_id="s1", symbol="BTCUSDT",
                         check=RiskCheck.POSITION_LIMIT, action=RiskAction.REJECTED, passed=False, reason="too big")
    assert r.feed(rejected) == []
    assert r.feed(component_alert(DAY0, "trading_halted", source="risk", level=AlertLevel.CRITICAL)) == []


def _result(status: OrderStatus, reason: str | None = None) -> OrderResult:
    kw = {"quantity": Decimal(1), "price": Decimal(100)} if status is OrderStatus.FILLED else {}
    return OrderResult(id=f"res:{status}", ts_event=DAY0, ts_recv=DAY0, order_id="o1", signal_id="s1",
                       symbol="BTCUSDT", side=Side.BUY, status=status, reason=reason, **kw)


def test_rejected_orders_are_execution_errors_fills_and_cancels_not() -> None:
    r = rules()
    assert r.feed(_result(OrderStatus.FILLED)) == []
    assert r.feed(_result(OrderStatus.CANCELLED, "ioc rest")) == []
    out = r.feed(_result(OrderStatus.REJECTED, "below min notional"))
    assert codes(out) == ["order_rejected"]
    assert out[0].details["order_id"] == "o1" and out[0].details["signal_id"] == "s1"
    assert out[0].details["category"] == "execution" and "below min notional" in out[0].message
    err = r.feed(component_alert(DAY0, "fill_failed", source="execution", level=AlertLevel.CRITICAL))
    assert codes(err) == ["execution_error"]


@pytest.mark.parametrize(("kind", "code"), [
    ("stale", "data_stale"), ("disconnect", "data_stale"), ("gap_unrepaired", "data_gap"),
    ("gap_repaired", "data_gap_repaired"), ("unverified", "data_quality"),
])
def test_data_quality(kind: str, code: str) -> None:
    out = rules().feed(component_alert(DAY0, f"data_quality.{kind}", symbol="SOLUSDT"))
    assert codes(out) == [code] and out[0].details["key"] == "SOLUSDT"
    assert out[0].details["category"] == "data"


def test_service_restarts_and_stalls_from_alerts_and_supervisor_dicts() -> None:
    r = rules()
    r.feed(snap(DAY0 + 5 * MIN, "100000"))
    # the supervisor's on_event dict: no time of its own, takes the run's clock
    out = r.feed({"event": "restarted", "service": "risk", "restarts": 2, "reason": "exit code -9"})
    assert codes(out) == ["service_restarted"] and out[0].ts_event == DAY0 + 5 * MIN
    assert "restart 2" in out[0].message and out[0].details["category"] == "service"
    out = r.feed(component_alert(DAY0 + 6 * MIN, "service_stalled", source="supervisor", service="signal"))
    assert codes(out) == ["service_unhealthy"] and out[0].details["key"] == "signal"
    assert r.feed(ServiceStatus("signal", "healthy")) == []
    again = r.feed(ServiceStatus("signal", "unhealthy", "no progress"))  # stalled again: counted in the cool-down
    assert codes(again) == ["service_unhealthy"] and is_repeat(again[0]) and again[0].details["occurrences"] == 2
    later = r.feed(ServiceStatus("signal", "unhealthy", "no progress", ts_event=DAY0 + 30 * MIN))
    assert not is_repeat(later[0])
    assert service_status_of({"event": "tick"}) is None and r.feed({"foo": 1}) == []
    # the papertest supervisor's dict and the distributed supervisor's alert (claire.runtime.distributed.supervisor)
    out = r.feed({"kind": "gave_up", "component": "execution", "exit_code": 1, "reason": "boom", "restarts": 5})
    assert codes(out) == ["service_unhealthy"] and out[0].details["key"] == "execution"
    out = r.feed(component_alert(DAY0 + 8 * MIN, "service_restarted", source="supervisor", component="risk",
                                 restarts=3))
    assert codes(out) == ["service_restarted"] and out[0].details["key"] == "risk" and is_repeat(out[0])
    out = r.feed(component_alert(DAY0 + 9 * MIN, "service_died", source="supervisor", component="portfolio"))
    assert codes(out) == ["service_unhealthy"] and out[0].details["key"] == "portfolio"


def test_database_and_disk() -> None:
    r = rules(disk_min_free_mb=100)
    assert codes(r.feed(DatabaseStatus(False, "OperationalError", DAY0))) == ["database_unreachable"]
    assert r.feed(DatabaseStatus(False, "still", DAY0 + 1)) == []
    r.feed(DatabaseStatus(True, ts_event=DAY0 + 2))
    # another component's alert of the same state counts the same way
    rep = r.feed(component_alert(DAY0 + 3, "database_unreachable", source="paper", level=AlertLevel.CRITICAL))
    assert codes(rep) == ["database_unreachable"] and is_repeat(rep[0])
    mib = 1024 * 1024
    assert r.feed(DiskStatus("/runs", 100 * mib, ts_event=DAY0)) == []  # at the limit: not low
    out = r.feed(DiskStatus("/runs", 100 * mib - 1, ts_event=DAY0))
    assert codes(out) == ["disk_low"] and out[0].level is AlertLevel.CRITICAL and "99 MiB" in out[0].message


def test_unknown_component_warnings_are_kept_info_ignored() -> None:
    r = rules()
    assert r.feed(component_alert(DAY0, "something_new", source="web", level=AlertLevel.INFO)) == []
    out = r.feed(component_alert(DAY0, "something_new", source="web", level=AlertLevel.WARNING))
    assert codes(out) == ["component_alert"] and out[0].details["source_code"] == "something_new"


def test_deterministic_and_state_round_trip() -> None:
    events = [snap(DAY0, "96000"), snap(DAY0 + MIN, "99000"), snap(DAY0 + 2 * MIN, "96000"),
              component_alert(DAY0 + 3 * MIN, "data_quality.stale", symbol="BTCUSDT")]
    a, b = rules(), rules()
    assert [x for e in events for x in a.feed(e)] == [x for e in events for x in b.feed(e)]
    c = rules()
    c.feed(events[0])
    d = rules()
    d.set_state(c.get_state())
    assert [x for e in events[1:] for x in c.feed(e)] == [x for e in events[1:] for x in d.feed(e)]


def test_the_rule_table_is_complete() -> None:
    assert len(RULE_BY_CODE) == len(RULES)
    for r in RULES:
        assert r.condition and r.action and r.category


def test_wall_clock_stamps_of_a_replay_go_on_the_runs_clock() -> None:
    """A replay of history (claire mexc-fake): the run's events are months behind the wall clock
    the supervisor and the services stamp their alerts with. Those alerts land at the run's latest
    event time; they neither move the run's clock nor start a cool-down in the future."""
    r = rules()
    wall = DAY0 + 200 * 86_400 * NS_PER_SEC
    r.feed(snap(DAY0, "100000"))
    restarted = r.feed({"event": "restarted", "service": "marketdata", "restarts": 1, "ts_event": wall})
    stalled = r.feed(component_alert(wall + NS_PER_SEC, "service_stalled", source="risk", service="risk"))
    assert [(a.code, a.ts_event) for a in restarted + stalled] == [
        ("service_restarted", DAY0), ("service_unhealthy", DAY0)]
    assert r.now == DAY0
    later = r.feed(snap(DAY0 + 10 * MIN, "95000"))  # the run's own clock goes on from where it was
    assert [(a.code, a.ts_event) for a in later] == [("drawdown", DAY0 + 10 * MIN)] and r.now == DAY0 + 10 * MIN
    # within the hour: a component's own time is kept (a live run: wall and event time agree)
    near = r.feed(component_alert(DAY0 + 30 * MIN, "service_stalled", source="signal", service="signal"))
    assert [(a.code, a.ts_event) for a in near] == [("service_unhealthy", DAY0 + 30 * MIN)]
