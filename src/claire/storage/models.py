"""The relational schema (SQLAlchemy 2 declarative), consolidated from seeds 000-004.

The migrations in ``claire.storage.migrations`` create exactly this schema (a test compares
them); docs/database.md explains each table and where it departs from the seeds.

Conventions: primary keys of event tables are the events' string ids; every event row names
its run; money, prices and quantities are exact decimals (:class:`~claire.storage.types.Dec`);
times are UTC ``TIMESTAMP WITH TIME ZONE`` converted from the events' int nanoseconds; enums
are lower-case strings guarded by CHECK constraints (as the events spell them).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    column,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from claire.events import FILL_STATUS_VALUES
from claire.storage.types import (
    BlobType,
    Dec,
    JSONType,
    UTCDateTime,
    between,
    not_negative,
    one_of,
    positive,
    side_matches_quantity,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Allowed values (frozen here and in the migrations; a test checks they cover claire.events).
RUN_MODES = ("backtest", "paper", "replay", "test")
SIDES = ("buy", "sell")
ORDER_TYPES = ("market", "limit")
TIME_IN_FORCE = ("gtc", "ioc", "fok", "day")
ORDER_STATUSES = ("pending", "partially_filled", "filled", "rejected", "cancelled")
OPEN_ORDER_STATUSES = ("pending", "partially_filled")
LIQUIDITY = ("maker", "taker", "none")
POSITION_SIDES = ("long", "short", "flat")
RISK_CHECKS = (
    "data_quality",
    "position_limit",
    "daily_drawdown",
    "total_exposure",
    "circuit_breaker",
    "slippage",
    "spread",
    "sizing",
    "all",
    "state",
)
RISK_ACTIONS = ("approved", "resized", "rejected", "delayed", "halted", "circuit_broken", "resumed")
TRADING_STATES = ("active", "halted", "circuit_broken")
ALERT_LEVELS = ("info", "warning", "critical")
TREND_DIRECTIONS = ("up", "down", "sideways")
PERIOD_TYPES = ("hour", "day", "week", "month", "run")
SERVICE_STATES = ("starting", "running", "degraded", "stopped", "failed")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        Decimal: Dec(),
        datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
        bytes: BlobType,
    }


metadata = Base.metadata


def _now():
    return func.now()


# --- 1.0: core ---------------------------------------------------------------------------


class SchemaVersion(Base):
    """One row per applied schema version (1.0.0, 2.0.0, 3.0.0), written by the migrations."""

    __tablename__ = "schema_version"
    version: Mapped[str] = mapped_column(String(20), primary_key=True)
    revision: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text)
    applied_at: Mapped[datetime] = mapped_column(server_default=_now())


class Run(Base):
    """A backtest, replay or paper session; every event row names the run that wrote it."""

    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    mode: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(server_default=_now())
    ended_at: Mapped[datetime | None]
    config: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'"))
    description: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (one_of("mode", RUN_MODES), Index(None, "started_at"))


class SignalRow(Base):
    __tablename__ = "signals"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    ts: Mapped[datetime]
    recv_ts: Mapped[datetime]
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(8))
    price: Mapped[Decimal]
    confidence: Mapped[Decimal]
    strategy: Mapped[str] = mapped_column(String(128))
    strategy_version: Mapped[str] = mapped_column(String(32))
    quantity: Mapped[Decimal | None]
    reduce_only: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    market_ts: Mapped[datetime | None]
    correlation_id: Mapped[str | None] = mapped_column(String(128))
    causation_id: Mapped[str | None] = mapped_column(String(128))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", server_default=text("'{}'"))
    created_at: Mapped[datetime] = mapped_column(server_default=_now())

    __table_args__ = (
        one_of("side", SIDES),
        positive("price"),
        between("confidence", 0, 1),
        positive("quantity"),
        Index("ix_signals_symbol_ts", "symbol", text("ts DESC")),
        Index("ix_signals_run_id_ts", "run_id", "ts"),
        Index(None, "ts"),
    )


class OrderRow(Base):
    __tablename__ = "orders"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    signal_id: Mapped[str] = mapped_column(ForeignKey("signals.id"))
    ts: Mapped[datetime]
    recv_ts: Mapped[datetime]
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(8))
    order_type: Mapped[str] = mapped_column(String(8))
    time_in_force: Mapped[str] = mapped_column(String(8))
    quantity: Mapped[Decimal]
    price: Mapped[Decimal | None]
    reference_price: Mapped[Decimal]
    reduce_only: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    strategy: Mapped[str] = mapped_column(String(128), server_default="")
    status: Mapped[str] = mapped_column(String(20), server_default="pending")
    filled_quantity: Mapped[Decimal] = mapped_column(server_default=text("0"))
    avg_fill_price: Mapped[Decimal | None]
    fees: Mapped[Decimal] = mapped_column(server_default=text("0"))
    reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime | None]
    correlation_id: Mapped[str | None] = mapped_column(String(128))
    causation_id: Mapped[str | None] = mapped_column(String(128))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", server_default=text("'{}'"))
    created_at: Mapped[datetime] = mapped_column(server_default=_now())

    __table_args__ = (
        one_of("side", SIDES),
        one_of("order_type", ORDER_TYPES),
        one_of("time_in_force", TIME_IN_FORCE),
        one_of("status", ORDER_STATUSES),
        positive("quantity"),
        positive("price"),
        positive("reference_price"),
        not_negative("filled_quantity"),
        not_negative("fees"),
        positive("avg_fill_price"),
        CheckConstraint(
            "(order_type = 'market' AND price IS NULL) OR (order_type = 'limit' AND price IS NOT NULL)",
            name="price_by_type",
        ),
        Index(None, "signal_id"),
        Index("ix_orders_status_ts", "status", text("ts DESC")),
        Index("ix_orders_run_id_ts", "run_id", "ts"),
        Index(None, "ts"),
        Index(
            "ix_orders_open",
            "run_id",
            "symbol",
            postgresql_where=text("status IN ('pending', 'partially_filled')"),
            sqlite_where=text("status IN ('pending', 'partially_filled')"),
        ),
    )


class TradeRow(Base):
    """One row per fill (an OrderResult with status filled / partially_filled)."""

    __tablename__ = "trades"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"))
    signal_id: Mapped[str] = mapped_column(String(128))
    ts: Mapped[datetime]
    recv_ts: Mapped[datetime]
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(8))
    order_type: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(20))
    quantity: Mapped[Decimal]
    price: Mapped[Decimal]
    notional: Mapped[Decimal]
    fee: Mapped[Decimal] = mapped_column(server_default=text("0"))
    fee_asset: Mapped[str] = mapped_column(String(16), server_default="USDT")
    liquidity: Mapped[str] = mapped_column(String(8), server_default="none")
    order_quantity: Mapped[Decimal | None]
    cum_quantity: Mapped[Decimal | None]
    leaves_quantity: Mapped[Decimal | None]
    reference_price: Mapped[Decimal | None]
    slippage_bps: Mapped[Decimal | None]
    latency_ms: Mapped[Decimal | None]
    correlation_id: Mapped[str | None] = mapped_column(String(128))
    causation_id: Mapped[str | None] = mapped_column(String(128))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", server_default=text("'{}'"))
    created_at: Mapped[datetime] = mapped_column(server_default=_now())

    __table_args__ = (
        one_of("side", SIDES),
        one_of("order_type", ORDER_TYPES),
        one_of("status", FILL_STATUS_VALUES),
        one_of("liquidity", LIQUIDITY),
        positive("quantity"),
        positive("price"),
        positive("notional"),
        not_negative("fee"),
        positive("reference_price"),
        not_negative("cum_quantity"),
        not_negative("leaves_quantity"),
        Index(None, "order_id"),
        Index("ix_trades_run_id_ts", "run_id", "ts"),
        Index("ix_trades_symbol_ts", "symbol", text("ts DESC")),
    )


class PositionRow(Base):
    """The latest state of each position of a run, kept from the portfolio snapshots."""

    __tablename__ = "positions"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    side: Mapped[str] = mapped_column(String(8))
    quantity: Mapped[Decimal]
    avg_price: Mapped[Decimal]
    mark_price: Mapped[Decimal]
    cost_basis: Mapped[Decimal]
    unrealized_pnl: Mapped[Decimal]
    realized_pnl: Mapped[Decimal]
    fees: Mapped[Decimal]
    exposure: Mapped[Decimal]
    exposure_pct: Mapped[Decimal]
    opened_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]
    snapshot_id: Mapped[str] = mapped_column(String(128))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", server_default=text("'{}'"))

    __table_args__ = (
        one_of("side", POSITION_SIDES),
        side_matches_quantity(),
        not_negative("avg_price"),
        not_negative("mark_price"),
        not_negative("fees"),
        not_negative("exposure"),
        not_negative("exposure_pct"),
        Index(
            "ix_positions_open",
            "symbol",
            "run_id",
            postgresql_where=text("side <> 'flat'"),
            sqlite_where=text("side <> 'flat'"),
        ),
    )


class PortfolioSnapshotRow(Base):
    __tablename__ = "portfolio_snapshots"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    ts: Mapped[datetime]
    recv_ts: Mapped[datetime]
    reason: Mapped[str] = mapped_column(String(32))
    start_cash: Mapped[Decimal]
    cash: Mapped[Decimal]
    equity: Mapped[Decimal]
    realized_pnl: Mapped[Decimal]
    unrealized_pnl: Mapped[Decimal]
    fees: Mapped[Decimal]
    total_exposure: Mapped[Decimal]
    total_exposure_pct: Mapped[Decimal]
    high_water_mark: Mapped[Decimal]
    drawdown_pct: Mapped[Decimal]
    day_start_equity: Mapped[Decimal]
    daily_pnl: Mapped[Decimal]
    num_positions: Mapped[int] = mapped_column(Integer)
    positions: Mapped[dict[str, Any]] = mapped_column(JSONType, server_default=text("'[]'"))
    created_at: Mapped[datetime] = mapped_column(server_default=_now())

    __table_args__ = (
        positive("start_cash"),
        not_negative("fees"),
        not_negative("total_exposure"),
        not_negative("total_exposure_pct"),
        not_negative("high_water_mark"),
        not_negative("drawdown_pct"),
        CheckConstraint(column("num_positions") >= 0, name="num_positions_not_negative"),
        Index("ix_portfolio_snapshots_run_id_ts", "run_id", text("ts DESC")),
        Index(None, "ts"),
    )


class DeadLetter(Base):
    """What could not be stored: undecodable payloads, invalid events, orphans past timeout."""

    __tablename__ = "dead_letters"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    digest: Mapped[str] = mapped_column(String(128), unique=True)
    run_id: Mapped[str | None] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(128))
    event_type: Mapped[str | None] = mapped_column(String(32))
    event_id: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    payload: Mapped[bytes]
    first_seen: Mapped[datetime] = mapped_column(server_default=_now())

    __table_args__ = (Index("ix_dead_letters_run_id_first_seen", "run_id", "first_seen"),)


class PendingEvent(Base):
    """Children held until their parent row arrives (a fill before its order, ...)."""

    __tablename__ = "pending_events"
    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    parent_table: Mapped[str] = mapped_column(String(32))
    parent_id: Mapped[str] = mapped_column(String(128))
    event_type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[bytes]
    first_seen: Mapped[datetime] = mapped_column(server_default=_now())

    __table_args__ = (
        Index(None, "parent_id"),
        Index("ix_pending_events_run_id_first_seen", "run_id", "first_seen"),
    )


class Checkpoint(Base):
    """Where a run can resume: committed in the same transaction as the events before it."""

    __tablename__ = "checkpoints"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[bytes]
    updated_at: Mapped[datetime] = mapped_column(server_default=_now())

    __table_args__ = (CheckConstraint(column("position") >= 0, name="position_not_negative"),)


# --- 2.0: risk and execution analysis ------------------------------------------------------


class RiskEventRow(Base):
    __tablename__ = "risk_events"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    ts: Mapped[datetime]
    recv_ts: Mapped[datetime]
    signal_id: Mapped[str | None] = mapped_column(String(128))
    order_id: Mapped[str | None] = mapped_column(String(128))
    symbol: Mapped[str | None] = mapped_column(String(32))
    check_type: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(20))
    passed: Mapped[bool] = mapped_column(Boolean)
    check_value: Mapped[Decimal | None]
    check_limit: Mapped[Decimal | None]
    reason: Mapped[str] = mapped_column(Text)
    trading_state: Mapped[str] = mapped_column(String(20))
    requested_quantity: Mapped[Decimal | None]
    approved_quantity: Mapped[Decimal | None]
    details: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'"))
    correlation_id: Mapped[str | None] = mapped_column(String(128))
    causation_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(server_default=_now())

    __table_args__ = (
        one_of("check_type", RISK_CHECKS),
        one_of("action", RISK_ACTIONS),
        one_of("trading_state", TRADING_STATES),
        not_negative("requested_quantity"),
        not_negative("approved_quantity"),
        Index("ix_risk_events_check_type_ts", "check_type", text("ts DESC")),
        Index("ix_risk_events_run_id_ts", "run_id", "ts"),
        Index(None, "signal_id"),
        Index(None, "ts"),
        Index(
            "ix_risk_events_details",
            "details",
            postgresql_using="gin",
            postgresql_ops={"details": "jsonb_path_ops"},
        ).ddl_if(dialect="postgresql"),
    )


class ExecutionAnalysisRow(Base):
    """One row per fill: latencies, expected vs fill price, slippage and a quality score."""

    __tablename__ = "execution_analysis"
    trade_id: Mapped[str] = mapped_column(ForeignKey("trades.id"), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    order_id: Mapped[str] = mapped_column(String(128))
    signal_id: Mapped[str] = mapped_column(String(128))
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(8))
    signal_ts: Mapped[datetime | None]
    order_ts: Mapped[datetime | None]
    execution_ts: Mapped[datetime]
    signal_to_order_ms: Mapped[Decimal | None]
    order_to_execution_ms: Mapped[Decimal | None]
    total_latency_ms: Mapped[Decimal | None]
    exchange_latency_ms: Mapped[Decimal | None]
    expected_price: Mapped[Decimal | None]
    execution_price: Mapped[Decimal]
    slippage_bps: Mapped[Decimal | None]
    slippage_reason: Mapped[str | None] = mapped_column(String(100))
    price_before: Mapped[Decimal | None]
    price_after: Mapped[Decimal | None]
    market_impact_bps: Mapped[Decimal | None]
    execution_quality_score: Mapped[Decimal | None]
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", server_default=text("'{}'"))

    __table_args__ = (
        positive("expected_price"),
        positive("execution_price"),
        positive("price_before"),
        positive("price_after"),
        between("execution_quality_score", 0, 1),
        Index("ix_execution_analysis_quality", text("execution_quality_score DESC")),
        Index(None, "run_id"),
    )


# --- 3.0: analytics ----------------------------------------------------------------------


class PerformanceMetricRow(Base):
    __tablename__ = "performance_metrics"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    period_type: Mapped[str] = mapped_column(String(8), primary_key=True)
    period_start: Mapped[datetime] = mapped_column(primary_key=True)
    period_end: Mapped[datetime]
    total_return_pct: Mapped[Decimal | None]
    sharpe_ratio: Mapped[Decimal | None]
    sortino_ratio: Mapped[Decimal | None]
    win_rate: Mapped[Decimal | None]
    profit_factor: Mapped[Decimal | None]
    avg_win: Mapped[Decimal | None]
    avg_loss: Mapped[Decimal | None]
    max_drawdown_pct: Mapped[Decimal | None]
    max_drawdown_duration_hours: Mapped[Decimal | None]
    total_trades: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    total_volume: Mapped[Decimal] = mapped_column(server_default=text("0"))
    total_fees: Mapped[Decimal] = mapped_column(server_default=text("0"))
    avg_exposure_pct: Mapped[Decimal | None]
    max_exposure_pct: Mapped[Decimal | None]
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", server_default=text("'{}'"))
    computed_at: Mapped[datetime] = mapped_column(server_default=_now())

    __table_args__ = (
        one_of("period_type", PERIOD_TYPES),
        CheckConstraint(column("period_end") >= column("period_start"), name="period_order"),
        between("win_rate", 0, 1),
        not_negative("profit_factor"),
        not_negative("max_drawdown_pct"),
        not_negative("max_drawdown_duration_hours"),
        CheckConstraint(column("total_trades") >= 0, name="total_trades_not_negative"),
        not_negative("total_volume"),
        not_negative("total_fees"),
        not_negative("avg_exposure_pct"),
        not_negative("max_exposure_pct"),
    )


class MarketConditionRow(Base):
    """The market at each signal (A3), from the signal's price and indicator metadata."""

    __tablename__ = "market_conditions"
    signal_id: Mapped[str] = mapped_column(ForeignKey("signals.id", ondelete="CASCADE"), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    symbol: Mapped[str] = mapped_column(String(32))
    ts: Mapped[datetime]
    price: Mapped[Decimal]
    volume_24h: Mapped[Decimal | None]
    volatility_1h: Mapped[Decimal | None]
    trend_direction: Mapped[str | None] = mapped_column(String(10))
    trend_strength: Mapped[Decimal | None]
    spread_bps: Mapped[Decimal | None]
    order_book_depth: Mapped[Decimal | None]
    rsi_14: Mapped[Decimal | None]
    macd: Mapped[Decimal | None]
    macd_signal: Mapped[Decimal | None]
    macd_hist: Mapped[Decimal | None]
    bb_position: Mapped[Decimal | None]
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", server_default=text("'{}'"))

    __table_args__ = (
        positive("price"),
        not_negative("volume_24h"),
        not_negative("volatility_1h"),
        one_of("trend_direction", TREND_DIRECTIONS),
        between("trend_strength", 0, 1),
        not_negative("spread_bps"),
        not_negative("order_book_depth"),
        between("rsi_14", 0, 100),
        Index("ix_market_conditions_symbol_ts", "symbol", text("ts DESC")),
        Index(None, "run_id"),
    )


class AlertRow(Base):
    __tablename__ = "alerts"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    ts: Mapped[datetime]
    recv_ts: Mapped[datetime]
    level: Mapped[str] = mapped_column(String(10))
    source: Mapped[str] = mapped_column(String(128))
    code: Mapped[str] = mapped_column(String(128))
    message: Mapped[str] = mapped_column(Text)
    related_signal_id: Mapped[str | None] = mapped_column(String(128))
    related_order_id: Mapped[str | None] = mapped_column(String(128))
    related_trade_id: Mapped[str | None] = mapped_column(String(128))
    category: Mapped[str | None] = mapped_column(String(32))  # 4.0: risk, data, service, execution, ...
    occurrences: Mapped[int] = mapped_column(Integer, server_default=text("1"))  # 4.0: repeats in the cool-down
    last_seen: Mapped[datetime | None]  # 4.0: the last repeat
    acknowledged: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    acknowledged_at: Mapped[datetime | None]
    details: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'"))
    correlation_id: Mapped[str | None] = mapped_column(String(128))
    causation_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(server_default=_now())

    __table_args__ = (
        one_of("level", ALERT_LEVELS),
        Index("ix_alerts_run_id_ts", "run_id", "ts"),
        Index("ix_alerts_level_ts", "level", text("ts DESC")),
        Index("ix_alerts_category_ts", "category", "ts"),
        Index(
            "ix_alerts_unacknowledged",
            "ts",
            postgresql_where=text("NOT acknowledged"),
            sqlite_where=text("NOT acknowledged"),
        ),
    )


class StrategyVersionRow(Base):
    __tablename__ = "strategy_versions"
    strategy: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[str] = mapped_column(String(32), primary_key=True)
    first_run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id"))
    first_seen: Mapped[datetime]
    params: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'"))
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=_now())


# --- 4.0: operations ---------------------------------------------------------------------


class ServiceStatusRow(Base):
    """The last heartbeat of each component of a run (paper: one; distributed: one per service
    replica): what the live view, `papertest status` and the alerts read, from the database alone."""

    __tablename__ = "service_status"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    service: Mapped[str] = mapped_column(String(64), primary_key=True)
    replica: Mapped[int] = mapped_column(Integer, primary_key=True, server_default=text("0"))
    pid: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    ready: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    heartbeat_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    events_processed: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    last_event_ts: Mapped[datetime | None]
    lag_ms: Mapped[Decimal | None]
    restarts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    details: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'"))

    __table_args__ = (one_of("status", SERVICE_STATES), not_negative("lag_ms"))


# Tables in dependency order (parents first), and the views the migrations create.
TABLES = [t.name for t in metadata.sorted_tables]
EVENT_TABLES = ("signals", "orders", "trades", "portfolio_snapshots", "risk_events", "alerts")
VIEWS = ("open_positions", "open_orders")

OPEN_POSITIONS_VIEW = (
    "CREATE VIEW open_positions AS "
    "SELECT run_id, symbol, side, quantity, avg_price, mark_price, exposure, exposure_pct, "
    "unrealized_pnl, realized_pnl, opened_at, updated_at FROM positions WHERE side <> 'flat'"
)
OPEN_ORDERS_VIEW = (
    "CREATE VIEW open_orders AS "
    "SELECT id, run_id, signal_id, ts, symbol, side, order_type, quantity, price, filled_quantity, status "
    "FROM orders WHERE status IN ('pending', 'partially_filled')"
)
