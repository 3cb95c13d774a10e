"""The canonical span columns computed inside ClickHouse, over the exporter's `otel_traces`: the
relation `changes`/`compare --source` ask their questions of in place (oncall/sources/clickhouse/engine.py).

One mapping, not a second. Columns that are a lookup of one span's attributes (cohort keys, models,
tokens, TTFT, exported cost) come from the mapping's own key tables (ingest.mapping.CANDIDATE_KEYS,
as otel.Projection reads them). Columns the mapping derives in Python from a few small values —
kind, status, error_type, finish_reason, provider — are *dictionary-mapped*: ClickHouse returns the
distinct signatures of those values in the window (the span's kind, operation, tool, finish, error
and HTTP-status attributes, its name, status code, status message and exception event; model and
token attributes by presence only), each signature goes through the file importers' own row mapping
(`otel.row_of`: build_row, map_attributes, apply_status, classify_error), and the answers are bound
back as parameter arrays (`transform(cityHash64(signature values), …)`). Estimated costs use the loader's
own price lookup per (provider, served model, model), bound the same way. Output text (for output
length, refusals, JSON validity and key drift) is read from the GenAI message attribute
(`gen_ai.output.messages`, parts joined as messages.py joins them).

What cannot be computed here is refused with `InPlaceUnsupported` naming why (another output
dialect in the window, too many distinct error messages, a price that varies by time or tier), and
the caller answers on pulled rows instead, saying so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from oncall.ingest import prices
from oncall.ingest.mapping import CANDIDATE_KEYS, KIND_KEYS
from oncall.sources.base import SourceError, Window
from oncall.sources.clickhouse import otel
from oncall.sources.clickhouse.sql import Params, ch_time

MAX_SIGNATURES = 20_000  # distinct (kind, status, error…) signatures mapped in Python per question
MAX_PRICED = 1000  # distinct (provider, served model, model) looked up in the price table
MATERIALIZED_KINDS = ("llm", "tool")  # the spans a session materializes: what changes and compare read
# Attribute keys whose *values* decide kind, status, error_type, finish_reason and provider.
SIGNATURE_KEYS = tuple(dict.fromkeys([
    *KIND_KEYS, *CANDIDATE_KEYS["kind"], *CANDIDATE_KEYS["operation"], "ai.operationId", "gen_ai.tool.name",
    "gen_ai.tool.call.id", *CANDIDATE_KEYS["provider"], "ai.model.provider", *CANDIDATE_KEYS["finish_reason"],
    "error.type", "http.response.status_code", "http.status_code", "error.status_code",
    "langfuse.observation.level", "oncall.level_error"]))
# Keys whose *presence* decides the kind (a model and token usage make an LLM call).
PRESENCE_KEYS = tuple(dict.fromkeys([*CANDIDATE_KEYS["model"], *CANDIDATE_KEYS["served_model"],
                                     "llm.invocation_parameters", *CANDIDATE_KEYS["input_tokens"],
                                     *CANDIDATE_KEYS["output_tokens"], *CANDIDATE_KEYS["total_tokens"],
                                     "ai.usage.tokens"]))
G3_OUTPUT = "gen_ai.output.messages"
# Output dialects the mapping reads that this relation does not (yet) read in ClickHouse.
OTHER_OUTPUT_PREFIXES = ("llm.output_messages.", "gen_ai.completion", "ai.response.text", "ai.response.object",
                         "ai.response.toolCalls", "output.value", "traceloop.entity.output",
                         "langfuse.observation.output", "llm.choices.", "oncall.raw_output", "events")
TTFT_SECONDS_KEYS = ("gen_ai.response.time_to_first_chunk", "gen_ai.client.operation.time_to_first_chunk")
TTFT_MS_KEYS = ("ai.response.msToFirstChunk", "gen_ai.server.time_to_first_token")
NUMERIC_COST_KEYS = tuple(k for k in CANDIDATE_KEYS["cost"] if k != "langfuse.observation.cost_details")


class InPlaceUnsupported(SourceError):
    """This question cannot be answered by aggregates in ClickHouse with the local definitions; the
    caller answers it on pulled rows instead (and says why)."""


# Compiled as constants (NULL): a retrieval's link to the call it fed is made at load (engine.py).
RETRIEVAL_COLUMNS = ("retrieved", "top_score", "doc_age_s", "retrieval_ms", "label", "retrieval_index",
                     "embedding_model")
# Text columns of few distinct values, stored as LowCardinality where the window is materialized.
FEW_VALUED = ("name", "service", "kind", "status", "error_type", "finish_reason", "provider", "error", "model",
              "served_model", "tenant", "feature", "user_id", "session_id", "prompt_name", "prompt_version",
              "release", "env", "cost_source")
# The canonical columns the relation holds (besides cost and cost_source, added last).
COLUMNS = ("start_time", "trace_id", "span_id", "name", "service", "kind", "status", "error_type", "finish_reason",
           "provider", "http_status", "error", "model", "served_model", "latency_ms", "ttft_ms", "input_tokens",
           "output_tokens", "cached_tokens", "exported_cost", "output_text", "tool_calls", "retrieved", "top_score",
           "doc_age_s", "retrieval_ms", "label", "retrieval_index", "embedding_model", "tenant", "feature", "user_id",
           "session_id", "prompt_name", "prompt_version", "release", "env")


@dataclass
class Relation:
    """`sql` selects canonical columns (alias-free) over the window; its parameters are in `params`."""
    sql: str
    params: Params
    notes: list[str] = field(default_factory=list)
    has_retrieval: bool = False
    # The same relation over only the window's MATERIALIZED_KINDS spans, chosen by the span's
    # signature before any per-row work (the trace join, output text): what a session materializes.
    materialized: str = ""
    constants: dict[str, str] = field(default_factory=dict)  # columns `materialized` leaves out, as SQL


def build(source: Any, window: Window) -> Relation:
    """The canonical relation over `source`'s otel_traces table for `window` (two small queries first:
    the attribute keys present, and the distinct signatures mapped through the one mapping)."""
    t = source.table
    if not isinstance(t, otel.Table):
        raise InPlaceUnsupported(f"{source.ref.display}: in-place questions read otel_traces tables; "
                                 "Langfuse tables are answered on pulled rows")
    params = Params()
    params.named("db", t.database, "Identifier")
    params.named("table", t.name, "Identifier")
    params.named("since", ch_time(window.since), "DateTime64(9)")
    params.named("until", ch_time(window.until), "DateTime64(9)")
    params.named("lookback", ch_time(window.since - otel.INHERIT_LOOKBACK), "DateTime64(9)")
    span_keys, res_keys = source.present_keys(params.values)
    other = sorted(k for k in span_keys if k.startswith(OTHER_OUTPUT_PREFIXES))
    if other:
        raise InPlaceUnsupported(f"{source.ref.display}: outputs in attribute {other[0]} are read by the local "
                                 f"mapping only (in place reads {G3_OUTPUT})")
    proj = otel.Projection(t, present=span_keys, present_resource=res_keys)
    inner = otel.Projection(t, inherited_alias=None, present=span_keys, present_resource=res_keys)
    win = "t.Timestamp >= {since:DateTime64(9)} AND t.Timestamp < {until:DateTime64(9)}"
    sig = _signature(proj, span_keys)
    own = {c: proj.own(c) for c in CANDIDATE_KEYS}
    # What the price lookup needs of a span, asked in the same scan as the signatures: its models,
    # where it has tokens and no exported cost (ingest.cost prices exactly those).
    to_price = (f"(toInt64OrNull({own['input_tokens']}) IS NOT NULL OR toInt64OrNull({own['output_tokens']}) IS NOT "
                f"NULL) AND ({_exported_cost(proj, span_keys)}) IS NULL")
    models = f"(nullIf({own['served_model']}, ''), nullIf({own['model']}, ''))"
    mapped, to_price_models = _map_signatures(source, sig, win, params, models, to_price)
    kinds = {m["kind"] for m in mapped.values()}
    hashes = params.p(list(mapped), "Array(UInt64)")

    def looked_up(col: str) -> str:
        vals = params.p([m.get(col) or "" for m in mapped.values()], "Array(String)")
        return f"nullIf(transform(l._h, {hashes}, {vals}, ''), '')"

    # The span's own columns, computed only for the spans kept (`l`); then the signature's answers
    # and the inherited cohort keys (its trace's, `k`) over those few columns.
    own_cols = {
        "start_time": "toDateTime64(t.Timestamp, 6, 'UTC')", "trace_id": "lower(t.TraceId)", "span_id": "lower(t.SpanId)",
        "name": "t.SpanName", "service": "toString(t.ServiceName)",
        "model": f"nullIf({own['model']}, '')", "served_model": f"nullIf({own['served_model']}, '')",
        "latency_ms": "(intDiv(t.Duration, 1000) / 1000.0)",
        "ttft_ms": _ttft(proj, span_keys),
        "input_tokens": f"toInt64OrNull({own['input_tokens']})",
        "output_tokens": f"toInt64OrNull({own['output_tokens']})",
        "cached_tokens": f"toInt64OrNull({own['cached_tokens']})",
        "exported_cost": _exported_cost(proj, span_keys),
        "output_text": _output_text(proj, span_keys),
        "tool_calls": _tool_calls(proj, span_keys),
    }
    cohort = ("tenant", "feature", "user_id", "session_id", "prompt_name", "prompt_version", "release", "env")
    own_cols.update({f"_o_{key}": own[key] for key in cohort})
    # A column none of whose attributes occur in the window is a constant: not computed per span,
    # and not stored where the session materializes the window (Relation.constants).
    constants = {c: v for c, v in own_cols.items() if "t." not in v and not c.startswith("_o_")}
    own_cols = {c: v for c, v in own_cols.items() if c not in constants}
    cols = {c: f"l.{c}" for c in own_cols if not c.startswith("_o_")}
    cols.update({
        "kind": f"ifNull({looked_up('kind')}, 'span')", "status": looked_up("status"),
        "error_type": looked_up("error_type"), "finish_reason": looked_up("finish_reason"),
        "provider": looked_up("provider"), "http_status": f"toInt32OrNull({looked_up('http_status')})",
        "error": looked_up("error"),
        "retrieved": "CAST(NULL AS Nullable(Int64))", "top_score": "CAST(NULL AS Nullable(Float64))",
        "doc_age_s": "CAST(NULL AS Nullable(Float64))", "retrieval_ms": "CAST(NULL AS Nullable(Float64))",
        "label": "CAST(NULL AS Nullable(String))", "retrieval_index": "CAST(NULL AS Nullable(String))",
        "embedding_model": "CAST(NULL AS Nullable(String))",
    })
    constants.update({c: v for c, v in cols.items() if c in RETRIEVAL_COLUMNS})
    cols.update(constants)
    for key in cohort:  # a span's own value wins, else its trace's (otel.trace_keys_sql)
        o = f"l._o_{key}"
        cols[key] = f"nullIf(if({o} != '', {o}, k.{key}__v), '')" if key in proj.columns else f"nullIf({o}, '')"
    select = ", ".join(f"{cols[c]} AS {c}" for c in COLUMNS)
    keys_sql = otel.trace_keys_sql(t, inner, win, "1", sources=False)
    spans = (f"SELECT t.TraceId AS _trace, {sig.hash} AS _h, {', '.join(f'{v} AS {k}' for k, v in own_cols.items())} "
             f"FROM {{db:Identifier}}.{{table:Identifier}} AS t WHERE {win}")
    groups = sorted({(m["provider"], served, requested) for h, m in mapped.items() if m["kind"] in ("llm", "embedding")
                     for served, requested in to_price_models.get(h, ())}, key=lambda g: tuple(x or "" for x in g))
    cost = _cost_columns(source, groups[:MAX_PRICED], params)

    def relation(where: str) -> str:
        return (f"SELECT *, {cost} FROM (SELECT {select} FROM ({spans}{where}) AS l "
                f"LEFT JOIN ({keys_sql}) AS k ON k.TraceId = l._trace)")

    wanted = params.p([h for h, m in mapped.items() if m["kind"] in MATERIALIZED_KINDS], "Array(UInt64)")
    # Stored compactly: the constants left out, names and other few-valued text as LowCardinality
    # (the same values; 10M spans, 6 h: ~600 -> ~230 bytes a span held).
    stored = ", ".join(f"toLowCardinality({c}) AS {c}" if c in FEW_VALUED else c
                       for c in (*COLUMNS, "cost", "cost_source") if c not in constants)
    return Relation(relation(""), params, has_retrieval="retriever" in kinds,
                    materialized=f"SELECT {stored} FROM ({relation(f' AND has({wanted}, {sig.hash})')})",
                    constants=constants)


# -- signatures: the mapping's small inputs, mapped once each in Python ------------------------------------
@dataclass
class Signature:
    """The span's own values that decide kind/status/errors/finish/provider, named; `hash` identifies
    a span's signature in ClickHouse (hashing the values themselves: building a Map per span to hash
    cost more than its lookups)."""
    names: list[str]
    values: list[str]

    @property
    def hash(self) -> str:
        return f"cityHash64({', '.join(self.values)})"


def _signature(proj: otel.Projection, present: frozenset[str]) -> Signature:
    vals = [(k, proj.attr(k)) for k in SIGNATURE_KEYS if k in present]
    vals += [(k, f"if({proj.attr(k)} != '', '1', '')") for k in PRESENCE_KEYS if k in present and k not in SIGNATURE_KEYS]
    if G3_OUTPUT in present:  # a G3 message's own finish_reason (when no finish attribute says)
        fin = (f"arrayFirst(x -> x != '', arrayMap(m -> JSONExtractString(m, 'finish_reason'), "
               f"JSONExtractArrayRaw({proj.attr(G3_OUTPUT)})))")
        said = [k for k in CANDIDATE_KEYS["finish_reason"] if k in present]
        if said and not proj.t.json_attributes:
            # The mapping reads a message's finish_reason only when no finish attribute has a value
            # (mapping._scan: non-empty, not an empty list): then the messages need not be parsed.
            has = " OR ".join(f"({proj.attr(k)} != '' AND arrayStringConcat(splitByWhitespace({proj.attr(k)})) != '[]')"
                              for k in said)
            fin = f"if({has}, '', {fin})"
        vals.append(("_g3_finish", fin))
    a = proj.a
    if proj.t.json_attributes:
        exc = "''"
        exc_msg = "''"
    else:
        idx = f"indexOf({a}.Events.Name, 'exception')"
        exc = f"if({idx} > 0, {a}.Events.Attributes[{idx}]['exception.type'], '')"
        exc_msg = f"if({idx} > 0, {a}.Events.Attributes[{idx}]['exception.message'], '')"
    vals += [("_exc_type", exc), ("_exc_message", exc_msg), ("_status", f"toString({a}.StatusCode)"),
             ("_message", f"{a}.StatusMessage"), ("_name", f"toString({a}.SpanName)"),
             ("_span_kind", f"toString({a}.SpanKind)")]
    return Signature([k for k, _ in vals], [v for _, v in vals])


def _map_signatures(source: Any, sig: Signature, win: str, params: Params, models: str,
                    to_price: str) -> tuple[dict[int, dict[str, Any]], dict[int, list[tuple[Any, Any]]]]:
    """{signature hash: the mapping's answers}, and per signature the (served model, model) pairs of
    its spans the price lookup would price."""
    sql = (f"SELECT h, any(v), groupUniqArrayIf({MAX_PRICED})(m, p) FROM (SELECT {sig.hash} AS h, "
           f"tuple({', '.join(sig.values)}) AS v, {models} AS m, {to_price} AS p "
           f"FROM {{db:Identifier}}.{{table:Identifier}} AS t WHERE {win}) GROUP BY h LIMIT {MAX_SIGNATURES + 1}")
    from oncall.sources.clickhouse.client import errors_named

    with errors_named(source.ref, "reading the distinct span signatures"):
        rows = source.client.query(sql, parameters=params.values, settings=source.settings).result_rows
    if len(rows) > MAX_SIGNATURES:
        raise InPlaceUnsupported(f"{source.ref.display}: more than {MAX_SIGNATURES:,} distinct error messages and "
                                 "span kinds in the window")
    out: dict[int, dict[str, Any]] = {}
    priced: dict[int, list[tuple[Any, Any]]] = {}
    for h, values, pairs in rows:
        priced[int(h)] = [tuple(x) for x in pairs or ()]
        m = {k: v for k, v in zip(sig.names, _values(values), strict=True) if v != ""}
        row = otel.row_of(_signature_row(m))
        out[int(h)] = {"kind": row.get("kind") or "span", "status": row.get("status"),
                       "error_type": row.get("error_type"), "finish_reason": row.get("finish_reason"),
                       "provider": row.get("provider"),
                       "http_status": None if row.get("http_status") is None else str(row["http_status"]),
                       "error": row.get("error")}
    return out, priced


def _values(t: Any) -> list[str]:
    """A tuple as the client hands it back (a tuple, or a dict of its positions)."""
    return [str(v) for v in (t.values() if isinstance(t, dict) else t)]


def _signature_row(m: dict[str, str]) -> dict[str, Any]:
    """A minimal otel_traces row (select_columns' names) holding only the signature's values."""
    special = {k: m.pop(k, "") for k in ("_exc_type", "_exc_message", "_status", "_message", "_name", "_span_kind",
                                         "_g3_finish")}
    if special["_g3_finish"]:
        m[G3_OUTPUT] = '[{"role": "assistant", "finish_reason": ' + _json_str(special["_g3_finish"]) + "}]"
    events: list[Any] = []
    if special["_exc_type"] or special["_exc_message"]:
        ev = {k: v for k, v in (("exception.type", special["_exc_type"]),
                                ("exception.message", special["_exc_message"])) if v}
        events = [ev]
    return {"ts_ns": 0, "trace_id": "0", "span_id": "0", "parent_id": "", "name": special["_name"],
            "span_kind": special["_span_kind"], "scope_name": "", "duration_ns": 0,
            "status_code": special["_status"], "status_message": special["_message"],
            "span_attributes": list(m.items()), "resource_attributes": [],
            "event_attributes": [list(e.items()) for e in events], "event_times": [0] * len(events),
            "event_names": ["exception"] * len(events), "service": ""}


def _json_str(s: str) -> str:
    import json

    return json.dumps(s)


# -- per-row columns ----------------------------------------------------------------------------------------
def _first_float(exprs: list[str]) -> str:
    if not exprs:
        return "CAST(NULL AS Nullable(Float64))"
    return f"coalesce({', '.join(exprs)})" if len(exprs) > 1 else exprs[0]


def _ttft(proj: otel.Projection, present: frozenset[str]) -> str:
    parts = [f"toFloat64OrNull({proj.attr(k)}) * 1000.0" for k in TTFT_SECONDS_KEYS if k in present]
    parts += [f"toFloat64OrNull({proj.attr(k)})" for k in TTFT_MS_KEYS if k in present]
    return _first_float(parts)


def _exported_cost(proj: otel.Projection, present: frozenset[str]) -> str:
    parts = [f"toFloat64OrNull(nullIf({proj.attr(k)}, ''))" for k in NUMERIC_COST_KEYS if k in present]
    if "llm.cost.prompt" in present and "llm.cost.completion" in present:
        parts.append(f"toFloat64OrNull({proj.attr('llm.cost.prompt')}) + toFloat64OrNull({proj.attr('llm.cost.completion')})")
    return _first_float(parts)


_TEXT_PART = ("if(JSONExtractString(p, 'type') IN ('', 'text', 'input_text', 'output_text', 'reasoning', 'thinking'), "
              "multiIf(JSONType(p, 'text') = 'String', JSONExtractString(p, 'text'), "
              "JSONType(p, 'content') = 'String', JSONExtractString(p, 'content'), "
              "JSONType(p, 'thinking') = 'String', JSONExtractString(p, 'thinking'), ''), '')")


def _output_text(proj: otel.Projection, present: frozenset[str]) -> str:
    """messages_text of the G3 output messages: each message's text parts joined by newlines (a
    string `content` as it is), messages joined by newlines."""
    if G3_OUTPUT not in present:
        return "CAST(NULL AS Nullable(String))"
    v = proj.attr(G3_OUTPUT)
    msg = (f"if(JSONType(m, 'parts') = 'Array', arrayStringConcat(arrayFilter(x -> x != '', "
           f"arrayMap(p -> {_TEXT_PART}, JSONExtractArrayRaw(m, 'parts'))), '\\n'), "
           f"if(JSONType(m, 'content') = 'String', JSONExtractString(m, 'content'), ''))")
    return (f"nullIf(arrayStringConcat(arrayFilter(x -> x != '', arrayMap(m -> {msg}, JSONExtractArrayRaw({v}))), "
            f"'\\n'), '')")


def _tool_calls(proj: otel.Projection, present: frozenset[str]) -> str:
    """The tool-call parts of the G3 output messages as a JSON array (NULL without any)."""
    if G3_OUTPUT not in present:
        return "CAST(NULL AS Nullable(String))"
    v = proj.attr(G3_OUTPUT)
    # Every tool-call part type below contains `tool` or `function_call`: text without either has none,
    # and is not parsed.
    maybe = f"(position({v}, 'tool') > 0 OR position({v}, 'function_call') > 0)"
    calls = (f"arrayFlatten(arrayMap(m -> arrayFilter(p -> JSONExtractString(p, 'type') IN ('tool_call', 'tool-call', "
             f"'tool_use', 'function_call'), JSONExtractArrayRaw(m, 'parts')), JSONExtractArrayRaw({v})))")
    return f"if({maybe} AND length({calls}) > 0, concat('[', arrayStringConcat({calls}, ','), ']'), NULL)"


# -- cost: exported, else the loader's price lookup per (provider, served model, model) ----------------------
def _cost_columns(source: Any, groups: list[tuple[Any, Any, Any]], params: Params) -> str:
    """`cost` and `cost_source` over the canonical columns, as ingest.cost sets them at load; `groups`
    are the (provider, served model, model) of the window's spans to price."""
    table = prices.overrides()
    keys, rates = [], []
    for provider, served, requested in groups:
        price = prices.lookup(provider, served, requested, table)
        if price is None:
            continue
        if price.varies_by is not None or len(price.tiers) != 1:
            raise InPlaceUnsupported(f"{source.ref.display}: the price of {served or requested} varies by time or "
                                     "by tier; estimated costs are computed on pulled rows")
        tier = price.tiers[0]
        keys.append(f"{provider or ''}\x1f{served or ''}\x1f{requested or ''}")
        rates.append([float(tier.per_request or 0.0), float(tier.input or 0.0), float(tier.cached_input or 0.0),
                      float(tier.output or 0.0)])
    k = params.p(keys, "Array(String)")
    r = params.p(rates or [[0.0, 0.0, 0.0, 0.0]], "Array(Array(Float64))")
    key = "concat(ifNull(provider, ''), '\\x1f', ifNull(served_model, ''), '\\x1f', ifNull(model, ''))"
    rate = f"{r}[indexOf({k}, {key})]"
    inp, cached, out = "ifNull(input_tokens, 0)", "least(ifNull(cached_tokens, 0), ifNull(input_tokens, 0))", \
        "ifNull(output_tokens, 0)"
    priced = (f"kind IN ('llm', 'embedding') AND (input_tokens IS NOT NULL OR output_tokens IS NOT NULL) "
              f"AND indexOf({k}, {key}) > 0")
    estimate = f"({rate}[1] + {rate}[2] * ({inp} - {cached}) + {rate}[3] * {cached} + {rate}[4] * {out})"
    return (f"if(exported_cost IS NOT NULL, exported_cost, if({priced}, {estimate}, NULL)) AS cost, "
            f"multiIf(exported_cost IS NOT NULL, 'exported', {priced}, 'estimated', "
            f"kind IN ('llm', 'embedding'), 'unknown', NULL) AS cost_source")
