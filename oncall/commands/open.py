"""`oncall open`: the console."""

from __future__ import annotations

import click

from oncall.cliutil import db_option, fail, open_store, resolve_db


@click.command("open")
@click.option("--read-only", is_flag=True, help="look, do not touch: labels, notes and actions are disabled")
@click.option("--source", default=None, metavar="URL|@NAME",
              help="open on a trace store (clickhouse://…, @NAME) over --since/--until: the overview and what "
                   "changed computed there, the cohorts you open brought home into the incident")
@click.option("--since", default=None, metavar="T", help="with --source: window start (ISO, 01:00 UTC, or -6h)")
@click.option("--until", default=None, metavar="T", help="with --source: window end (default now)")
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N",
              help="with --source: at most N LLM calls brought home per cohort, the newest (default 20,000)")
@db_option
@click.pass_context
def open_console(ctx: click.Context, read_only: bool, source: str | None, since: str | None, until: str | None,
                 limit: int | None, db: str | None) -> None:
    """Open the incident console (overview, explorer, reader, trace)."""
    from oncall.store import StoreError
    from oncall.tui.launch import run_app  # no Textual yet: it is imported while the overview's questions run

    session = None
    if source is not None:
        from oncall.commands.sources import cannot_answer_in_place, open_session, pull_for_console

        session = open_session(source, since, until, limit)
        if session.in_place:  # the window's canonical relation is built there first: seconds to a minute
            w = session.window
            click.echo(f"oncall: preparing {w.since.isoformat()} → {w.until.isoformat()} in {session.display} "
                       "(the overview is computed there)…", err=True)
        why = cannot_answer_in_place(session) if session.in_place else None
        if why:
            click.echo(f"oncall: {why}; the window's newest calls are brought home first", err=True)
        if not session.in_place or why:  # an API store: its newest calls brought home first, then the console
            session.close()
            session = None
            pull_for_console(ctx, db, source, since, until, limit)
        else:
            open_store(ctx, db).close()  # the incident the cohorts are brought home into (made if new)
    elif since or until or limit:
        fail("--since, --until and --limit go with --source")

    try:
        run_app(resolve_db(ctx, db), read_only=read_only, source=session)
    except StoreError as exc:
        fail(str(exc))  # run_app already fell back to read-only where DuckDB allows it
