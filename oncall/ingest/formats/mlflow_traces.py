"""MLflow traces: `Trace.to_json()` documents and the `mlflow traces search --output json` CLI answer.

One record per trace with its spans nested inside (mlflow `mlflow/entities/trace.py`):
`{"info": {…}, "data": {"spans": [span, …]}}`. The CLI wraps them as `{"traces": [...],
"next_page_token"}`; a JSON array of traces and JSON Lines of traces load too.

- `info` (schema 3): `trace_id` (`tr-<hex>`), `request_time`, `execution_duration_ms`, `state`,
  `trace_metadata` (`mlflow.trace.user`, `mlflow.trace.session`, `mlflow.trace.tokenUsage`, the
  app's own keys), `tags` (`mlflow.traceName`, the app's own keys). Schema 2: `request_id`,
  `timestamp_ms`, `status`, `request_metadata`.
- spans (schema 3, OTLP-like): `trace_id`/`span_id`/`parent_span_id` in **base64**,
  `start_time_unix_nano`, `end_time_unix_nano`, `status {code, message}`, `events`,
  `attributes` with **every value JSON-encoded** (`"mlflow.spanType": "\\"LLM\\""`). Schema 2:
  `context {trace_id, span_id}` as `0x…` hex, `parent_id`, `start_time`/`end_time` (ns),
  `status_code`, `status_message`.

The spans are read, not the trace: each span goes through the one mapping (MLflow's `mlflow.span*`
attributes: oncall.ingest.dialects) with its attribute values decoded once. The trace's user,
session and the app's metadata and tags (tenant, feature, prompt version…) are the trace's, so every
span of the trace carries them. A trace whose state is ERROR with no span saying why gives its
LLM calls the trace's error ("errors recorded only on the trace").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oncall.ingest import jsonio
from oncall.ingest.canonical import normalize_span_kind, normalize_status
from oncall.ingest.contracts import Sink
from oncall.ingest.decode import to_epoch_us
from oncall.ingest.formats.otlp import build_row, decode_kv
from oncall.ingest.mapping import apply_status, map_attributes
from oncall.ingest.records import json_records
from oncall.ingest.registry import FormatError, LoadOptions
from oncall.ingest.source import Head

NAME = "mlflow-traces"
DESCRIPTION = "MLflow traces: Trace.to_json() documents and `mlflow traces search --output json` (spans nested per trace)"

_COHORT = ("session_id", "user_id", "tenant", "feature", "prompt_name", "prompt_version", "env", "release",
           "request_id")


def _is_trace(obj: Any) -> bool:
    return (isinstance(obj, dict) and isinstance(obj.get("info"), dict) and isinstance(obj.get("data"), dict)
            and isinstance(obj["data"].get("spans"), list)) or _is_proto_trace(obj)


def _is_proto_trace(obj: Any) -> bool:
    """The tracking server's own form (`POST /api/3.0/mlflow/traces/batchGet`, `Trace` proto as JSON):
    `{"trace_info": {…}, "spans": [OTel proto spans: attributes as key/value lists]}`."""
    return isinstance(obj, dict) and isinstance(obj.get("trace_info"), dict) and isinstance(obj.get("spans"), list)


def as_document(trace: dict[str, Any]) -> dict[str, Any]:
    """Either form as `{"info", "data": {"spans"}}` (Trace.to_json's), which add_trace reads."""
    if _is_proto_trace(trace) and not isinstance(trace.get("info"), dict):
        return {"info": trace["trace_info"], "data": {"spans": trace["spans"]}}
    return trace


def _traces(doc: Any) -> list[Any] | None:
    if isinstance(doc, dict) and isinstance(doc.get("traces"), list):
        return doc["traces"]
    if isinstance(doc, list):
        return doc
    return None


def sniff(head: Head) -> bool:
    doc = head.doc if head.doc is not None else head.first_line_obj
    items = _traces(doc)
    if items:
        return _is_trace(items[0])
    if _is_trace(doc):
        return True
    text = (head.text or "").lstrip("\ufeff \t\r\n")[:4096]
    return (not head.complete and '"info"' in text and '"spans"' in text
            and ('"trace_metadata"' in text or '"request_metadata"' in text or '"mlflow.' in text))


def _decoded(attrs: Any) -> dict[str, Any]:
    """MLflow JSON-encodes every attribute value; decode each once (a non-JSON string stays)."""
    out: dict[str, Any] = {}
    for k, v in decode_kv(attrs or {}).items():  # the server's proto form lists them as key/value pairs
        if isinstance(v, str):
            try:
                v = jsonio.loads(v)
            except ValueError:
                pass
        out[str(k)] = v
    return out


def _trace_columns(info: dict[str, Any]) -> tuple[dict[str, Any], str, Any]:
    """(cohort columns, trace status, trace error) from the trace's info."""
    md = info.get("trace_metadata") or info.get("request_metadata") or {}
    tags = info.get("tags") or {}
    attrs: dict[str, Any] = {}
    for src in (tags, md):
        for k, v in (src or {}).items():
            if not str(k).startswith("mlflow."):
                attrs[f"metadata.{k}"] = v
    if md.get("mlflow.trace.session"):
        attrs["session.id"] = md["mlflow.trace.session"]
    if md.get("mlflow.trace.user"):
        attrs["user.id"] = md["mlflow.trace.user"]
    mapped = map_attributes(attrs) if attrs else {}
    cohort = {k: mapped[k] for k in _COHORT if mapped.get(k) is not None}
    if info.get("client_request_id"):
        cohort.setdefault("request_id", str(info["client_request_id"]))
    state = normalize_status(info.get("state") or info.get("status"))
    return cohort, state, md.get("mlflow.trace.error") or md.get("error")


def span_row(span: dict[str, Any]) -> dict[str, Any]:
    ctx = span.get("context") if isinstance(span.get("context"), dict) else {}
    attrs = _decoded(span.get("attributes"))
    events = []
    for ev in span.get("events") or ():
        if isinstance(ev, dict):
            t = ev.get("time_unix_nano", ev.get("timestamp"))
            events.append({"name": ev.get("name"), "attributes": _decoded(ev.get("attributes")),
                           "time": to_epoch_us(t, "ns") if isinstance(t, (int, float)) else to_epoch_us(t)})
    status = span.get("status") if isinstance(span.get("status"), dict) else {}
    code = status.get("code", span.get("status_code"))
    return build_row(
        trace_id=span.get("trace_id") or ctx.get("trace_id"), span_id=span.get("span_id") or ctx.get("span_id"),
        parent_id=span.get("parent_span_id") or span.get("parent_id"), name=span.get("name"),
        span_kind=normalize_span_kind(span.get("kind")) if span.get("kind") is not None else None,
        start_us=to_epoch_us(span.get("start_time_unix_nano", span.get("start_time")), "ns"),
        end_us=to_epoch_us(span.get("end_time_unix_nano", span.get("end_time")), "ns") or None,
        attrs=attrs, resource={}, scope_name=None, events=events, status=normalize_status(code),
        status_message=status.get("message", span.get("status_message")), raw=span,
    )


def add_trace(trace: dict[str, Any], sink: Sink, where: int | None) -> int:
    """Map one trace's spans into `sink` (the one entry point for a file's trace and the tracking
    server's: sources/mlflow.py). Returns the number of spans added."""
    trace = as_document(trace)
    cohort, state, trace_error = _trace_columns(trace["info"])
    rows = []
    for i, span in enumerate(trace["data"]["spans"], start=1):
        if not isinstance(span, dict):
            sink.problem(where, "bad-span", f"span #{i} of the trace is not an object; skipped")
            continue
        try:
            row = span_row(span)
        except (TypeError, ValueError, AttributeError) as exc:
            sink.problem(where, "bad-span", f"span {span.get('name')!r} cannot be read: {exc}")
            continue
        if not row.get("trace_id") or not row.get("span_id"):
            sink.problem(where, "missing-id", f"span {span.get('name')!r} has no trace or span id; skipped")
            continue
        for k, v in cohort.items():
            if row.get(k) is None:
                row[k] = v
        rows.append(row)
    if state == "error" and not any(r.get("status") == "error" for r in rows):
        # The trace failed and no span says so: its calls are what failed.
        for r in rows:
            if r.get("kind") == "llm" or r.get("parent_id") is None:
                r["attributes"]["oncall.error_from"] = "trace"
                apply_status(r, "error", trace_error or "the trace's state is ERROR")
    for r in rows:
        sink.add(r, where)
    return len(rows)


def read(path: Path, sink: Sink, options: LoadOptions) -> None:
    added = 0
    for where, obj in json_records(path, sink, unwrap=_traces):
        for trace in (_traces(obj) or [obj]) if not _is_trace(obj) else [obj]:
            if not _is_trace(trace):
                sink.problem(where, "not-a-trace", "not an MLflow trace ({info, data: {spans}}); skipped")
                continue
            added += add_trace(trace, sink, where)
    if added == 0:
        raise FormatError(f"{path}: no MLflow trace spans found")
