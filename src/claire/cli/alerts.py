"""`claire alerts`: the alerts of the rules in the database, and their acknowledgement."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from claire.cli.errors import checked_database
from claire.cli.errors import fail as _fail


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def alerts(
    db: Annotated[str | None, typer.Option("--db", help="Database URL (default CLAIRE_DATABASE_URL or sqlite:///claire.db).")] = None,
    run: Annotated[str | None, typer.Option("--run", help="Only the alerts of this run id.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Also the acknowledged alerts and the components' own alerts.")] = False,
    ack: Annotated[str | None, typer.Option("--ack", metavar="ID", help="Acknowledge the alert with this id.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many alerts, newest first.")] = 50,
) -> None:
    """The alerts of the rules, newest first (unacknowledged ones; --all for every alert), or acknowledge one."""
    # start-up time: SQLAlchemy and rich only when the command runs
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from claire.storage.alerts import acknowledge, get_alert, list_alerts
    from claire.storage.database import default_url

    if limit < 1:
        _fail("--limit must be >= 1")
    database = checked_database(db or default_url(), "--db" if db else "CLAIRE_DATABASE_URL", existing=True)
    try:
        if not database.is_at_head():
            _fail(f"database {database.safe_url} has no current schema: run `claire db upgrade` (or a run) first")
        if ack is not None:
            if not acknowledge(database, ack):
                _fail(f"--ack {ack}: no alert with this id (`claire alerts --all` lists them)")
            row = get_alert(database, ack) or {}
            typer.echo(f"acknowledged {ack} ({row.get('code')}: {row.get('message')})")
            return
        rows = list_alerts(database, run, unacked_only=not all_, rules_only=not all_, limit=limit)
    finally:
        database.dispose()
    console = Console()
    if not console.is_terminal:  # piped or logged: whole lines, not an 80-column fold
        console = Console(width=240)
    if not rows:
        console.print("no alerts" + ("" if all_ else " to acknowledge (--all lists every alert)"))
        return
    table = Table(title="Alerts" + (f" of run {run}" if run else ""))
    for col in ("id", "time (UTC)", "level", "category", "code", "n", "last seen", "message", "ack"):
        table.add_column(col, overflow="fold")
    colours = {"critical": "red", "warning": "yellow", "info": "cyan"}
    for r in rows:
        level = str(r["level"])
        table.add_row(escape(str(r["id"])), _when(r["ts"]), f"[{colours.get(level, 'white')}]{escape(level)}[/]",
                      escape(str(r["category"] or "")), escape(str(r["code"])), str(r["occurrences"] or 1),
                      _when(r["last_seen"]), escape(str(r["message"])), "yes" if r["acknowledged"] else "")
    console.print(table)


def with_alert_env(cfg: Any) -> Any:
    """``cfg`` with the ``CLAIRE_ALERT_*`` variables over its alerts section (ValueError naming the
    variable for a bad value: the command refuses it in one line)."""
    import os

    import msgspec  # start-up time: only for the commands that run

    return msgspec.structs.replace(cfg, alerts=cfg.alerts.with_env(dict(os.environ)))


def register(app: typer.Typer) -> None:
    app.command("alerts")(alerts)
