"""OpenAI Batch output JSONL (trace-formats.md §6.2).

One line per request: `{"id": "batch_req_…", "custom_id": "…", "response": {"status_code", "request_id",
"body": chat.completion}, "error": null}`; on failure `response` is null and `error` = `{code, message}`.
The prompt is not in the output file (it is in the batch *input* file, joined by `custom_id`): batch
input files lying in the same directory are read for it, so messages and the requested model fill in.
(An input file on its own holds no responses; a directory load skips it as not-data.)
`custom_id` is the application's request id; the batch line id is the span id; every request is its
own trace. Times: the completion's `created` (epoch seconds); batch output has no latency.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from oncall.ingest.contracts import Sink
from oncall.ingest.decode import coerce_int, json_deep_loads, to_epoch_us
from oncall.ingest.mapping import apply_status
from oncall.ingest.records import (
    completion_columns,
    drop_none,
    flat,
    input_columns,
    json_records,
)
from oncall.ingest.registry import FormatError, LoadOptions
from oncall.ingest.source import Head, iter_lines

NAME = "openai-batch"
DESCRIPTION = "OpenAI Batch API output JSONL (custom_id, response.body = chat.completion, error)"


def _is_output_line(obj: Any) -> bool:
    return isinstance(obj, dict) and "custom_id" in obj and ("response" in obj or "error" in obj) and (
        obj.get("response") is None or isinstance(obj.get("response"), dict))


def sniff(head: Head) -> bool:
    return _is_output_line(head.first_line_obj)


def batch_row(obj: dict[str, Any], request: dict[str, Any] | None = None) -> dict[str, Any]:
    resp = obj.get("response") if isinstance(obj.get("response"), dict) else {}
    body = json_deep_loads(resp.get("body")) if resp else None
    body = body if isinstance(body, dict) else {}
    created = to_epoch_us(body.get("created"), "s") if body.get("created") is not None else None
    row: dict[str, Any] = {
        "trace_id": obj.get("id") or obj.get("custom_id"),
        "span_id": obj.get("id") or obj.get("custom_id"),
        "request_id": obj.get("custom_id"),
        "kind": "llm", "name": "batch " + str(body.get("object") or "request"),
        "start_time": created, "end_time": created,
        "provider": "openai",
    }
    if request:
        req_body = request.get("body") if isinstance(request.get("body"), dict) else {}
        row["model"] = req_body.get("model")
        row.update(input_columns(req_body))
    if body and "error" not in body:
        row.update(completion_columns(body))
    status = coerce_int(resp.get("status_code")) if resp else None
    if status is not None:
        row["http_status"] = status
    row["attributes"] = flat({k: v for k, v in obj.items() if k != "response"} |
                             {"response.status_code": status, "response.request_id": resp.get("request_id")})
    row["raw"] = obj
    err = obj.get("error") or body.get("error")
    message = None
    if isinstance(err, dict):
        message = f"{err.get('code')}: {err.get('message')}" if err.get("code") else err.get("message")
    elif err:
        message = str(err)
    failed = bool(err) or (status is not None and status >= 400)
    apply_status(row, "error" if failed else "ok", message)
    return drop_none(row)


def is_input_line(obj: Any) -> bool:
    return isinstance(obj, dict) and "custom_id" in obj and "body" in obj and "url" in obj


def _sibling_requests(path: Path) -> dict[str, dict[str, Any]]:
    """custom_id -> request line, from the batch input files next to the output file."""
    out: dict[str, dict[str, Any]] = {}
    for sib in sorted(path.parent.iterdir()) if path.parent.is_dir() else []:
        if sib == path or not sib.is_file() or sib.stat().st_size > 2_000_000_000:
            continue
        try:
            lines = iter_lines(sib)
            first = next((ln for _, ln in lines if ln.strip()), "")
            obj = json.loads(first)
            if not is_input_line(obj):
                continue
            out[str(obj["custom_id"])] = obj
            for _, ln in lines:
                if ln.strip():
                    o = json.loads(ln)
                    if is_input_line(o):
                        out[str(o["custom_id"])] = o
        except Exception:  # noqa: BLE001 - an unreadable sibling is just not an input file
            continue
    return out


def read(path: Path, sink: Sink, options: LoadOptions) -> None:
    requests = _sibling_requests(path)
    added = 0
    for n, obj in json_records(path, sink):
        if not _is_output_line(obj):
            sink.problem(n, "not-a-batch-line", "line has no custom_id/response; not a Batch output line; skipped")
            continue
        try:
            sink.add(batch_row(obj, requests.get(str(obj.get("custom_id")))), n)
            added += 1
        except (TypeError, ValueError, AttributeError) as exc:
            sink.problem(n, "bad-record", f"batch line {obj.get('custom_id')!r} cannot be read: {exc}")
    if added == 0:
        raise FormatError(f"{path}: no OpenAI Batch output lines found")
