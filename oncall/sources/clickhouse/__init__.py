"""ClickHouse as a source: `clickhouse://`, `clickhouses://` (TLS) and `chdb://` (clickhouse-connect's
in-process chDB backend). The table's schema is detected from its columns: the OTel Collector
exporter's `otel_traces` (otel.py) or Langfuse v3's `observations` + `traces` (langfuse.py).
Anything else is refused with its columns listed.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from oncall.query.filters import COLUMNS, Filter
from oncall.sources.base import (
    Progress,
    PullStats,
    SourceRef,
    SourceUsageError,
    SpanSink,
    Window,
)
from oncall.sources.clickhouse import langfuse, otel
from oncall.sources.clickhouse.client import client_for, database_of, errors_named, settings_for
from oncall.sources.clickhouse.pushdown import compile_terms
from oncall.sources.clickhouse.sql import Params, ch_time
from oncall.store.schema import INHERITED_KEYS

BLOCK_ROWS = 8192  # rows per Arrow batch from the server: memory stays flat in the number of rows


class ClickHouseSource:
    """One ClickHouse table, detected and ready to pull from (or to ask questions of in place)."""

    def __init__(self, ref: SourceRef, client: Any, table: otel.Table | langfuse.Tables) -> None:
        self.ref = ref
        self.client = client
        self.table = table
        self.format = "clickhouse-otel" if isinstance(table, otel.Table) else "clickhouse-langfuse"
        self.settings = settings_for(ref)

    def identity(self) -> str:
        t = self.table
        name = t.name if isinstance(t, otel.Table) else f"{t.observations}+{t.traces}"
        return f"{self.ref.display}#{t.database}.{name}"

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # noqa: BLE001 - closing a client that failed to connect
            pass

    # -- queries -----------------------------------------------------------------------------------
    def query_arrow(self, sql: str, params: dict[str, Any], what: str) -> pa.Table:
        with errors_named(self.ref, what):
            return self.client.query_arrow(sql, parameters=params, settings=self.settings)

    def stream(self, sql: str, params: dict[str, Any], what: str) -> Any:
        settings = {**self.settings, "max_block_size": BLOCK_ROWS}
        with errors_named(self.ref, what):
            return self.client.query_arrow_stream(sql, parameters=params, settings=settings)

    # -- pull -----------------------------------------------------------------------------------------
    def pull(self, window: Window, flt: Filter, sink: SpanSink, *, limit: int | None = None,
             progress: Progress | None = None) -> PullStats:
        if isinstance(self.table, otel.Table):
            sql, params = self._otel_pull_sql(window, flt, newest_first=limit is not None)
            sql += _server_limit(limit)
            return self._drain(sql, params, sink, otel.row_of, otel.inherit, progress,
                               linker=otel.new_linker(sink))
        sql, params = langfuse.pull_sql(self.table, window, flt, newest_first=limit is not None)
        sql += _server_limit(limit)
        return self._drain(sql, params, sink, langfuse.rows_of, None, progress)

    def _otel_pull_sql(self, window: Window, flt: Filter, *, newest_first: bool) -> tuple[str, dict[str, Any]]:
        t = self.table
        assert isinstance(t, otel.Table)
        params = Params()
        params.named("db", t.database, "Identifier")
        params.named("table", t.name, "Identifier")
        params.named("since", ch_time(window.since), "DateTime64(9)")
        params.named("until", ch_time(window.until), "DateTime64(9)")
        params.named("lookback", ch_time(window.since - otel.INHERIT_LOOKBACK), "DateTime64(9)")
        win = "t.Timestamp >= {since:DateTime64(9)} AND t.Timestamp < {until:DateTime64(9)}"
        span_keys, res_keys = self.present_keys(params.values)
        inner = otel.Projection(t, inherited_alias=None, present=span_keys, present_resource=res_keys)
        outer = otel.Projection(t, present=span_keys, present_resource=res_keys)
        own_only = Filter(tuple(x for x in flt.terms if COLUMNS.get(x.key or "") not in INHERITED_KEYS))
        pre = compile_terms(own_only, inner, params)
        # A span matches `tenant=acme` by its own value or its trace's, and the trace's comes from
        # one of its spans: so only traces with a span whose own value matches can hold a match.
        # Narrowing to those first keeps the per-trace aggregation to the cohort's traces.
        positive = Filter(tuple(x for x in flt.terms if COLUMNS.get(x.key or "") in INHERITED_KEYS
                                and x.op == "=" and "" not in x.values))
        if positive.terms:
            carriers = compile_terms(positive, inner, params, default_kind=None)
            pre += (f" AND t.TraceId IN (SELECT t.TraceId FROM {{db:Identifier}}.{{table:Identifier}} AS t "
                    f"WHERE t.Timestamp >= {{lookback:DateTime64(9)}} AND t.Timestamp < {{until:DateTime64(9)}} "
                    f"AND {carriers})")
        full = compile_terms(flt, outer, params)
        if "kind" not in flt.keys():
            # The LLM calls and the retrieval and embedding spans of the window: a call's retrieval
            # columns come from the retrieval that fed it, linked when the pulled rows are loaded.
            rag = outer.retrieval_superset()
            if rag:
                full = f"((({compile_terms(flt, outer, params, default_kind=None)}) AND ({rag})) OR ({full}))"
        keys = otel.trace_keys_sql(t, inner, win, pre)
        kcols = ", ".join(f"k.{k}__v AS {k}__v, k.{k}__from AS {k}__from" for k in INHERITED_KEYS if k in
                          otel.CANDIDATE_KEYS)
        order = " ORDER BY t.Timestamp DESC" if newest_first else ""
        sql = (f"SELECT {otel.select_columns(t)}, toString(t.ServiceName) AS service, {kcols} "
               f"FROM {{db:Identifier}}.{{table:Identifier}} AS t LEFT JOIN ({keys}) AS k ON k.TraceId = t.TraceId "
               f"WHERE {win} AND {full}{order}")
        return sql, params.values

    def present_keys(self, params: dict[str, Any]) -> tuple[frozenset[str], frozenset[str]]:
        assert isinstance(self.table, otel.Table)
        with errors_named(self.ref, "listing the attribute keys in the window"):
            row = self.client.query(otel.present_keys_sql(self.table), parameters=params,
                                    settings=self.settings).result_rows[0]
        return frozenset(row[0] or ()), frozenset(row[1] or ())

    def _drain(self, sql: str, params: dict[str, Any], sink: Any, to_rows: Any, inherit: Any,
               progress: Progress | None, linker: Any = None) -> PullStats:
        stats = PullStats()
        add = linker.add if linker is not None else sink.add
        with self.stream(sql, params, "reading the window") as batches:
            it = iter(batches)
            while True:
                with errors_named(self.ref, "reading the window"):  # only the server's part: a bug stays a bug
                    batch = next(it, None)
                if batch is None:
                    break
                rows = batch.to_pylist()
                stats.rows += len(rows)
                stats.bytes = (stats.bytes or 0) + batch.nbytes
                for r in rows:
                    for row in _rows(to_rows(r)):
                        if inherit is not None:
                            inherit(row, r)
                        if not row.get("trace_id") or not row.get("span_id"):
                            sink.problem(None, "missing-id", f"span {row.get('name')!r} has no trace or span id; skipped")
                            continue
                        add(row, None)
                if progress:
                    progress(stats.rows)
                if getattr(sink, "full", False):
                    break  # the cap is reached: closing the stream cancels the rest of the query
        if linker is not None:
            linker.finish()
        return stats


def _server_limit(limit: int | None) -> str:
    """A cap sent with the query, so the server keeps a top-N instead of sorting the whole cohort.
    Pushdown is a superset of the filter (pull.ExactFilter decides), so it asks for half as many
    again as wanted; a cohort the exact filter thins by more than that comes back short of --limit."""
    return "" if limit is None else f" LIMIT {int(limit * 1.5) + 100}"


def _rows(value: Any) -> list[dict[str, Any]]:
    return value if isinstance(value, list) else [value]


def _columns(client: Any, ref: SourceRef, database: str, table: str) -> dict[str, str]:
    with errors_named(ref, f"reading the columns of {database}.{table}"):
        res = client.query("SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String} "
                           "ORDER BY position", parameters={"db": database, "t": table})
    return {str(n): str(ty) for n, ty in res.result_rows}


def _tables(client: Any, ref: SourceRef, database: str) -> list[str]:
    with errors_named(ref, f"listing the tables of {database}"):
        res = client.query("SELECT name FROM system.tables WHERE database = {db:String} ORDER BY name",
                           parameters={"db": database})
        if not res.result_rows:
            exists = client.query("SELECT count() FROM system.databases WHERE name = {db:String}",
                                  parameters={"db": database}).result_rows[0][0]
            if not exists:
                raise SourceUsageError(f"{ref.display}: database {database} does not exist; check the database "
                                       "in the URL (clickhouse://host/DATABASE or ?database=)", kind="missing")
    return [str(r[0]) for r in res.result_rows]


def open_source(ref: SourceRef) -> ClickHouseSource:
    """Connect and detect what the table holds."""
    client = client_for(ref)
    try:
        return ClickHouseSource(ref, client, _detect(client, ref))
    except BaseException:
        client.close()
        raise


def _detect(client: Any, ref: SourceRef) -> otel.Table | langfuse.Tables:
    database = database_of(ref)
    tables = _tables(client, ref, database)
    wanted = ref.params.get("table")
    if wanted is None:
        for guess in ("otel_traces", "observations"):
            if guess in tables:
                wanted = guess
                break
        else:
            raise SourceUsageError(f"{ref.display}: name the table with ?table=NAME; {database} holds: "
                                   f"{', '.join(tables[:30]) or 'no tables'}", kind="missing")
    if wanted not in tables:
        raise SourceUsageError(f"{ref.display}: table {database}.{wanted} does not exist; {database} holds: "
                               f"{', '.join(tables[:30]) or 'no tables'}", kind="missing")
    cols = _columns(client, ref, database, wanted)
    json_attrs = otel.detect(cols)
    if json_attrs is not None:
        return otel.Table(database, wanted, json_attrs, frozenset(cols))
    lf = langfuse.detect(database, wanted, cols, tables, lambda t: _columns(client, ref, database, t))
    if lf is not None:
        return lf
    listed = ", ".join(f"{n} {ty}" for n, ty in list(cols.items())[:40])
    raise SourceUsageError(
        f"{ref.display}: cannot read {database}.{wanted}: it is neither the OTel Collector exporter's otel_traces "
        f"nor Langfuse's observations/traces; its columns: {listed}. Export it to a file and load that with "
        "--map FIELD=COLUMN (as for generic files), or point ?table= at an otel_traces or observations table",
        kind="schema")


def engine_for(source: ClickHouseSource, window: Window) -> Any:
    """The in-place query engine over the source's window (InPlaceUnsupported when it cannot be)."""
    from oncall.sources.clickhouse.engine import ClickHouseEngine

    return ClickHouseEngine(source, window)


__all__ = ["ClickHouseSource", "engine_for", "open_source"]
