"""Arize Phoenix span JSON (REST `/v1/projects/{id}/spans`, phoenix-client `Span`; trace-formats.md §3.2).

`context: {trace_id, span_id}`, top-level `span_kind` (OpenInference kind) and `parent_id`, ISO
times with offsets, `status_code`/`status_message`, flat dotted attributes — or, as in the spec's
own examples, nested lists (`"llm.input_messages": [{"message.role": …}]`), flattened here.
Ids are kept as they are when not hex (the fixture uses "fixture-trace-1", "s01").
Accepts a JSON array, the REST `{"data": [...]}` envelope, or JSON Lines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from oncall.ingest.canonical import normalize_span_kind, normalize_status
from oncall.ingest.contracts import Sink
from oncall.ingest.decode import to_epoch_us
from oncall.ingest.formats.otlp import build_row
from oncall.ingest.mapping import flatten_attributes
from oncall.ingest.records import json_records
from oncall.ingest.registry import FormatError, LoadOptions
from oncall.ingest.source import Head

NAME = "phoenix"
DESCRIPTION = "Arize Phoenix span JSON (context.trace_id, span_kind, ISO times; array or JSON Lines)"


def _is_phoenix_span(obj: Any) -> bool:
    return (isinstance(obj, dict) and isinstance(obj.get("context"), dict) and "trace_id" in obj["context"]
            and ("span_kind" in obj or "status_code" in obj))


def _records(doc: Any) -> list[Any] | None:
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        doc = doc["data"]
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict):
        return [doc]
    return None


def sniff(head: Head) -> bool:
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


def _add(obj: Any, where: int, sink: Sink) -> bool:
    if not _is_phoenix_span(obj):
        sink.problem(where, "not-a-span", "record has no context.trace_id/span_kind; not a Phoenix span; skipped")
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
    added = 0
    for where, obj in json_records(path, sink, unwrap=_records):
        added += _add(obj, where, sink)
    if added == 0:
        raise FormatError(f"{path}: no Phoenix spans (objects with context.trace_id and span_kind) found")
