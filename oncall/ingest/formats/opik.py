"""Opik: `opik export … traces` files and the SDK's REST payloads (traces and spans, created then updated).

- `opik export WORKSPACE PROJECT traces` (comet-ml/opik `sdks/python/src/opik/cli/exports/project.py`)
  writes one JSON file per trace: `{"trace": TracePublic, "spans": [SpanPublic…], "attachments",
  "downloaded_at", "project_name"}` — one record per trace with the spans nested inside.
- The SDK's own traffic (`POST /v1/private/traces/batch` `{"traces": [...]}`, `/spans/batch`
  `{"spans": [...]}`), as a capture keeps it: a JSON document or JSON Lines of such bodies. The SDK
  sends a span (and a trace) **twice**: when it starts (no `end_time`; a failing OpenAI call even as
  `type: general`) and when it ends. Records of one id are merged, the completed one winning.

Fields (opik `rest_api/types/span_public.py`, `trace_public.py`): span `id`, `trace_id`,
`parent_span_id`, `name`, `type` (`llm`, `general`, `tool`, `guardrail`), `start_time`, `end_time`,
`input` (`{"messages": [...]}` for OpenAI calls), `output` (the chat completion's `choices`),
`metadata` (the call's parameters and response fields: `model`, `id`, `usage`), `model`, `provider`,
`usage` (`prompt_tokens`, `completion_tokens`, `total_tokens`), `error_info {exception_type, message,
traceback}`, `total_estimated_cost`, `tags`; trace: the same plus `thread_id` (the session) and the
app's `metadata` and `tags`.

The trace becomes a row (kind `trace`) carrying the thread and the cohort keys of its metadata; top
spans hang under it. `model` is one value, as with Langfuse: the SDK writes the response's model once
the call answered (both columns), the request's when it failed. A trace's `error_info` reaches its
calls that have neither output nor error of their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oncall.ingest.canonical import call_kind, classify_error, http_status_from
from oncall.ingest.contracts import Sink
from oncall.ingest.decode import coerce_float, normalize_id, to_epoch_us
from oncall.ingest.dialects import usage_keys
from oncall.ingest.mapping import apply_status, map_attributes
from oncall.ingest.records import drop_none, flat, input_columns, json_records, output_columns
from oncall.ingest.registry import FormatError, LoadOptions
from oncall.ingest.source import Head

NAME = "opik"
DESCRIPTION = "Opik: `opik export` trace files ({trace, spans}) and the SDK's traces/spans batch payloads"

_TYPES = {"llm": "llm", "general": "span", "tool": "tool", "guardrail": "guardrail"}
_TOKEN_COLUMNS = (("input_tokens", "gen_ai.usage.input_tokens"), ("output_tokens", "gen_ai.usage.output_tokens"),
                  ("total_tokens", "gen_ai.usage.total_tokens"),
                  ("cached_tokens", "gen_ai.usage.cache_read.input_tokens"),
                  ("reasoning_tokens", "gen_ai.usage.reasoning.output_tokens"))


def _is_export(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("trace"), dict) and isinstance(obj.get("spans"), list) \
        and "id" in obj["trace"] and ("project_name" in obj or "downloaded_at" in obj or not obj["spans"]
                                      or "trace_id" in obj["spans"][0])


def _is_payload(obj: Any) -> bool:
    if not isinstance(obj, dict) or len(obj) != 1:
        return False
    items = obj.get("spans", obj.get("traces"))
    return isinstance(items, list) and bool(items) and isinstance(items[0], dict) and "id" in items[0] and (
        "project_name" in items[0] or "trace_id" in items[0] or "thread_id" in items[0])


def _is_record(obj: Any) -> bool:
    return _is_export(obj) or _is_payload(obj)


def sniff(head: Head) -> bool:
    doc = head.doc if head.doc is not None else head.first_line_obj
    if isinstance(doc, list) and doc:
        doc = doc[0]
    if _is_record(doc):
        return True
    text = (head.text or "").lstrip("\ufeff \t\r\n")[:4096]
    return not head.complete and '"downloaded_at"' in text and '"spans"' in text and '"trace"' in text


def _rank(rec: dict[str, Any]) -> tuple[int, str]:
    return (1 if rec.get("end_time") else 0, str(rec.get("last_updated_at") or ""))


def _merge(store: dict[str, dict[str, Any]], rec: dict[str, Any]) -> None:
    """Fold one create/update of a record into what the file said before: the completed record wins."""
    rid = str(rec.get("id"))
    old = store.get(rid)
    if old is None:
        store[rid] = dict(rec)
        return
    first, last = (old, rec) if _rank(old) <= _rank(rec) else (rec, old)
    store[rid] = {**first, **{k: v for k, v in last.items() if v not in (None, {}, [])}}


def _error(rec: dict[str, Any]) -> str | None:
    info = rec.get("error_info")
    if not isinstance(info, dict):
        return None
    return ": ".join(str(x) for x in (info.get("exception_type"), info.get("message")) if x) or "error"


def _set_error(row: dict[str, Any], err: str | None) -> None:
    if err is None:
        apply_status(row, "ok" if row.get("end_time") is not None else "unset")
        return
    row["http_status"] = http_status_from(err)
    row["error"] = err
    row["error_type"] = classify_error(row["http_status"], None, err)
    apply_status(row, "error", err)


def trace_row(tr: dict[str, Any]) -> dict[str, Any]:
    tid = normalize_id(tr.get("id"))
    md = tr.get("metadata") if isinstance(tr.get("metadata"), dict) else {}
    row = map_attributes({f"metadata.{k}": v for k, v in md.items()}) if md else {}
    start, end = to_epoch_us(tr.get("start_time")), to_epoch_us(tr.get("end_time"))
    row.update({"trace_id": tid, "span_id": tid, "parent_id": None, "name": tr.get("name"), "kind": "trace",
                "start_time": start, "end_time": end,
                "latency_ms": (end - start) / 1000.0 if start is not None and end is not None else None,
                "session_id": tr.get("thread_id") or row.get("session_id"),
                "attributes": flat(tr), "raw": tr})
    row.update({k: v for k, v in input_columns(tr.get("input")).items() if k == "input_text"})
    _set_error(row, _error(tr))
    return drop_none(row)


def span_row(sp: dict[str, Any]) -> dict[str, Any]:
    trace_id = normalize_id(sp.get("trace_id"))
    kind = call_kind(kind=_TYPES.get(str(sp.get("type") or "general"), str(sp.get("type")))) or "span"
    start, end = to_epoch_us(sp.get("start_time")), to_epoch_us(sp.get("end_time"))
    md = sp.get("metadata") if isinstance(sp.get("metadata"), dict) else {}
    row: dict[str, Any] = {
        "trace_id": trace_id, "span_id": normalize_id(sp.get("id")),
        "parent_id": normalize_id(sp.get("parent_span_id")) or trace_id, "name": sp.get("name"), "kind": kind,
        "start_time": start, "end_time": end,
        "latency_ms": (end - start) / 1000.0 if start is not None and end is not None else None,
        "provider": sp.get("provider"), "cost": coerce_float(sp.get("total_estimated_cost")),
    }
    if kind == "llm":
        model = sp.get("model") or md.get("model")
        row["model"] = model
        usage = usage_keys(sp.get("usage")) or usage_keys(md.get("usage"))
        for col, key in _TOKEN_COLUMNS:
            row[col] = usage.get(key)
        if row["total_tokens"] is None and row["input_tokens"] is not None and row["output_tokens"] is not None:
            row["total_tokens"] = row["input_tokens"] + row["output_tokens"]
        row.update(input_columns(sp.get("input")))
        out = output_columns(sp.get("output"))
        row.update(out)
        if out.get("output_messages") or row["output_tokens"] is not None:
            row["served_model"] = model  # answered: the SDK wrote the response's model
        if isinstance(md.get("id"), str):
            row["response_id"] = md["id"]
    else:
        row.update({k: v for k, v in input_columns(sp.get("input")).items() if k == "input_text"})
        out = output_columns(sp.get("output"))
        if out.get("output_text"):
            row["output_text"] = out["output_text"]
    row["attributes"] = flat(sp)
    row["raw"] = sp
    _set_error(row, _error(sp))
    return drop_none(row)


def read(path: Path, sink: Sink, options: LoadOptions) -> None:
    traces: dict[str, dict[str, Any]] = {}
    spans: dict[str, dict[str, Any]] = {}
    where: dict[str, int] = {}
    for n, obj in json_records(path, sink):
        if _is_export(obj):
            _merge(traces, obj["trace"])
            where.setdefault(str(obj["trace"].get("id")), n)
            for sp in obj["spans"]:
                if isinstance(sp, dict) and sp.get("id"):
                    _merge(spans, sp)
                    where.setdefault(str(sp["id"]), n)
        elif _is_payload(obj):
            store = spans if "spans" in obj else traces
            for rec in obj.get("spans", obj.get("traces")):
                if isinstance(rec, dict) and rec.get("id"):
                    _merge(store, rec)
                    where.setdefault(str(rec["id"]), n)
        else:
            sink.problem(n, "not-opik", "not an Opik trace export or traces/spans batch; skipped")
    added = 0
    errors = {tid: _error(tr) for tid, tr in traces.items() if _error(tr)}
    for rid, tr in traces.items():
        sink.add(trace_row(tr), where[rid])
        added += 1
    for rid, sp in spans.items():
        try:
            row = span_row(sp)
        except (TypeError, ValueError, AttributeError) as exc:
            sink.problem(where[rid], "bad-span", f"span {rid!r} cannot be read: {exc}")
            continue
        err = errors.get(str(sp.get("trace_id")))
        if err and row.get("kind") == "llm" and row.get("status") != "error" and not row.get("output_messages"):
            row["attributes"]["oncall.error_from"] = "trace"
            _set_error(row, err)  # the error is recorded on the trace only
        sink.add(row, where[rid])
        added += 1
    if added == 0:
        raise FormatError(f"{path}: no Opik traces or spans found")
