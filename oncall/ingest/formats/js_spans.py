"""OpenTelemetry JS `ReadableSpan` dumps (e.g. the Vercel AI SDK capture, trace-formats.md §2.3).

Not OTLP: `spanContext: {traceId, spanId}`, `attributes` a plain object, `startTime`/`endTime` as
HrTime `[seconds, nanoseconds]`, `status.code` 0/1/2, `kind` an int in the JS `SpanKind` enum
(0 internal, 1 server, 2 client: not OTLP's numbering). Parent links, when present, are
`parentSpanId` (SDK 1.x) or `parentSpanContext.spanId` (SDK 2.x); the Vercel capture has none.
Accepts a JSON array, one object, JSON Lines, or concatenated objects. Forced onto the JS SDK's
console output (util.inspect literals, not JSON), it reads that as `otel-console` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oncall.ingest.canonical import normalize_status
from oncall.ingest.contracts import Sink
from oncall.ingest.decode import to_epoch_us
from oncall.ingest.formats.otel_console import iter_json_values, js_span_kind, json_flavour, read_node
from oncall.ingest.formats.otlp import build_row, decode_kv
from oncall.ingest.registry import FormatError, LoadOptions
from oncall.ingest.source import Head, SourceError, read_all_text

NAME = "otel-js-spans"
DESCRIPTION = "OpenTelemetry JS ReadableSpan dump (spanContext, HrTime times; e.g. Vercel AI SDK captures)"


def _is_js_span(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("spanContext"), dict) and "traceId" in obj["spanContext"]


def sniff(head: Head) -> bool:
    doc = head.doc
    if isinstance(doc, list):
        return bool(doc) and _is_js_span(doc[0])
    if doc is not None:
        return _is_js_span(doc)
    if _is_js_span(head.first_line_obj):
        return True
    text = (head.text or "").lstrip("\ufeff \t\r\n")
    # Too big to parse whole: the first object of an array or of concatenated objects.
    body = text[1:] if text.startswith("[") else text
    for _, value, err in iter_json_values(body):
        return err is None and _is_js_span(value)
    return False


def js_row(obj: dict[str, Any]) -> dict[str, Any]:
    ctx = obj["spanContext"]
    parent = obj.get("parentSpanId")
    if parent is None and isinstance(obj.get("parentSpanContext"), dict):
        parent = obj["parentSpanContext"].get("spanId")
    status = obj.get("status") or {}
    res = obj.get("resource") or {}
    res_attrs = decode_kv(res.get("attributes") or res.get("_attributes") or {}) if isinstance(res, dict) else {}
    scope = obj.get("instrumentationScope") or obj.get("instrumentationLibrary") or {}
    events = [{"name": ev.get("name"), "attributes": ev.get("attributes") or {}, "time": to_epoch_us(ev.get("time"))}
              for ev in obj.get("events") or () if isinstance(ev, dict)]
    return build_row(
        trace_id=ctx.get("traceId"), span_id=ctx.get("spanId"), parent_id=parent, name=obj.get("name"),
        span_kind=js_span_kind(obj.get("kind")),
        start_us=to_epoch_us(obj.get("startTime")), end_us=to_epoch_us(obj.get("endTime")),
        attrs=decode_kv(obj.get("attributes") or {}), resource=res_attrs,
        scope_name=scope.get("name") if isinstance(scope, dict) else None, events=events,
        status=normalize_status(status.get("code")), status_message=status.get("message"), raw=obj,
    )


def read(path: Path, sink: Sink, options: LoadOptions) -> None:
    try:
        text = read_all_text(path)
    except SourceError as exc:
        raise FormatError(str(exc)) from None
    if not json_flavour(text):
        if read_node(text, sink) == 0:
            raise FormatError(f"{path}: no JS spans found (neither ReadableSpan JSON nor Node console literals)")
        return
    added = 0
    for line, value, err in iter_json_values(text):
        if err is not None:
            sink.problem(line, "invalid-json", f"{err}; skipped")
            continue
        items = value if isinstance(value, list) else [value]
        for i, obj in enumerate(items):
            where = line if not isinstance(value, list) else i + 1
            if not _is_js_span(obj):
                sink.problem(where, "not-a-span", "record has no spanContext.traceId; skipped")
                continue
            try:
                row = js_row(obj)
            except (TypeError, ValueError, AttributeError) as exc:
                sink.problem(where, "bad-span", f"span {obj.get('name')!r} cannot be read: {exc}; skipped")
                continue
            if not row.get("trace_id") or not row.get("span_id"):
                sink.problem(where, "missing-id", f"span {obj.get('name')!r} has an empty spanContext id")
                continue
            sink.add(row, where)
            added += 1
    if added == 0:
        raise FormatError(f"{path}: no JS ReadableSpan records (objects with spanContext.traceId) found")
