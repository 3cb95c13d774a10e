"""Arize Phoenix span JSON (REST `/v1/projects/{id}/spans`, phoenix-client `Span`; trace-formats.md §3.2).

`context: {trace_id, span_id}`, top-level `span_kind` (OpenInference kind) and `parent_id`, ISO
times with offsets, `status_code`/`status_message`, flat dotted attributes — or, as in the spec's
own examples, nested lists (`"llm.input_messages": [{"message.role": …}]`), flattened here.
Ids are kept as they are when not hex (the fixture uses "fixture-trace-1", "s01").
Accepts a JSON array, the REST `{"data": [...]}` envelope, or JSON Lines.

Also the OTLP form (`/spans/otlpv1`: snake_case OTLP spans in `{"data": [...]}`) and the spans dataframe (`get_spans_dataframe()`, `TraceDataset`) saved as Parquet: columns `name`,
`span_kind`, `parent_id`, `start_time`, `end_time`, `status_code`, `status_message`, `events`,
`context.span_id`, `context.trace_id` and one `attributes.KEY` column per top-level attribute key
(nested values as structs and lists: `attributes.llm.input_messages` is a list of
`{message.role, message.content, …}`, `attributes.metadata` a struct). DuckDB reads the file
(oncall.ingest.parquet); each row becomes the span JSON above and goes through the same mapping.
The span id is the `context.span_id` column, or the pandas index that holds it
(`__index_level_0__` when the column was also the index); a row without one is reported, never
given an invented id.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from oncall.ingest import parquet
from oncall.ingest.canonical import normalize_span_kind, normalize_status
from oncall.ingest.contracts import Sink
from oncall.ingest.decode import to_epoch_us
from oncall.ingest.formats.otlp import add_document, build_row, decode_kv, encode_kv
from oncall.ingest.mapping import flatten_attributes
from oncall.ingest.records import json_records
from oncall.ingest.registry import FormatError, LoadOptions
from oncall.ingest.source import Head

NAME = "phoenix"
DESCRIPTION = ("Arize Phoenix spans: REST/UI span JSON (array, {data: [...]}, JSON Lines), the REST API's OTLP "
               "form (/spans/otlpv1) and the spans dataframe saved as Parquet")


def _is_otlp_span(obj: Any) -> bool:
    """`GET /v1/projects/{id}/spans/otlpv1`: OTLP spans in protobuf's snake_case JSON (phoenix
    `server/api/routers/v1/spans.py` `OtlpSpan`), no resource or scope around them."""
    return (isinstance(obj, dict) and "span_id" in obj and "trace_id" in obj and "context" not in obj
            and ("start_time_unix_nano" in obj or isinstance(obj.get("attributes"), list)))


def _is_phoenix_span(obj: Any) -> bool:
    return (isinstance(obj, dict) and isinstance(obj.get("context"), dict) and "trace_id" in obj["context"]
            and ("span_kind" in obj or "status_code" in obj)) or _is_otlp_span(obj)


def _records(doc: Any) -> list[Any] | None:
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        doc = doc["data"]
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict):
        return [doc]
    return None


_DATAFRAME_COLUMNS = {"context.trace_id", "span_kind", "name"}


def _is_dataframe(head: Head) -> bool:
    cols = set(head.extra.get("columns") or ())
    return head.is_parquet and _DATAFRAME_COLUMNS <= cols and (
        "context.span_id" in cols or "__index_level_0__" in cols)


def _dataframe_span(rec: dict[str, Any]) -> dict[str, Any]:
    """A dataframe row as Phoenix span JSON (the REST shape `phoenix_row` reads)."""
    span_id = rec.get("context.span_id", rec.get("__index_level_0__"))
    attrs = {k[len("attributes."):]: v for k, v in rec.items() if k.startswith("attributes.")}
    out = {k: v for k, v in rec.items() if not k.startswith(("attributes.", "context.")) and k != "__index_level_0__"}
    out["context"] = {"trace_id": rec.get("context.trace_id"), "span_id": span_id}
    out["attributes"] = attrs
    return out


def _read_dataframe(path: Path, sink: Sink) -> int:
    added = 0
    for n, rec in parquet.records(path, progress=lambda done, total: sink.progress(done)):
        added += add_record(_dataframe_span(rec), n, sink)
    return added


def sniff(head: Head) -> bool:
    if head.is_parquet:
        return _is_dataframe(head)
    recs = _records(head.doc) if head.doc is not None else None
    if recs:
        return _is_phoenix_span(recs[0])
    if _is_phoenix_span(head.first_line_obj):
        return True
    text = (head.text or "").lstrip("\ufeff \t\r\n")[:8192]
    return (not head.complete and text[:1] in "[{" and '"context"' in text and '"span_kind"' in text
            and '"trace_id"' in text)


def phoenix_row(obj: dict[str, Any]) -> dict[str, Any]:
    ctx = obj["context"]
    attrs = obj.get("attributes") or {}
    if isinstance(attrs, str):
        attrs = json.loads(attrs)
    attrs = flatten_attributes(attrs)
    events = [{"name": ev.get("name"), "attributes": flatten_attributes(ev.get("attributes") or {}),
               "time": to_epoch_us(ev.get("timestamp"))}
              for ev in obj.get("events") or () if isinstance(ev, dict)]
    kind = obj.get("span_kind") or attrs.get("openinference.span.kind")
    return build_row(
        trace_id=ctx.get("trace_id"), span_id=ctx.get("span_id"), parent_id=obj.get("parent_id"),
        name=obj.get("name"), span_kind=normalize_span_kind(obj.get("kind")) if obj.get("kind") else None,
        start_us=to_epoch_us(obj.get("start_time")), end_us=to_epoch_us(obj.get("end_time")),
        attrs=attrs, resource={}, scope_name=None, events=events,
        status=normalize_status(obj.get("status_code")), status_message=obj.get("status_message"),
        raw=obj, kind_override=kind,
    )


def add_record(obj: Any, where: int | None, sink: Sink) -> bool:
    """Map one Phoenix span record (REST/UI span JSON or the OTLP form) into `sink`, or report why not.
    The one entry point for a span from a file and a span from Phoenix's REST API (sources/phoenix.py)."""
    if not _is_phoenix_span(obj):
        sink.problem(where, "not-a-span", "record has no context.trace_id/span_kind; not a Phoenix span; skipped")
        return False
    if _is_otlp_span(obj):
        # Phoenix keeps attributes nested (`llm` → {`model_name`, `token_count` …}) and hands them back
        # as nested kvlists: flattened to the dotted keys the mapping reads.
        # Rebuilt in OTLP/JSON's own AnyValue form (not bare values, nor Phoenix's every-oneof-field
        # form): `raw` keeps this span, and the redactor knows a secret-named key's value only there.
        flat = flatten_attributes(decode_kv(obj.get("attributes")))
        events = [{**ev, "attributes": encode_kv(decode_kv(ev.get("attributes")))} if isinstance(ev, dict) else ev
                  for ev in obj.get("events") or ()]
        span = {**obj, "attributes": encode_kv(flat), "events": events}
        return add_document({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}, sink, where, Path()) > 0
    if obj["context"].get("span_id") in (None, ""):
        sink.problem(where, "missing-id", f"span {obj.get('name')!r} has no context.span_id; skipped")
        return False
    try:
        row = phoenix_row(obj)
    except (TypeError, ValueError, AttributeError) as exc:
        sink.problem(where, "bad-span", f"span {obj.get('name')!r} cannot be read: {exc}")
        return False
    if not row.get("trace_id") or not row.get("span_id"):
        sink.problem(where, "missing-id", f"span {obj.get('name')!r} has no context.trace_id/span_id")
        return False
    sink.add(row, where)
    return True


def read(path: Path, sink: Sink, options: LoadOptions) -> None:
    if parquet.is_parquet(path):
        try:
            added = _read_dataframe(path, sink)
        except parquet.ParquetError as exc:
            raise FormatError(str(exc)) from None
        if added == 0:
            raise FormatError(f"{path}: no Phoenix spans in the Parquet file (rows with context.trace_id and "
                              "context.span_id)")
        return
    added = 0
    for where, obj in json_records(path, sink, unwrap=_records):
        added += add_record(obj, where, sink)
    if added == 0:
        raise FormatError(f"{path}: no Phoenix spans (objects with context.trace_id and span_kind) found")
