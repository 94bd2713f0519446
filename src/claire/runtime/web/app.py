"""The live view's web application (FastAPI): one page, JSON endpoints, and a server-sent event
stream that pushes what changed about every second. Read-only: it only reads the database.

Access: bound to a loopback address it is open to this machine; bound elsewhere a token is
required on every request (``Authorization: Bearer T``, ``?token=T`` or the cookie a page load
with ``?token=`` sets). The token is compared in constant time and never logged.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from claire.runtime.web import data
from claire.storage import Database

log = logging.getLogger("claire.web")

COOKIE = "claire_web_token"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", ""}
#: seconds between two pushes of the stream
PUSH_EVERY_S = 1.0
#: snapshot points one push carries at most (the page thins its series to ~2,000 points itself)
PUSH_POINTS = 200
#: the panels (headline, positions, risk, alerts, status) are read once for every open page
PANELS_TTL_S = 0.8


def _asset(package: str, name: str) -> bytes:
    return resources.files(package).joinpath(name).read_bytes()


_ASSETS = {
    "uPlot.iife.min.js": ("claire.reporting.assets", "application/javascript"),
    "uPlot.min.css": ("claire.reporting.assets", "text/css"),
    "app.js": ("claire.runtime.web.static", "application/javascript"),
    "app.css": ("claire.runtime.web.static", "text/css"),
}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=str, separators=(",", ":"))


class ViewState:
    """What every request of one live view shares: the database, the run, the token."""

    def __init__(self, db: Database, run_id: str, token: str | None) -> None:
        self.db = db
        self.run_id = run_id
        self.token = token
        self.stopping = threading.Event()
        self.equity = data.EquitySeries()
        self._panels: tuple[float, dict[str, Any]] | None = None
        self._panels_lock = threading.Lock()

    def allowed(self, request: Request) -> bool:
        """With a token: the token. Without one (a loopback address): only requests that name this
        machine in their Host header, so a web page elsewhere cannot read the view by pointing a
        name of its own at 127.0.0.1 (DNS rebinding)."""
        if not self.token:
            return _host_name(request.headers.get("host") or "") in LOCAL_HOSTS
        given = request.query_params.get("token") or request.cookies.get(COOKIE)
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return bool(given) and hmac.compare_digest(str(given).encode(), self.token.encode())

    # --- what the page shows -----------------------------------------------------------------
    def panels(self) -> dict[str, Any]:
        """The parts a push replaces whole (small): headline, positions, risk, alerts, status;
        read at most once per PANELS_TTL_S, whatever the number of open pages."""
        with self._panels_lock:
            now = time.monotonic()
            if self._panels is not None and now - self._panels[0] < PANELS_TTL_S:
                return self._panels[1]
            db, run = self.db, self.run_id
            status = data.services(db, run)
            value = {"summary": data.summary(db, run), "positions": data.positions(db, run),
                     "risk": data.risk_events(db, run), "alerts": data.alerts(db, run), "services": status,
                     "freshness": data.freshness(db, run, status)}
            self._panels = (now, value)
            return value

    def initial(self) -> dict[str, Any]:
        db, run = self.db, self.run_id
        trades = data.trades(db, run)
        return {"equity": self.equity.get(db, run), "trades": trades, "trade_count": data.trade_count(db, run),
                **self.panels()}


def _host_name(host: str) -> str:
    """``name:port`` -> name; ``[::1]:port`` -> ``[::1]``."""
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0]


def _guard(state: ViewState) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """The middleware of every request: refused unless :meth:`ViewState.allowed`; a page loaded
    with ``?token=`` leaves the token in an HttpOnly cookie for its assets and stream."""

    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if not state.allowed(request):
            if not state.token:
                return JSONResponse({"error": "the live view answers only to this machine's names"}, status_code=403)
            return JSONResponse({"error": "a token is required: Authorization: Bearer TOKEN or ?token=TOKEN"},
                                status_code=401, headers={"WWW-Authenticate": "Bearer"})
        response = await call_next(request)
        if state.token and request.query_params.get("token") and request.url.path == "/":
            response.set_cookie(COOKIE, state.token, httponly=True, samesite="strict")
        response.headers["Cache-Control"] = "no-store"
        return response

    return guard


class StreamCursor:
    """Where one client of the stream is: the last snapshot time and the fills it has."""

    def __init__(self, state: ViewState, init: dict[str, Any]) -> None:
        self.state = state
        last = init["equity"].get("last_ts")
        self.last_snapshot: datetime | None = datetime.fromisoformat(last) if last else None
        self.trades = data.TradeCursor(init["trades"])

    def delta(self) -> dict[str, Any]:
        st = self.state
        rows = data.equity_since(st.db, st.run_id, self.last_snapshot)
        if rows:
            self.last_snapshot = rows[-1].ts
        new_trades = self.trades.new_trades(st.db, st.run_id)
        return {"points": data.thin(rows, PUSH_POINTS) if rows else None, "trades": new_trades,
                "trade_count": data.trade_count(st.db, st.run_id), **st.panels()}


def create_app(db: Database, run_id: str, token: str | None = None) -> FastAPI:
    """The live view of ``run_id`` in ``db`` (``token``: required on every request when set)."""
    state = ViewState(db, run_id, token)
    app = FastAPI(title="Claire live view", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.view = state

    app.middleware("http")(_guard(state))

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(_asset("claire.runtime.web.static", "index.html").decode())

    @app.get("/favicon.ico")
    async def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/assets/{name}")
    async def asset(name: str) -> Response:
        if name not in _ASSETS:
            return JSONResponse({"error": "not found"}, status_code=404)
        package, ctype = _ASSETS[name]
        return Response(_asset(package, name), media_type=ctype)

    def api(fn: Callable[[], Any]) -> Callable[[], Awaitable[Response]]:
        async def endpoint() -> Response:
            return Response(_dumps(await run_in_threadpool(fn)), media_type="application/json")
        return endpoint

    routes: dict[str, Callable[[], Any]] = {
        "summary": lambda: data.summary(db, run_id),
        "equity": lambda: data.equity(db, run_id),
        "trades": lambda: {"count": data.trade_count(db, run_id), "trades": data.trades(db, run_id)},
        "positions": lambda: data.positions(db, run_id),
        "risk": lambda: data.risk_events(db, run_id),
        "alerts": lambda: data.alerts(db, run_id),
        "status": lambda: (lambda s: {"services": s, "freshness": data.freshness(db, run_id, s)})(
            data.services(db, run_id)),
    }
    for name, fn in routes.items():
        app.add_api_route(f"/api/{name}", api(fn), methods=["GET"], name=name)

    @app.get("/api/stream")
    async def stream(request: Request) -> StreamingResponse:
        return StreamingResponse(_events(state, request), media_type="text/event-stream",
                                 headers={"X-Accel-Buffering": "no"})

    return app


async def _events(state: ViewState, request: Request) -> AsyncIterator[str]:
    """``init`` (everything) once, then a ``delta`` about every second, until the client leaves."""
    try:
        init = await run_in_threadpool(state.initial)
    except Exception as exc:  # the database went away: say so, the browser reconnects
        yield f"event: failure\ndata: {_dumps({'error': type(exc).__name__})}\n\n"
        return
    cursor = StreamCursor(state, init)
    yield "retry: 2000\n\n"
    yield f"event: init\ndata: {_dumps(init)}\n\n"
    loop = asyncio.get_running_loop()
    next_push = loop.time()
    while not state.stopping.is_set():
        next_push = max(next_push + PUSH_EVERY_S, loop.time())  # a steady cadence, not 1 s + the queries
        await asyncio.sleep(next_push - loop.time())
        if await request.is_disconnected():
            return
        try:
            delta = await run_in_threadpool(cursor.delta)
        except Exception as exc:
            log.warning("live view: reading the database failed: %s", type(exc).__name__)
            yield f"event: failure\ndata: {_dumps({'error': type(exc).__name__})}\n\n"
            continue
        yield f"event: delta\ndata: {_dumps(delta)}\n\n"
