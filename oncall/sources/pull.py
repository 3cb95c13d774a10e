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
from oncall.ingest.loader import FileResult, LoadError, LoadReport, PartWriter, write_import
from oncall.ingest.writer import JSON_COLUMNS
from oncall.query.filters import Filter, compile_filter, parse_filter, resolve_time
from oncall.sources.base import Progress, PullStats, Source, SourceError, SourceUsageError, Window
from oncall.sources.terms import refuse_local_terms
from oncall.store.db import IncidentDB, load_lock
from oncall.store.loadparts import salvage_unregistered_parts
from oncall.store.schema import ARROW_SCHEMA, IMPORTER_COLUMNS

# Terms the exact filter leaves to the source: the window (already applied) and ids, which the
# incident resolves through its span_ids table (the source matches trace/span/request ids itself).
_WINDOW_KEYS = ("since", "until")
_SOURCE_ONLY_KEYS = ("request",)
RETRIEVAL_KINDS = "kind=retriever,embedding"  # pulled with the calls they fed
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
        # A filter without kind= names LLM calls; the retrieval and embedding spans that fed them come
        # along (with the filter's other terms), so the load links each call to its retrieval.
        if "kind" not in Filter(terms).keys():
            rag = compile_filter(None, Filter(terms + parse_filter(RETRIEVAL_KINDS).terms), alias="b")
            self.compiled.where = f"(({self.compiled.where}) OR ({rag.where}))"
            self.compiled.params = [*self.compiled.params, *rag.params]
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
                self.kept += row.get("kind") not in ("retriever", "embedding")  # --limit counts calls


def _where_text(flt: Filter) -> str:
    return " ".join(str(t) for t in flt.terms if t.key not in _WINDOW_KEYS)


# Slice lengths for sources that pull in slices (`Source.slices = True`: the HTTP APIs). The window is
# cut at multiples of the shortest length that gives at most MAX_SLICES slices, counted from the
# epoch, so the same window (or an overlapping one) cuts the same way on the next run.
SLICE_LADDER = (dt.timedelta(hours=1), dt.timedelta(hours=6), dt.timedelta(days=1), dt.timedelta(days=7),
                dt.timedelta(days=30))
MAX_SLICES = 48
# A slice that ended this long before the pull began is complete in the store (ingestion lags are
# shorter): pulled once, it is skipped on a re-run. A younger slice is always pulled again.
SETTLED = dt.timedelta(minutes=15)


def plan_slices(window: Window) -> list[Window]:
    """The window cut at aligned boundaries, newest slice first."""
    span = window.until - window.since
    step = next((s for s in SLICE_LADDER if span / s <= MAX_SLICES), SLICE_LADDER[-1])
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    out: list[Window] = []
    hi = window.until
    while hi > window.since:
        lo = epoch + ((hi - epoch - dt.timedelta(microseconds=1)) // step) * step
        lo = max(lo, window.since)
        out.append(Window(lo, hi))
        hi = lo
    return out


def _digest(source: Source, window: Window, flt: Filter) -> str:
    what = f"{source.identity()}\n{window.since.isoformat()}\n{window.until.isoformat()}\n{_where_text(flt)}"
    return hashlib.sha256(what.encode()).hexdigest()


def _pulled_before(part: PartWriter, digest: str) -> int | None:
    row = part.cur.execute(
        "SELECT import_id FROM (SELECT * FROM memory.main.imports UNION ALL SELECT * FROM imports) "
        "WHERE sha256 = ? AND status = 'loaded' LIMIT 1", [digest]).fetchone()
    return int(row[0]) if row else None


def load_source(db: IncidentDB, source: Source, window: Window, flt: Filter | str | list[str] | None = None, *,
                limit: int | None = None, progress: Progress | None = None,
                waiting: Callable[[], None] | None = None) -> tuple[LoadReport, PullStats]:
    """Pull the window's matching spans from `source` into a new load part of the incident.

    A source with `slices = True` is pulled slice by slice (plan_slices, newest first), each slice
    its own import, all or nothing: an interrupted pull keeps the slices it finished, and running
    the same command again skips the settled slices already pulled and fetches the rest. Any other
    source is one import for the whole window."""
    if db.read_only:
        raise LoadError(f"{db.path} is open read-only; loading needs it writable (drop --read-only)")
    flt = parse_filter(flt)
    refuse_local_terms(flt)
    if limit is not None and limit <= 0:
        raise SourceUsageError(f"--limit {limit}: give a positive number of LLM calls")
    sliced = bool(getattr(source, "slices", False))
    slices = plan_slices(window) if sliced else [window]
    started = dt.datetime.now(dt.UTC)
    stats = PullStats(rows=0, bytes=None)
    exact = ExactFilter(flt)
    report = LoadReport()
    kept = 0

    def reader(part_window: Window, extra: dict[str, Any]) -> Callable[[Any], None]:
        def read(writer: Any) -> None:
            nonlocal kept
            left = None if limit is None else limit - kept
            sink = FilteredSink(writer, exact, left)
            got = source.pull(part_window, flt, sink, limit=left,
                              progress=(lambda n: progress(stats.rows + n)) if progress else None)
            sink.flush()
            stats.rows += got.rows
            stats.bytes = got.bytes if got.bytes is not None else stats.bytes  # the source's running total
            stats.notes = got.notes
            kept += sink.kept
            extra.update({"rows_received": got.rows, "bytes_received": got.bytes, "rows_kept": sink.kept,
                          "capped": sink.full})
        return read

    done = 0
    try:
        with load_lock(db.path, waiting):
            db.refresh()
            salvage_unregistered_parts(db)
            part = PartWriter(db)
            try:
                for piece in slices:
                    if limit is not None and kept >= limit:
                        break
                    digest = _digest(source, piece, flt)
                    settled = started - piece.until >= SETTLED
                    note = f"{iso_utc(piece.since)} → {iso_utc(piece.until)}" if sliced else None
                    if sliced and settled and (prior := _pulled_before(part, digest)) is not None:
                        report.files.append(FileResult(source.ref.display, source.format, "already-loaded",
                                                       import_id=prior, note=f"{note} pulled before (import {prior})"))
                        done += 1
                        continue
                    if sliced and not settled:
                        digest = hashlib.sha256(f"{digest}\n{started.isoformat()}".encode()).hexdigest()
                    extra: dict[str, Any] = {"source": source.ref.display, "since": iso_utc(piece.since),
                                             "until": iso_utc(piece.until), "filter": _where_text(flt),
                                             "limit": limit, "window": [iso_utc(window.since), iso_utc(window.until)],
                                             "settled": settled}
                    result = write_import(part, source.ref.display, source.format, digest, None,
                                          reader(piece, extra), extra=extra)
                    if note and result.note is None:
                        result.note = note
                    report.files.append(result)
                    done += 1
            except SourceError as exc:
                part.close(register=True)  # the slices finished are kept; the one that failed left nothing
                if sliced and done and len(slices) > 1:
                    raise _resumable(exc, done, len(slices)) from None
                raise
            except BaseException:
                part.close(register=True)  # what finished is registered; the import in progress left nothing
                raise
            part.close(register=True)
    finally:
        exact.close()
    return report, stats


def _resumable(exc: SourceError, done: int, total: int) -> SourceError:
    """The same error, saying that the slices before it are loaded and how to continue."""
    text = f"{exc}; {done} of {total} time slices are loaded (newest first): run the same command again to pull the rest"
    out = SourceUsageError(text, kind=exc.kind) if isinstance(exc, SourceUsageError) else \
        SourceError(text, exit_code=exc.exit_code, kind=exc.kind)
    return out
