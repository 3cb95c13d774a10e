"""Questions answered inside ClickHouse: the query engine interface (oncall/query/engine.py) over the
canonical relation (canonical.py), so `compare --source` runs the same algorithm as on the incident
with every aggregate computed where the spans are. Only aggregates come back (counted in `bytes`,
the Arrow bytes received).

Filters compile exactly over the canonical columns (every value a bound parameter): the window's
since=/until=, cohort keys, models, provider, status, kind, finish, error classes, numbers and `~`
substrings. A term this compiler does not read exactly (bare-word text search, meta.KEY, request
ids, documents; label= lives in the incident) raises InPlaceUnsupported and the question is
answered on pulled rows instead, saying why; so does a window with retrieval spans (their link to
the calls they fed is made at load).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from oncall.query.engine import DIMENSIONS, utc
from oncall.query.filters import COLUMNS, NUMERIC, Compiled, Filter, Term, number_value, parse_filter, resolve_time
from oncall.query.registry import Metric, Stat
from oncall.sources.base import Window
from oncall.sources.clickhouse import canonical
from oncall.sources.clickhouse import metrics as chm
from oncall.sources.clickhouse.client import errors_named
from oncall.sources.clickhouse.sql import Params, ch_time

# Canonical columns a filter may name in place (filters.COLUMNS' targets the relation holds exactly).
IN_PLACE_COLUMNS = frozenset({"tenant", "feature", "model", "served_model", "provider", "prompt_version", "release",
                              "env", "user_id", "session_id", "prompt_name", "status", "kind", "finish_reason",
                              "latency_ms", "input_tokens", "output_tokens", "cost", "name", "service", "trace_id",
                              "span_id"})


@dataclass
class CHCompiled:
    where: str
    params: Params
    filter: Filter
    notes: list[str] = field(default_factory=list)


class _Counted:
    """The source's client, asked through Arrow so the bytes received are counted."""

    def __init__(self, engine: ClickHouseEngine) -> None:
        self.engine = engine
        self.bytes = 0
        self.queries = 0

    def query(self, sql: str, parameters: dict[str, Any], settings: Mapping[str, Any] | None = None) -> Any:
        source = self.engine.source
        with errors_named(source.ref, "computing aggregates in place"):
            table = source.client.query_arrow(sql, parameters=parameters,
                                              settings={**source.settings, **dict(settings or {}), **self.engine.session})
        self.bytes += table.nbytes
        self.queries += 1
        return _Rows([tuple(r.values()) for r in table.to_pylist()])


@dataclass
class _Rows:
    result_rows: list[tuple[Any, ...]]


class _Positional:
    """Parameters bound to `?` in textual order (the DuckDB convention the shared queries use)."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def p(self, value: Any, ch_type: str) -> str:
        self.values.append(value)
        return "?"


class ClickHouseEngine:
    """Aggregates over the canonical relation of a ClickHouse source's window."""

    name = "clickhouse"

    def __init__(self, source: Any, window: Window) -> None:
        self.source = source
        self.window = window
        self.relation = canonical.build(source, window)
        if self.relation.has_retrieval:
            # The retrieval columns of an LLM call come from the retrieval that fed it, linked at load
            # (ingest.retrieval_link); not compiled here, so in place they would read as absent.
            raise canonical.InPlaceUnsupported("the window has retrieval spans, whose link to the calls they fed "
                                               "is made at load: answered on pulled rows")
        self.client = _Counted(self)
        self._anchor: dt.datetime | None = None
        self.session: dict[str, str] = {}  # the setting naming the session that holds the window's table
        self.table: str | None = None
        self._materialize()

    def _materialize(self) -> None:
        """The window's LLM calls and tool spans computed once into a temporary table of this session,
        so each question reads that instead of computing the relation from the raw rows again. Where
        the user may not create one (a read-only profile), every question computes the relation itself:
        the same numbers, slower; said in the notes."""
        name = f"oncall_window_{uuid.uuid4().hex[:12]}"
        session = {} if self.source.ref.scheme == "chdb" else {"session_id": f"oncall-{uuid.uuid4()}"}
        sql = f"CREATE TEMPORARY TABLE {name} ENGINE = Memory AS {self.relation.materialized}"
        try:
            self.source.client.command(sql, parameters=self.relation.params.values,
                                       settings={**self.source.settings, **session})
        except Exception as exc:  # noqa: BLE001 - READONLY or no CREATE TEMPORARY TABLE grant: still answerable
            self.relation.notes.append(f"no temporary table ({str(exc).splitlines()[0][:160]}): every question "
                                       "computes the window's canonical columns again")
            return
        self.session, self.table = session, name

    def close(self) -> None:
        if self.table is None:
            return
        try:
            self.source.client.command(f"DROP TEMPORARY TABLE IF EXISTS {self.table}", settings=self.session)
        except Exception:  # noqa: BLE001 - the session ends with the client anyway
            pass
        self.table = None

    @property
    def bytes(self) -> int:
        return self.client.bytes

    def _params(self) -> Params:
        p = Params()
        p.values = dict(self.relation.params.values)
        return p

    def _from(self) -> str:
        if self.table is None:
            return f"({self.relation.sql})"
        constants = "".join(f", {v} AS {c}" for c, v in self.relation.constants.items())
        return f"(SELECT *{constants} FROM {self.table})" if constants else self.table

    def connection(self) -> ClickHouseConnection:
        """A connection `changes` can ask its questions through, answered in this engine."""
        return ClickHouseConnection(self)

    # -- the filter language over canonical columns --------------------------------------------------
    def compile(self, flt: Filter | str | list[str] | None) -> CHCompiled:
        params = self._params()
        where, f, notes = self._compile(flt, params, "llm")
        return CHCompiled(where, params, f, notes)

    def compile_positional(self, flt: Filter | str | list[str] | None, default_kind: str | None = "llm") -> Compiled:
        """The same, with `?` placeholders and a parameter list (filters.Compiled), for SQL written for
        either engine (ClickHouseConnection binds them)."""
        params = _Positional()
        where, f, notes = self._compile(flt, params, default_kind)
        return Compiled(where, params.values, notes, f)

    def _compile(self, flt: Filter | str | list[str] | None, params: Any,
                 default_kind: str | None) -> tuple[str, Filter, list[str]]:
        f = parse_filter(flt)
        notes: list[str] = []
        parts = [] if "kind" in f.keys() or not default_kind else [f"ifNull(s.kind = {params.p(default_kind, 'String')}, 0)"]
        parts += [self._term(t, params, notes) for t in f.terms]
        return " AND ".join(f"({p})" for p in parts) if parts else "1", f, [*f.notes, *notes]

    def _term(self, t: Term, params: Params, notes: list[str]) -> str:
        key = t.key
        if key in ("since", "until"):
            when, said = resolve_time(key, t.value, self._newest())
            notes += said
            op = ">=" if key == "since" else "<"
            value = when if isinstance(params, _Positional) else ch_time(when)
            return f"s.start_time {op} {params.p(value, 'DateTime64(9)')}"
        if key == "kind" and self.table is not None and (t.op != "=" or not set(t.values) <= set(canonical.MATERIALIZED_KINDS)):
            raise canonical.InPlaceUnsupported(f"term '{t}': in place holds the window's LLM calls and tool spans")
        if key == "error":
            if t.op == "~":
                raise canonical.InPlaceUnsupported(f"term '{t}' reads error messages: answered on pulled rows")
            return self._generic(t, "s.error_type", params, numeric=False)
        column = COLUMNS.get(key or "") if key else None
        if column is None or column not in IN_PLACE_COLUMNS:
            raise canonical.InPlaceUnsupported(f"term '{t}' is not compiled for ClickHouse: answered on pulled rows")
        if key == "status" and t.op in ("=", "!=") and any(v in ("ok", "success") for v in t.values):
            ok = "ifNull(s.status, 'unset') != 'error'"
            others = [v for v in t.values if v not in ("ok", "success")]
            expr = ok if not others else (f"({ok} OR ifNull(s.status IN "
                                          f"({', '.join(params.p(v, 'String') for v in others)}), 0))")
            return expr if t.op == "=" else f"NOT ({expr})"
        return self._generic(t, f"s.{column}", params, numeric=key in NUMERIC)

    def _generic(self, t: Term, expr: str, params: Params, *, numeric: bool) -> str:
        """filters._Builder.generic in ClickHouse: NULL never matches `=`, always matches `!=`."""
        op, value = t.op, t.value
        if op in (">", "<", ">=", "<="):
            n = number_value(t.key or "", value, str(t))
            target = expr if numeric else f"toFloat64OrNull(toString({expr}))"
            return f"ifNull({target} {op} {params.p(n, 'Float64')}, 0)"
        if op == "~":
            if len(value) >= 2 and value.startswith("/") and value.endswith("/"):
                return f"ifNull(match(toString({expr}), {params.p(value[1:-1], 'String')}), 0)"
            return f"ifNull(positionCaseInsensitive(toString({expr}), {params.p(value, 'String')}) > 0, 0)"
        if value == "":
            return f"isNull({expr})" if op == "=" else f"isNotNull({expr})"
        if numeric:
            inner = ", ".join(params.p(number_value(t.key or "", v, str(t)), "Float64") for v in t.values)
            target = f"toFloat64({expr})"
        else:
            inner = ", ".join(params.p(v, "String") for v in t.values)
            target = f"toString({expr})"
        if op == "=":
            return f"ifNull({target} IN ({inner}), 0)"
        return f"(isNull({expr}) OR {target} NOT IN ({inner}))"

    def _newest(self) -> dt.datetime:
        """Relative and clock times in a filter count from the window's newest span, as on the incident."""
        if self._anchor is None:
            row = self.client.query(f"SELECT max(start_time) FROM {self._from()} AS s WHERE s.kind = 'llm'",
                                    self.relation.params.values).result_rows[0]
            self._anchor = utc(row[0]) or self.window.until
        return self._anchor

    # -- the questions -------------------------------------------------------------------------------
    def measure(self, c: CHCompiled, metrics: Iterable[Metric], refs: Mapping[str, Any] | None = None) -> dict[str, Stat]:
        return chm.measure(self.client, self._from(), c.where, c.params, list(metrics), refs=refs)

    def key_set_counts(self, c: CHCompiled) -> dict[str, int]:
        from oncall.query.registry import METRICS

        m = METRICS["json_key_drift"]
        p = Params()
        p.values = dict(c.params.values)
        d = chm.ClickHouse("s", None, {"key_set": "s._ks"}, p)
        rows_sql = m.rows.sql(d)
        ks = d.function("key_set", "s.output_text", None)
        rows = self.client.query(
            f"SELECT _ks, count() FROM (SELECT s.*, {ks} AS _ks FROM {self._from()} AS s WHERE {c.where}) AS s "
            f"WHERE {rows_sql} GROUP BY _ks ORDER BY 2 DESC, 1", p.values).result_rows
        return {str(k): int(n) for k, n in rows}

    def dims(self, c: CHCompiled) -> dict[str, Any]:
        n, first, last = self.client.query(f"SELECT count(), min(s.start_time), max(s.start_time) FROM {self._from()} "
                                           f"AS s WHERE {c.where}", c.params.values).result_rows[0]
        out: dict[str, Any] = {"first": utc(first) if n else None, "last": utc(last) if n else None}
        for dim in DIMENSIONS:
            out[dim + "s"] = {str(k): int(v) for k, v in self.client.query(
                f"SELECT s.{dim}, count() FROM {self._from()} AS s WHERE {c.where} AND isNotNull(s.{dim}) "
                f"GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 20", c.params.values).result_rows}
        return out

    def estimated_share(self, c: CHCompiled) -> dict[str, Any]:
        n, est = self.client.query(
            f"SELECT count(s.cost), countIf(isNotNull(s.cost) AND s.cost_source = 'estimated') FROM {self._from()} AS s "
            f"WHERE {c.where}", c.params.values).result_rows[0]
        n, est = int(n or 0), int(est or 0)
        return {"costs": n, "estimated": est, "share": (est / n) if n else None}


# -- shared SQL (changes) run in ClickHouse -------------------------------------------------------------
class ClickHouseQ(chm.ClickHouse):
    """The registry's ClickHouse dialect with `?` placeholders (ClickHouseConnection binds them)."""

    def __init__(self, alias: str = "s", refs: Mapping[str, Any] | None = None,
                 columns: Mapping[str, str] | None = None) -> None:
        super().__init__(alias, refs, columns)

    def function(self, name: str, x: str, ref: str | None) -> str:
        if name == "in_ref":
            self.params.append(list(self.refs.get(ref or "") or []))
            return f"ifNull(has(?, {x}), 0)"
        return super().function(name, x, ref)

    def time_bucket(self, seconds: int, x: str) -> str:
        # From the epoch: the same buckets as DuckDB's for every width dividing a day (all automatic ones).
        return f"toDateTime64(toStartOfInterval({x}, INTERVAL {int(seconds)} SECOND), 6, 'UTC')"

    def mode(self, x: str) -> str:
        return f"if(count({x}) > 0, topK(1)({x})[1], NULL)"

    def contains_param(self, x: str) -> str:
        return f"ifNull(has(?, {x}), 0)"


# Standard SQL as DuckDB has it: empty aggregates are NULL, so are the keys a grouping set does not group
# by, and a cast keeps a NULL (`x::DOUBLE`).
SHARED_SETTINGS = {"aggregate_functions_null_for_empty": 1, "group_by_use_nulls": 1, "join_use_nulls": 1,
                   "cast_keep_nullable": 1}


class ClickHouseConnection:
    """What `changes` needs of a connection, answered in ClickHouse: `execute(sql, params)` over
    `spans s` (the canonical relation of the window), `?` placeholders bound as typed query
    parameters (never spliced into the text), the filter language compiled by the engine, and the
    dialect its registry expressions compile with. Every result is an aggregate (or, for a window
    edge, the few rows of one bucket)."""

    dialect = ClickHouseQ

    def __init__(self, engine: ClickHouseEngine) -> None:
        self.engine = engine

    def compile_filter(self, flt: Filter | str | list[str] | None, *, default_kind: str | None = "llm") -> Compiled:
        return self.engine.compile_positional(flt, default_kind)

    def columns(self, table: str) -> list[str]:
        return [*canonical.COLUMNS, "cost", "cost_source"]

    def execute(self, sql: str, params: Iterable[Any] = ()) -> _Cursor:
        if "spans s" not in sql or "span_ids" in sql or "labels" in sql:
            raise canonical.InPlaceUnsupported("a question that reads the incident's own tables: answered on "
                                               "pulled rows")
        bound = dict(self.engine.relation.params.values)
        text = sql.replace("FROM spans s", f"FROM {self.engine._from()} AS s")
        text = _bind(text, list(params), bound)
        with errors_named(self.engine.source.ref, "computing aggregates in place"):
            table = self.engine.source.client.query_arrow(
                text, parameters=bound, settings={**self.engine.source.settings, **SHARED_SETTINGS, **self.engine.session})
        self.engine.client.bytes += table.nbytes
        self.engine.client.queries += 1
        names = table.column_names
        rows = [tuple(_py(v) for v in r.values()) for r in table.to_pylist()]
        return _Cursor([(n,) for n in names], rows)


@dataclass
class _Cursor:
    description: list[tuple[str]]
    rows: list[tuple[Any, ...]]

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows


def _py(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return utc(v)
    return v


def _bind(sql: str, values: list[Any], bound: dict[str, Any]) -> str:
    """Each `?` outside string literals becomes a typed `{qN:Type}` parameter holding the next value."""
    out: list[str] = []
    it = iter(values)
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch == "'":
            j = i + 1
            while j < n:
                if sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == "'":
                    if j + 1 < n and sql[j + 1] == "'":
                        j += 2
                        continue
                    break
                j += 1
            out.append(sql[i:j + 1])
            i = j + 1
            continue
        if ch == "?":
            try:
                v = next(it)
            except StopIteration:
                raise ValueError("more ? placeholders than parameters") from None
            name = f"q{len([k for k in bound if k.startswith('q')])}"
            value, ch_type = _typed(v)
            bound[name] = value
            out.append(f"{{{name}:{ch_type}}}")
        else:
            out.append(ch)
        i += 1
    if next(it, _END) is not _END:
        raise ValueError("fewer ? placeholders than parameters")
    return "".join(out)


_END = object()


def _typed(v: Any) -> tuple[Any, str]:
    if isinstance(v, bool):
        return int(v), "Bool"
    if isinstance(v, int):
        return v, "Int64"
    if isinstance(v, float):
        return v, "Float64"
    if isinstance(v, dt.datetime):
        return ch_time(v), "DateTime64(6, 'UTC')"
    if isinstance(v, (list, tuple)):
        return [str(x) for x in v], "Array(String)"
    if v is None:
        return None, "Nullable(String)"
    return str(v), "String"
