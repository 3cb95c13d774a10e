"""LiteLLM `StandardLoggingPayload` and plain OpenAI request/response logs (trace-formats.md §6.1).

Each record is one LLM call (flat: no parents). LiteLLM: `id` is the provider's response id,
`trace_id` LiteLLM's own call grouping (may be null: then the call is its own trace), `model` is
what was requested and `response.model` / `hidden_params.litellm_model_name` what served it.
Times are epoch seconds at runtime but naive `"2025-01-24 09:20:46.847371"` strings in logged
files; naive times are read as UTC (LiteLLM writes `datetime.now()` of the proxy, usually UTC).

Plain request/response logs are `{"request": {model, messages, …}, "response": {chat.completion}}`
(optionally with `id`/`request_id`, `timestamp`/`created_at`, `latency_ms`, `metadata`, `error`),
as written by many gateways and hand-rolled loggers.
Accepts one JSON object, a JSON array, or JSON Lines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from oncall.ingest.canonical import normalize_provider
from oncall.ingest.contracts import Sink
from oncall.ingest.decode import coerce_float, coerce_int, json_deep_loads, to_epoch_us
from oncall.ingest.mapping import apply_status
from oncall.ingest.records import (
    completion_columns,
    cost_of,
    drop_none,
    flat,
    input_columns,
    json_records,
)
from oncall.ingest.registry import FormatError, LoadOptions
from oncall.ingest.source import Head

NAME = "litellm"
DESCRIPTION = "LiteLLM StandardLoggingPayload and OpenAI request/response logs (JSON, array or JSON Lines)"


def _is_litellm(obj: Any) -> bool:
    return isinstance(obj, dict) and "call_type" in obj and ("response_cost" in obj or "custom_llm_provider" in obj)


def _is_reqresp(obj: Any) -> bool:
    return (isinstance(obj, dict) and isinstance(obj.get("request"), dict) and "response" in obj
            and ("messages" in obj["request"] or "model" in obj["request"] or "input" in obj["request"]))


def _is_record(obj: Any) -> bool:
    return _is_litellm(obj) or _is_reqresp(obj)


def sniff(head: Head) -> bool:
    doc = head.doc
    if doc is not None:
        return _is_record(doc) or (isinstance(doc, list) and bool(doc) and _is_record(doc[0]))
    if _is_record(head.first_line_obj):
        return True
    text = (head.text or "")[:8192]
    return not head.complete and '"call_type"' in text and '"custom_llm_provider"' in text


def _time(value: Any) -> int | None:
    if isinstance(value, str) and len(value) >= 19 and value[10] == " " and "+" not in value[19:] \
            and not value.endswith("Z"):
        value = value.replace(" ", "T", 1) + "Z"  # naive: read as UTC (see module docstring)
    return to_epoch_us(value, "s" if isinstance(value, (int, float)) else None)


def _dict(value: Any) -> dict[str, Any]:
    value = json_deep_loads(value)
    return value if isinstance(value, dict) else {}


def _first(*values: Any) -> Any:
    return next((v for v in values if v not in (None, "")), None)


def litellm_row(rec: dict[str, Any]) -> dict[str, Any]:
    md = _dict(rec.get("metadata"))
    hidden = _dict(rec.get("hidden_params"))
    # The application's own keys: spend_logs_metadata (logged to the spend logs), requester_metadata
    # (the metadata the client sent the proxy); the proxy's key/team/user fields beside them.
    spend = _dict(md.get("spend_logs_metadata"))
    requester = _dict(md.get("requester_metadata"))
    prompt_md = _dict(md.get("prompt_management_metadata"))
    model_map = _dict(rec.get("model_map_information"))

    def app(*keys: str) -> Any:
        return _first(*(d.get(k) for k in keys for d in (spend, requester, md)))

    streamed = str(rec.get("stream")).lower() == "true"
    start, end = _time(rec.get("startTime")), _time(rec.get("endTime"))
    first = _time(rec.get("completionStartTime"))
    rt = coerce_float(rec.get("response_time"))
    failed = str(rec.get("status") or "").lower() in ("failure", "error") or bool(rec.get("error_str"))
    row: dict[str, Any] = {
        "trace_id": rec.get("trace_id") or rec.get("id"),
        "span_id": rec.get("id"),
        "kind": "embedding" if "embedding" in str(rec.get("call_type") or "") else "llm",
        "name": rec.get("call_type"),
        "start_time": start, "end_time": end,
        "latency_ms": (end - start) / 1000.0 if start is not None and end is not None
        else (rt * 1000.0 if rt is not None else None),
        # LiteLLM sets completionStartTime = endTime on calls that were not streamed: no TTFT there.
        "ttft_ms": (first - start) / 1000.0 if streamed and first is not None and start is not None
        and first > start else None,
        "provider": normalize_provider(rec.get("custom_llm_provider")),
        "model": rec.get("model"),
        "input_tokens": coerce_int(rec.get("prompt_tokens")),
        "output_tokens": coerce_int(rec.get("completion_tokens")),
        "total_tokens": coerce_int(rec.get("total_tokens")),
        "cost": cost_of(rec.get("response_cost"), hidden.get("response_cost")),
        "user_id": _first(rec.get("end_user"), md.get("user_api_key_end_user_id"), app("user_id", "user", "userId"),
                          md.get("user_api_key_user_id")),
        "tenant": _first(md.get("user_api_key_team_alias"), md.get("user_api_key_team_id"), md.get("team_alias"),
                         md.get("team_id"), md.get("user_api_key_org_alias"), md.get("user_api_key_org_id"),
                         app("tenant", "tenant_id")),
        "session_id": _first(app("session_id", "sessionId", "conversation_id", "thread_id"), rec.get("session_id")),
        "feature": app("feature"),
        "prompt_name": _first(prompt_md.get("prompt_id"), prompt_md.get("prompt_name"), app("prompt_name")),
        "prompt_version": _first(prompt_md.get("prompt_version"), app("prompt_version")),
        "release": app("release"),
        "env": app("env", "environment"),
        "request_id": app("request_id"),
    }
    row.update(input_columns(rec.get("messages")))
    resp = json_deep_loads(rec.get("response"))
    if isinstance(resp, dict) and not failed:
        row.update({k: v for k, v in completion_columns(resp).items() if v is not None and
                    not (k.endswith("_tokens") and row.get(k) is not None)})
    if streamed and model_map.get("model_map_key"):
        # A streamed response is rebuilt by LiteLLM under the requested name (the alias); the
        # deployment that served it is the model-map key LiteLLM priced it by (the chunks' model).
        row["served_model"] = model_map["model_map_key"]
    elif not failed and not row.get("served_model"):
        row["served_model"] = _first(model_map.get("model_map_key"), hidden.get("litellm_model_name"))
    if not failed:
        row["response_id"] = row.get("response_id") or rec.get("id")
    row["attributes"] = flat({k: v for k, v in rec.items() if k not in ("messages", "response")})
    row["raw"] = rec
    err = _dict(rec.get("error_information"))
    if failed:
        code = coerce_int(err.get("error_code"))
        if code:
            row["http_status"] = code
        row["error"] = rec.get("error_str") or err.get("error_message") or err.get("error_class") or None
    apply_status(row, "error" if failed else "ok", row.get("error"))
    return drop_none(row)


def reqresp_row(rec: dict[str, Any]) -> dict[str, Any]:
    req = rec["request"]
    resp = json_deep_loads(rec.get("response"))
    md = rec.get("metadata") if isinstance(rec.get("metadata"), dict) else {}
    start = _time(rec.get("start_time") or rec.get("timestamp") or rec.get("created_at")
                  or (resp.get("created") if isinstance(resp, dict) else None))
    latency = coerce_float(rec.get("latency_ms"))
    if latency is None and coerce_float(rec.get("duration_s")) is not None:
        latency = coerce_float(rec.get("duration_s")) * 1000.0
    end = _time(rec.get("end_time")) or (start + int(latency * 1000) if start is not None and latency else None)
    rid = rec.get("request_id") or rec.get("id")
    row: dict[str, Any] = {
        "trace_id": rec.get("trace_id") or rid, "span_id": rid, "parent_id": rec.get("parent_id"),
        "kind": "llm", "name": rec.get("name") or req.get("endpoint") or "chat",
        "start_time": start, "end_time": end,
        "latency_ms": latency if latency is not None else ((end - start) / 1000.0 if start and end else None),
        "provider": normalize_provider(rec.get("provider") or md.get("provider")),
        "model": req.get("model"), "request_id": rid,
        "session_id": rec.get("session_id") or md.get("session_id"),
        "user_id": rec.get("user_id") or req.get("user") or md.get("user_id"),
        "tenant": rec.get("tenant") or md.get("tenant"), "feature": rec.get("feature") or md.get("feature"),
        "prompt_name": md.get("prompt_name"), "prompt_version": md.get("prompt_version"),
        "release": md.get("release"), "env": md.get("env"),
        "cost": cost_of(rec.get("cost"), md.get("cost")),
    }
    row.update(input_columns(req))
    if isinstance(resp, dict) and "error" not in resp:
        row.update(completion_columns(resp))
    status_code = coerce_int(rec.get("status_code") or rec.get("http_status"))
    error = rec.get("error") or (resp.get("error") if isinstance(resp, dict) else None)
    if isinstance(error, dict):
        error = error.get("message") or json.dumps(error, ensure_ascii=False)
    if status_code:
        row["http_status"] = status_code
    row["attributes"] = flat({k: v for k, v in rec.items() if k not in ("request", "response")})
    row["raw"] = rec
    failed = bool(error) or (status_code is not None and status_code >= 400)
    apply_status(row, "error" if failed else "ok", error)
    return drop_none(row)


def _add(obj: Any, where: int, sink: Sink) -> bool:
    if not _is_record(obj):
        sink.problem(where, "not-a-record", "not a LiteLLM payload or a {request, response} log record; skipped")
        return False
    try:
        row = litellm_row(obj) if _is_litellm(obj) else reqresp_row(obj)
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        sink.problem(where, "bad-record", f"record cannot be read: {exc}")
        return False
    sink.add(row, where)
    return True


def read(path: Path, sink: Sink, options: LoadOptions) -> None:
    added = 0
    for where, obj in json_records(path, sink):
        added += _add(obj, where, sink)
    if added == 0:
        raise FormatError(f"{path}: no LiteLLM or request/response log records found")
