"""`oncall open`: the console."""

from __future__ import annotations

import click

from oncall.cliutil import db_option, fail, resolve_db


@click.command("open")
@click.option("--read-only", is_flag=True, help="look, do not touch: labels, notes and actions are disabled")
@db_option
@click.pass_context
def open_console(ctx: click.Context, read_only: bool, db: str | None) -> None:
    """Open the incident console (overview, explorer, reader, trace)."""
    from oncall.store import StoreError
    from oncall.tui.app import run_app

    try:
        run_app(resolve_db(ctx, db), read_only=read_only)
    except StoreError as exc:
        fail(str(exc))  # run_app already fell back to read-only where DuckDB allows it
