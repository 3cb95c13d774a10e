"""The incident database schema: the canonical span columns and the responder's trail.

Every importer produces rows with exactly the columns in SPAN_COLUMNS (missing ones are NULL).
Migrations (oncall/store/migrations.py) create and evolve these tables; this module is the one
place that names the columns, so importers, queries and the TUI agree on them.
"""

from __future__ import annotations

from typing import Any

# (name, DuckDB type, Arrow type as pyarrow names it, what it holds). Order is the table's column order.
SPAN_COLUMNS: list[tuple[str, str, str, str]] = [
    ("span_pk", "BIGINT", "int64", "internal row id, assigned at load"),
    ("import_id", "INTEGER", "int32", "imports.import_id of the load that wrote the row"),
    ("source_file", "VARCHAR", "string", "path of the file the row came from"),
    ("source_format", "VARCHAR", "string", "detected or forced format name"),
    ("source_line", "BIGINT", "int64", "1-based line (JSONL/CSV/console dumps) or record index"),
    ("trace_id", "VARCHAR", "string", "normalised trace id (lower-case hex where possible)"),
    ("span_id", "VARCHAR", "string", "normalised span/run/observation id"),
    ("parent_id", "VARCHAR", "string", "parent span id; NULL for roots"),
    ("request_id", "VARCHAR", "string", "the application's request id if the export holds one"),
    ("response_id", "VARCHAR", "string", "the provider's response id (chatcmpl-…, resp_…)"),
    ("name", "VARCHAR", "string", "span / run / observation name"),
    ("kind", "VARCHAR", "string", "llm, embedding, tool, agent, chain, retriever, span, …"),
    ("span_kind", "VARCHAR", "string", "OTLP span kind name: client, server, internal, …"),
    ("start_time", "TIMESTAMPTZ", "timestamp[us, tz=UTC]", "start, UTC"),
    ("end_time", "TIMESTAMPTZ", "timestamp[us, tz=UTC]", "end, UTC"),
    ("latency_ms", "DOUBLE", "double", "end - start in milliseconds (or the export's own latency)"),
    ("ttft_ms", "DOUBLE", "double", "time to first token, milliseconds"),
    ("provider", "VARCHAR", "string", "openai, anthropic, azure.ai.openai, …"),
    ("model", "VARCHAR", "string", "requested model"),
    ("served_model", "VARCHAR", "string", "model the provider says served the request"),
    ("session_id", "VARCHAR", "string", "conversation / session / thread"),
    ("user_id", "VARCHAR", "string", "end user"),
    ("tenant", "VARCHAR", "string", "tenant / customer / org / team"),
    ("feature", "VARCHAR", "string", "product feature or workflow"),
    ("prompt_name", "VARCHAR", "string", "prompt template name"),
    ("prompt_version", "VARCHAR", "string", "prompt template version or label"),
    ("env", "VARCHAR", "string", "deployment environment"),
    ("release", "VARCHAR", "string", "application release / version"),
    ("service", "VARCHAR", "string", "service.name of the emitting process"),
    ("status", "VARCHAR", "string", "ok, error or unset"),
    ("error_type", "VARCHAR", "string", "rate_limit, quota, server, timeout, content_filter, client, other"),
    ("error", "VARCHAR", "string", "error message as exported"),
    ("http_status", "INTEGER", "int32", "HTTP status of the provider call when known"),
    ("input_tokens", "BIGINT", "int64", "prompt tokens"),
    ("output_tokens", "BIGINT", "int64", "completion tokens"),
    ("total_tokens", "BIGINT", "int64", "total tokens (exported, or input + output)"),
    ("cached_tokens", "BIGINT", "int64", "prompt tokens read from cache"),
    ("reasoning_tokens", "BIGINT", "int64", "reasoning output tokens"),
    ("cost", "DOUBLE", "double", "cost in USD: as exported, or estimated at load (see cost_source)"),
    ("finish_reason", "VARCHAR", "string", "stop, length, tool_calls, content_filter, … (normalised)"),
    ("input_messages", "JSON", "string", "canonical OpenAI-style chat messages sent"),
    ("output_messages", "JSON", "string", "canonical OpenAI-style chat messages received"),
    ("tool_calls", "JSON", "string", "tool calls in the output: [{id, name, arguments}]"),
    ("input_text", "VARCHAR", "string", "flattened text of the input, for search"),
    ("output_text", "VARCHAR", "string", "flattened text of the output, for search and quality checks"),
    ("attributes", "JSON", "string", "flat map of every attribute/field of the record (meta.KEY)"),
    ("inherited", "JSON", "string", "cohort keys resolved from ancestors: {key: {value, from_span}}"),
    ("raw", "JSON", "string", "the lossless original record"),
    ("cost_source", "VARCHAR", "string",
     "exported | estimated (tokens x price, oncall.ingest.cost) | unknown; NULL for spans that are not model calls"),
    # Retrieval (oncall.ingest.retrieval). On a retrieval span: what it searched and returned; on an
    # embedding span: its model; on an LLM call: the retrieval that fed it (linked when a load
    # finishes, oncall.ingest.retrieval_link), so filters and metrics on LLM calls read it directly.
    ("retrieval_query", "VARCHAR", "string", "the retrieval's query text"),
    ("retrieved_docs", "JSON", "string", "documents returned, in rank order: [{id, score, content, source, "
     "updated_at, metadata}] (content as an excerpt)"),
    ("retrieved", "INTEGER", "int32", "how many documents the retrieval returned (0: empty)"),
    ("top_score", "DOUBLE", "double", "best relevance score of the documents returned"),
    ("embedding_model", "VARCHAR", "string", "model that embedded the query"),
    ("retrieval_index", "VARCHAR", "string", "index or collection searched (name@version when both are said)"),
    ("retrieval_ms", "DOUBLE", "double", "time spent retrieving, milliseconds (an LLM call: its retrievals')"),
    ("doc_age_s", "DOUBLE", "double", "age of the newest dated document at the retrieval's start, seconds"),
    ("retrieval_span", "VARCHAR", "string", "an LLM call: span id of the (last) retrieval that fed it"),
    ("fed_span", "VARCHAR", "string", "a retrieval or embedding span: span id of the LLM call it fed"),
]

# The retrieval columns an LLM call takes from the retrieval spans that fed it.
RETRIEVAL_COLUMNS = ["retrieval_query", "retrieved_docs", "retrieved", "top_score", "embedding_model",
                     "retrieval_index", "retrieval_ms", "doc_age_s"]
RETRIEVAL_SPAN_COLUMNS = [*RETRIEVAL_COLUMNS, "retrieval_span", "fed_span"]

SPAN_COLUMN_NAMES: list[str] = [c[0] for c in SPAN_COLUMNS]

# Columns an importer fills in; span_pk and import_id are assigned by the writer.
IMPORTER_COLUMNS: list[str] = [c for c in SPAN_COLUMN_NAMES if c not in ("span_pk", "import_id")]



def __getattr__(name: str) -> Any:
    """ARROW_SCHEMA (the writers' batches), built on first use: pyarrow, with the numpy it imports, is
    0.13-0.14 s of every command's start (python -X importtime), and the console and the queries
    never build an Arrow batch."""
    if name != "ARROW_SCHEMA":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import pyarrow as pa

    types = {"int64": pa.int64(), "int32": pa.int32(), "double": pa.float64(), "string": pa.string(),
             "timestamp[us, tz=UTC]": pa.timestamp("us", tz="UTC")}
    schema = pa.schema([(col, types[atype]) for col, _, atype, _ in SPAN_COLUMNS])
    globals()["ARROW_SCHEMA"] = schema
    return schema

# Cohort keys that a child span inherits from its nearest ancestor when it has none of its own.
INHERITED_KEYS: list[str] = [
    "session_id",
    "user_id",
    "tenant",
    "feature",
    "prompt_name",
    "prompt_version",
    "env",
    "release",
    "request_id",
]

ERROR_TYPES = ("rate_limit", "quota", "server", "timeout", "content_filter", "client", "other")


# The lossless record and the attribute map are written once and read one row at a time (show
# --raw) or by a rare meta.KEY filter: zstd writes them ~3x faster than DuckDB's default string
# compression (its FSST analysis dominated a load). The conversation and the searched text keep the
# default: the reader fetches a row's messages on every j/k (7.7 ms from zstd against 2 ms), and
# ILIKE scans the default twice as fast.
ZSTD_COLUMNS = {"raw", "attributes"}


def spans_ddl() -> str:
    cols = ",\n    ".join(f"{name} {dtype}" + (" USING COMPRESSION zstd" if name in ZSTD_COLUMNS else "")
                          for name, dtype, _, _ in SPAN_COLUMNS)
    return f"CREATE TABLE spans (\n    {cols}\n)"
