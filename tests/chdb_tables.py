"""ClickHouse tables as the real writers create and fill them, for the ClickHouse source tests and
bench/clickhouse.py.

DDL, copied from the writers' own repositories (template placeholders filled in; TTL clauses left
out, since a TTL silently drops old synthetic spans):
- OTel Collector ClickHouse exporter, opentelemetry-collector-contrib
  exporter/clickhouseexporter/internal/sqltemplates/traces_table.sql at commit 2bf6b9e1 (Map
  attributes, bloom-filter indexes) and traces_json_table.sql at commit 39f94831 (JSON attributes).
- Langfuse v3, langfuse/langfuse packages/shared/clickhouse/migrations/unclustered/0001_traces.up.sql
  (commit b7ad32ee), 0002_observations.up.sql (commit daddc935) and 0008_add_environments_column.up.sql
  (commit 84e2afe7).

`exporter_rows` converts OTLP/JSON documents (what the demo and the SDK file exporters write) into
the rows the exporter inserts: its conversion (exporter/clickhouseexporter/exporter_traces.go) takes
Timestamp = start, Duration = end - start in ns, SpanKind and StatusCode as names (`Server`,
`Error`), ServiceName from the resource's service.name, and every attribute value as
`pcommon.Value.AsString()` (numbers as decimal text, booleans `true`/`false`, arrays and maps as
JSON).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator
from typing import Any

OTEL_TRACES_DDL = """
CREATE TABLE IF NOT EXISTS {db}.{table} (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC(T64, ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    ResourceAttributeItems Array(String) ALIAS arrayMap(kv -> concat(kv.1, '=', kv.2), CAST(ResourceAttributes, 'Array(Tuple(String, String))')),
    SpanAttributeItems Array(String) ALIAS arrayMap(kv -> concat(kv.1, '=', kv.2), CAST(SpanAttributes, 'Array(Tuple(String, String))')),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1,
    INDEX idx_lower_span_name lower(SpanName) TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8
) ENGINE = MergeTree
PARTITION BY toDate(Timestamp)
PRIMARY KEY (ServiceName, SpanName, toDateTime(Timestamp))
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp), Timestamp)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1
"""

OTEL_TRACES_JSON_DDL = """
CREATE TABLE IF NOT EXISTS {db}.{table} (
    Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes JSON CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes JSON CODEC(ZSTD(1)),
    Duration UInt64 CODEC(ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes JSON
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes JSON
    ) CODEC(ZSTD(1)),
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1
) ENGINE = MergeTree
PARTITION BY toDate(Timestamp)
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp), Timestamp)
SETTINGS index_granularity=8192, ttl_only_drop_parts = 1
"""

LANGFUSE_DDL = [
    """CREATE TABLE {db}.traces (
    `id` String,
    `timestamp` DateTime64(3),
    `name` String,
    `user_id` Nullable(String),
    `metadata` Map(LowCardinality(String), String),
    `release` Nullable(String),
    `version` Nullable(String),
    `project_id` String,
    `public` Bool,
    `bookmarked` Bool,
    `tags` Array(String),
    `input` Nullable(String) CODEC(ZSTD(3)),
    `output` Nullable(String) CODEC(ZSTD(3)),
    `session_id` Nullable(String),
    `created_at` DateTime64(3) DEFAULT now(),
    updated_at DateTime64(3) DEFAULT now(),
    `event_ts` DateTime64(3),
    `is_deleted` UInt8,
    INDEX idx_id id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_metadata_key mapKeys(metadata) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_metadata_value mapValues(metadata) TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = ReplacingMergeTree(event_ts, is_deleted) Partition by toYYYYMM(timestamp)
PRIMARY KEY (project_id, toDate(timestamp))
ORDER BY (project_id, toDate(timestamp), id)""",
    """CREATE TABLE {db}.observations (
    `id` String,
    `trace_id` String,
    `project_id` String,
    `type` LowCardinality(String),
    `parent_observation_id` Nullable(String),
    `start_time` DateTime64(3),
    `end_time` Nullable(DateTime64(3)),
    `name` String,
    `metadata` Map(LowCardinality(String), String),
    `level` LowCardinality(String),
    `status_message` Nullable(String),
    `version` Nullable(String),
    `input` Nullable(String) CODEC(ZSTD(3)),
    `output` Nullable(String) CODEC(ZSTD(3)),
    `provided_model_name` Nullable(String),
    `internal_model_id` Nullable(String),
    `model_parameters` Nullable(String),
    `provided_usage_details` Map(LowCardinality(String), UInt64),
    `usage_details` Map(LowCardinality(String), UInt64),
    `provided_cost_details` Map(LowCardinality(String), Decimal64(12)),
    `cost_details` Map(LowCardinality(String), Decimal64(12)),
    `total_cost` Nullable(Decimal64(12)),
    `completion_start_time` Nullable(DateTime64(3)),
    `prompt_id` Nullable(String),
    `prompt_name` Nullable(String),
    `prompt_version` Nullable(UInt16),
    `created_at` DateTime64(3) DEFAULT now(),
    `updated_at` DateTime64(3) DEFAULT now(),
    event_ts DateTime64(3),
    is_deleted UInt8,
    INDEX idx_id id TYPE bloom_filter() GRANULARITY 1,
    INDEX idx_trace_id trace_id TYPE bloom_filter() GRANULARITY 1,
    INDEX idx_project_id project_id TYPE bloom_filter() GRANULARITY 1
) ENGINE = ReplacingMergeTree(event_ts, is_deleted) Partition by toYYYYMM(start_time)
PRIMARY KEY (project_id, `type`, toDate(start_time))
ORDER BY (project_id, `type`, toDate(start_time), id)""",
    "ALTER TABLE {db}.traces ADD COLUMN environment LowCardinality(String) DEFAULT 'default' AFTER project_id",
    "ALTER TABLE {db}.observations ADD COLUMN environment LowCardinality(String) DEFAULT 'default' AFTER project_id",
]

OTEL_COLUMNS = ["Timestamp", "TraceId", "SpanId", "ParentSpanId", "TraceState", "SpanName", "SpanKind", "ServiceName",
                "ResourceAttributes", "ScopeName", "ScopeVersion", "SpanAttributes", "Duration", "StatusCode",
                "StatusMessage", "Events.Timestamp", "Events.Name", "Events.Attributes", "Links.TraceId",
                "Links.SpanId", "Links.TraceState", "Links.Attributes"]

_KINDS = {0: "Unspecified", 1: "Internal", 2: "Server", 3: "Client", 4: "Producer", 5: "Consumer"}
_STATUS = {0: "Unset", 1: "Ok", 2: "Error"}


def _value(v: dict[str, Any]) -> Any:
    """An OTLP AnyValue as a plain value."""
    for k, x in v.items():
        if k == "stringValue":
            return x
        if k == "intValue":
            return int(x)
        if k == "doubleValue":
            return float(x)
        if k == "boolValue":
            return bool(x)
        if k == "arrayValue":
            return [_value(e) for e in (x or {}).get("values", [])]
        if k == "kvlistValue":
            return {e["key"]: _value(e.get("value", {})) for e in (x or {}).get("values", [])}
    return None


def as_string(v: Any) -> str:
    """pcommon.Value.AsString(): what the Map exporter stores."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if isinstance(v, float) else str(v)
    if v is None:
        return ""
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def _kv(kvs: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {kv["key"]: _value(kv.get("value", {})) for kv in kvs or []}


def _ts(ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ns // 1000 / 1e6, dt.UTC).replace(microsecond=(ns // 1000) % 1_000_000)


def exporter_rows(docs: Iterable[dict[str, Any]], *, json_typed: bool = False) -> Iterator[list[Any]]:
    """Rows in OTEL_COLUMNS order, as the exporter writes each span of OTLP/JSON documents."""
    conv = (lambda d: d) if json_typed else (lambda d: {k: as_string(v) for k, v in d.items()})
    for doc in docs:
        for rs in doc.get("resourceSpans", []):
            res = _kv((rs.get("resource") or {}).get("attributes"))
            service = as_string(res.get("service.name", ""))
            for ss in rs.get("scopeSpans", []):
                scope = ss.get("scope") or {}
                for sp in ss.get("spans", []):
                    start, end = int(sp["startTimeUnixNano"]), int(sp["endTimeUnixNano"])
                    status = sp.get("status") or {}
                    events = sp.get("events") or []
                    yield [
                        _ts(start), sp["traceId"], sp["spanId"], sp.get("parentSpanId") or "", sp.get("traceState", ""),
                        sp["name"], _KINDS.get(int(sp.get("kind", 0)), "Unspecified"), service, conv(res),
                        scope.get("name", ""), scope.get("version", ""), conv(_kv(sp.get("attributes"))),
                        end - start, _STATUS.get(int(status.get("code", 0)), "Unset"), status.get("message", ""),
                        [_ts(int(e["timeUnixNano"])) for e in events], [e.get("name", "") for e in events],
                        [conv(_kv(e.get("attributes"))) for e in events], [], [], [], [],
                    ]


def insert_otel(client: Any, database: str, table: str, rows: Iterable[list[Any]], *, json_typed: bool = False,
                batch: int = 50_000) -> int:
    """Insert exporter rows (client.insert, as the exporter's batches do); returns how many."""
    n = 0
    chunk: list[list[Any]] = []
    for r in rows:
        if json_typed:
            r = list(r)
            for i in (8, 11):
                r[i] = json.dumps(r[i])
            r[17] = [json.dumps(a) for a in r[17]]
        chunk.append(r)
        if len(chunk) >= batch:
            client.insert(table, chunk, database=database, column_names=OTEL_COLUMNS)
            n += len(chunk)
            chunk = []
    if chunk:
        client.insert(table, chunk, database=database, column_names=OTEL_COLUMNS)
        n += len(chunk)
    return n


def create_otel(client: Any, database: str, table: str = "otel_traces", *, json_typed: bool = False) -> None:
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    ddl = OTEL_TRACES_JSON_DDL if json_typed else OTEL_TRACES_DDL
    client.command(ddl.format(db=database, table=table))


def create_langfuse(client: Any, database: str) -> None:
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    for stmt in LANGFUSE_DDL:
        client.command(stmt.format(db=database))


def demo_docs(hours: float = 6.0, seed: int = 7, scale: float = 1.0,
              retrieval: bool = True) -> tuple[Any, list[dict[str, Any]]]:
    """The demo incident's OTLP documents (and its truth), generated as `oncall demo` does
    (retrieval=False: without its help-center feature)."""
    import tempfile
    from pathlib import Path

    from oncall.demo import EXPORT_NAME, generate_demo

    with tempfile.TemporaryDirectory() as d:
        truth = generate_demo(Path(d), seed=seed, hours=hours, scale=scale, retrieval=retrieval)
        docs = [json.loads(line) for line in (Path(d) / EXPORT_NAME).read_text().splitlines() if line.strip()]
    return truth, docs
