"""``claire web``: the live view of a run, read from its database (a running or a finished run).

Registered on the app by :func:`register` (see :mod:`claire.cli.main`).
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from claire.cli.errors import fail as _fail

ACCESS_HELP = ("Token required on every request (Authorization: Bearer T or ?token=T); needed when --host is "
               "not a loopback address. Better from the environment: CLAIRE_WEB_TOKEN.")




def check_web_port(port: int, opt: str = "--web-port") -> None:
    if not 0 <= port <= 65535:
        _fail(f"{opt} must be within 0..65535, got {port}")


def web(
    db: Annotated[str | None, typer.Option("--db", help="Database URL of the run (default CLAIRE_DATABASE_URL or sqlite:///claire.db).")] = None,
    run: Annotated[str | None, typer.Option("--run", help="Run id (default: the latest run in the database).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on (a token is required unless it is a loopback address).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port; the URL is printed).")] = 8080,
    token: Annotated[str | None, typer.Option(help=ACCESS_HELP)] = None,
) -> None:
    """Live view of a run in the browser: equity, positions, trades, risk, alerts, system status."""
    # start-up time: FastAPI, uvicorn and SQLAlchemy only for this command
    from claire.runtime.web import WebError, open_view, serve
    from claire.storage import StorageError, default_url

    check_web_port(port, "--port")
    try:
        handle = open_view(db or default_url(), run, host, port, token)
    except (WebError, StorageError) as exc:
        _fail(str(exc))
    typer.echo(f"live view of run {handle.run_id} on {handle.url} (Ctrl-C stops it)")
    sys.stdout.flush()
    serve(handle)


def web_view_options(web: bool, port: int, announce: Callable[[str], Any] | None = None) -> dict[str, Any] | None:
    """``--web`` / ``--web-port`` of `paper` and `up`: the options of the live view beside the run
    (127.0.0.1; the port checked free now, before the run starts), or None without --web."""
    if not web:
        return None
    check_web_port(port)
    if port:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError as exc:
                _fail(f"--web-port {port} is not available on 127.0.0.1: {exc.strerror or exc}")
    return {"host": "127.0.0.1", "port": port, "token": None, "announce": announce}


def register(app: typer.Typer) -> None:
    app.command("web")(web)

