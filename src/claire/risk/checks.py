"""The vocabulary of the risk checks: what one decision works on and what a check answers.

Every check (sizing, then R1-R7, methods ``RiskManager._check_*``) takes the ``Decision`` of one
signal and answers ``None`` (passed: its ``CheckResult`` is appended to ``Decision.checks``, and
R2/R4 may have sized the order down) or a ``Fail`` (the decision stops there, and the ``Fail``
becomes the rejection's ``RiskEvent``). Control flow by return value, not by exception: most
signals of a replay are rejected, and a raise and catch per signal costs more than the check.
"""

from __future__ import annotations

from decimal import Decimal

from claire.events import (
    Bar,
    CheckResult,
    Event,
    InstrumentRules,
    QuoteTick,
    RiskAction,
    RiskCheck,
    Signal,
    TradeTick,
)

_ALL, _SPREAD = RiskCheck.ALL, RiskCheck.SPREAD
_REJECTED, _DELAYED = RiskAction.REJECTED, RiskAction.DELAYED


class Fail:
    """A check that stops the decision: which check, why, its value and limit, and the action
    (``rejected``, or ``delayed`` for R7's wait for a narrower spread). It carries exactly what
    the rejection's ``RiskEvent`` records, so the manager builds the event in one place."""

    __slots__ = ("action", "check", "limit", "reason", "value")

    def __init__(self, check: RiskCheck, reason: str, value: Decimal | None = None,
                 limit: Decimal | None = None, action: RiskAction = _REJECTED) -> None:
        self.check, self.reason, self.value, self.limit, self.action = check, reason, value, limit, action

    def __repr__(self) -> str:
        return f"Fail({self.check.value}, {self.action.value}, {self.reason!r}, value={self.value}, limit={self.limit})"


#: R7 on a retry of a delayed signal whose spread is still too wide: it keeps waiting, and no event
#: is emitted (its ``delayed`` decision was recorded when it first arrived)
WAIT = Fail(_SPREAD, "still waiting for a narrower spread", action=_DELAYED)


class Decision:
    """One signal on its way through the checks: the inputs read once (the portfolio's equity and
    exposure, the position), what the checks work out (quantity, binding check, the last market
    event, the spread) and what they record (``checks`` in order, ``out`` the events so far, e.g.
    a trading-state change on the way). One object instead of a dozen arguments per check."""

    __slots__ = ("binding", "checks", "deadline", "equity", "exposure", "first", "last", "market_ts", "now",
                 "out", "pf_values", "pos_qty", "qty", "reducing", "requested", "rules", "sig", "spread", "working")

    def __init__(self, sig: Signal, now: int, market_ts: int, first: bool, deadline: int | None,
                 pf_values: tuple[Decimal, Decimal], pos_qty: Decimal, requested: Decimal | None) -> None:
        self.sig = sig
        self.now = now
        self.market_ts = market_ts
        self.first = first  # the signal's first decision (not a retry of a delayed one)
        self.deadline = deadline  # a delayed signal's end of waiting (ns), else None
        self.pf_values = pf_values  # (equity, total exposure), for the decision record too
        self.equity, self.exposure = pf_values
        self.pos_qty = pos_qty
        self.requested = requested  # the fixed quantity (the signal's or the config's), topped up by sizing
        self.binding = _ALL  # the check that sized the order down, if any
        self.checks: list[CheckResult] = []
        self.out: list[Event] = []
        self.spread: Decimal | None = None  # the quote's relative spread (R6, for R7)
        self.rules: InstrumentRules | None = None  # the symbol's exchange trading rules (set by _decide)
        # set by the checks before any later one reads them (left unset here: this is the hot path)
        self.qty: Decimal  # the order's quantity: set by sizing, shrunk by R2/R4
        self.reducing: bool  # the order reduces a position (sizing)
        self.working: Decimal  # leaves of working opening orders on the signal's side (sizing)
        self.last: Bar | QuoteTick | TradeTick | None  # the symbol's last market event (R1)
