"""`oncall load URL --since T --until T [FILTER...]`: one pull from a source into a load part.

The same load path as files (ingest.loader.write_import): the rows are written in the load's own
part inside a transaction, deduplicated against everything loaded before by (trace id, span id)
(so re-pulling an overlapping window adds nothing twice), and the part is registered only when the
pull is complete (so an interrupted pull, or a source that fails mid-stream, leaves nothing).

The source pushes the window and the filter down as far as its engine can; what it cannot decide
exactly is decided here by the same filter compiled for DuckDB over the mapped rows (`ExactFilter`),
so the incident receives exactly the rows the filter names, whatever the source's pushdown.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable
from typing import Any

import duckdb
import pyarrow as pa

from oncall.display import iso_utc
from oncall.ingest import jsonio
from oncall.ingest.loader import LoadError, LoadReport, PartWriter, write_import
from oncall.ingest.writer import JSON_COLUMNS
from oncall.query.filters import Filter, compile_filter, parse_filter, resolve_time
from oncall.sources.base import Progress, PullStats, Source, SourceUsageError, Window
from oncall.store.db import IncidentDB, load_lock
from oncall.store.loadparts import salvage_unregistered_parts
from oncall.store.schema import ARROW_SCHEMA, IMPORTER_COLUMNS

# Terms the exact filter leaves to the source: the window (already applied) and ids, which the
# incident resolves through its span_ids table (the source matches trace/span/request ids itself).
_WINDOW_KEYS = ("since", "until")
_SOURCE_ONLY_KEYS = ("request",)
EXACT_BATCH = 2000


def window_of(since: str | None, until: str | None, flt: Filter, now: dt.datetime | None = None) -> Window:
    """The pull's window: --since/--until and any since=/until= terms (the narrowest wins).
    Relative (-30m) and clock (01:00) times count from now: a source has no 'newest span' yet."""
    anchor = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    lo = resolve_time("--since", since, anchor)[0] if since else None
    hi = resolve_time("--until", until, anchor)[0] if until else anchor
    for t in flt.terms:
        if t.key == "since":
            v = resolve_time("since", t.value, anchor)[0]
            lo = v if lo is None else max(lo, v)
        elif t.key == "until":
            hi = min(hi, resolve_time("until", t.value, anchor)[0])
    if lo is None:
        raise SourceUsageError("a source needs a window: --since T (and --until T, default now); "
                               "T is an ISO time, a clock time (01:00, UTC) or relative (-6h)")
    return Window(lo, hi)


class ExactFilter:
    """The filter's DuckDB form, run over a batch of mapped rows before they are written."""

    def __init__(self, flt: Filter) -> None:
        terms = tuple(t for t in flt.terms if t.key not in _WINDOW_KEYS + _SOURCE_ONLY_KEYS)
        self.compiled = compile_filter(None, Filter(terms), alias="b")
        used = set(re.findall(r"\bb\.([a-z_]+)", self.compiled.where))
        self.columns = [c for c in IMPORTER_COLUMNS if c in used] or ["kind"]
        self.schema = pa.schema([ARROW_SCHEMA.field(c) for c in self.columns])
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")

    def keep(self, rows: list[dict[str, Any]]) -> list[bool]:
        if self.compiled.where == "TRUE":
            return [True] * len(rows)
        cols: dict[str, list[Any]] = {c: [] for c in self.columns}
        for r in rows:
            for c in self.columns:
                v = r.get(c)
                if c in JSON_COLUMNS and v is not None and not isinstance(v, str):
                    v = jsonio.dumps(v)
                elif c in ("start_time", "end_time") and isinstance(v, int):
                    v = dt.datetime.fromtimestamp(v / 1e6, dt.UTC)
                cols[c].append(v)
        table = pa.table({c: pa.array(cols[c], type=self.schema.field(c).type) for c in self.columns})
        table = table.append_column("_i", pa.array(range(len(rows)), pa.int64()))
        self.con.register("b", table)
        try:
            hits = self.con.execute(f"SELECT _i FROM b WHERE {self.compiled.where}", self.compiled.params).fetchall()
        finally:
            self.con.unregister("b")
        keep = [False] * len(rows)
        for (i,) in hits:
            keep[i] = True
        return keep

    def close(self) -> None:
        self.con.close()


class FilteredSink:
    """Hands the writer the rows the exact filter keeps, at most `limit` of them."""

    def __init__(self, writer: Any, exact: ExactFilter, limit: int | None) -> None:
        self.writer = writer
        self.exact = exact
        self.limit = limit
        self.pending: list[dict[str, Any]] = []
        self.kept = 0
        self.seen = 0
        self.problems = writer.problems

    @property
    def full(self) -> bool:
        return self.limit is not None and self.kept >= self.limit

    def add(self, row: dict[str, Any], line: int | None = None) -> None:
        self.pending.append(row)
        if len(self.pending) >= EXACT_BATCH:
            self.flush()

    def problem(self, line: int | None, kind: str, message: str) -> None:
        self.writer.problem(line, kind, message)

    def flush(self) -> None:
        rows, self.pending = self.pending, []
        self.seen += len(rows)
        for row, ok in zip(rows, self.exact.keep(rows), strict=True):
            if ok and not self.full:
                self.writer.add(row)
                self.kept += 1


def _where_text(flt: Filter) -> str:
    return " ".join(str(t) for t in flt.terms if t.key not in _WINDOW_KEYS)


def load_source(db: IncidentDB, source: Source, window: Window, flt: Filter | str | list[str] | None = None, *,
                limit: int | None = None, progress: Progress | None = None,
                waiting: Callable[[], None] | None = None) -> tuple[LoadReport, PullStats]:
    """Pull the window's matching spans from `source` into a new load part of the incident."""
    if db.read_only:
        raise LoadError(f"{db.path} is open read-only; loading needs it writable (drop --read-only)")
    flt = parse_filter(flt)
    if limit is not None and limit <= 0:
        raise SourceUsageError(f"--limit {limit}: give a positive number of LLM calls")
    what = f"{source.identity()}\n{window.since.isoformat()}\n{window.until.isoformat()}\n{_where_text(flt)}"
    digest = hashlib.sha256(what.encode()).hexdigest()
    stats = PullStats()
    extra: dict[str, Any] = {"source": source.ref.display, "since": iso_utc(window.since),
                             "until": iso_utc(window.until), "filter": _where_text(flt), "limit": limit}
    exact = ExactFilter(flt)
    report = LoadReport()

    def read(writer: Any) -> None:
        sink = FilteredSink(writer, exact, limit)
        got = source.pull(window, flt, sink, limit=limit, progress=progress)
        sink.flush()
        stats.rows, stats.bytes, stats.notes = got.rows, got.bytes, got.notes
        extra.update({"rows_received": got.rows, "bytes_received": got.bytes, "rows_kept": sink.kept,
                      "capped": sink.full})

    try:
        with load_lock(db.path, waiting):
            db.refresh()
            salvage_unregistered_parts(db)
            part = PartWriter(db)
            try:
                report.files.append(write_import(part, source.ref.display, source.format, digest, None, read,
                                                 extra=extra))
            except BaseException:
                part.close(register=True)  # nothing of this pull is registered: the incident is as it was
                raise
            part.close(register=True)
    finally:
        exact.close()
    return report, stats
