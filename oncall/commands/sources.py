"""CLI glue for remote sources: `oncall load URL|@NAME --since T [--until T] [FILTER...]`.

Errors are one line naming the source and what to change (exit 2 for what was typed or
configured, 1 for a source that failed or refused); the incident is untouched by a failed pull.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
              "bytes_received": stats.bytes, "limit": limit, "notes": stats.notes}
    if ids:
        store.record_event("load", f"pulled {report.spans_added} spans from {source.ref.display}", pulled)
    if as_json:
        emit_json({**report.to_dict(), "summary": summ, "pull": pulled})
    else:
        print_load_report(report, summ)
        wire = "as Arrow" if source.format.startswith("clickhouse") else "of JSON"
        notes = f" ({'; '.join(stats.notes)})" if stats.notes else ""
        click.echo(f"received {stats.rows:,} rows ({(stats.bytes or 0) / 1e6:.1f} MB {wire}) from "
                   f"{source.ref.display}, {window.since.isoformat()} → {window.until.isoformat()}{notes}", err=True)
    sys.exit(EXIT_PROBLEM if report.failed else EXIT_OK)


def source_options(f: Any) -> Any:
    """--source URL|@NAME with its window, on commands that can ask a source instead of the incident."""
    f = click.option("--until", "source_until", default=None, metavar="T",
                     help="with --source: window end (default now)")(f)
    f = click.option("--since", "source_since", default=None, metavar="T",
                     help="with --source: window start (ISO, 01:00 UTC, or -6h)")(f)
    return click.option("--source", "source", default=None, metavar="URL|@NAME",
                        help="ask a trace store (clickhouse://…, @NAME) over --since/--until instead of the incident")(f)


@contextmanager
def incident_or_source(ctx: click.Context, db: str | None, source: str | None, since: str | None,
                       until: str | None, pull_filter: list[str] | None = None) -> Iterator[Any]:
    """The incident (read-only), or with --source a scratch incident holding the source's window
    (oncall.sources.scratch; the incident itself is untouched)."""
    if source is None:
        if since or until:
            fail("--since/--until go with --source; on the incident use since=/until= filter terms")
        yield open_store(ctx, db, read_only=True, create=False)
        return
    from oncall.query.filters import FilterError
    from oncall.sources.scratch import scratch_incident

    progress = _rows_progress(sys.stderr.isatty())
    try:
        with scratch_incident(source, since, until, pull_filter, progress=progress) as (store, window, stats):
            if progress:
                click.echo("\r" + " " * 40 + "\r", err=True, nl=False)
            click.echo(f"oncall: {stats.rows:,} rows from {store_label(source)} "
                       f"{window.since.isoformat()} → {window.until.isoformat()}", err=True)
            yield store
    except SourceError as exc:
        fail(str(exc), exc.exit_code)
    except FilterError as exc:
        fail(str(exc))


def in_place(text: str, since: str | None, until: str | None, question: Callable[[Any], dict[str, Any]],
             within: list[Any] | None = None) -> Any:
    """`question(engine)` answered inside the source (aggregates only; the result gains `in_place`
    with the bytes received), or None when the source or the question needs pulled rows (said on
    stderr; the caller then asks a scratch incident). `within`: the filters the question is about
    (the engine reads only the time range their absolute since=/until= name)."""
    from oncall.query.filters import FilterError
    from oncall.sources.clickhouse.canonical import InPlaceUnsupported

    session = open_session(text, since, until, within=within)
    try:
        if not session.in_place:
            return None
        try:
            res = session.ask(question)
        except InPlaceUnsupported as exc:
            click.echo(f"oncall: {exc}; answering on the window's rows pulled into a scratch incident", err=True)
            return None
        except FilterError as exc:
            fail(str(exc))
        except SourceError as exc:
            fail(str(exc), exc.exit_code)
        window = session.window
        res["in_place"] = {"source": session.display, "since": window.since.isoformat(),
                           "until": window.until.isoformat(), "queries": session.queries,
                           "bytes_received": session.bytes_received, "seconds": round(session.seconds, 3),
                           "notes": session.notes}
        for note in session.notes:
            click.echo(f"oncall: note: {note}", err=True)
        click.echo(f"oncall: computed in {session.display} over {window.since.isoformat()} → "
                   f"{window.until.isoformat()}: {session.queries} queries, "
                   f"{session.bytes_received:,} bytes of aggregates received, {session.seconds:.2f} s", err=True)
        return res
    finally:
        session.close()


def open_session(text: str, since: str | None, until: str | None, cap: int | None = None,
                 within: list[Any] | None = None) -> Any:
    """The source over its window (oncall.sources.session), or a one-line error naming what to change."""
    from oncall.query.filters import FilterError
    from oncall.sources.session import DEFAULT_CAP, SourceSession

    try:
        return SourceSession(text, since, until, cap=cap or DEFAULT_CAP, within=within)
    except FilterError as exc:
        fail(str(exc))
    except SourceError as exc:
        fail(str(exc), exc.exit_code)


def store_label(text: str) -> str:
    from oncall.sources.registry import parse_ref

    return parse_ref(text).display


def cannot_answer_in_place(session: Any) -> str | None:
    """Why the source cannot compute the console's overview in place over this window (None: it can),
    e.g. a window with retrieval spans, whose link to the calls they fed is made at load. Builds the
    session's engine, which its first question would build anyway."""
    from oncall.sources.clickhouse.canonical import InPlaceUnsupported

    try:
        session.ask(lambda engine: None)
    except InPlaceUnsupported as exc:
        return str(exc)
    except SourceError as exc:
        session.close()
        fail(str(exc), exc.exit_code)
    return None


def pull_for_console(ctx: click.Context, db: str | None, text: str, since: str | None, until: str | None,
                     limit: int | None) -> None:
    """`open --source` on a source that answers nothing in place (the stores' APIs): the window's
    newest LLM calls (capped) pulled into the incident before the console opens on it."""
    from oncall.ingest.loader import LoadError

    session = open_session(text, since, until, limit)
    progress = _rows_progress(sys.stderr.isatty())
    try:
        store = open_store(ctx, db)
        try:
            done = session.pull(store, None, progress=progress)
        finally:
            store.close()
    except SourceError as exc:
        fail(str(exc), exc.exit_code)
    except LoadError as exc:
        fail(str(exc))
    finally:
        session.close()
    click.echo(f"\roncall: pulled {done.spans_added:,} spans ({done.rows_received:,} rows received, newest first, at "
               f"most {done.cap:,} LLM calls) from {session.display}", err=True)
