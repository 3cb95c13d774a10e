"""Writing one file's spans into the incident database, all or nothing.

Importers hand a FileWriter canonical rows (Python dicts, batched into Arrow) or Arrow tables / SQL
selects (the bulk paths) inside the loader's first transaction; finish(), in its second, removes
duplicates, resolves inherited cohort keys down each trace and indexes every id form. The loader
(ingest.loader) makes the pair all or nothing: if anything fails, or the process dies, the
database ends up exactly as it was before the file.

Batches are inserted by one background thread while the importer parses the next batch: DuckDB
releases the GIL while it runs, so Python parsing and DuckDB's writing use both cores. At most one
batch waits at a time, so memory stays bounded. Only that thread touches the connection while a
batch is pending; every other use of `con` first calls drain().
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from oncall.ingest import jsonio
from oncall.ingest.cost import estimate_costs
from oncall.ingest.retrieval_link import link_retrievals
from oncall.ingest.validate import absurd_times, drop_unreadable_times, rows_to_arrow
from oncall.redact import PREFILTER, redact_text, sql_redact, sql_str
from oncall.store.db import utc_cursor
from oncall.store.parts import PK_SHIFT
from oncall.store.schema import (
    ARROW_SCHEMA,
    IMPORTER_COLUMNS,
    INHERITED_KEYS,
    RETRIEVAL_SPAN_COLUMNS,
    SPAN_COLUMN_NAMES,
)

JSON_COLUMNS = {"input_messages", "output_messages", "tool_calls", "attributes", "inherited", "raw",
                "retrieved_docs"}
# Every text column an export can fill with what it likes is redacted in SQL on the way in (a span
# name can be `GET https://u:pw@host`, a user id an API key). Left out: trace, span and parent
# ids (normalised hex that dedupe and the span tree depend on), the provenance the writer sets
# itself, and the importers' closed vocabularies (kind, span_kind, status, error_type). Clean
# values pay only the prefilter scan.
REDACTED_COLUMNS = {"input_messages", "output_messages", "tool_calls", "attributes", "raw",
                    "input_text", "output_text", "error", "name", "request_id", "response_id",
                    "provider", "model", "served_model", "session_id", "user_id", "tenant", "feature",
                    "prompt_name", "prompt_version", "env", "release", "service", "finish_reason",
                    "inherited", "retrieval_query", "retrieved_docs", "embedding_model", "retrieval_index"}
BATCH_ROWS = 2000
SCAN_CHUNK_ROWS = 2048
FINISH_CHUNK_SPANS = 250_000

_STAGE_SCHEMA = pa.schema([ARROW_SCHEMA.field(c) for c in IMPORTER_COLUMNS])


class TooManyProblems(Exception):
    pass


def _dumps(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return jsonio.dumps(value)


_IMPORTER_SET = frozenset(IMPORTER_COLUMNS)


def stage_rows(rows: list[dict[str, Any]], report: Callable[[int | None, str, str], None]) -> pa.Table:
    """Canonical rows as the Arrow batch the writer inserts: JSON columns serialised, every value in
    its column's type. A row that cannot be held (JSON nested past what any reader parses back, an
    integer past 64 bits) is reported at its line and left out; an unknown column is a bug.

    FileWriter.flush stages its buffered rows with this; the live receiver stages each request's
    rows as it decodes them (live.payload), so what waits for the next part is Arrow memory, not
    millions of Python objects the garbage collector walks again and again."""
    kept = []
    for r in rows:
        unknown = r.keys() - _IMPORTER_SET
        if unknown:
            raise KeyError(f"importer produced unknown columns: {sorted(unknown)}")
        try:
            for c in JSON_COLUMNS:
                v = r.get(c)
                if v is not None and not isinstance(v, str):
                    r[c] = _dumps(v)
        except ValueError as exc:  # jsonio.TooDeep: a value no reader could parse back
            report(r.get("source_line"), "too-deep", f"{c}: {exc}; record skipped")
            continue
        kept.append(r)
    return rows_to_arrow(kept, _STAGE_SCHEMA, report)


def _select_list() -> str:
    parts = []
    for c in IMPORTER_COLUMNS:
        if c in REDACTED_COLUMNS:
            parts.append(f"{sql_redact(c)} AS {c}")
        else:
            parts.append(c)
    return ", ".join(parts)


class FileWriter:
    """The sink importers write into. One per file."""

    def __init__(self, con: duckdb.DuckDBPyConnection, import_id: int, path: Path | str, fmt: str,
                 *, strict: bool = False, on_progress: Callable[[int], None] | None = None) -> None:
        self.con = con
        self.import_id = import_id
        self.path = path
        self.format = fmt
        self.strict = strict
        self.on_progress = on_progress
        self.rows: list[dict[str, Any]] = []
        self.problems: list[tuple[int | None, str, str]] = []
        self.warnings: list[tuple[int | None, str]] = []  # records loaded but worth a word (validate.py)
        self.note: str | None = None  # the importer's word on the file, for the load summary
        self._validated = False
        self.added = 0
        self.duplicates = 0
        self._select = _select_list()
        # span_pk is numbered here, not by a sequence: nextval() cost 1.5 s per 200k rows. Each import
        # owns the range import_id << PK_SHIFT, so pks are unique across load parts.
        self._pk_base = int(import_id) << PK_SHIFT
        self._next_pk = self._pk_base + 1
        # A second connection for importers' stateless queries over Arrow batches (validation), so
        # they need not wait for the background insert that owns `con`.
        self.scratch = utc_cursor(con)
        # Bulk inserts buffer up to five row groups before compressing and writing them; the rest is
        # written by the COMMIT, on one thread. Flushing each row group as it fills writes it while
        # the next is parsed: 200k generic spans 192 -> 175 s and 339 -> 286 s (two pairs, machine
        # loaded), the commit 33 -> 20 s. A setting of the DuckDB instance: only the loader's process.
        con.execute("SET write_buffer_row_group_count = 1")
        self._inserter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="oncall-insert")
        self._pending: Future[None] | None = None

    # -- what importers call -----------------------------------------------------------------
    def add(self, row: dict[str, Any], line: int | None = None) -> None:
        """Add one canonical span row (keys from IMPORTER_COLUMNS; unknown keys are a bug)."""
        if line is not None and row.get("source_line") is None:
            row["source_line"] = line
        self.rows.append(row)
        if len(self.rows) >= BATCH_ROWS:
            self.flush()

    def problem(self, line: int | None, kind: str, message: str) -> None:
        """Report a record that could not be used. With --strict the whole file fails.

        The message lands in the problems table and on the terminal: it may quote the record (a
        span name, a parser's excerpt), so it is redacted like the record itself."""
        message = redact_text(message) or ""
        self.problems.append((line, kind, message))
        if self.strict:
            where = f"{self.path}:{line}" if line else str(self.path)
            raise TooManyProblems(f"{where}: {message}")

    def add_arrow(self, table: pa.Table) -> None:
        """Bulk path: an Arrow table whose columns are a subset of IMPORTER_COLUMNS."""
        self.flush()
        self._insert_relation(table)

    def progress(self, done: int) -> None:
        if self.on_progress:
            self.on_progress(done)

    # -- internals ---------------------------------------------------------------------------
    def flush(self) -> None:
        if not self.rows:
            return
        rows, self.rows = self.rows, []
        # source_file/source_format left empty are filled in by the INSERT (coalesce).
        self._insert_relation(stage_rows(rows, self.problem))

    def _insert_relation(self, table: pa.Table) -> None:
        missing = [c for c in IMPORTER_COLUMNS if c not in table.column_names]
        for c in missing:
            table = table.append_column(_STAGE_SCHEMA.field(c), pa.nulls(len(table), _STAGE_SCHEMA.field(c).type))
        table = table.select(IMPORTER_COLUMNS).append_column("_row", pa.array(range(len(table)), pa.int64()))
        self.insert_select("SELECT * FROM _oncall_batch", arrow=("_oncall_batch", table))

    def insert_select(self, select_sql: str, params: list[Any] | None = None, *, redacted: bool = False,
                      arrow: tuple[str, pa.Table] | None = None,
                      after: Callable[[duckdb.DuckDBPyConnection, int], None] | None = None) -> None:
        """Bulk path: insert the rows of a SELECT producing IMPORTER_COLUMNS (by name) and `_row`.

        `_row` is a 0-based offset, unique within the SELECT (for an Arrow batch: below its length);
        span_pk is the writer's base plus `_row`. Numbering rows in SQL (a sequence or row_number())
        made DuckDB insert on one thread; gaps left by skipped rows are harmless.

        `redacted=True` says every text column was cut from an already-redacted record (the generic
        importer redacts each line once), so the per-column redaction pass is skipped.
        `arrow=(name, table)` makes an Arrow batch readable as `name` in the SELECT without a catalog
        entry (`con.register()` inside a transaction kept every batch alive until the
        commit: a 1M-span OTLP load peaked at 16 GB); such a batch is inserted in the background.
        `after(con, rows_inserted)` runs right after the insert, on the same thread and connection
        (the generic importer names the lines a batch skipped there).
        """
        if arrow is None:
            self.drain()
            self._insert(select_sql, params or [], redacted, None, after)
            return
        if params:
            raise ValueError("an Arrow batch insert takes no parameters")
        self.drain()  # at most one batch in flight: memory stays bounded
        self._pending = self._inserter.submit(self._insert, select_sql, [], redacted, arrow, after)

    def insert_now(self, select_sql: str, *, arrow: tuple[str, pa.Table]) -> None:
        """Insert an Arrow batch through an already-redacting SELECT at once, on the calling thread:
        for an `after` callback (which runs on the insert thread, where waiting on it would hang)."""
        self._insert(select_sql, [], True, arrow, None)

    def drain(self) -> None:
        """Wait for the batch being inserted in the background; re-raise its error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def abort(self) -> None:
        """Stop using the connection (before a rollback): wait for the background batch, drop its error."""
        try:
            self.drain()
        except Exception:  # noqa: BLE001 - the load is failing already; the caller reports the first error
            pass
        self._close_helpers()

    def _insert(self, select_sql: str, params: list[Any], redacted: bool,
                arrow: tuple[str, pa.Table] | None,
                after: Callable[[duckdb.DuckDBPyConnection, int], None] | None = None) -> None:
        if arrow is not None and not redacted:
            arrow = (arrow[0], self._redacted(arrow[1]))
            redacted = True
        src = str(self.path).replace("'", "''")
        fmt = self.format.replace("'", "''")
        # Ids: a record without a span id gets one derived from its content, so loading the same
        # record twice dedupes; a record without a trace id is its own trace (flat request logs).
        sql = f"""
            INSERT INTO spans
            SELECT {self._next_pk} + _row, {int(self.import_id)},
                   coalesce(source_file, '{src}'), coalesce(source_format, '{fmt}'), source_line,
                   coalesce(trace_id, span_id, substr(md5(raw), 1, 16)),
                   coalesce(span_id, substr(md5(raw), 1, 16)),
                   {', '.join(IMPORTER_COLUMNS[IMPORTER_COLUMNS.index('parent_id'):])}
            FROM (SELECT _row, {", ".join(IMPORTER_COLUMNS) if redacted else self._select} FROM ({select_sql}))
        """
        if arrow is None:
            n = int(self.con.execute(sql, params).fetchall()[0][0])
            self._next_pk = int(self.con.execute(
                "SELECT coalesce(max(span_pk), ?) + 1 FROM spans WHERE import_id = ?", [self._pk_base, self.import_id]
            ).fetchall()[0][0])
        else:
            name, table = arrow
            # Small record batches let DuckDB scan (and so parse and write) on every core; one
            # 20k-row chunk ran on one thread (9.5 s against 6.3 s for 200k generic records).
            chunked = pa.Table.from_batches(table.to_batches(max_chunksize=SCAN_CHUNK_ROWS), schema=table.schema)
            # A non-SELECT statement on a relation runs at once and returns its row count.
            n = int(self.con.from_arrow(chunked).query(name, sql).fetchall()[0][0])
            self._next_pk += len(table)
        self.added += n
        if after is not None:
            after(self.con, n)

    def _redacted(self, table: pa.Table) -> pa.Table:
        """The batch with every credential in its text columns redacted.

        One prefilter scan over each row's text columns finds the rows that may hold one (almost
        never: clean rows pay that scan only); those few are redacted by the Python twin of
        sql_redact(), which tests/test_redact.py holds equal to it. Redacting in SQL per column
        compiled every pattern per column, thread and batch (4-8 ms per column and batch for the
        six patterns, with 25 columns a 50k-span OTLP load ran about 1.5x slower); this path
        compiles one pattern per batch.
        """
        cols = [c for c in IMPORTER_COLUMNS if c in REDACTED_COLUMNS]
        text = f"concat_ws(chr(31), {', '.join(cols)})"
        dirty = [int(r[0]) for r in self.con.from_arrow(table).query(
            "_oncall_check", f"SELECT _row FROM _oncall_check WHERE regexp_matches({text}, {sql_str(PREFILTER)})"
        ).fetchall()]
        if not dirty:
            return table
        rows_col = table.column("_row")
        mask = pc.is_in(rows_col, value_set=pa.array(dirty, pa.int64()))
        fixed = table.filter(mask).to_pylist()
        for r in fixed:
            for c in cols:
                if isinstance(r.get(c), str):
                    r[c] = redact_text(r[c])
        return pa.concat_tables([table.filter(pc.invert(mask)), pa.Table.from_pylist(fixed, schema=table.schema)])

    def write_all(self) -> None:
        """Write every row still buffered or in flight; the importer is done. Then the file's rows
        are checked once (validate.py): unreadable times removed and reported, absurd ones named."""
        self.flush()
        self.drain()
        self._close_helpers()
        if not self._validated:
            self._validated = True
            self.added -= drop_unreadable_times(self.con, self.import_id, self.problem)
            self.warnings.extend(absurd_times(self.con, self.import_id))

    def _close_helpers(self) -> None:
        self._inserter.shutdown(wait=True)
        self.scratch.close()

    def finish(self) -> None:
        """Dedupe, resolve inheritance, index ids: the load's second transaction (see ingest.loader).

        The writer's connection has the load's part as its default catalog; PRIOR (the incident's
        view, without this part) holds everything loaded before. Dedupe and inheritance run over
        every trace the file touched, in buckets of traces of about FINISH_CHUNK_SPANS spans each,
        so their working memory does not grow with the file (at 1M OTLP spans the inheritance
        step's peak went from 2.1 GB in one pass to 1.7 GB).
        """
        self.write_all()
        con = self.con
        iid = int(self.import_id)
        touched = f"SELECT DISTINCT trace_id FROM spans WHERE import_id = {iid}"
        total, with_parent = con.execute(
            f"""SELECT count(*), count(parent_id) FROM (
                    SELECT parent_id FROM spans WHERE trace_id IN ({touched})
                    UNION ALL SELECT parent_id FROM {PRIOR} WHERE trace_id IN ({touched}))"""
        ).fetchall()[0]
        buckets = max(1, -(-int(total) // FINISH_CHUNK_SPANS))
        for b in range(buckets):
            traces = touched + (f" AND hash(trace_id) % {buckets} = {b}" if buckets > 1 else "")
            prior = _prior_of_traces(con, traces)
            try:
                self.duplicates += _dedupe(con, iid, traces, prior)
                if with_parent:
                    resolve_inheritance(con, iid, traces, prior)
                # the LLM call each retrieval fed (retrieval_link)
                link_retrievals(con, iid, traces, prior, copy_from=PRIOR)
            finally:
                con.execute(f"DROP TABLE IF EXISTS {prior}")
        self.added -= self.duplicates
        estimate_costs(con, iid)  # cost: exported kept, else estimated from tokens and prices (ingest.cost)
        con.execute(
            f"""
            INSERT INTO span_ids
            SELECT id, id_kind, span_pk FROM (
                SELECT span_pk, unnest([request_id, response_id, span_id, trace_id]) AS id,
                       unnest(['request', 'response', 'span', 'trace']) AS id_kind
                FROM spans WHERE import_id = {iid}
            ) WHERE id IS NOT NULL AND id <> ''
            """
        )


# Everything loaded before this load (the incident's view; this load's own part is not in it yet).
PRIOR = "memory.main.spans"
# What dedupe, inheritance and retrieval links read of the spans loaded before, in the traces they
# work on. Whole rows are copied from PRIOR, by span_pk, only for the few spans a load supersedes.
_PRIOR_READ = ["span_pk", "trace_id", "span_id", "parent_id", "kind", "start_time", "end_time", "latency_ms",
               *INHERITED_KEYS, *RETRIEVAL_SPAN_COLUMNS]


def _prior_of_traces(con: duckdb.DuckDBPyConnection, traces: str) -> str:
    """The columns finish reads of the spans loaded before in the traces `traces` selects, as a
    temporary table (its name is returned): the incident's view, a UNION ALL over every part, is
    planned and scanned once per bucket instead of once per step (dedupe, inheritance, links)."""
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _oncall_prior AS
                    SELECT {', '.join(_PRIOR_READ)} FROM {PRIOR} WHERE trace_id IN ({traces})""")
    return "_oncall_prior"


def _dedupe(con: duckdb.DuckDBPyConnection, import_id: int, traces: str, prior: str = PRIOR) -> int:
    """Remove this import's copies of spans already present (same trace_id, span_id): OTLP JSONL
    retries, overlapping exports. The earliest row is kept: one loaded before (`prior`: PRIOR, or
    the part of it in these traces), else the first in this load's part that has ended (an SDK that
    sends a span when it starts and again when it ends: the complete copy wins). `traces` selects
    the trace ids to check."""
    return int(con.execute(
        f"""
        DELETE FROM spans WHERE import_id = {int(import_id)} AND span_pk IN (
            SELECT span_pk FROM (
                SELECT span_pk, import_id,
                       row_number() OVER (PARTITION BY trace_id, span_id
                                          ORDER BY end_time IS NULL, span_pk) AS rn
                FROM spans
                WHERE trace_id IN ({traces})
            ) WHERE rn > 1
            UNION ALL
            SELECT s.span_pk FROM spans s JOIN {prior} p
                ON p.trace_id = s.trace_id AND p.span_id = s.span_id AND p.span_pk <> s.span_pk
            WHERE s.import_id = {int(import_id)} AND s.trace_id IN ({traces}) AND p.trace_id IN ({traces})
        )"""
    ).fetchall()[0][0])


def resolve_inheritance(con: duckdb.DuckDBPyConnection, import_id: int, traces: str | None = None,
                        prior: str = PRIOR) -> None:
    """Give every span the cohort keys (tenant, user, session, …) of its nearest ancestor that has them.

    Applications set these on the root span while the LLM call is a child. Runs over every trace
    the import touched (or the trace ids the SQL `traces` selects), ancestors loaded before
    included. Spans loaded before that gain keys (their root arrived in this file) are copied into
    this part with the keys filled and listed in `superseded`: readers show the newest copy, and
    the earlier parts, which others are reading, are never written. The span's own values always
    win; `inherited` records which ancestor each value came from. `prior` is read for the spans
    loaded before (PRIOR, or a table of its rows in these traces: _prior_of_traces); copies are
    taken whole from PRIOR.
    """
    traces = traces or f"SELECT DISTINCT trace_id FROM spans WHERE import_id = {int(import_id)}"
    keys = INHERITED_KEYS
    pick = ",\n".join(
        f"arg_min(a.{k}, c.depth) FILTER (WHERE a.{k} IS NOT NULL) AS {k},"
        f" arg_min(a.span_id, c.depth) FILTER (WHERE a.{k} IS NOT NULL) AS {k}__from"
        for k in keys
    )
    cols = ", ".join(keys)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _oncall_inherit AS
        WITH RECURSIVE touched AS ({traces}),
        own AS (
            SELECT span_pk, trace_id, span_id, parent_id, {cols}, true AS own
            FROM spans WHERE trace_id IN (SELECT trace_id FROM touched)
        ),
        tspans AS (
            SELECT * FROM own
            UNION ALL
            SELECT span_pk, trace_id, span_id, parent_id, {cols}, false AS own
            FROM {prior} WHERE trace_id IN (SELECT trace_id FROM touched)
              AND span_pk NOT IN (SELECT span_pk FROM own)
        ),
        chain(span_pk, trace_id, ancestor_id, depth) AS (
            SELECT span_pk, trace_id, parent_id, 1 FROM tspans WHERE parent_id IS NOT NULL
            UNION ALL
            SELECT c.span_pk, c.trace_id, p.parent_id, c.depth + 1
            FROM chain c JOIN tspans p ON p.trace_id = c.trace_id AND p.span_id = c.ancestor_id
            WHERE p.parent_id IS NOT NULL AND c.depth < 64
        )
        SELECT c.span_pk, any_value(t.own) AS own, {pick}
        FROM chain c JOIN tspans a ON a.trace_id = c.trace_id AND a.span_id = c.ancestor_id
                     JOIN tspans t ON t.span_pk = c.span_pk
        GROUP BY c.span_pk
        """
    )
    # Spans loaded before that gain a key: copy them here (same span_pk) so the UPDATE below can
    # fill them, and record that this copy supersedes the earlier one.
    gains = " OR ".join(f"(p.{k} IS NULL AND i.{k} IS NOT NULL)" for k in keys)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _oncall_gain AS
            SELECT p.span_pk FROM _oncall_inherit i JOIN {prior} p ON p.span_pk = i.span_pk
            WHERE NOT i.own AND ({gains})"""
    )
    if con.execute("SELECT count(*) FROM _oncall_gain").fetchall()[0][0]:
        con.execute(f"INSERT INTO spans SELECT {', '.join(SPAN_COLUMN_NAMES)} FROM {PRIOR} "
                    "WHERE span_pk IN (SELECT span_pk FROM _oncall_gain)")
        con.execute(f"INSERT INTO superseded SELECT span_pk, {int(import_id)} FROM _oncall_gain")
    sets = ", ".join(f"{k} = coalesce(spans.{k}, i.{k})" for k in keys)
    # Only the keys actually inherited: null entries are filtered out before building the object.
    provenance = ", ".join(
        f"{{'k': '{k}', 'v': CASE WHEN spans.{k} IS NULL AND i.{k} IS NOT NULL "
        f"THEN json_object('value', i.{k}, 'from_span', i.{k}__from) END}}"
        for k in keys
    )
    con.execute(
        f"""
        UPDATE spans SET
            inherited = CASE WHEN spans.inherited IS NULL THEN
                nullif(to_json(map_from_entries(list_filter([{provenance}], lambda x: x.v IS NOT NULL))),
                       '{{}}'::JSON)
                ELSE spans.inherited END,
            {sets}
        FROM _oncall_inherit i
        WHERE spans.span_pk = i.span_pk
          AND ({' OR '.join(f'(spans.{k} IS NULL AND i.{k} IS NOT NULL)' for k in keys)})
        """
    )
    con.execute("DROP TABLE _oncall_inherit")
    con.execute("DROP TABLE _oncall_gain")
