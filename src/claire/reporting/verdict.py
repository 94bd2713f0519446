"""Go / no-go / inconclusive: does this strategy deserve real money? (criteria in docs/metrics.md)

Every criterion is shown with its value, its threshold and pass / fail (n/a where the source
cannot know the value). A failed *hard* criterion (return after fees, drawdown against the risk
limits, risk-limit trips, execution quality, system health) gives **no-go**; when all hard ones
pass but a *confidence* one fails (too few days or trades, PSR below its bar, a Sharpe interval
that includes 0) the verdict is **inconclusive**; all pass: **go**.

Thresholds: :class:`VerdictThresholds` (defaults below), each overridable by the environment
(``CLAIRE_VERDICT_<FIELD>``, e.g. ``CLAIRE_VERDICT_MIN_PSR=0.9``) and by ``claire report`` flags.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

ENV_PREFIX = "CLAIRE_VERDICT_"
GO, NO_GO, INCONCLUSIVE = "go", "no-go", "inconclusive"


class VerdictThresholds(msgspec.Struct, frozen=True, kw_only=True):
    """The bars a run must clear. Shares are fractions (0.05 = 5 %)."""

    min_return_pct: float = 0.0  # return after fees, in percent, must be above this
    max_drawdown_share: float = 1.0  # max drawdown < this share of CIRCUIT_BREAKER_THRESHOLD_PCT
    max_daily_drawdown_share: float = 1.0  # worst day's drawdown < this share of MAX_DAILY_DRAWDOWN_PCT
    max_risk_breaches: int = 0  # R3 halts + R5 circuit-breaker trips
    min_days: int = 30  # daily returns for a Sharpe worth annualising
    min_trades: int = 30  # closed round trips
    min_psr: float = 0.95  # probabilistic Sharpe ratio, P(true Sharpe > 0)
    require_sharpe_ci_above_zero: bool = True  # the bootstrap interval's low end > 0
    max_mean_slippage_bps: float = 10.0  # mean absolute slippage
    min_quality_score: float = 0.5  # mean execution quality score (0..1), where the database has it
    max_data_gaps: int = 5
    max_restarts: int = 0
    max_critical_alerts: int = 0
    max_dead_letters: int = 0

    def __post_init__(self) -> None:
        for name in ("max_drawdown_share", "max_daily_drawdown_share", "min_psr", "min_quality_score"):
            if getattr(self, name) < 0:
                raise ValueError(f"verdict threshold {name} must be >= 0, got {getattr(self, name)}")
        if self.min_psr > 1 or self.min_quality_score > 1:
            raise ValueError("verdict thresholds min_psr and min_quality_score must be <= 1")


FIELDS = tuple(VerdictThresholds.__struct_fields__)


def thresholds_from(env: Mapping[str, str] | None = None, **overrides: Any) -> VerdictThresholds:
    """Defaults, then ``CLAIRE_VERDICT_*`` from ``env`` (default: the process environment), then
    ``overrides`` that are not None (the command line's flags)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    defaults = VerdictThresholds()
    for name in FIELDS:
        text = env.get(ENV_PREFIX + name.upper())
        if text is None or text == "":
            continue
        kind = type(getattr(defaults, name))
        try:
            if kind is bool:
                if text.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError(text)
                values[name] = text.lower() in ("1", "true", "yes")
            else:
                values[name] = kind(text)
        except ValueError:
            raise ValueError(f"{ENV_PREFIX}{name.upper()}: expected a {kind.__name__}, got {text!r}") from None
    for name, v in overrides.items():
        if name not in FIELDS:
            raise ValueError(f"unknown verdict threshold {name!r}")
        if v is not None:
            values[name] = v
    return VerdictThresholds(**values)


@dataclass(frozen=True)
class Criterion:
    name: str
    group: str  # performance | risk | confidence | execution | health
    value: Any
    threshold: str  # how the value must compare, as text ("> 0.00%", "<= 0")
    status: str  # pass | fail | n/a
    hard: bool  # a failure means no-go (else: inconclusive)
    note: str = ""


@dataclass(frozen=True)
class Verdict:
    decision: str
    criteria: list[Criterion]
    reason: str


def _check(name: str, group: str, value: Any, ok: bool | None, threshold: str, hard: bool, note: str = "") -> Criterion:
    status = "n/a" if ok is None else ("pass" if ok else "fail")
    return Criterion(name, group, value, threshold, status, hard, note)


def _le(v: float | int | None, limit: float | int) -> bool | None:
    return None if v is None else v <= limit


def _risk_criteria(f: Mapping[str, Any], t: VerdictThresholds) -> list[Criterion]:
    cb = f.get("circuit_breaker_threshold_pct")
    dd_limit = None if cb is None else cb * t.max_drawdown_share
    mdd = f.get("max_drawdown_pct")
    daily = f.get("max_daily_drawdown_pct")
    day_limit_src = f.get("max_daily_drawdown_limit_pct")
    day_limit = None if day_limit_src is None else day_limit_src * t.max_daily_drawdown_share
    return [
        _check("max drawdown", "risk", mdd, None if mdd is None or dd_limit is None else mdd < dd_limit,
               f"< {dd_limit:.4f} ({t.max_drawdown_share:g} x CIRCUIT_BREAKER_THRESHOLD_PCT)"
               if dd_limit is not None else "n/a", True),
        _check("worst daily drawdown", "risk", daily,
               None if daily is None or day_limit is None else daily < day_limit,
               f"< {day_limit:.4f} ({t.max_daily_drawdown_share:g} x MAX_DAILY_DRAWDOWN_PCT)"
               if day_limit is not None else "n/a", True),
        _check("risk-limit trips (R3 halts, R5 circuit breaker)", "risk", f.get("risk_breaches"),
               _le(f.get("risk_breaches"), t.max_risk_breaches), f"<= {t.max_risk_breaches}", True),
    ]


def _confidence_criteria(f: Mapping[str, Any], t: VerdictThresholds) -> list[Criterion]:
    psr, lo = f.get("psr"), f.get("sharpe_ci_low")
    return [
        _check("sample: days", "confidence", f.get("days"), f.get("days", 0) >= t.min_days, f">= {t.min_days}", False),
        _check("sample: closed trades", "confidence", f.get("trades"), f.get("trades", 0) >= t.min_trades,
               f">= {t.min_trades}", False),
        _check("probabilistic Sharpe ratio", "confidence", psr, False if psr is None else psr >= t.min_psr,
               f">= {t.min_psr:g}", False, "n/a counts as a failure: too few days" if psr is None else ""),
        _check("Sharpe 95% CI above 0", "confidence", lo,
               (False if lo is None else lo > 0) if t.require_sharpe_ci_above_zero else None,
               "low end > 0" if t.require_sharpe_ci_above_zero else "not required", False),
    ]


def _ops_criteria(f: Mapping[str, Any], t: VerdictThresholds) -> list[Criterion]:
    slip, q = f.get("mean_abs_slippage_bps"), f.get("mean_quality_score")
    return [
        _check("mean |slippage| (bps)", "execution", slip, _le(slip, t.max_mean_slippage_bps),
               f"<= {t.max_mean_slippage_bps:g}", True),
        _check("mean execution quality score", "execution", q, None if q is None else q >= t.min_quality_score,
               f">= {t.min_quality_score:g}", True),
        _check("data gaps", "health", f.get("data_gaps"), _le(f.get("data_gaps"), t.max_data_gaps),
               f"<= {t.max_data_gaps}", True),
        _check("restarts", "health", f.get("restarts"), _le(f.get("restarts"), t.max_restarts),
               f"<= {t.max_restarts}", True),
        _check("critical alerts", "health", f.get("critical_alerts"),
               _le(f.get("critical_alerts"), t.max_critical_alerts), f"<= {t.max_critical_alerts}", True),
        _check("dead letters", "health", f.get("dead_letters"), _le(f.get("dead_letters"), t.max_dead_letters),
               f"<= {t.max_dead_letters}", True),
    ]


def decide(figures: Mapping[str, Any], thresholds: VerdictThresholds | None = None) -> Verdict:
    """The verdict from a run's figures (keys: return_pct, max_drawdown_pct, max_daily_drawdown_pct,
    circuit_breaker_threshold_pct, max_daily_drawdown_limit_pct, risk_breaches, days, trades, psr,
    sharpe_ci_low, mean_abs_slippage_bps, mean_quality_score, data_gaps, restarts, critical_alerts,
    dead_letters; a missing or None value is n/a)."""
    t = thresholds or VerdictThresholds()
    ret = figures.get("return_pct")
    criteria = [_check("return after fees (%)", "performance", ret, None if ret is None else ret > t.min_return_pct,
                       f"> {t.min_return_pct:g}", True)]
    criteria += _risk_criteria(figures, t) + _confidence_criteria(figures, t) + _ops_criteria(figures, t)
    hard_fail = [c.name for c in criteria if c.hard and c.status == "fail"]
    soft_fail = [c.name for c in criteria if not c.hard and c.status == "fail"]
    if hard_fail:
        return Verdict(NO_GO, criteria, "failed: " + ", ".join(hard_fail))
    if soft_fail:
        return Verdict(INCONCLUSIVE, criteria, "not enough evidence: " + ", ".join(soft_fail))
    return Verdict(GO, criteria, "every criterion passed")
