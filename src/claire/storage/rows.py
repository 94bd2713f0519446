"""Events -> table rows (plain dicts of Python values; backend conversion happens later).

Every function here validates what the database would otherwise reject (non-finite numbers,
a fill without a positive price, an unknown status) and raises :class:`RowError` with a reason
that ends up in ``dead_letters``.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from claire.events import (
    Alert,
    Order,
    OrderResult,
    PortfolioSnapshot,
    RiskEvent,
    Signal,
)
from claire.storage.types import dt_from_ns

ZERO = Decimal(0)
ONE = Decimal(1)
BPS = Decimal(10_000)
NS_PER_MS = Decimal(1_000_000)
Q4 = Decimal("0.0001")
INT4_MAX = 2**31 - 1  # INTEGER columns

FILL = ("filled", "partially_filled")
TERMINAL = ("rejected", "cancelled")


class RowError(ValueError):
    """An event that cannot become a row; the message is the dead-letter reason."""


_last_dt: tuple[int | None, Any] = (None, None)


def _dt(ns: int | None) -> Any:
    """:func:`dt_from_ns`, remembering the last value (an event's times repeat: received =
    event time, a fill's time in its trade and execution rows...)."""
    global _last_dt
    last = _last_dt
    if ns == last[0]:
        return last[1]
    value = dt_from_ns(ns)
    _last_dt = (ns, value)
    return value


_ENUM_TEXT: dict[str, str] = {}


def enum_value(value: Any) -> str:
    if isinstance(value, str):  # str and StrEnum members (equal keys give equal text)
        text = _ENUM_TEXT.get(value)
        if text is None:
            text = str(getattr(value, "value", value)).strip().lower()
            if len(_ENUM_TEXT) > 4096:
                _ENUM_TEXT.clear()
            _ENUM_TEXT[value] = text
        return text
    return str(getattr(value, "value", value)).strip().lower()


def dec(value: Any, name: str, *, positive: bool = False, not_negative: bool = False) -> Decimal | None:
    if value is None:
        return None
    if type(value) is Decimal and value.is_finite():  # the common case, fast
        if positive:
            if value > 0:
                return value
        elif not not_negative or value >= 0:
            return value
    if not isinstance(value, Decimal):
        if isinstance(value, bool):
            raise RowError(f"`{name}` must be a number, got {value!r}")
        try:
            value = Decimal(str(value))
        except (InvalidOperation, ValueError) as exc:
            raise RowError(f"`{name}` must be a number, got {value!r}") from exc
    if not value.is_finite():
        raise RowError(f"`{name}` must be a finite number, got {value}")
    if positive and not value > 0:
        raise RowError(f"`{name}` must be > 0, got {value}")
    if not_negative and value < 0:
        raise RowError(f"`{name}` must be >= 0, got {value}")
    return value


def req(value: Any, name: str, *, positive: bool = False, not_negative: bool = False) -> Decimal:
    if type(value) is Decimal and value.is_finite():  # the common case, fast
        if positive:
            if value > 0:
                return value
        elif not not_negative or value >= 0:
            return value
    out = dec(value, name, positive=positive, not_negative=not_negative)
    if out is None:
        raise RowError(f"`{name}` is required")
    return out


def as_json(value: Any) -> Any:
    """Plain JSON-able data, Decimals kept (serialised as exact JSON numbers)."""
    return msgspec.to_builtins(value, builtin_types=(Decimal,))


def _meta(value: Any) -> dict[str, Any]:
    if not value:
        return {}
    if not isinstance(value, dict):
        raise RowError("`metadata` must be an object")
    return as_json(value)


def _common(ev: Any, run_id: str) -> dict[str, Any]:
    if not ev.id or not isinstance(ev.id, str):
        raise RowError("`id` must be a non-empty string")
    return {
        "id": ev.id,
        "run_id": run_id,
        "ts": _dt(ev.ts_event),
        "recv_ts": _dt(ev.ts_recv),
        "correlation_id": ev.correlation_id,
        "causation_id": ev.causation_id,
    }


# --- signals ----------------------------------------------------------------------------


def signal_row(ev: Signal, run_id: str) -> dict[str, Any]:
    row = _common(ev, run_id)
    side = enum_value(ev.side)
    if side not in ("buy", "sell"):
        raise RowError(f"unknown side {ev.side!r}")
    conf = req(ev.confidence, "confidence")
    if not ZERO <= conf <= ONE:
        raise RowError(f"`confidence` must be within 0..1, got {conf}")
    row.update(
        symbol=ev.symbol,
        side=side,
        price=req(ev.price, "price", positive=True),
        confidence=conf,
        strategy=ev.strategy,
        strategy_version=str(ev.strategy_version),
        quantity=dec(ev.quantity, "quantity", positive=True),
        reduce_only=bool(ev.reduce_only),
        market_ts=_dt(ev.market_ts) if ev.market_ts else None,
        metadata=_meta(ev.metadata),
    )
    return row


_ALIASES: dict[str, tuple[str, ...]] = {
    "rsi_14": ("rsi_14", "rsi14", "rsi"),
    "macd": ("macd", "macd_line"),
    "macd_signal": ("macd_signal", "macd_signal_line"),
    "macd_hist": ("macd_hist", "macd_histogram"),
    "bb_position": ("bb_position", "bb_pos", "bollinger_position", "bb_pct_b", "percent_b"),
    "volume_24h": ("volume_24h", "volume24h"),
    "volatility_1h": ("volatility_1h", "volatility"),
    "trend_strength": ("trend_strength",),
    "spread_bps": ("spread_bps", "bid_ask_spread_bps"),
    "order_book_depth": ("order_book_depth", "book_depth"),
}
_RANGES: dict[str, tuple[Decimal | None, Decimal | None]] = {
    "rsi_14": (ZERO, Decimal(100)),
    "trend_strength": (ZERO, ONE),
    "volume_24h": (ZERO, None),
    "volatility_1h": (ZERO, None),
    "spread_bps": (ZERO, None),
    "order_book_depth": (ZERO, None),
}
_NESTED = ("indicators", "market", "market_conditions")


# alias -> (column, rank among the column's aliases); the columns, none found yet
_ALIAS_OF = {name: (col, rank) for col, names in _ALIASES.items() for rank, name in enumerate(names)}
_NO_VALUES = dict.fromkeys(_ALIASES)
_TREND = {"bullish": "up", "bearish": "down", "flat": "sideways", "neutral": "sideways"}
_Q6 = Decimal("0.000001")


def _number(v: Any) -> Decimal | None:
    if type(v) is float:  # the common case, fast
        return Decimal(repr(v)) if math.isfinite(v) else None
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, float):
        if not math.isfinite(v):
            return None
        return Decimal(repr(v))
    if isinstance(v, int | Decimal | str):
        try:
            d = Decimal(str(v))
        except (InvalidOperation, ValueError):
            return None
        return d if d.is_finite() else None
    return None


def _flat_metadata(meta: Any) -> dict[str, Any]:
    """The signal's metadata in one level: the nested sections first, the top level over them."""
    flat: dict[str, Any] = {}
    if isinstance(meta, dict):
        for key in _NESTED:
            sub = meta.get(key)
            if isinstance(sub, dict):
                flat.update(sub)
        flat.update({k: v for k, v in meta.items() if k not in _NESTED})
    return flat


def market_condition_row(ev: Signal, run_id: str, price: Decimal, ts: Any = None) -> dict[str, Any]:
    """The market at the signal: its price and the indicator values its metadata carries.

    Indicators are looked up at the top level of ``metadata`` and inside ``indicators`` /
    ``market`` / ``market_conditions`` under common names (``rsi`` or ``rsi_14``, ...). A value
    that is not a number or out of range stays in the row's metadata only.
    """
    flat = _flat_metadata(ev.metadata)
    row: dict[str, Any] = {
        "signal_id": ev.id,
        "run_id": run_id,
        "symbol": ev.symbol,
        "ts": ts if ts is not None else _dt(ev.ts_event),
        "price": price,
    }
    row.update(_NO_VALUES)
    # per column, the value of its first alias (in the order of _ALIASES) that is a number
    found: dict[str, tuple[int, str, Decimal]] = {}
    for key, v in flat.items():
        alias = _ALIAS_OF.get(key)
        if alias is None:
            continue
        col, rank = alias
        cur = found.get(col)
        if cur is not None and cur[0] < rank:
            continue
        val = _number(v)
        if val is not None:
            found[col] = (rank, key, val)
    used: set[str] = set()
    for col, (_, key, val) in found.items():
        lo, hi = _RANGES.get(col, (None, None))
        if (lo is None or val >= lo) and (hi is None or val <= hi):
            row[col] = val
            used.add(key)
    if row["bb_position"] is None:
        up, lo = _number(flat.get("bb_upper")), _number(flat.get("bb_lower"))
        if up is not None and lo is not None and up > lo:
            row["bb_position"] = ((price - lo) / (up - lo)).quantize(_Q6)
    trend = flat.get("trend_direction", flat.get("trend"))
    trend = str(trend).strip().lower() if isinstance(trend, str) else None
    trend = _TREND.get(trend, trend)
    row["trend_direction"] = trend if trend in ("up", "down", "sideways") else None
    if row["trend_direction"]:
        used.update({"trend_direction", "trend"})
    rest = {k: v for k, v in flat.items() if k not in used}
    _why_missing(row, rest, ev.metadata)
    row["metadata"] = as_json(rest)
    return row


#: the columns of the market context (claire.strategy.market_context): a NULL one has its reason
_CONTEXT_COLUMNS = ("volume_24h", "volatility_1h", "trend_direction", "trend_strength", "spread_bps",
                    "order_book_depth")
_NOT_GIVEN = "not in the signal's market context"


def _why_missing(row: dict[str, Any], rest: dict[str, Any], meta: Any) -> None:
    """``rest["unavailable"]``: why each NULL market-context column of a signal the signal engine
    stamped is NULL (it says why for what it could not compute). A signal it did not stamp (the
    risk manager's own, a signal written by hand) has no market context at all, and its metadata
    stays as given."""
    if not (isinstance(meta, dict) and isinstance(meta.get("market"), dict)):
        return
    missing = [c for c in _CONTEXT_COLUMNS if row[c] is None]
    if not missing:
        return
    given = rest.get("unavailable")
    why = dict(given) if isinstance(given, dict) else {}
    for c in missing:
        if c not in why:
            why[c] = why.get("trend_direction", _NOT_GIVEN) if c == "trend_strength" else _NOT_GIVEN
    rest["unavailable"] = why


# --- orders -----------------------------------------------------------------------------


def order_row(ev: Order, run_id: str) -> dict[str, Any]:
    row = _common(ev, run_id)
    side = enum_value(ev.side)
    otype = enum_value(ev.order_type)
    tif = enum_value(ev.time_in_force)
    if side not in ("buy", "sell"):
        raise RowError(f"unknown side {ev.side!r}")
    if otype not in ("market", "limit"):
        raise RowError(f"unknown order type {ev.order_type!r}")
    if tif not in ("gtc", "ioc", "fok", "day"):
        raise RowError(f"unknown time in force {ev.time_in_force!r}")
    price = dec(ev.price, "price", positive=True)
    if otype == "market" and price is not None:
        raise RowError("`price` must be null for market orders")
    if otype == "limit" and price is None:
        raise RowError("`price` is required for limit orders")
    if not ev.signal_id:
        raise RowError("`signal_id` is required")
    row.update(
        signal_id=ev.signal_id,
        symbol=ev.symbol,
        side=side,
        order_type=otype,
        time_in_force=tif,
        quantity=req(ev.quantity, "quantity", positive=True),
        price=price,
        reference_price=req(ev.reference_price, "reference_price", positive=True),
        reduce_only=bool(ev.reduce_only),
        strategy=ev.strategy or "",
        status="pending",
        filled_quantity=ZERO,
        avg_fill_price=None,
        fees=ZERO,
        reason=None,
        updated_at=row["ts"],
        metadata=_meta(ev.metadata),
    )
    return row


def result_status(ev: OrderResult) -> str:
    """The normalised status; RowError for one that is neither a fill nor a terminal state."""
    status = enum_value(ev.status)
    if status in FILL or status in TERMINAL:
        return status
    raise RowError(
        f"unknown order status {ev.status!r} of order result {ev.id} (order {ev.order_id}): not a trade"
    )


def trade_row(ev: OrderResult, run_id: str, status: str) -> dict[str, Any]:
    row = _common(ev, run_id)
    side = enum_value(ev.side)
    if side not in ("buy", "sell"):
        raise RowError(f"unknown side {ev.side!r}")
    otype = enum_value(ev.order_type)
    liq = enum_value(ev.liquidity)
    qty = req(ev.quantity, "quantity", positive=True)
    price = req(ev.price, "price", positive=True)
    row.update(
        order_id=ev.order_id,
        signal_id=ev.signal_id,
        symbol=ev.symbol,
        side=side,
        order_type=otype if otype in ("market", "limit") else "market",
        status=status,
        quantity=qty,
        price=price,
        notional=qty * price,
        fee=req(ev.fee, "fee", not_negative=True),
        fee_asset=ev.fee_asset,
        liquidity=liq if liq in ("maker", "taker", "none") else "none",
        order_quantity=dec(ev.order_quantity, "order_quantity", not_negative=True) or None,
        cum_quantity=dec(ev.cum_quantity, "cum_quantity", not_negative=True),
        leaves_quantity=dec(ev.leaves_quantity, "leaves_quantity", not_negative=True),
        reference_price=dec(ev.reference_price, "reference_price", positive=True),
        slippage_bps=dec(ev.slippage_bps, "slippage_bps"),
        latency_ms=Decimal(ev.latency_ns) / NS_PER_MS if ev.latency_ns else None,
        metadata={"reason": ev.reason} if ev.reason else {},
    )
    return row


def execution_row(
    trade: dict[str, Any],
    ev: OrderResult,
    *,
    signal_ts: int | None,
    signal_price: Decimal | None,
    order_ts: int | None,
    order_reference: Decimal | None,
    max_slippage_bps: Decimal,
) -> dict[str, Any]:
    """Execution analysis of one fill (A1). Slippage in bps is signed, > 0 = worse than expected
    (a buy above / a sell below the reference price). Quality: 1 at or better than the
    reference, falling linearly to 0 at ``max_slippage_bps`` (R6's limit, 200 bps)."""
    expected = trade["reference_price"] or order_reference
    fill = trade["price"]
    slip = trade["slippage_bps"]
    if slip is None and expected:
        raw = (fill - expected) / expected * BPS
        slip = (raw if trade["side"] == "buy" else -raw).quantize(Q4)
    exec_ts = ev.ts_event
    if slip is None:
        quality, reason = None, None
    else:
        adverse = max(slip, ZERO)
        quality = max(ZERO, min(ONE, ONE - adverse / max_slippage_bps)).quantize(Q4)
        if ev.reason:
            reason = ev.reason[:100]
        elif slip > 0:
            reason = "adverse"
        elif slip < 0:
            reason = "price improvement"
        else:
            reason = "none"

    def ms(a: int | None, b: int | None) -> Decimal | None:
        return None if a is None or b is None else Decimal(b - a) / NS_PER_MS

    return {
        "trade_id": trade["id"],
        "run_id": trade["run_id"],
        "order_id": trade["order_id"],
        "signal_id": trade["signal_id"],
        "symbol": trade["symbol"],
        "side": trade["side"],
        "signal_ts": dt_from_ns(signal_ts),
        "order_ts": dt_from_ns(order_ts),
        "execution_ts": trade["ts"],
        "signal_to_order_ms": ms(signal_ts, order_ts),
        "order_to_execution_ms": ms(order_ts, exec_ts),
        "total_latency_ms": ms(signal_ts, exec_ts),
        "exchange_latency_ms": trade["latency_ms"],
        "expected_price": expected,
        "execution_price": fill,
        "slippage_bps": slip,
        "slippage_reason": reason,
        "price_before": signal_price,
        "price_after": None,
        "market_impact_bps": None,
        "execution_quality_score": quality,
        "metadata": _execution_meta(trade, slip, order_ts, exec_ts),
    }


def _execution_meta(trade: dict[str, Any], slip: Decimal | None, order_ts: int | None, exec_ts: int) -> dict[str, Any]:
    meta: dict[str, Any] = {"liquidity": trade["liquidity"], "fee": trade["fee"]}
    if slip is not None:
        meta["slippage_cause"] = slippage_cause(slip, trade["liquidity"], order_ts, exec_ts)
    return meta


def slippage_cause(slip: Decimal, liquidity: str, order_ts: int | None, exec_ts: int) -> str:
    """What caused the slippage (``execution_analysis.metadata["slippage_cause"]``; the column
    ``slippage_reason`` keeps the fill's reason or the direction), from what the fill tells: a resting limit
    order (maker) fills at its limit; a fill after its order (a bar fill at the next open, a book
    or quote that came later) paid the market's move in between; a fill at the order's own time
    paid the spread or the modelled slippage."""
    if slip > 0:
        direction = "adverse"
    elif slip < 0:
        direction = "price improvement"
    else:
        return "none"
    if liquidity == "maker":
        return f"{direction}: limit order filled at its limit"
    if order_ts is not None and exec_ts > order_ts:
        return f"{direction}: market moved between order and fill"
    return f"{direction}: spread or modelled slippage at the order"


def impact_bps(side: str, execution_price: Decimal, price_after: Decimal) -> Decimal:
    """Market impact: how far the price moved in the trade's direction from the fill to the next
    price of the symbol, in bps (> 0: on after a buy, down after a sell)."""
    move = (price_after - execution_price) / execution_price * BPS
    return (move if side == "buy" else -move).quantize(Q4)


# --- portfolio --------------------------------------------------------------------------


def snapshot_row(ev: PortfolioSnapshot, run_id: str) -> dict[str, Any]:
    row = _common(ev, run_id)
    del row["correlation_id"], row["causation_id"]
    positions = list(ev.positions)  # typed structs: the same JSON as as_json(p) gives
    row.update(
        reason=str(ev.reason),
        start_cash=req(ev.start_cash, "start_cash", positive=True),
        cash=req(ev.cash, "cash"),
        equity=req(ev.equity, "equity"),
        realized_pnl=req(ev.realized_pnl, "realized_pnl"),
        unrealized_pnl=req(ev.unrealized_pnl, "unrealized_pnl"),
        fees=req(ev.fees, "fees", not_negative=True),
        total_exposure=req(ev.total_exposure, "total_exposure", not_negative=True),
        total_exposure_pct=req(ev.total_exposure_pct, "total_exposure_pct", not_negative=True),
        high_water_mark=req(ev.high_water_mark, "high_water_mark", not_negative=True),
        drawdown_pct=req(ev.drawdown_pct, "drawdown_pct", not_negative=True),
        day_start_equity=req(ev.day_start_equity, "day_start_equity"),
        daily_pnl=req(ev.daily_pnl, "daily_pnl"),
        num_positions=int(ev.num_positions),
        positions=positions,
    )
    if not 0 <= row["num_positions"] <= INT4_MAX:
        raise RowError(f"`num_positions` must be within 0..{INT4_MAX}, got {row['num_positions']}")
    return row


def position_rows(ev: PortfolioSnapshot, run_id: str) -> list[dict[str, Any]]:
    """One row per position of the snapshot (the last one wins if a symbol repeats)."""
    equity = dec(ev.equity, "equity")
    ts = _dt(ev.ts_event)
    out: dict[str, dict[str, Any]] = {}
    for p in ev.positions:
        side = enum_value(p.side)
        qty = req(p.quantity, "position quantity")
        exposure = req(p.exposure, "position exposure", not_negative=True)
        pct = getattr(p, "exposure_pct", None)
        if pct is None:
            pct = exposure / equity if equity and equity > 0 else ZERO
        out[p.symbol] = {
            "run_id": run_id,
            "symbol": p.symbol,
            "side": side,
            "quantity": qty,
            "avg_price": req(p.avg_price, "avg_price", not_negative=True),
            "mark_price": req(p.mark_price, "mark_price", not_negative=True),
            "cost_basis": req(p.cost_basis, "cost_basis"),
            "unrealized_pnl": req(p.unrealized_pnl, "unrealized_pnl"),
            "realized_pnl": req(p.realized_pnl, "realized_pnl"),
            "fees": req(p.fees, "position fees", not_negative=True),
            "exposure": exposure,
            "exposure_pct": req(pct, "exposure_pct", not_negative=True),
            "opened_at": _dt(p.opened_ts) if p.opened_ts else None,
            "updated_at": ts,
            "snapshot_id": ev.id,
            "metadata": {},
        }
    return list(out.values())


# --- risk and alerts --------------------------------------------------------------------


def risk_row(ev: RiskEvent, run_id: str) -> dict[str, Any]:
    row = _common(ev, run_id)
    row.update(
        signal_id=ev.signal_id,
        order_id=ev.order_id,
        symbol=ev.symbol,
        check_type=enum_value(ev.check),
        action=enum_value(ev.action),
        passed=bool(ev.passed),
        check_value=dec(ev.value, "value"),
        check_limit=dec(ev.limit, "limit"),
        reason=ev.reason,
        trading_state=enum_value(ev.trading_state),
        requested_quantity=dec(ev.requested_quantity, "requested_quantity", not_negative=True),
        approved_quantity=dec(ev.approved_quantity, "approved_quantity", not_negative=True),
        details={
            "checks": list(ev.checks),  # typed structs: the same JSON as as_json(c) gives
            "portfolio": as_json(ev.portfolio or {}),
            "config": as_json(ev.config or {}),
        },
    )
    return row


def alert_row(ev: Alert, run_id: str) -> dict[str, Any]:
    row = _common(ev, run_id)
    details = as_json(ev.details or {})

    def ref(*keys: str) -> str | None:
        for k in keys:
            v = details.get(k) if isinstance(details, dict) else None
            if isinstance(v, str) and v:
                return v
        return None

    row.update(
        level=enum_value(ev.level),
        source=ev.source,
        code=ev.code,
        message=ev.message,
        related_signal_id=ref("signal_id", "related_signal_id"),
        related_order_id=ref("order_id", "related_order_id"),
        related_trade_id=ref("trade_id", "fill_id", "related_trade_id"),
        category=_category(details),
        occurrences=1,
        last_seen=None,
        acknowledged=False,
        acknowledged_at=None,
        details=details,
    )
    return row


def _category(details: Any) -> str | None:
    """``alerts.category`` (4.0): the alert's ``details["category"]`` (risk, data, service, ...)."""
    c = details.get("category") if isinstance(details, dict) else None
    return c[:32] if isinstance(c, str) and c else None
