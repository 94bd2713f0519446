"""Builds realistic chains of events with the real constructors of claire.events."""

from __future__ import annotations

import uuid
from decimal import Decimal

from claire.events import (
    Alert,
    AlertLevel,
    CheckResult,
    Liquidity,
    Order,
    OrderResult,
    OrderStatus,
    OrderType,
    PortfolioSnapshot,
    PositionSide,
    PositionState,
    RiskAction,
    RiskCheck,
    RiskEvent,
    Side,
    Signal,
)

T0 = 1_735_689_600_000_000_000  # 2025-01-01T00:00:00Z
MS = 1_000_000


def uid() -> str:
    return str(uuid.uuid4())


def signal(
    ts: int = T0,
    symbol: str = "BTCUSDT",
    price: str = "65000.01",
    side: Side = Side.BUY,
    sid: str | None = None,
    **kw,
) -> Signal:
    sid = sid or uid()
    kw.setdefault(
        "metadata",
        {
            "rsi": 61.5,
            "macd": 12.25,
            "macd_signal": 10.5,
            "macd_hist": 1.75,
            "bb_upper": 66000.0,
            "bb_lower": 64000.0,
            "bb_position": 0.5,
            "reason": "test",
        },
    )
    return Signal(
        id=sid,
        ts_event=ts,
        ts_recv=ts,
        correlation_id=sid,
        symbol=symbol,
        side=side,
        price=Decimal(price),
        confidence=Decimal("0.8"),
        strategy="momentum",
        strategy_version="1.2.3",
        market_ts=ts,
        **kw,
    )


def order(
    sig: Signal,
    ts: int | None = None,
    quantity: str = "0.1",
    limit: str | None = None,
    oid: str | None = None,
) -> Order:
    ts = ts if ts is not None else sig.ts_event + 2 * MS
    return Order(
        id=oid or uid(),
        ts_event=ts,
        ts_recv=ts,
        correlation_id=sig.id,
        causation_id=sig.id,
        symbol=sig.symbol,
        side=sig.side,
        quantity=Decimal(quantity),
        order_type=OrderType.LIMIT if limit else OrderType.MARKET,
        price=Decimal(limit) if limit else None,
        signal_id=sig.id,
        reference_price=sig.price,
        strategy=sig.strategy,
    )


def fill(
    o: Order,
    price: str = "65010.00",
    quantity: str | None = None,
    status=OrderStatus.FILLED,
    ts: int | None = None,
    fid: str | None = None,
    cum: str | None = None,
) -> OrderResult:
    ts = ts if ts is not None else o.ts_event + 5 * MS
    q = Decimal(quantity) if quantity else o.quantity
    return OrderResult(
        id=fid or uid(),
        ts_event=ts,
        ts_recv=ts,
        correlation_id=o.signal_id,
        causation_id=o.id,
        order_id=o.id,
        signal_id=o.signal_id,
        symbol=o.symbol,
        side=o.side,
        status=status,
        order_type=o.order_type,
        quantity=q,
        price=Decimal(price),
        order_quantity=o.quantity,
        cum_quantity=Decimal(cum) if cum else q,
        leaves_quantity=o.quantity - (Decimal(cum) if cum else q),
        fee=(q * Decimal(price) * Decimal("0.001")).quantize(Decimal("0.00000001")),
        liquidity=Liquidity.TAKER,
        reference_price=o.reference_price,
        latency_ns=3 * MS,
    )


def reject(
    o: Order,
    status="rejected",
    reason: str = "insufficient liquidity",
    ts: int | None = None,
    rid: str | None = None,
) -> OrderResult:
    ts = ts if ts is not None else o.ts_event + 5 * MS
    return OrderResult(
        id=rid or uid(),
        ts_event=ts,
        ts_recv=ts,
        order_id=o.id,
        signal_id=o.signal_id,
        symbol=o.symbol,
        side=o.side,
        status=status,
        order_type=o.order_type,
        reason=reason,
    )


def snapshot(
    ts: int, equity: str = "100000", positions: tuple = (), sid: str | None = None, reason: str = "periodic"
) -> PortfolioSnapshot:
    eq = Decimal(equity)
    exp = sum((p.exposure for p in positions), Decimal(0))
    return PortfolioSnapshot(
        id=sid or uid(),
        ts_event=ts,
        ts_recv=ts,
        start_cash=Decimal("100000"),
        cash=eq - exp,
        equity=eq,
        realized_pnl=Decimal("12.34"),
        unrealized_pnl=Decimal("-1.5"),
        fees=Decimal("6.5"),
        total_exposure=exp,
        total_exposure_pct=exp / eq,
        high_water_mark=max(eq, Decimal("100000")),
        drawdown_pct=max(Decimal(0), (Decimal("100000") - eq) / Decimal("100000")),
        day_start_equity=Decimal("100000"),
        daily_pnl=eq - Decimal("100000"),
        num_positions=len(positions),
        positions=positions,
        reason=reason,
    )


def position(
    symbol: str = "BTCUSDT", qty: str = "0.1", avg: str = "65010", mark: str = "65100", ts: int = T0
) -> PositionState:
    q, a, m = Decimal(qty), Decimal(avg), Decimal(mark)
    side = PositionSide.LONG if q > 0 else PositionSide.SHORT if q < 0 else PositionSide.FLAT
    return PositionState(
        symbol=symbol,
        side=side,
        quantity=q,
        avg_price=a,
        mark_price=m,
        cost_basis=q * a,
        unrealized_pnl=q * (m - a),
        realized_pnl=Decimal(0),
        fees=Decimal("6.5"),
        exposure=abs(q) * m,
        opened_ts=ts,
    )


def risk(
    sig: Signal | None = None,
    ts: int = T0,
    passed: bool = False,
    exposure: int = 4850,
    rid: str | None = None,
) -> RiskEvent:
    checks = (
        CheckResult(check=RiskCheck.DATA_QUALITY, passed=True),
        CheckResult(
            check=RiskCheck.TOTAL_EXPOSURE, passed=passed, value=Decimal("0.31"), limit=Decimal("0.30")
        ),
    )
    return RiskEvent(
        id=rid or uid(),
        ts_event=ts,
        ts_recv=ts,
        signal_id=sig.id if sig else None,
        symbol=sig.symbol if sig else None,
        check=RiskCheck.TOTAL_EXPOSURE,
        action=RiskAction.APPROVED if passed else RiskAction.REJECTED,
        passed=passed,
        value=Decimal("0.31"),
        limit=Decimal("0.30"),
        reason="exposure limit exceeded",
        checks=checks,
        portfolio={"current_exposure": exposure, "equity": Decimal("100000.00")},
        config={"MAX_TOTAL_EXPOSURE_PCT": Decimal("0.30")},
    )


def alert(ts: int = T0, aid: str | None = None, level=AlertLevel.WARNING, **details) -> Alert:
    return Alert(
        id=aid or uid(),
        ts_event=ts,
        ts_recv=ts,
        level=level,
        source="risk",
        code="DRAWDOWN",
        message="drawdown above 3 %",
        details=details,
    )


def chain(i: int, symbol: str = "BTCUSDT", limit: bool = False) -> list:
    """One realistic chain: signal, risk decision, order, fill, snapshot."""
    ts = T0 + i * 60_000 * MS
    s = signal(ts, symbol=symbol)
    o = order(s, limit="65020.5" if limit else None)
    f = fill(o)
    pos = position(symbol=symbol, ts=f.ts_event)
    return [
        s,
        risk(s, ts=ts + MS, passed=True),
        o,
        f,
        snapshot(f.ts_event + MS, positions=(pos,), reason="fill"),
    ]
