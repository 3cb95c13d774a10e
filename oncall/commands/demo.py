"""`oncall demo`: build the bundled demo incident (and open the console)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from oncall.cliutil import EXIT_OK, db_option, emit_json, fail, json_option, resolve_db


def _check_replaceable(path: Path, force: bool) -> None:
    """Refuse to rebuild over an incident the demo did not build, or over a responder's work."""
    from oncall.demo import demo_truth
    from oncall.store import StoreError, open_db

    try:
        store = open_db(path, read_only=True)
    except StoreError as exc:
        fail(f"{path} exists and cannot be opened ({exc}); choose another --db")
    try:
        is_demo = demo_truth(store.cursor()) is not None
        spans = int(store.cursor().execute("SELECT count(*) FROM spans").fetchone()[0])
        work = {k: v for k, v in store.has_responder_work().items() if v}
    finally:
        store.close()
    if force:
        return
    if not is_demo and spans:
        fail(f"{path} holds an incident that the demo did not build; refusing to replace it "
             "(use --db to pick another file, or --force)")
    if work:
        lost = ", ".join(f"{n} {what}" for what, n in work.items())
        fail(f"{path} holds responder work that rebuilding the demo would erase ({lost}); "
             "refusing (use --db to build the demo elsewhere, or --force to erase it)")


@click.command()
@click.option("--no-tui", is_flag=True, help="only build the database; do not open the console")
@click.option("--seed", default=7, show_default=True, help="random seed (the same seed builds the same incident)")
@click.option("--hours", default=6.0, show_default=True, type=click.FloatRange(min=0.1, max=24 * 30),
              help="hours of traffic")
@click.option("--force", is_flag=True, help="replace an existing incident database that the demo did not build")
@db_option
@json_option
@click.pass_context
def demo(ctx: click.Context, no_tui: bool, seed: int, hours: float, force: bool, db: str | None,
         as_json: bool) -> None:
    """Build a realistic demo incident (silent model update, prompt cost regression, 429 burst)."""
    from oncall.demo import build_demo
    from oncall.ingest.loader import summary
    from oncall.output import ProgressBar, print_load_report
    from oncall.store import default_db_path, open_db
    from oncall.store.db import remove_incident

    path = default_db_path(resolve_db(ctx, db))
    if path.exists():
        _check_replaceable(path, force)
        remove_incident(path)
    bar = None if (as_json or not sys.stderr.isatty()) else ProgressBar()
    try:
        truth, report = build_demo(path, seed=seed, hours=hours, progress=bar.update if bar else None)
    finally:
        if bar:
            bar.close()
    store = open_db(path, read_only=True)
    try:
        summ = summary(store)
    finally:
        store.close()
    if as_json:
        emit_json({"db": str(path), "truth": truth.to_dict(), **report.to_dict(), "summary": summ})
        sys.exit(EXIT_OK)
    print_load_report(report, summ)
    click.echo(f"\ndemo incident written to {path}")
    for ch in truth.changes:
        click.echo(f"  injected {ch.at}  {ch.kind:<18} {ch.description}")
    if no_tui or not sys.stdout.isatty():
        click.echo(f"next: oncall open --db {path}   (or oncall changes --db {path})")
        return
    try:
        from oncall.tui.app import run_app
    except ModuleNotFoundError:
        click.echo(f"next: oncall changes --db {path}")
        return
    run_app(path)
