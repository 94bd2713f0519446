"""The configuration of a run: one typed tree of msgspec structs, for every runtime.

A backtest, a paper run and every service of a distributed run are configured by the same
:class:`RunConfig`. The distributed run spec (``spec.json``) *is* this tree serialised
(:func:`to_spec` / :func:`from_spec`), so a setting added here reaches every runtime without
a converter to keep in step. The strategy, risk and execution parts reuse their packages' own
structs; this module adds what only a run has (data, start capital, where it runs).
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from pathlib import Path, PurePath
from typing import Any, Literal

import msgspec

from claire.events.types import InstrumentRules
from claire.execution.config import ExecutionConfig
from claire.risk.config import RiskConfig

#: port of /health, /ready and /metrics per distributed service (signal replicas: +10 each)
DEFAULT_PORTS: dict[str, int] = {"marketdata": 8000, "signal": 8001, "risk": 8002, "execution": 8003,
                                 "portfolio": 8004, "writer": 8005, "account": 8006}
#: "seeds": the seeds' six services; "account": risk, execution and portfolio as one service
TOPOLOGIES: tuple[str, ...] = ("seeds", "account")
Topology = Literal["seeds", "account"]


class StrategySettings(msgspec.Struct, frozen=True, kw_only=True):
    """Which strategy runs and with which parameters (already converted to their declared types).

    Kept apart from the strategy class so that a configuration can be written, compared and
    sent to another process before any strategy code is imported."""

    name: str = "momentum"  # a built-in name or package.module:Class
    params: dict[str, Any] = {}


class DataSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The market data a run replays: files (merged in event time) or synthetic bars; or
    MEXC's (``source="mexc"``): live for ``symbols``, or a recorded capture in ``paths``."""

    source: str = "files"  # files | mexc
    symbols: list[str] = []  # mexc: the symbols (a capture: those it recorded)
    paths: list[str] = []
    symbol: str | None = None  # default: from each file's name
    synthetic: int = 0  # N synthetic 1m bars per symbol instead of files (paper, up)


class PortfolioSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The account a run starts with."""

    start_cash: Decimal = Decimal(100_000)  # USDT


class RuntimeSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Where and how a run executes: identity, outputs, servers and the distributed layout.

    None of it changes a decision of the core; it is apart so that the same strategy, risk and
    execution settings can run in any runtime. URLs never carry a password into a file: a
    spec written to disk names the environment variable that holds it (``*_password_env``)."""

    run_id: str | None = None  # default: derived from the run's settings (RunConfig.run_key)
    out: str | None = None  # directory for the run files
    database_url: str | None = None
    database_url_password_env: str | None = None
    bus_url: str | None = None
    bus_url_password_env: str | None = None
    prefix: str = ""  # the run's keys on the bus
    partitions: int = 1  # signal service replicas
    topology: Topology = "seeds"
    speed: float | None = None  # replay pace: 1 = event time, N = N times faster, None = max
    ports: dict[str, int] = msgspec.field(default_factory=lambda: dict(DEFAULT_PORTS))


#: the environment variables of the alert settings (:class:`AlertSettings`), field -> variable
ALERT_ENV_VARS: dict[str, str] = {
    "drawdown_pct": "CLAIRE_ALERT_DRAWDOWN_PCT",
    "cooldown_s": "CLAIRE_ALERT_COOLDOWN_S",
    "disk_min_free_mb": "CLAIRE_ALERT_DISK_MIN_FREE_MB",
    "daily_summary": "CLAIRE_ALERT_DAILY_SUMMARY",
}


class AlertSettings(msgspec.Struct, frozen=True, kw_only=True):
    """When an alert fires and where it goes (see :mod:`claire.alerting.rules`).

    Thresholds in event time and ratios like the risk limits (0.03 = 3 %). The notification
    targets are apprise URLs that carry secrets (bot tokens, passwords): never in the tree, only
    the name of the environment variable that holds them (``notify_urls_env``)."""

    drawdown_pct: Decimal = Decimal("0.03")  # the seeds' 3 % from the high-water mark
    cooldown_s: float = 900.0  # a repeat of the same (code, symbol) within it only counts
    disk_min_free_mb: int = 1024  # disk low below this many MiB free in the run's directory
    daily_summary: bool = True  # one summary per UTC day of event time
    notify_urls_env: str = "CLAIRE_NOTIFY_URLS"

    def __post_init__(self) -> None:
        if not Decimal(0) < self.drawdown_pct < Decimal(1):
            raise ValueError(f"alerts: `drawdown_pct` must be within 0..1, got {self.drawdown_pct}")
        if not 0 <= self.cooldown_s < float("inf"):  # nan fails both
            raise ValueError(f"alerts: `cooldown_s` must be a finite number >= 0, got {self.cooldown_s}")
        if self.disk_min_free_mb < 0:
            raise ValueError(f"alerts: `disk_min_free_mb` must be >= 0, got {self.disk_min_free_mb}")

    def with_env(self, env: dict[str, str]) -> AlertSettings:
        """These settings with the ``CLAIRE_ALERT_*`` variables set in ``env`` applied (ValueError
        naming the variable for a bad value)."""
        values: dict[str, Any] = {}
        for name, var in ALERT_ENV_VARS.items():
            text = env.get(var, "").strip()
            if not text:
                continue
            try:
                values[name] = msgspec.convert(text, type(getattr(self, name)), strict=False)
            except msgspec.ValidationError:
                kind = type(getattr(self, name))
                what = "true or false" if kind is bool else "a whole number" if kind is int else "a number"
                raise ValueError(f"{var}={text!r}: expected {what}") from None
        try:
            return msgspec.structs.replace(self, **values) if values else self
        except ValueError as exc:
            raise ValueError(f"{', '.join(ALERT_ENV_VARS[k] for k in values)}: {exc}") from None

    def notify_urls(self, env: dict[str, str]) -> list[str]:
        """The apprise URLs in ``env[notify_urls_env]`` (comma or white space separated)."""
        return [u for u in env.get(self.notify_urls_env, "").replace(",", " ").split() if u]


class RunConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one run is built from (see :func:`claire.engine.kernel.build_core`).

    One tree instead of one settings object per component, so that the command line, the
    environment, the backtest, paper and distributed runtimes and the run spec all agree."""

    strategy: StrategySettings = msgspec.field(default_factory=StrategySettings)
    data: DataSettings = msgspec.field(default_factory=DataSettings)
    risk: RiskConfig = msgspec.field(default_factory=RiskConfig)
    execution: ExecutionConfig = msgspec.field(default_factory=ExecutionConfig)
    portfolio: PortfolioSettings = msgspec.field(default_factory=PortfolioSettings)
    runtime: RuntimeSettings = msgspec.field(default_factory=RuntimeSettings)
    #: the exchange's trading rules per symbol (e.g. MEXC exchangeInfo): risk sizes to their step and
    #: minimums, the paper exchange fills on their tick and step. Empty (files, synthetic data): the
    #: global ``risk.qty_step`` and ``risk.min_notional`` only, as before.
    rules: dict[str, InstrumentRules] = {}
    #: the alert rules' thresholds and the notification targets' variable (see AlertSettings)
    alerts: AlertSettings = msgspec.field(default_factory=AlertSettings)

    @property
    def risk_mode(self) -> str:
        """``default`` (the risk gate checks the limits) or ``none`` (`--risk none`)."""
        return "default" if self.risk.enabled else "none"

    def run_key(self) -> str:
        """The run's id: ``runtime.run_id``, else one derived from what makes the run (the ids
        of its events are derived from it, so the same settings give the same events)."""
        if self.runtime.run_id:
            return self.runtime.run_id
        names = ",".join(Path(p).name for p in self.data.paths)
        if self.data.source == "mexc":  # live or its capture replayed: the same ids
            names = "mexc:" + ",".join(self.data.symbols)
        key = (f"{self.strategy.name}:{sorted(self.strategy.params.items())}:{names}:{self.risk.quantity}:"
               f"{self.execution.fill}:{self.risk_mode}")
        return f"run-{hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:12]}"

    def summary_fields(self) -> dict[str, Any]:
        """The settings a run's summary states (summary.json): strategy, params, risk, fill, fee."""
        return {"strategy": self.strategy.name, "params": {k: str(v) for k, v in self.strategy.params.items()},
                "risk": self.risk_mode, "fill": str(self.execution.fill), "fee_bps": str(self.execution.taker_fee_bps)}


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, PurePath):
        return str(obj)
    raise NotImplementedError(f"cannot serialise {type(obj).__name__} in a run configuration")


def to_spec(cfg: RunConfig) -> dict[str, Any]:
    """The tree as JSON-ready builtins (Decimals as exact strings): the run spec."""
    return msgspec.to_builtins(cfg, enc_hook=_enc_hook)  # type: ignore[no-any-return]


def from_spec(spec: dict[str, Any]) -> RunConfig:
    """The tree back from :func:`to_spec`'s output (every field typed and checked), strategy
    parameters converted to the types the strategy declares."""
    # start-up time: the registry imports every built-in strategy; only when a spec is read
    from claire.strategy.base import coerce_params
    from claire.strategy.registry import load_strategy

    cfg = msgspec.convert(spec, RunConfig)
    params = coerce_params(load_strategy(cfg.strategy.name), cfg.strategy.params)
    return msgspec.structs.replace(cfg, strategy=msgspec.structs.replace(cfg.strategy, params=params))
