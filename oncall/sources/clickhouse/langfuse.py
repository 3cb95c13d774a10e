"""Langfuse v3's ClickHouse tables (`observations` joined to `traces`), read in place.

Both are ReplacingMergeTree(event_ts, is_deleted): until a merge runs, a row may exist in several
versions and a deletion is a newer version with is_deleted = 1. Read as Langfuse reads them: the
newest version of each row (`ORDER BY event_ts DESC LIMIT 1 BY id, project_id`), then drop the
deleted ones. Rows become the Langfuse API's shape and go through the Langfuse importers' own
mapping (ingest.formats.langfuse.observation_row / trace_row): one mapping for a downloaded trace,
a batch export and this table. An observation takes the trace's session, user, release, tags and
metadata keys (tenant, feature) the way the trace file's rows inherit them, recorded in `inherited`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from oncall.ingest.decode import json_deep_loads
from oncall.ingest.formats.langfuse import KINDS, observation_row, trace_row
from oncall.query.filters import Filter
from oncall.sources.base import Window
from oncall.sources.clickhouse.pushdown import Col, compile_terms
from oncall.sources.clickhouse.sql import Params, ch_time, literal
from oncall.store.schema import INHERITED_KEYS

OBSERVATION_COLUMNS = {"id", "trace_id", "project_id", "type", "parent_observation_id", "start_time", "end_time",
                       "name", "metadata", "level", "status_message", "input", "output", "provided_model_name",
                       "usage_details", "cost_details", "event_ts", "is_deleted"}
TRACE_COLUMNS = {"id", "timestamp", "name", "user_id", "session_id", "metadata", "release", "tags", "project_id",
                 "event_ts", "is_deleted"}
TRACE_LOOKBACK = dt.timedelta(hours=24)  # a trace's timestamp is its start; observations come later


@dataclass(frozen=True)
class Tables:
    database: str
    observations: str
    traces: str
    observation_columns: frozenset[str]
    trace_columns: frozenset[str]


def detect(database: str, wanted: str, cols: Mapping[str, str], tables: list[str],
           columns_of: Callable[[str], Mapping[str, str]]) -> Tables | None:
    """Langfuse's pair when `wanted` is its observations (or traces) table and its sibling exists."""
    if OBSERVATION_COLUMNS <= set(cols) and "traces" in tables:
        tcols = columns_of("traces")
        if TRACE_COLUMNS <= set(tcols):
            return Tables(database, wanted, "traces", frozenset(cols), frozenset(tcols))
    if TRACE_COLUMNS <= set(cols) and "observations" in tables:
        ocols = columns_of("observations")
        if OBSERVATION_COLUMNS <= set(ocols):
            return Tables(database, "observations", wanted, frozenset(ocols), frozenset(cols))
    return None


class Projection:
    """Canonical columns over the newest observation (o) and its trace (tr)."""

    def __init__(self, t: Tables) -> None:
        self.t = t
        env = "o.environment" if "environment" in t.observation_columns else "''"
        version = "toString(o.prompt_version)" if "prompt_version" in t.observation_columns else "''"
        pname = "ifNull(o.prompt_name, '')" if "prompt_name" in t.observation_columns else "''"
        self.columns: dict[str, Col] = {
            "trace_id": Col("lower(o.trace_id)"), "span_id": Col("lower(o.id)"), "name": Col("o.name"),
            "model": Col("ifNull(o.provided_model_name, '')", exact=False),
            "session_id": Col("ifNull(tr.session_id, '')"), "user_id": Col("ifNull(tr.user_id, '')"),
            "release": Col("ifNull(tr.release, '')", exact=False),
            "tenant": Col("if(tr.metadata['tenant'] != '', tr.metadata['tenant'], tr.metadata['tenant_id'])",
                          exact=False),
            "feature": Col("tr.metadata['feature']", exact=False),
            "prompt_name": Col(pname, exact=False), "prompt_version": Col(f"ifNull({version}, '')", exact=False),
            "env": Col(env, exact=False),
            "latency_ms": Col("toFloat64(toUnixTimestamp64Milli(o.end_time) - toUnixTimestamp64Milli(o.start_time))",
                              numeric=True),
            "input_tokens": Col("toFloat64(o.usage_details['input'])", numeric=True, exact=False),
            "output_tokens": Col("toFloat64(o.usage_details['output'])", numeric=True, exact=False),
        }

    def text_values(self) -> str:
        return "[ifNull(o.input, ''), ifNull(o.output, '')]"

    def meta(self, params: Params, key: str) -> str | None:
        return f"o.metadata[{params.p(key, 'String')}]"

    def error_superset(self) -> str:
        return "upper(o.level) = 'ERROR'"

    def error_subset(self) -> str:
        return "upper(o.level) = 'ERROR'"

    def kind_superset(self, kind: str) -> str | None:
        types = [k for k, v in KINDS.items() if v == kind]
        if not types:
            return None
        return f"upper(o.type) IN ({', '.join(literal(x) for x in types)})"


def _newest(table_param: str, time_col: str, lo: str, hi: str, where: str = "1") -> str:
    """The newest version of each row in the time range, deleted ones dropped (as Langfuse reads)."""
    return (f"SELECT * FROM (SELECT * FROM {{db:Identifier}}.{{{table_param}:Identifier}} "
            f"WHERE {time_col} >= {lo} AND {time_col} < {hi} AND {where} "
            f"ORDER BY event_ts DESC LIMIT 1 BY id, project_id) WHERE is_deleted = 0")


def pull_sql(t: Tables, window: Window, flt: Filter, *, newest_first: bool) -> tuple[str, dict[str, Any]]:
    params = Params()
    params.named("db", t.database, "Identifier")
    params.named("obs", t.observations, "Identifier")
    params.named("tr", t.traces, "Identifier")
    params.named("since", ch_time(window.since), "DateTime64(3)")
    params.named("until", ch_time(window.until), "DateTime64(3)")
    params.named("lookback", ch_time(window.since - TRACE_LOOKBACK), "DateTime64(3)")
    cond = compile_terms(flt, Projection(t), params)
    obs = _newest("obs", "start_time", "{since:DateTime64(3)}", "{until:DateTime64(3)}")
    trs = _newest("tr", "timestamp", "{lookback:DateTime64(3)}", "{until:DateTime64(3)}")
    order = " ORDER BY o.start_time DESC" if newest_first else ""
    ocols = ", ".join(f"o.{c} AS o_{c}" for c in sorted(t.observation_columns) if c not in ("event_ts",))
    tcols = ", ".join(f"tr.{c} AS t_{c}" for c in sorted(t.trace_columns) if c not in ("event_ts",))
    sql = (f"SELECT {ocols}, {tcols}, tr.id != '' AS t_found FROM ({obs}) AS o "
           f"LEFT JOIN ({trs}) AS tr ON tr.id = o.trace_id AND tr.project_id = o.project_id "
           f"WHERE {cond}{order}")
    return sql, params.values


# -- rows ----------------------------------------------------------------------------------------------
def _iso(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, dt.datetime):
        return (v if v.tzinfo else v.replace(tzinfo=dt.UTC)).isoformat()
    return str(v)


def _num(v: Any) -> Any:
    return float(v) if isinstance(v, Decimal) else v


def _map(v: Any) -> dict[str, Any]:
    if v is None:
        return {}
    return {str(k): _num(x) for k, x in (v.items() if isinstance(v, dict) else v)}


def _metadata(v: Any) -> dict[str, Any]:
    """Langfuse keeps metadata values as strings; OTel-ingested ones hold JSON (`attributes`)."""
    return {k: json_deep_loads(x) for k, x in _map(v).items()}


def trace_doc(r: dict[str, Any]) -> dict[str, Any]:
    return {"id": r.get("t_id"), "timestamp": _iso(r.get("t_timestamp")), "name": r.get("t_name"),
            "userId": r.get("t_user_id"), "sessionId": r.get("t_session_id"), "release": r.get("t_release"),
            "version": r.get("t_version"), "tags": list(r.get("t_tags") or []),
            "metadata": _metadata(r.get("t_metadata")), "input": r.get("t_input"), "output": r.get("t_output"),
            "environment": r.get("t_environment"), "projectId": r.get("t_project_id")}


def observation_doc(r: dict[str, Any]) -> dict[str, Any]:
    usage = _map(r.get("o_usage_details"))
    return {"id": r.get("o_id"), "traceId": r.get("o_trace_id"), "type": r.get("o_type"),
            "parentObservationId": r.get("o_parent_observation_id"), "name": r.get("o_name"),
            "startTime": _iso(r.get("o_start_time")), "endTime": _iso(r.get("o_end_time")),
            "completionStartTime": _iso(r.get("o_completion_start_time")),
            "metadata": _metadata(r.get("o_metadata")), "level": r.get("o_level"),
            "statusMessage": r.get("o_status_message"), "version": r.get("o_version"),
            "input": r.get("o_input"), "output": r.get("o_output"), "model": r.get("o_provided_model_name"),
            "modelParameters": json_deep_loads(r.get("o_model_parameters")),
            "usageDetails": usage, "costDetails": _map(r.get("o_cost_details")),
            "totalCost": _num(r.get("o_total_cost")), "promptName": r.get("o_prompt_name"),
            "promptVersion": r.get("o_prompt_version"), "environment": r.get("o_environment"),
            "projectId": r.get("o_project_id")}


def rows_of(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The observation's canonical row, with the trace's cohort keys where it has none of its own."""
    tr = trace_doc(r) if r.get("t_found") else {"id": r.get("o_trace_id")}
    row = observation_row(observation_doc(r), tr)
    if r.get("t_found"):
        trow = trace_row(tr)
        got = {}
        for key in INHERITED_KEYS:
            if row.get(key) is None and trow.get(key) is not None:
                row[key] = trow[key]
                got[key] = {"value": trow[key], "from_span": trow.get("span_id")}
        if got:
            row["inherited"] = got
    return [row]
