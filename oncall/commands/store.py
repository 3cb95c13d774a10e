"""`oncall compact`: merge the incident's load parts (oncall/store/compact.py)."""

from __future__ import annotations

import click

from oncall.cliutil import db_option, emit_json, json_option, open_store


@click.command()
@click.option("--full", is_flag=True, help="merge every load part into one (default: merge by size tiers)")
@db_option
@json_option
@click.pass_context
def compact(ctx: click.Context, full: bool, db: str | None, as_json: bool) -> None:
    """Merge load parts so queries stay fast after many loads (a live receiver writes one a second).

    Readers are never blocked: consoles open on the incident move to the merged parts at their
    next refresh. Safe to interrupt at any point.
    """
    from oncall.store.compact import compact as run

    store = open_store(ctx, db, create=False)
    report = run(store, full=full)
    if as_json:
        emit_json(report.to_dict())
        return
    if report.busy:
        click.echo("another compaction is running on this incident; nothing to do")
        return
    for m in report.merges:
        click.echo(f"merged parts {', '.join(str(n) for n in m.parts)} into part {m.into} "
                   f"({m.spans:,} spans, {m.seconds:.1f} s)")
    click.echo(f"{report.parts_before} load part(s) before, {report.parts_after} now"
               + (f"; removed {report.removed_files} leftover file(s)" if report.removed_files else ""))
