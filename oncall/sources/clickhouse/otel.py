"""The OpenTelemetry Collector ClickHouse exporter's `otel_traces` table (Map-typed attributes, and
the newer JSON-typed variant), read in place.

Canonical columns in ClickHouse (the projection pushdown.py compiles filters over) come from the
mapping's own key tables (ingest.mapping.CANDIDATE_KEYS: the first present non-empty key wins, as
`map_attributes` reads them). Rows pulled into the incident go through the file importers' own
span mapping (`formats.otlp.build_row` -> `map_attributes`, `apply_status`, the LiteLLM and
pydantic-ai fix-ups of `SpanLinks`), so a span reads the same whether it came from a file or from
ClickHouse.

Inherited cohort keys (tenant, user, session… set on the root span, read on the LLM call) are
resolved in ClickHouse: one aggregation by TraceId over the window (plus INHERIT_LOOKBACK before
it, where a root that started earlier lives) picks each key from the trace's root span when it has
it, else from the earliest span that has it (`argMinIf` ordered by (is-not-root, Timestamp)). A
span's own value wins. Local loads take the *nearest* ancestor's value; the two differ only for a
trace whose spans disagree on a key, which the docs call out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from oncall.ingest.canonical import kind_spellings, normalize_span_kind, normalize_status, provider_spellings
from oncall.ingest.formats.otlp import SpanLinks, build_row
from oncall.ingest.mapping import (
    CANDIDATE_KEYS,
    KIND_KEYS,
    METADATA_JSON_KEY,
    RESOURCE_FALLBACK_KEYS,
    flatten_attributes,
)
from oncall.ingest.retrieval import VECTOR_SYSTEMS
from oncall.sources.clickhouse.pushdown import Col
from oncall.sources.clickhouse.sql import Params, literal
from oncall.store.schema import INHERITED_KEYS

REQUIRED = {"Timestamp", "TraceId", "SpanId", "ParentSpanId", "SpanName", "SpanKind", "ServiceName",
            "ResourceAttributes", "SpanAttributes", "Duration", "StatusCode", "StatusMessage"}
INHERIT_LOOKBACK = dt.timedelta(hours=1)
# A trace's spans in the order inherited keys are picked from: root first, then by start time. The
# pair (is-not-root, Timestamp) packed into one Int128 (the root bit above the signed nanoseconds),
# which orders exactly as the pair does: argMin over a number keeps a 16-byte state per key and
# trace where a tuple kept a generic one (10M spans, 6 h: the aggregation 7.7 -> 4.3 s of CPU).
TRACE_ORDER = ("bitShiftLeft(toInt128(t.ParentSpanId != ''), 64) + toInt128(toUnixTimestamp64Nano(t.Timestamp))")


def map_value(column: str, key: str) -> str:
    """`column[key]` of a Map attribute column ('' when absent), as the map's own lookup answers it,
    but searching its keys subcolumn: the exporter's keys are LowCardinality, and `m[key]` converts
    them to full strings on every lookup (10M spans, 6 h, 12 lookups: 2.2 -> 1.1 s of CPU)."""
    return f"{column}.values[indexOf({column}.keys, {key})]"


@dataclass(frozen=True)
class Table:
    database: str
    name: str
    json_attributes: bool  # the exporter's JSON-typed variant
    columns: frozenset[str]


def detect(columns: Mapping[str, str]) -> bool | None:
    """None when the columns are not otel_traces; else whether the attributes are JSON-typed."""
    if not REQUIRED <= set(columns):
        return None
    return columns["SpanAttributes"].startswith("JSON") or columns["SpanAttributes"].startswith("Object")


class Projection:
    """Canonical columns over `otel_traces` AS t (and the trace-key join AS k)."""

    def __init__(self, table: Table, alias: str = "t", inherited_alias: str | None = "k", *,
                 present: frozenset[str] | None = None, present_resource: frozenset[str] | None = None) -> None:
        self.t = table
        self.a = alias
        self.k = inherited_alias
        # Attribute keys that occur in the window (None: unknown, assume any). A Map lookup scans the
        # row's keys, so a candidate list of ~80 keys per cohort column made every row cost thousands
        # of string compares; keys absent from the window can never be the first present one.
        self.present = present
        self.present_resource = present_resource
        own = {c: self.own(c) for c in CANDIDATE_KEYS}
        cols: dict[str, Col] = {
            "trace_id": Col(f"lower({alias}.TraceId)"),
            "span_id": Col(f"lower({alias}.SpanId)"),
            "name": Col(f"{alias}.SpanName"),
            "service": Col(f"toString({alias}.ServiceName)"),
            "latency_ms": Col(f"({alias}.Duration / 1e6)", numeric=True),
            "served_model": Col(own["served_model"]),
            # The requested model: OpenInference's lone llm.model_name and invocation parameters also name it.
            "model": Col(own["model"], exact=False,
                         alternatives=(own["served_model"],
                                       f"JSONExtractString({self.attr('llm.invocation_parameters')}, 'model')")),
            "provider": Col(own["provider"], exact=False, spellings=provider_spellings,
                            alternatives=(f"splitByChar('.', {self.attr('ai.model.provider')})[1]",)),
            "input_tokens": Col(f"toFloat64OrNull({own['input_tokens']})", numeric=True),
            "output_tokens": Col(f"toFloat64OrNull({own['output_tokens']})", numeric=True),
            "total_tokens": Col(f"toFloat64OrNull({own['total_tokens']})", numeric=True, exact=False),
        }
        for key in INHERITED_KEYS:
            if key in own:
                cols[key] = Col(self.inherited(key) if inherited_alias else own[key],
                                exact=key != "request_id")
        self.columns = cols

    # -- attribute access ------------------------------------------------------------------------
    def attr(self, key: str, column: str = "SpanAttributes") -> str:
        """String value of one of oncall's own attribute keys ('' when absent)."""
        if self.t.json_attributes:
            return f"ifNull(toString(getSubcolumn({self.a}.{column}, {literal(key)})), '')"
        return map_value(f"{self.a}.{column}", literal(key))

    def _has(self, key: str, resource: bool = False) -> bool:
        keys = self.present_resource if resource else self.present
        return keys is None or key in keys

    def candidate(self, key: str) -> str | None:
        """One candidate key as the mapping's view reads it: the flat attribute, else `metadata.K`
        inside the JSON `metadata` attribute, else (for the resource fallbacks) the resource's.
        None when none of those occur in the window."""
        forms = [self.attr(key)] if self._has(key) else []
        if key.startswith(METADATA_JSON_KEY + ".") and not self.t.json_attributes and self._has(METADATA_JSON_KEY):
            inner = key[len(METADATA_JSON_KEY) + 1:]
            forms.append(f"JSONExtractString({self.attr(METADATA_JSON_KEY)}, {literal(inner)})")
        if key in RESOURCE_FALLBACK_KEYS and self._has(key, resource=True):
            forms.append(self.attr(key, "ResourceAttributes"))
        if not forms:
            return None
        out = forms[-1]
        for f in reversed(forms[:-1]):
            out = f"if({f} != '', {f}, {out})"
        return out

    def own(self, column: str) -> str:
        """The span's own value of a canonical column: its first present candidate key."""
        branches = []
        for k in dict.fromkeys(CANDIDATE_KEYS[column]):
            c = self.candidate(k)
            if c is not None:
                branches += [f"{c} != ''", c]
        if not branches:
            return "''"
        if len(branches) == 2:
            return branches[1]
        return f"multiIf({', '.join(branches)}, '')"

    def inherited(self, column: str) -> str:
        own = self.own(column)
        return f"if({own} != '', {own}, {self.k}.{column}__v)"

    # -- what pushdown.py asks -------------------------------------------------------------------
    def text_values(self) -> str:
        a = self.a
        if self.t.json_attributes:
            return f"[toJSONString({a}.SpanAttributes), toJSONString({a}.Events.Attributes)]"
        return (f"arrayConcat(mapValues({a}.SpanAttributes), "
                f"arrayFlatten(arrayMap(m -> mapValues(m), {a}.Events.Attributes)))")

    def meta(self, params: Params, key: str) -> str | None:
        if self.t.json_attributes:
            return f"ifNull(toString(getSubcolumn({self.a}.SpanAttributes, {params.p(key, 'String')})), '')"
        span = map_value(f"{self.a}.SpanAttributes", params.p(key, "String"))
        if key.startswith("resource."):
            res = map_value(f"{self.a}.ResourceAttributes", params.p(key[len("resource."):], "String"))
            return f"if({span} != '', {span}, {res})"
        return span

    def _code(self) -> str:
        return f"upper(toString({self.a}.StatusCode))"

    def retrieval_superset(self) -> str | None:
        """Spans that may be a retrieval or embedding step (pulled with the LLM calls: the link from a
        retrieval to the call it fed is made at load, ingest.retrieval_link)."""
        names = ", ".join(literal(s) for s in sorted(kind_spellings("retriever") | kind_spellings("embedding")
                                                     | {"retrieval", "embeddings"}))
        parts = [f"lower({self.attr(k)}) IN ({names})" for k in (*KIND_KEYS, *CANDIDATE_KEYS["operation"])
                 if self._has(k)]
        systems = ", ".join(literal(s) for s in sorted(VECTOR_SYSTEMS))
        parts += [f"lower({self.attr(k)}) IN ({systems})" for k in ("db.system", "db.system.name") if self._has(k)]
        parts += [f"{self.attr(k)} != ''" for k in ("gen_ai.retrieval.documents", "gen_ai.data_source.id",
                                                    "retrieval.documents.0.document.id",
                                                    "retrieval.documents.0.document.content") if self._has(k)]
        return " OR ".join(parts) if parts else None

    def error_superset(self) -> str:
        events = "" if self.t.json_attributes else f" OR has({self.a}.Events.Name, 'exception')"
        http = " OR ".join(f"toInt32OrZero({self.attr(k)}) >= 400"
                           for k in ("http.response.status_code", "http.status_code", "error.status_code"))
        return (f"{self._code()} IN ('ERROR', 'STATUS_CODE_ERROR', '2') OR {self.attr('error.type')} != ''"
                f"{events} OR {http}")

    def error_subset(self) -> str:
        return (f"{self._code()} IN ('ERROR', 'STATUS_CODE_ERROR', '2') OR ({self._code()} NOT IN "
                f"('OK', 'STATUS_CODE_OK', '1') AND {self.attr('error.type')} != '')")

    def kind_superset(self, kind: str) -> str | None:
        if kind != "llm":
            return None
        names = ", ".join(literal(s) for s in sorted(kind_spellings("llm")))
        parts = [f"lower({self.attr(k)}) IN ({names})" for k in (*KIND_KEYS, *CANDIDATE_KEYS["operation"])
                 if self._has(k)]
        if self._has("ai.operationId"):
            op_id = self.attr("ai.operationId")
            parts.append(f"endsWith({op_id}, '.doGenerate') OR endsWith({op_id}, '.doStream')")
        parts += [f"{self.attr(k)} != ''" for k in dict.fromkeys(
            [*CANDIDATE_KEYS["model"], *CANDIDATE_KEYS["served_model"], "llm.invocation_parameters"]) if self._has(k)]
        return " OR ".join(parts) if parts else "0"


# -- the pull query ------------------------------------------------------------------------------------
def select_columns(table: Table, alias: str = "t") -> str:
    a = alias
    if table.json_attributes:
        attrs = (f"toJSONString({a}.SpanAttributes) AS span_attributes, "
                 f"toJSONString({a}.ResourceAttributes) AS resource_attributes, "
                 f"arrayMap(x -> toJSONString(x), {a}.Events.Attributes) AS event_attributes")
    else:
        attrs = (f"{a}.SpanAttributes AS span_attributes, {a}.ResourceAttributes AS resource_attributes, "
                 f"{a}.Events.Attributes AS event_attributes")
    scope = f"{a}.ScopeName AS scope_name, " if "ScopeName" in table.columns else "'' AS scope_name, "
    return (f"toUnixTimestamp64Nano({a}.Timestamp) AS ts_ns, {a}.TraceId AS trace_id, {a}.SpanId AS span_id, "
            f"{a}.ParentSpanId AS parent_id, {a}.SpanName AS name, toString({a}.SpanKind) AS span_kind, "
            f"{scope}{a}.Duration AS duration_ns, toString({a}.StatusCode) AS status_code, "
            f"{a}.StatusMessage AS status_message, {attrs}, "
            f"arrayMap(x -> toUnixTimestamp64Nano(x), {a}.Events.Timestamp) AS event_times, "
            f"{a}.Events.Name AS event_names")


def trace_keys_sql(table: Table, proj_inner: Projection, window_where: str, pre_where: str, *,
                   sources: bool = True) -> str:
    """Per trace in the window that has a span matching `pre_where`: each inherited key's value (and,
    with `sources`, the span it came from): root first, then the earliest span carrying it. Each
    key's projection is computed once per span (inner select), then aggregated. A key no candidate
    of which occurs in the window is '' without being aggregated."""
    keys = [k for k in INHERITED_KEYS if k in CANDIDATE_KEYS]
    owns = {k: proj_inner.own(k) for k in keys}
    own = ", ".join(f"{owns[k]} AS o_{k}" for k in keys if owns[k] != "''")
    picks = []
    for k in keys:
        if owns[k] == "''":
            picks.append(f"'' AS {k}__v" + (f", '' AS {k}__from" if sources else ""))
            continue
        picks.append(f"argMinIf(o_{k}, _order, o_{k} != '') AS {k}__v")
        if sources:
            picks.append(f"argMinIf(SpanId, _order, o_{k} != '') AS {k}__from")
    return (f"SELECT TraceId, {', '.join(picks)} FROM (SELECT t.TraceId AS TraceId, t.SpanId AS SpanId, "
            f"{TRACE_ORDER} AS _order{', ' + own if own else ''} "
            f"FROM {{db:Identifier}}.{{table:Identifier}} AS t "
            f"WHERE t.Timestamp >= {{lookback:DateTime64(9)}} AND t.Timestamp < {{until:DateTime64(9)}} "
            f"AND t.TraceId IN (SELECT t.TraceId FROM {{db:Identifier}}.{{table:Identifier}} AS t "
            f"WHERE {window_where} AND {pre_where})) GROUP BY TraceId")


def present_keys_sql(table: Table) -> str:
    """The attribute keys that occur between lookback and until (span and resource)."""
    if table.json_attributes:
        return ("SELECT groupUniqArrayArray(JSONAllPaths(SpanAttributes)), "
                "groupUniqArrayArray(JSONAllPaths(ResourceAttributes)) FROM {db:Identifier}.{table:Identifier} "
                "WHERE Timestamp >= {lookback:DateTime64(9)} AND Timestamp < {until:DateTime64(9)}")
    # The keys subcolumns: only the maps' keys are read, not their values (10M spans, 7 h: 1.2 -> 0.5 s CPU).
    return ("SELECT groupUniqArrayArray(SpanAttributes.keys), groupUniqArrayArray(ResourceAttributes.keys) "
            "FROM {db:Identifier}.{table:Identifier} "
            "WHERE Timestamp >= {lookback:DateTime64(9)} AND Timestamp < {until:DateTime64(9)}")


# -- one row to a canonical span ---------------------------------------------------------------------------
def _pairs(value: Any) -> dict[str, Any]:
    """A Map column as Arrow hands it to Python (a list of pairs), or a JSON-typed column's text."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            return {}
        return flatten_attributes(parsed) if isinstance(parsed, dict) else {}
    return _destringify(dict(value))


def _destringify(attrs: dict[str, Any]) -> dict[str, Any]:
    """The Map exporter writes every value as a string: an OTel array attribute (only scalars,
    never objects) arrives as its JSON text (`["stop"]`). Read those back as lists, as they were
    sent; every other value stays the string it is (the mapping coerces numbers itself)."""
    for k, v in attrs.items():
        if isinstance(v, str) and len(v) >= 2 and v[0] == "[" and v[-1] == "]":
            try:
                parsed = orjson.loads(v)
            except orjson.JSONDecodeError:
                continue
            if isinstance(parsed, list) and all(not isinstance(x, (dict, list)) for x in parsed):
                attrs[k] = parsed
    return attrs


def row_of(r: dict[str, Any]) -> dict[str, Any]:
    """The canonical row of one otel_traces row (the dict of select_columns' names)."""
    attrs = _pairs(r["span_attributes"])
    resource = _pairs(r["resource_attributes"])
    events = [{"name": n, "time": (t // 1000) if t is not None else None, "attributes": _pairs(a)}
              for n, t, a in zip(r["event_names"] or [], r["event_times"] or [], r["event_attributes"] or [],
                                 strict=False)]
    if "service.name" not in resource and r.get("service"):
        resource["service.name"] = r["service"]
    start_us = r["ts_ns"] // 1000 if r["ts_ns"] is not None else None
    end_us = start_us + r["duration_ns"] // 1000 if start_us is not None and r["duration_ns"] is not None else None
    raw = {"Timestamp": r["ts_ns"], "TraceId": r["trace_id"], "SpanId": r["span_id"],
           "ParentSpanId": r["parent_id"], "SpanName": r["name"], "SpanKind": r["span_kind"],
           "ScopeName": r["scope_name"], "Duration": r["duration_ns"], "StatusCode": r["status_code"],
           "StatusMessage": r["status_message"], "SpanAttributes": attrs, "ResourceAttributes": resource,
           "Events": [{"Name": e["name"], "Timestamp": t, "Attributes": e["attributes"]}
                      for e, t in zip(events, r["event_times"] or [], strict=False)]}
    return build_row(trace_id=r["trace_id"], span_id=r["span_id"], parent_id=r["parent_id"] or None,
                     name=r["name"], span_kind=normalize_span_kind(r["span_kind"]) if r["span_kind"] else None,
                     start_us=start_us, end_us=end_us, attrs=attrs, resource=resource,
                     scope_name=r["scope_name"] or None, events=events,
                     status=normalize_status(r["status_code"] or None), status_message=r["status_message"] or None,
                     raw=raw)


def inherit(row: dict[str, Any], r: dict[str, Any]) -> None:
    """Fill the cohort keys the span lacks from its trace (resolved in ClickHouse), with provenance
    in `inherited` as the local resolver records it."""
    got = {}
    for key in INHERITED_KEYS:
        v = r.get(f"{key}__v")
        if row.get(key) is None and v not in (None, ""):
            row[key] = v
            got[key] = {"value": v, "from_span": (r.get(f"{key}__from") or "").lower() or None}
    if got:
        row["inherited"] = got


def new_linker(sink: Any) -> SpanLinks:
    return SpanLinks(sink)
