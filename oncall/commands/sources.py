"""CLI glue for remote sources: `oncall load URL|@NAME --since T [--until T] [FILTER...]`.

Errors are one line naming the source and what to change (exit 2 for what was typed or
configured, 1 for a source that failed or refused); the incident is untouched by a failed pull.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from oncall.cliutil import EXIT_OK, EXIT_PROBLEM, emit_json, fail, open_store
from oncall.sources.base import SourceError


def _rows_progress(enabled: bool) -> Any:
    """A one-line 'received N rows' counter on stderr (TTY only), at most a few updates a second."""
    if not enabled:
        return None
    last = [0.0]

    def show(rows: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.25:
            last[0] = now
            click.echo(f"\roncall: received {rows:,} rows…", err=True, nl=False)

    return show


def load_from_source(ctx: click.Context, text: str, filters: list[str], *, since: str | None, until: str | None,
                     limit: int | None, maps: tuple[str, ...], fmt: str | None, no_progress: bool,
                     db: str | None, as_json: bool) -> None:
    from oncall.ingest.cost import cost_summary
    from oncall.ingest.loader import LoadError, summary
    from oncall.output import print_load_report
    from oncall.query.filters import FilterError, parse_filter
    from oncall.sources.pull import load_source, window_of
    from oncall.sources.registry import open_source

    if fmt is not None or maps:
        fail(f"{text}: --format and --map are for files; a source's schema is detected from its table")
    try:
        flt = parse_filter(filters)
        window = window_of(since, until, flt)
        source = open_source(text)
    except FilterError as exc:
        fail(str(exc))
    except SourceError as exc:
        fail(str(exc), exc.exit_code)
    progress = _rows_progress(not (no_progress or as_json) and sys.stderr.isatty())
    try:
        store = open_store(ctx, db)
        try:
            report, stats = load_source(store, source, window, flt, limit=limit, progress=progress,
                                        waiting=lambda: click.echo("oncall: another load is running on this "
                                                                   "incident; waiting for it to finish", err=True))
        except SourceError as exc:
            fail(str(exc), exc.exit_code)
        except (LoadError, FilterError) as exc:
            fail(str(exc))
        finally:
            if progress:
                click.echo("\r" + " " * 40 + "\r", err=True, nl=False)
    finally:
        source.close()
    ids = [f.import_id for f in report.files if f.import_id is not None and f.status == "loaded"]
    summ = summary(store, ids)
    summ["cost"] = cost_summary(store.cursor(), ids)
    pulled = {"source": source.ref.display, "since": window.since.isoformat(), "until": window.until.isoformat(),
              "filter": " ".join(str(t) for t in flt.terms), "rows_received": stats.rows,
              "bytes_received": stats.bytes, "limit": limit}
    if ids:
        store.record_event("load", f"pulled {report.spans_added} spans from {source.ref.display}", pulled)
    if as_json:
        emit_json({**report.to_dict(), "summary": summ, "pull": pulled})
    else:
        print_load_report(report, summ)
        click.echo(f"received {stats.rows:,} rows ({(stats.bytes or 0) / 1e6:.1f} MB as Arrow) from "
                   f"{source.ref.display}, {window.since.isoformat()} → {window.until.isoformat()}", err=True)
    sys.exit(EXIT_PROBLEM if report.failed else EXIT_OK)
