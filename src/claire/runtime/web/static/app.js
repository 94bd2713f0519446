/* Claire live view: one EventSource on api/stream ("init" once, then a "delta" about every second);
   no page reloads. window.claire holds the state (the tests read it). */
(function () {
  "use strict";
  var MAX_POINTS = 2000, FEED_ROWS = 500;
  var token = new URLSearchParams(location.search).get("token");
  var q = token ? "?token=" + encodeURIComponent(token) : "";
  var S = window.claire = { ts: [], equity: [], drawdown: [], tradeCount: 0, tradesShown: 0, updates: 0,
                            inits: 0, lastUpdate: null, services: [], rates: {}, arrived: {} };
  var eqChart = null, ddChart = null;

  function $(id) { return document.getElementById(id); }
  function esc(v) { return String(v == null ? "–" : v).replace(/[&<>"']/g, function (c) {
    return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]; }); }
  function num(v, d) { if (v == null || v === "") return "–"; var x = Number(v);
    return isFinite(x) ? x.toLocaleString(undefined, { minimumFractionDigits: d, maximumFractionDigits: d }) : esc(v); }
  function time(iso) { return iso ? iso.replace("T", " ").replace(/(\.\d{3})\d*/, "$1").replace("+00:00", "Z") : "–"; }
  function cls(v) { return Number(v) > 0 ? "pos" : Number(v) < 0 ? "neg" : ""; }
  function rows(tbody, html) { $(tbody).querySelector("tbody").innerHTML = html.join(""); }

  // --- chart ------------------------------------------------------------------------------------
  function width() { return Math.max(300, $("equity-chart").clientWidth || 800); }
  function makeCharts() {
    var sync = uPlot.sync("claire");
    var cursor = { sync: { key: sync.key } };
    eqChart = new uPlot({ width: width(), height: 260, cursor: cursor,
      series: [{}, { label: "equity", stroke: "#58a6ff", width: 1.5, value: function (u, v) { return num(v, 2); } }],
      axes: [{ stroke: "#8a96a3", grid: { stroke: "#2a3440" } }, { stroke: "#8a96a3", grid: { stroke: "#2a3440" }, size: 70 }] },
      [S.ts, S.equity], $("equity-chart"));
    ddChart = new uPlot({ width: width(), height: 120, cursor: cursor,
      series: [{}, { label: "drawdown %", stroke: "#f85149", fill: "rgba(248,81,73,0.2)", width: 1,
                     value: function (u, v) { return num(v, 2); } }],
      axes: [{ stroke: "#8a96a3", grid: { stroke: "#2a3440" } }, { stroke: "#8a96a3", grid: { stroke: "#2a3440" }, size: 70 }] },
      [S.ts, S.drawdown], $("drawdown-chart"));
    window.addEventListener("resize", function () {
      eqChart.setSize({ width: width(), height: 260 }); ddChart.setSize({ width: width(), height: 120 }); });
  }
  function thinSeries() {  // keep the chart light: halve the points once there are twice too many
    if (S.ts.length <= 2 * MAX_POINTS) return;
    var last = S.ts.length - 1;
    ["ts", "equity", "drawdown"].forEach(function (k) {
      var a = S[k], out = [];
      for (var i = 0; i < a.length; i += 2) out.push(a[i]);
      if (last % 2) out.push(a[last]);
      S[k] = out;
    });
  }
  function addPoints(p, reset) {
    if (reset) { S.ts = []; S.equity = []; S.drawdown = []; }
    if (p) {
      for (var i = 0; i < p.ts.length; i++) {
        S.ts.push(p.ts[i]); S.equity.push(p.equity[i]);
        S.drawdown.push(p.drawdown_pct[i] == null ? null : -100 * p.drawdown_pct[i]);
      }
    }
    thinSeries();
    if (!eqChart) makeCharts();
    eqChart.setData([S.ts, S.equity]); ddChart.setData([S.ts, S.drawdown]);
  }

  // --- panels -----------------------------------------------------------------------------------
  function tradeRow(t, isNew) {
    return '<tr data-id="' + esc(t.id) + '"' + (isNew ? ' class="new"' : "") + "><td>" + time(t.ts) + "</td><td>" +
      esc(t.symbol) + '</td><td class="' + esc(t.side) + '">' + esc(t.side) + "</td><td>" + esc(t.quantity) +
      "</td><td>" + num(t.price, 2) + "</td><td>" + num(t.notional, 2) + "</td><td>" + num(t.fee, 4) + "</td><td>" +
      num(t.slippage_bps, 2) + "</td><td>" + esc(t.status) + "</td></tr>";
  }
  function setTrades(list) { rows("trades", list.map(function (t) { return tradeRow(t, false); })); }
  function addTrades(list) {
    if (!list || !list.length) return;
    var body = $("trades").querySelector("tbody"), now = Date.now();
    if (Object.keys(S.arrived).length > 200) S.arrived = {};
    for (var i = 0; i < list.length; i++) {
      body.insertAdjacentHTML("afterbegin", tradeRow(list[i], true));
      S.arrived[list[i].id] = now;  // when each new fill reached the page (the benchmark reads it)
    }
    while (body.rows.length > FEED_ROWS) body.deleteRow(body.rows.length - 1);
  }
  function showCount(n) {
    S.tradeCount = n; S.tradesShown = $("trades").querySelector("tbody").rows.length;
    $("trade-count").textContent = n.toLocaleString();
    $("trades-note").textContent = n > S.tradesShown ? "(latest " + S.tradesShown + " of " + n + ")" : "(" + n + ")";
  }
  function summary(s) {
    var r = s.run, l = s.latest;
    $("run").innerHTML = "run <b>" + esc(r.id) + "</b> · " + esc(r.mode) + " · started " + time(r.started_at) +
      (r.ended_at ? " · ended " + time(r.ended_at) : ' · <span class="running">running</span>');
    if (l) {
      var ret = (Number(l.equity) / Number(l.start_cash) - 1) * 100;
      $("h-equity").textContent = num(l.equity, 2);
      $("h-return").innerHTML = '<span class="' + cls(ret) + '">' + num(ret, 3) + " %</span>";
      $("h-upnl").innerHTML = '<span class="' + cls(l.unrealized_pnl) + '">' + num(l.unrealized_pnl, 2) + "</span>";
      $("h-fees").textContent = num(l.fees, 2);
      $("h-last").textContent = time(l.ts);
      $("h-dd").textContent = num(100 * Number(l.drawdown_pct), 2) + " %" +
        (S.maxDD != null ? " (" + num(100 * S.maxDD, 2) + " %)" : "");
    }
    $("h-rej").textContent = s.risk_rejections;
  }
  function positions(list) {
    rows("positions", list.length ? list.map(function (p) {
      return "<tr><td>" + esc(p.symbol) + '</td><td class="' + (p.side === "long" ? "buy" : "sell") + '">' + esc(p.side) +
        "</td><td>" + esc(p.quantity) + "</td><td>" + num(p.avg_price, 2) + "</td><td>" + num(p.mark_price, 2) +
        '</td><td class="' + cls(p.unrealized_pnl) + '">' + num(p.unrealized_pnl, 2) + "</td><td>" +
        num(100 * Number(p.exposure_pct), 2) + "</td></tr>"; }) : ['<tr><td colspan="7" class="note">no open position</td></tr>']);
  }
  function risk(r) {
    $("risk-note").textContent = Object.keys(r.by_action).map(function (k) { return k + " " + r.by_action[k]; }).join(" · ");
    rows("risk", r.recent.map(function (e) {
      return "<tr><td>" + time(e.ts) + "</td><td>" + esc(e.symbol) + "</td><td>" + esc(e.check_type) + '</td><td class="' +
        esc(e.action) + '">' + esc(e.action) + '</td><td class="reason">' + esc(e.reason) + "</td></tr>"; }));
  }
  function alerts(list) {
    rows("alerts", list.length ? list.map(function (a) {
      return "<tr><td>" + time(a.ts) + '</td><td class="' + esc(a.level) + '">' + esc(a.level) + "</td><td>" + esc(a.code) +
        '</td><td class="reason">' + esc(a.message) + "</td><td>" + esc(a.occurrences) + "</td></tr>"; })
      : ['<tr><td colspan="5" class="note">no alert</td></tr>']);
  }
  function services(list, fresh) {
    var now = Date.now() / 1000;
    S.services = list;
    rows("services", list.length ? list.map(function (s) {
      var key = s.service + "/" + s.replica, prev = S.rates[key], rate = null;
      if (prev && now > prev.t) rate = (s.events_processed - prev.n) / (now - prev.t);
      if (!prev || now - prev.t >= 5) S.rates[key] = { n: s.events_processed, t: now, rate: rate };
      else rate = prev.rate;
      var stale = s.status !== "stopped" && s.heartbeat_age_s > 10;
      var lag = s.lag_ms != null ? num(s.lag_ms, 0) + " ms" :
        (s.details && s.details.backlog != null ? s.details.backlog + " queued" : "–");
      return '<tr data-service="' + esc(s.service) + '"><td>' + esc(s.service) + (s.replica ? "-" + s.replica : "") +
        '</td><td class="' + (stale ? "failed" : esc(s.status)) + '">' + esc(stale ? "silent" : s.status) + '</td><td class="' +
        (s.ready ? "yes" : "no") + '">' + (s.ready ? "yes" : "no") + "</td><td>" + num(s.heartbeat_age_s, 1) + " s ago</td><td>" +
        num(s.events_processed, 0) + "</td><td>" + (rate == null ? "–" : num(Math.max(rate, 0), 0)) + "</td><td>" +
        time(s.last_event_ts) + "</td><td>" + lag + "</td><td>" + esc(s.restarts) + "</td></tr>"; })
      : ['<tr><td colspan="9" class="note">no heartbeat in service_status for this run</td></tr>']);
    $("fresh-note").textContent = "(" + fresh.source + (fresh.live ? ", age on the wall clock" : ", behind the newest symbol") + ")";
    var syms = Object.keys(fresh.symbols);
    rows("freshness", syms.length ? syms.map(function (k) {
      var f = fresh.symbols[k];
      var late = fresh.live ? f.age_s : f.behind_s;  // live data: its age on the wall clock
      return "<tr><td>" + esc(k) + "</td><td>" + time(f.last_ts) + '</td><td class="' + (late > (fresh.live ? 30 : 300) ? "warning" : "") +
        '">' + num(late, 1) + " s</td></tr>"; }) : ['<tr><td colspan="3" class="note">no market data seen</td></tr>']);
  }
  function panels(d) {
    summary(d.summary); positions(d.positions); risk(d.risk); alerts(d.alerts); services(d.services, d.freshness);
    S.lastUpdate = Date.now(); $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  }

  // --- the stream -------------------------------------------------------------------------------
  function connect() {
    var es = new EventSource("api/stream" + q);
    es.addEventListener("init", function (m) {
      var d = JSON.parse(m.data);
      S.inits += 1; S.maxDD = d.equity.max_drawdown_pct;
      $("eq-note").textContent = d.equity.snapshots.toLocaleString() + " snapshots" +
        (d.equity.stride > 1 ? ", 1 in " + d.equity.stride + " shown" : "");
      addPoints(d.equity, true); setTrades(d.trades); showCount(d.trade_count); panels(d);
      if (S.firstData == null) S.firstData = performance.now();  // ms after navigation start: data drawn
      $("conn").className = "conn on"; $("conn").textContent = "live";
    });
    es.addEventListener("delta", function (m) {
      var d = JSON.parse(m.data);
      S.updates += 1;
      if (d.points) {
        addPoints(d.points, false);
        for (var i = 0; i < d.points.drawdown_pct.length; i++)
          if (d.points.drawdown_pct[i] > (S.maxDD || 0)) S.maxDD = d.points.drawdown_pct[i];
      }
      addTrades(d.trades); showCount(d.trade_count); panels(d);
      $("conn").className = "conn on"; $("conn").textContent = "live";
    });
    es.addEventListener("failure", function () { $("conn").className = "conn off"; $("conn").textContent = "database unreachable"; });
    es.onerror = function () { $("conn").className = "conn off"; $("conn").textContent = "reconnecting…"; };
  }
  connect();
})();
