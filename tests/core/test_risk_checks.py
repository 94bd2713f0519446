"""The shape of the risk checks (issue 10): one method per check, each answering ``None`` (pass)
or a ``Fail`` instead of raising, run by ``_decide`` in the seeds' order; the manager reads the
portfolio only through ``PortfolioView``. The behaviour itself is pinned by the other risk tests
and by the replay hashes."""

from __future__ import annotations

from claire.events import RiskAction, RiskCheck
from claire.portfolio import Portfolio, PortfolioView
from claire.risk import RiskConfig
from claire.risk.checks import WAIT, Decision, Fail
from claire.risk.manager import _R1_TO_R7, RiskManager

from ._util import MIN, R_ORDER, SEC, T0, D, RiskHarness, signal

BTC = "BTCUSDT"


def _decision(h: RiskHarness, side: str, price: str, now: int, market_ts: int, first: bool = True,
              deadline: int | None = None) -> Decision:
    sig = signal(BTC, side, price, now, market_ts=market_ts)
    d = Decision(sig, now, market_ts, first, deadline, h.pf.equity_and_exposure(), h.pf.position_qty(BTC), None)
    assert h.rm._check_size(d) is None
    return d


def test_each_check_records_one_result_in_the_seeds_order() -> None:
    h = RiskHarness()
    h.bar(BTC, T0 + MIN, 100)
    d = _decision(h, "buy", "100", T0 + MIN, T0 + MIN)
    for check in _R1_TO_R7:
        assert check(h.rm, d) is None
    assert tuple(c.check for c in d.checks) == R_ORDER
    assert all(c.passed for c in d.checks)
    assert d.qty == D(100) and d.binding is RiskCheck.ALL  # sized to 10% of 100,000 (fee 0): no limit binds


def test_a_failing_check_returns_its_fail_instead_of_raising() -> None:
    h = RiskHarness()
    h.bar(BTC, T0 + MIN, 100)
    d = _decision(h, "buy", "100", T0 + 3 * MIN, T0 + MIN)  # the market data is 2 minutes old
    fail = h.rm._check_data_quality(d)
    assert isinstance(fail, Fail)
    assert (fail.check, fail.action, fail.value, fail.limit) == (RiskCheck.DATA_QUALITY, RiskAction.REJECTED,
                                                                 D(120), D(60))
    assert "stale" in fail.reason
    assert [(c.check, c.passed) for c in d.checks] == [(RiskCheck.DATA_QUALITY, False)]


def test_sizing_fails_without_raising() -> None:
    h = RiskHarness()
    h.bar(BTC, T0 + MIN, 100)
    sig = signal(BTC, "sell", "100", T0 + MIN)
    d = Decision(sig, T0 + MIN, T0 + MIN, True, None, h.pf.equity_and_exposure(), D(0), None)
    fail = h.rm._check_size(d)
    assert isinstance(fail, Fail) and fail.check is RiskCheck.SIZING and "short selling" in fail.reason


def test_a_retry_with_a_still_wide_spread_waits_silently() -> None:
    h = RiskHarness()
    h.quote(BTC, T0 + MIN, 99, 101)  # 2% wide
    first = h.signal(BTC, "buy", 101)
    assert [e.action for e in first if hasattr(e, "action")] == [RiskAction.DELAYED]
    h.rm.delayed.clear()
    d = _decision(h, "buy", "101", T0 + MIN + SEC, T0 + MIN + SEC, first=False, deadline=T0 + MIN + 30 * SEC)
    for check in _R1_TO_R7[:-1]:
        assert check(h.rm, d) is None
    assert h.rm._check_spread(d) is WAIT
    assert [s.id for s, _ in h.rm.delayed[BTC]] == [d.sig.id]


def test_the_manager_reads_the_portfolio_through_the_view() -> None:
    view: PortfolioView = Portfolio(D(1000))  # mypy checks that Portfolio satisfies the protocol
    rm = RiskManager(RiskConfig(), view)
    assert rm.portfolio is view
