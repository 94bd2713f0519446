"""The command line's run options -> the configuration tree, every bad value named at once.

``claire backtest``, ``paper``, ``up`` and ``spec`` (and the benchmarks, which measure what the
command runs) build their configuration here, from :class:`~claire.config.options.RunOptions`.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path

import msgspec

from claire.config.env import ConfigError, bus_url, database_url, environment, risk_config_from_env
from claire.config.options import RunOptions
from claire.config.tree import (
    TOPOLOGIES,
    DataSettings,
    PortfolioSettings,
    RunConfig,
    RuntimeSettings,
    StrategySettings,
)
from claire.execution.config import ExecutionConfig, FillMode
from claire.risk.config import RiskConfig

FILLS = tuple(m.value for m in FillMode)
RISK_MODES = ("default", "none")


class _Problems:
    """Collects every bad value instead of stopping at the first."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, text: str) -> None:
        self.items.append(text)

    def dec(self, name: str, text: str | None) -> Decimal | None:
        if text is None:
            return None
        try:
            v = Decimal(text)
        except InvalidOperation:
            return self._bad(f"{name} {text!r} is not a number")
        if not v.is_finite():
            return self._bad(f"{name} {text!r} is not a finite number")
        return v

    def dec_min(self, name: str, text: str | None, *, positive: bool = False) -> Decimal | None:
        """``dec``, then > 0 (``positive``) or >= 0."""
        v = self.dec(name, text)
        if v is not None and (v <= 0 if positive else v < 0):
            return self._bad(f"{name} must be {'> 0' if positive else '>= 0'}, got {text}")
        return v

    def _bad(self, text: str) -> None:
        self.items.append(text)
        return None


def _speed(text: str, p: _Problems) -> float | None:
    if text.strip().lower() in ("max", "inf"):
        return None
    try:
        v: Decimal | None = Decimal(text)
    except InvalidOperation:
        v = None
    if v is None or v.is_nan() or v <= 0:
        p.add(f"--speed must be > 0 or 'max', got {text!r}")
        return None
    return None if v.is_infinite() else float(v)


SOURCES = ("files", "mexc")


def _symbols(o: RunOptions, p: _Problems) -> list[str]:
    """``--source mexc --symbols A,B``: the symbols (upper case, in order, once each)."""
    if o.source not in SOURCES:
        p.add(f"--source must be one of {', '.join(SOURCES)}, not {o.source!r}")
        return []
    if o.source == "files":
        if o.symbols:
            p.add("--symbols goes with --source mexc (files name their symbols, or --symbol)")
        return []
    syms = list(dict.fromkeys(s.strip().upper() for s in (o.symbols or "").split(",") if s.strip()))
    if not syms:
        p.add("--source mexc needs --symbols, e.g. --symbols BTCUSDT,ETHUSDT")
    for s in syms:
        if not s.isalnum():
            p.add(f"--symbols: {s!r} is not a MEXC symbol (letters and digits, e.g. BTCUSDT)")
    if o.data or o.synthetic:
        p.add("--source mexc takes no --data or --synthetic (replay a capture with --data DIR)")
    return syms


def _source(o: RunOptions, p: _Problems) -> None:
    if o.source == "mexc":
        return
    if o.synthetic < 0:
        p.add(f"--synthetic must be >= 0, got {o.synthetic}")
    elif not o.data and not o.synthetic:
        p.add("give --data FILE (repeatable) or --synthetic N")
    elif o.data and o.synthetic:
        p.add("give either --data or --synthetic, not both")
    for f in o.data:
        if not Path(f).exists():
            p.add(f"market data file not found: {f}")


def _strategy(o: RunOptions, p: _Problems) -> StrategySettings:
    # start-up time: the registry imports every built-in strategy; only when one is resolved
    from claire.strategy.registry import load_strategy, strategy_params

    try:
        params = strategy_params(load_strategy(o.strategy), o.param)
    except ValueError as exc:
        p.add(str(exc))
        params = {}
    return StrategySettings(name=o.strategy, params=params)


def _execution(o: RunOptions, p: _Problems) -> ExecutionConfig:
    if o.fill not in FILLS:
        p.add(f"--fill must be next_open or close, got {o.fill!r}")
    vol: Decimal | None = None
    if o.max_volume_share.strip().lower() not in ("none", "off", "0"):
        vol = p.dec("--max-volume-share", o.max_volume_share)
        if vol is not None and not (0 < vol <= 1):
            p.add("--max-volume-share must be within (0, 1] or 'none'")
    fee = p.dec_min("--fee-bps", o.fee_bps)
    maker = p.dec_min("--maker-fee-bps", o.maker_fee_bps)
    slip = p.dec_min("--slippage-bps", o.slippage_bps)
    if p.items:
        return ExecutionConfig()
    taker = fee if fee is not None else Decimal(0)
    return ExecutionConfig(fill=FillMode(o.fill), slippage_bps=slip or Decimal(0), taker_fee_bps=taker,
                           maker_fee_bps=maker if maker is not None else taker, max_volume_share=vol)


def _risk(o: RunOptions, execution: ExecutionConfig, env: dict[str, str], p: _Problems) -> RiskConfig:
    if o.risk not in RISK_MODES:
        p.add(f"--risk must be default or none, got {o.risk!r}")
    q = p.dec("--quantity", o.quantity)
    if q is not None and q <= 0:
        p.add("--quantity must be > 0")
        q = None
    try:
        base = risk_config_from_env(env)
    except ConfigError as exc:
        p.items.extend(exc.problems)
        return RiskConfig()
    # the gate's fee and slippage are the execution model's: stated once, in `execution`
    return msgspec.structs.replace(base, enabled=o.risk != "none", quantity=q,
                                   fee_bps=execution.taker_fee_bps, expected_slippage_bps=execution.slippage_bps)


def _runtime(o: RunOptions, env: dict[str, str], database_from_env: bool, bus_from_env: bool,
             p: _Problems) -> RuntimeSettings:
    speed = _speed(o.speed, p)
    if o.signal_replicas < 1:
        p.add(f"--signal-replicas must be >= 1, got {o.signal_replicas}")
    if o.topology not in TOPOLOGIES:
        p.add(f"--topology must be one of {', '.join(TOPOLOGIES)}, not {o.topology!r}")
    db = o.db or (database_url(env) if database_from_env else None)
    bus = o.redis or (bus_url(env) if bus_from_env else None)
    return RuntimeSettings(run_id=o.run_id, out=str(o.out) if o.out is not None else None, database_url=db,
                           bus_url=bus, partitions=o.signal_replicas, topology=o.topology,  # type: ignore[arg-type]
                           speed=speed)


def make_config(options: RunOptions, env: dict[str, str] | None = None, *, database_from_env: bool = False,
                bus_from_env: bool = False) -> RunConfig:
    """The configuration tree of a run from its options and the environment: the risk limits,
    and without --db / --redis ``CLAIRE_DATABASE_URL`` (``database_from_env``) and
    ``CLAIRE_REDIS_URL`` (``bus_from_env``) or their defaults (``env`` default: :func:`environment`).

    Only values are checked here (no file is opened, no server asked); every bad one, flag or
    variable, is named in one :class:`ConfigError`."""
    env = environment() if env is None else env
    p = _Problems()
    symbols = _symbols(options, p)
    _source(options, p)
    strategy = _strategy(options, p)
    execution = _execution(options, p)
    risk = _risk(options, execution, env, p)
    cash = p.dec_min("--start-cash", options.start_cash, positive=True)
    runtime = _runtime(options, env, database_from_env, bus_from_env, p)
    if p.items:
        raise ConfigError(p.items)
    return RunConfig(
        strategy=strategy,
        data=DataSettings(source=options.source, symbols=symbols, paths=[str(f) for f in options.data],
                          symbol=options.symbol, synthetic=options.synthetic),
        risk=risk,
        execution=execution,
        portfolio=PortfolioSettings(start_cash=cash or Decimal(0)),
        runtime=runtime,
    )
