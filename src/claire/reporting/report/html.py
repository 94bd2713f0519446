"""The report as ONE self-contained HTML file: CSS, uPlot and the data inline, the PNGs as
``data:`` URIs, so it opens offline and can be mailed as it is."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from claire.reporting.report.figures import Report

MAX_TRADE_ROWS = 2000
MAX_MARKET_ROWS = 500
SECTIONS = ("verdict", "confidence", "equity", "daily-returns", "return-table", "trade-pnl", "per-symbol",
            "trades", "open-positions", "risk", "execution", "market", "system", "metrics")

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:1em 2em;
color:#222;background:#fff}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #e5e5e5;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}.scroll{max-height:420px;overflow:auto}
.verdict{font-size:28px;font-weight:700;padding:.4em .8em;border-radius:6px;display:inline-block;color:#fff}
.go{background:#27ae60}.no-go{background:#c0392b}.inconclusive{background:#e67e22}
.pass{color:#27ae60;font-weight:600}.fail{color:#c0392b;font-weight:600}.na{color:#888}
.note{color:#555;font-size:13px}.warn{color:#b9770e;font-weight:600}img{max-width:100%}
.uplot{margin:.5em 0}.pos{color:#27ae60}.neg{color:#c0392b}
"""

JS = """
(function(){
  var d = JSON.parse(document.getElementById('chart-data').textContent);
  var w = Math.min(1150, document.body.clientWidth - 40);
  var series = [{}, {label: 'equity', stroke: '#1f5fa8', width: 1.5}];
  var data = [d.t, d.equity];
  if (d.benchmark) { series.push({label: 'buy and hold', stroke: '#999', dash: [5, 5]}); data.push(d.benchmark); }
  window.claireCharts = [];
  window.claireCharts.push(new uPlot({title: 'Equity (USDT)', width: w, height: 320, series: series, axes: [{}, {size: 80}]},
    data, document.getElementById('uplot-equity')));
  window.claireCharts.push(new uPlot({title: 'Drawdown (%)', width: w, height: 160, axes: [{}, {size: 80}],
    series: [{}, {label: 'drawdown %', stroke: '#c0392b', fill: 'rgba(192,57,43,0.3)'}]},
    [d.t, d.drawdown], document.getElementById('uplot-drawdown')));
})();
"""


def _asset(name: str) -> str:
    return resources.files("claire.reporting").joinpath("assets", name).read_text(encoding="utf-8")


def _time(ns: int | None) -> str:
    if ns is None:
        return ""
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _num(x: Any, digits: int = 2, pct: bool = False) -> str:
    if x is None:
        return '<span class="na">n/a</span>'
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if x != x:  # NaN
            return '<span class="na">n/a</span>'
        return f"{x * 100:,.{digits}f}%" if pct else f"{x:,.{digits}f}"
    return escape(str(x))


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]], left: int = 1, scroll: bool = False) -> str:
    th = "".join(f'<th class="{"l" if i < left else ""}">{escape(h)}</th>' for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{c}</td>' for i, c in enumerate(r))
                   + "</tr>" for r in rows)
    t = f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="scroll">{t}</div>' if scroll else t


def _img(path: Path, alt: str) -> str:
    b64 = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{b64}">'


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{escape(title)}</h2>{body}</section>'


def _verdict(rep: Report) -> str:
    v = rep.verdict
    rows = [(escape(c.name), escape(c.group), _num(c.value, 4), escape(c.threshold),
             f'<span class="{"na" if c.status == "n/a" else c.status}">{c.status}</span>',
             "no-go" if c.hard else "inconclusive", escape(c.note)) for c in v.criteria]
    return (f'<div class="verdict {v.decision}" id="verdict-decision">{v.decision.upper()}</div>'
            f'<p>{escape(v.reason)}</p>'
            + _table(["criterion", "group", "value", "threshold", "status", "a failure means", "note"], rows, 2)
            + '<p class="note">Thresholds: defaults, CLAIRE_VERDICT_* environment variables, `claire report` '
              "flags (docs/metrics.md).</p>")


def _confidence(rep: Report) -> str:
    c = rep.confidence
    notes = "".join(f'<li class="{"warn" if c.too_small and i == 0 else ""}">{escape(n)}</li>'
                    for i, n in enumerate(c.notes))
    rows = [("days (daily returns)", _num(c.days)), ("closed trades", _num(c.trades)),
            ("Sharpe (annualised, 365)", _num(c.sharpe.estimate)),
            ("Sharpe 95% CI (bootstrap)", f"[{_num(c.sharpe.low)}, {_num(c.sharpe.high)}]"),
            ("mean daily return", _num(c.mean_daily_return.estimate, 4, True)),
            ("mean daily return 95% CI", f"[{_num(c.mean_daily_return.low, 4, True)}, "
                                         f"{_num(c.mean_daily_return.high, 4, True)}]"),
            ("probabilistic Sharpe ratio P(SR > 0)", _num(c.psr, 4))]
    return f"<ul>{notes}</ul>" + _table(["figure", "value"], rows)


def _equity(rep: Report, pngs: dict[str, Path]) -> str:
    b = rep.benchmark_return
    f = rep.figures
    line = (f"<p>Return after fees {_num(f['return_pct'], 3)}% vs buy and hold of {escape(', '.join(rep.data.symbols))} "
            f"(equal weight, {escape(rep.data.prices_note)}): {_num(b, 3, True)}. "
            f"{rep.chart['full_points']:,} equity points, {len(rep.chart['t']):,} drawn.</p>")
    return (line + '<div id="uplot-equity"></div><div id="uplot-drawdown"></div>'
            + _img(pngs["equity_drawdown"], "equity and drawdown"))


def _return_table(rep: Report) -> str:
    months = _table(["month", "days", "return"], [(m["month"], m["days"], _num(m["return"], 3, True))
                                                  for m in rep.monthly])
    prev = rep.data.start_cash
    rows = []
    for (day, close), r in zip(rep.days, rep.returns, strict=True):
        rows.append((datetime.fromtimestamp(day * 86_400, tz=UTC).strftime("%Y-%m-%d"), _num(prev),
                     _num(close), _num(close - prev), _num(r, 3, True)))
        prev = close
    return ("<h3>Monthly</h3>" + months + "<h3>Daily</h3>"
            + _table(["day (UTC)", "open", "close", "PnL", "return"], rows, scroll=True))


def _per_symbol(rep: Report) -> str:
    return _table(["symbol", "closed trades", "win rate", "PnL after fees", "fees", "fills", "volume", "open",
                   "buy and hold"],
                  [(escape(r["symbol"]), _num(r["trades"]), _num(r["win_rate"], 1, True), _num(r["pnl"]),
                    _num(r["fees"]), _num(r["fills"]), _num(r["volume"]), _num(r["open"]),
                    _num(r["buy_and_hold"], 2, True)) for r in rep.per_symbol])


def _trades(rep: Report) -> str:
    trips = rep.data.closed_trips
    shown = trips[-MAX_TRADE_ROWS:]
    note = f'<p class="note">{len(trips):,} closed round trips' + (
        f", the last {len(shown):,} shown" if len(shown) < len(trips) else "") + "</p>"
    rows = [(escape(t.symbol), t.side, _time(t.entry_time), _num(t.entry_price, 4), _time(t.exit_time),
             _num(t.exit_price, 4), _num(t.quantity, 6), _num(t.fees), _num(t.pnl)) for t in reversed(shown)]
    return note + _table(["symbol", "side", "entry", "entry price", "exit", "exit price", "quantity", "fees",
                          "PnL"], rows, 2, scroll=True)


def _open_positions(rep: Report) -> str:
    ps = rep.data.open_positions
    if not ps:
        return "<p>No open positions at the end of the run.</p>"
    return _table(["symbol", "side", "quantity", "average price", "since", "unrealised PnL"],
                  [(escape(p["symbol"]), escape(p["side"]), _num(p["quantity"], 6), _num(p["avg_price"], 4),
                    _time(p.get("since")), _num(p.get("unrealized_pnl"))) for p in ps], 2)


def _risk(rep: Report) -> str:
    d = rep.data
    rows = [(escape(r.check), escape(r.action), _num(r.count), escape(r.reason)) for r in d.risk]
    states = [(_time(ts), escape(s), escape(reason)) for ts, s, reason in d.state_changes]
    return ("<p>Decisions on signals by check (R1 data_quality, R2 position_limit, R3 daily_drawdown, "
            "R4 total_exposure, R5 circuit_breaker, R6 slippage, R7 spread) and action, with the most "
            "frequent reason.</p>" + _table(["check", "action", "reason", "count"],
                                             [(r[0], r[1], r[3], r[2]) for r in rows], 3)
            + "<h3>Changes of trading state</h3>"
            + (_table(["time", "state", "reason"], states, 3) if states else "<p>None.</p>"))


def _pcts(xs: list[float]) -> str:
    if not xs:
        return _num(None)
    p50, p95, p99 = np.percentile(xs, [50, 95, 99])
    return f"{p50:,.3f} / {p95:,.3f} / {p99:,.3f} / {max(xs):,.3f}"


def _execution(rep: Report, pngs: dict[str, Path]) -> str:
    f = rep.figures
    ex = rep.data.execution
    slips = [abs(e.slippage_bps) for e in ex if e.slippage_bps is not None]
    lat = [e.latency_ms for e in ex if e.latency_ms is not None]
    rows = [("fills analysed", _num(f["fills_analysed"])), ("mean |slippage| (bps)", _num(f["mean_abs_slippage_bps"], 3)),
            ("|slippage| p50 / p95 / p99 / max (bps)", _pcts(slips)),
            ("mean latency (ms)", _num(f["mean_latency_ms"], 3)),
            ("latency p50 / p95 / p99 / max (ms)", _pcts(lat)),
            ("mean quality score", _num(f["mean_quality_score"], 3))]
    return (f'<p class="note">Source: {escape(rep.data.execution_source)}</p>' + _table(["figure", "value"], rows)
            + _img(pngs["execution"], "execution quality"))


def _market(rep: Report) -> str:
    rows = rep.data.market_at_entries
    if not rows:
        return "<p>No market conditions recorded at the entries.</p>"
    keys = [k for k in ("price", "rsi_14", "macd_hist", "bb_position", "volume_24h", "volatility_1h", "trend_direction",
                        "trend_strength", "spread_bps", "order_book_depth") if any(r.get(k) is not None for r in rows)]
    empty = [k for k in ("volume_24h", "volatility_1h", "trend_direction", "spread_bps", "order_book_depth")
             if k not in keys]
    note = f'<p class="note">Source: {escape(rep.data.market_note)}.' + (
        f" Not known for this run: {escape(', '.join(empty))}." if empty else "") + "</p>"
    body = [(escape(r["symbol"]), _time(r["time"]), *(_num(r.get(k), 4) for k in keys))
            for r in rows[-MAX_MARKET_ROWS:]]
    return note + _table(["symbol", "time", *keys], body, 2, scroll=True)


def _system(rep: Report) -> str:
    s = rep.data.system
    names = [("events processed", "events_processed"), ("uptime (s)", "uptime_s"), ("restarts", "restarts"),
             ("data gaps", "data_gaps"), ("data repairs", "data_repairs"), ("alerts", "alerts"),
             ("critical alerts", "critical_alerts"), ("dead letters", "dead_letters")]
    rows = [(label, _num(s.get(key), 1)) for label, key in names]
    counts = rep.data.counts
    rows += [(k, _num(v)) for k, v in counts.items()]
    uptime = f"Uptime: {s['uptime_note']}." if s.get("uptime_note") else ""
    note = f'<p class="note">{escape(s.get("note", ""))} {escape(uptime)}</p>'
    alerts = rep.data.alerts
    tail = ("<h3>Alerts</h3>" + _table(["time", "level", "code", "message", "occurrences"],
            [(_time(a["time"]), escape(a["level"]), escape(a["code"]), escape(a["message"]), _num(a.get("occurrences")))
             for a in alerts], 4, scroll=True)) if alerts else ""
    return note + _table(["figure", "value"], rows) + tail


def _metrics(rep: Report) -> str:
    pct = {"total_return", "cagr", "volatility", "max_drawdown", "mean_daily_return", "win_rate_days", "avg_win_day",
           "avg_loss_day", "best_day", "worst_day", "value_at_risk_95", "win_rate_trades"}
    rows = [(escape(k), _num(v, 4, k in pct)) for k, v in {**rep.metrics, **rep.trade_stats}.items()]
    return ('<p class="note">Return-based figures from daily returns of equity incl. unrealised PnL, '
            "annualised with 365 days, as quantstats defines them; *_trades from closed round trips "
            "(docs/metrics.md).</p>" + _table(["figure", "value"], rows))


def render_html(rep: Report, pngs: dict[str, Path]) -> str:
    d = rep.data
    parts: list[tuple[str, str, Callable[[], str]]] = [
        ("verdict", "Verdict", lambda: _verdict(rep)),
        ("confidence", "Sample and confidence", lambda: _confidence(rep)),
        ("equity", "Equity and drawdown (underwater), benchmark", lambda: _equity(rep, pngs)),
        ("daily-returns", "Daily returns", lambda: _img(pngs["daily_returns"], "daily returns")),
        ("return-table", "Returns by month and day", lambda: _return_table(rep)),
        ("trade-pnl", "Trade PnL distribution", lambda: _img(pngs["trade_pnl"], "trade pnl")),
        ("per-symbol", "Per symbol", lambda: _per_symbol(rep)),
        ("trades", "Trades", lambda: _trades(rep)),
        ("open-positions", "Open positions at the end", lambda: _open_positions(rep)),
        ("risk", "Risk decisions", lambda: _risk(rep)),
        ("execution", "Execution quality", lambda: _execution(rep, pngs)),
        ("market", "Market conditions at entries", lambda: _market(rep)),
        ("system", "System", lambda: _system(rep)),
        ("metrics", "All figures", lambda: _metrics(rep)),
    ]
    body = "".join(_section(sid, title, fn()) for sid, title, fn in parts)
    period = f"{_time(int(d.equity_ts[0]))} .. {_time(int(d.equity_ts[-1]))} UTC" if len(d.equity_ts) else "no data"
    settings = ", ".join(f"{k}={v}" for k, v in d.settings.items())
    data_json = json.dumps(rep.chart, separators=(",", ":")).replace("</", "<\\/")
    running = ' <span class="warn">(running: a snapshot of the run so far)</span>' if d.running else ""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Claire report {escape(d.run_id)}</title>"
        f"<style>{_asset('uPlot.min.css')}</style><style>{CSS}</style></head><body>"
        f"<h1>Run {escape(d.run_id)}</h1><p>{escape(d.mode)}{running} &middot; {escape(', '.join(d.symbols))} &middot; "
        f"{escape(period)} &middot; {escape(settings)} &middot; source: {escape(d.source)} &middot; "
        f"generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S')} UTC</p>"
        f"{body}"
        f'<script type="application/json" id="chart-data">{data_json}</script>'
        f"<script>{_asset('uPlot.iife.min.js')}</script><script>{JS}</script></body></html>"
    )
