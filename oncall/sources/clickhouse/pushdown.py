"""The filter language's parsed terms (oncall.query.filters.parse_filter) compiled to ClickHouse SQL.

The parser is the one in query/filters.py; this is its second dialect. Every value is a bound
parameter (`{pN:Type}`). A term compiles over a schema's *projection* (the canonical columns as
ClickHouse expressions, built from the mapping's own key tables: otel.py, langfuse.py), and
compiles to a condition that holds for every row the term matches locally: exact where the
projection is exact, a superset where the canonical value needs Python to derive (a classified
error, a normalised finish reason). What a superset lets through is dropped by the same filter
compiled for DuckDB over the mapped rows before they are written (pull.py), so the incident gets
exactly the rows the filter names and the wire carries little more.

Terms that only the incident can answer (`label=`) are refused for a source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from oncall.query.filters import COLUMNS, NUMERIC, Filter, Term, number_value
from oncall.sources.base import SourceUsageError
from oncall.sources.clickhouse.sql import Params


@dataclass(frozen=True)
class Col:
    """One canonical column as a ClickHouse expression ('' where the row has no value).

    `exact`: the expression equals the canonical column on every row, so `!=` and `=` (empty)
    push down too. `alternatives`: other expressions the canonical value may come from (a superset
    for `=`). `spellings`: the raw spellings a canonical value stands for (provider aliases)."""

    sql: str
    numeric: bool = False
    exact: bool = True
    alternatives: tuple[str, ...] = ()
    spellings: Callable[[str], Iterable[str]] | None = None


class Projection(Protocol):
    columns: Mapping[str, Col]

    def text_values(self) -> str:
        """An Array(String) expression of every text a bare word may match (a superset)."""
        ...

    def meta(self, params: Params, key: str) -> str | None:
        """A String expression for attribute `key` (a user's key: bind it), or None."""
        ...

    def error_superset(self) -> str:
        """Holds for every row whose canonical status is 'error' or that has an error_type."""
        ...

    def error_subset(self) -> str:
        """Holds only for rows whose canonical status is surely 'error'."""
        ...

    def kind_superset(self, kind: str) -> str | None:
        """Holds for every row the mapping gives this kind (None: cannot say cheaply)."""
        ...


@dataclass
class Pushed:
    where: str
    params: Params
    inherited: set[str] = field(default_factory=set)  # canonical columns the condition reads by inheritance


LOCAL_ONLY = ("label",)


def compile_terms(flt: Filter, proj: Projection, params: Params, *, default_kind: str | None = "llm") -> str:
    """A ClickHouse condition over the projection that every row matching `flt` satisfies.
    since=/until= are the caller's window (pull.window_of); they compile to TRUE here."""
    parts: list[str] = []
    if default_kind and "kind" not in flt.keys():
        k = proj.kind_superset(default_kind)
        if k:
            parts.append(k)
    for t in flt.terms:
        sql = _term(t, proj, params)
        if sql not in ("1", ""):
            parts.append(sql)
    return " AND ".join(f"({p})" for p in parts) if parts else "1"


def _term(t: Term, proj: Projection, params: Params) -> str:
    key = t.key
    if key in LOCAL_ONLY:
        raise SourceUsageError(f"term '{t}': labels live in the local incident, not in the source; load the cohort "
                               "first (oncall load URL …), then filter it with label=")
    if key in ("since", "until"):
        return "1"
    if key is None or key in ("text", "input", "output"):
        if key is not None and t.op not in ("~", "="):
            return "1"
        return _text(t, proj, params)
    if key == "request":
        if t.op != "=":
            return "1"
        ids = [c.sql for name, c in proj.columns.items() if name in ("trace_id", "span_id", "request_id", "response_id")]
        likes = " OR ".join(f"startsWith(lower(x), {params.p(v.strip().lower(), 'String')})" for v in t.values)
        return f"arrayExists(x -> {likes}, [{', '.join(ids)}])" if ids else "1"
    if key == "error":
        if t.op == "=" and all(v != "" for v in t.values):
            return proj.error_superset()
        return "1"
    if key == "status":
        return _status(t, proj)
    if key == "kind":
        if t.op == "=" and all(v != "" for v in t.values):
            sups = [proj.kind_superset(v) for v in t.values]
            if all(sups):
                return " OR ".join(f"({s})" for s in sups)
        return "1"
    if key.startswith("meta."):
        expr = proj.meta(params, key[5:])
        if expr is None:
            return "1"
        return _generic(t, Col(expr, exact=False), params, numeric_cast=True)
    column = COLUMNS.get(key)
    col = proj.columns.get(column or "")
    if col is None:
        return "1"
    return _generic(t, col, params, numeric=key in NUMERIC)


def _text(t: Term, proj: Projection, params: Params) -> str:
    v = t.value
    if len(v) >= 2 and v.startswith("/") and v.endswith("/"):
        return f"arrayExists(x -> match(x, {params.p(v[1:-1], 'String')}), {proj.text_values()})"
    return f"arrayExists(x -> positionCaseInsensitive(x, {params.p(v, 'String')}) > 0, {proj.text_values()})"


def _status(t: Term, proj: Projection) -> str:
    if t.op not in ("=", "!="):
        return "1"
    vals = set(t.values)
    if t.op == "=" and vals <= {"error"}:
        return proj.error_superset()
    if t.op == "=" and vals <= {"ok", "success", "unset"}:
        return f"NOT ({proj.error_subset()})"
    if t.op == "!=" and vals <= {"ok", "success"}:
        return proj.error_superset()
    if t.op == "!=" and vals <= {"error"}:
        return f"NOT ({proj.error_subset()})"
    return "1"


def _generic(t: Term, col: Col, params: Params, *, numeric: bool = False, numeric_cast: bool = False) -> str:
    op = t.op
    expr = col.sql
    if op in (">", "<", ">=", "<="):
        n = number_value(t.key or "", t.value, str(t))
        target = expr if col.numeric else f"toFloat64OrNull({expr})"
        return f"{target} {op} {params.p(n, 'Float64')}"
    if op == "~":
        if not (col.exact or col.alternatives == ()):
            return "1"
        v = t.value
        if len(v) >= 2 and v.startswith("/") and v.endswith("/"):
            return f"match(toString({expr}), {params.p(v[1:-1], 'String')})"
        return f"positionCaseInsensitive(toString({expr}), {params.p(v, 'String')}) > 0"
    values = list(t.values)
    if t.value == "":
        if not col.exact:
            return "1"
        empty = f"isNull({expr})" if col.numeric else f"{expr} = ''"
        return empty if op == "=" else f"NOT ({empty})"
    if numeric or col.numeric:
        nums = [number_value(t.key or "", v, str(t)) for v in values]
        target = expr if col.numeric else f"toFloat64OrNull({expr})"
        inner = ", ".join(params.p(n, "Float64") for n in nums)
        if op == "=":
            return f"{target} IN ({inner})"
        return f"(isNull({target}) OR {target} NOT IN ({inner}))" if col.exact else "1"
    if col.spellings is not None:
        spelled = sorted({s for v in values for s in col.spellings(v)})
        inner = ", ".join(params.p(s, "String") for s in spelled)
        exprs = [f"lower({e})" for e in (expr, *col.alternatives)]
    else:
        inner = ", ".join(params.p(v, "String") for v in values)
        exprs = [expr, *col.alternatives]
    if op == "=":
        return " OR ".join(f"{e} IN ({inner})" for e in exprs)
    if not col.exact or col.alternatives:
        return "1"
    return f"({exprs[0]} = '' OR {exprs[0]} NOT IN ({inner}))"
