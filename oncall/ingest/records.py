"""Shared pieces for the record-shaped (non-OTLP) formats: Langfuse, LangSmith, LiteLLM, OpenAI Batch.

These exports hold an OpenAI request/response or a loose `input`/`output` value rather than span
attributes; the helpers here turn those into canonical columns the same way for every format.
"""

from __future__ import annotations

import csv
import re
from typing import Any

from oncall.ingest import jsonio
from oncall.ingest.canonical import normalize_finish_reason
from oncall.ingest.contracts import Sink
from oncall.ingest.decode import coerce_float, coerce_int, json_deep_loads
from oncall.ingest.mapping import _input_from_value, _output_from_value, flatten_attributes
from oncall.ingest.messages import messages_text, normalize_messages, tool_calls_of

# "system: You are…\nuser: Say 'Hello World!'" — Langfuse's rendering of some SDKs' prompts.
_ROLE_LINE = re.compile(r"^(system|user|assistant|tool|human|ai)\s*:\s?", re.IGNORECASE)


def _role_prefixed_messages(text: str) -> list[dict[str, Any]] | None:
    """Split a "role: text" transcript into messages, or None when the text is not one."""
    if not _ROLE_LINE.match(text):
        return None
    msgs: list[dict[str, Any]] = []
    for line in text.split("\n"):
        m = _ROLE_LINE.match(line)
        if m:
            msgs.extend(normalize_messages([{"role": m.group(1), "content": line[m.end():]}]))
        elif msgs:
            msgs[-1]["content"] = f"{msgs[-1]['content']}\n{line}"
    return msgs


def input_columns(value: Any) -> dict[str, Any]:
    """input_messages and input_text from any request-ish value (messages, a request body, text)."""
    v = json_deep_loads(value)
    if isinstance(v, str):
        msgs = _role_prefixed_messages(v) or [{"role": "user", "content": v}]
        text = None
    else:
        msgs, text = _input_from_value(v)
    out: dict[str, Any] = {}
    if msgs:
        out["input_messages"] = msgs
        out["input_text"] = messages_text(msgs)
    elif text:
        out["input_text"] = text
    return out


def output_columns(value: Any) -> dict[str, Any]:
    """output_messages, output_text, tool_calls, finish_reason, response_id from any response-ish value."""
    v = json_deep_loads(value)
    if isinstance(v, list) and v and all(isinstance(x, dict) and "toolName" in x for x in v):
        # Vercel AI SDK: the output of a tool-calling step is the list of tool calls itself.
        v = {"role": "assistant", "content": None,
             "tool_calls": [{"id": x.get("toolCallId"), "type": "function",
                             "function": {"name": x.get("toolName"), "arguments": x.get("input", x.get("args"))}}
                            for x in v]}
    msgs, finish, rid, text = _output_from_value(v)
    out: dict[str, Any] = {}
    if msgs:
        out["output_messages"] = msgs
        out["output_text"] = messages_text(msgs)
        calls = tool_calls_of(msgs)
        if calls:
            out["tool_calls"] = calls
    elif text:
        out["output_text"] = text
    if finish is not None:
        out["finish_reason"] = normalize_finish_reason(finish)
    if rid:
        out["response_id"] = rid
    return out


def completion_usage(usage: Any) -> dict[str, Any]:
    """Token columns from an OpenAI `usage` object (chat.completion or Responses API names)."""
    if not isinstance(usage, dict):
        return {}
    out = {
        "input_tokens": coerce_int(usage.get("prompt_tokens", usage.get("input_tokens"))),
        "output_tokens": coerce_int(usage.get("completion_tokens", usage.get("output_tokens"))),
        "total_tokens": coerce_int(usage.get("total_tokens")),
    }
    pd = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
    cd = usage.get("completion_tokens_details") or usage.get("output_tokens_details") or {}
    if isinstance(pd, dict):
        out["cached_tokens"] = coerce_int(pd.get("cached_tokens"))
    if isinstance(cd, dict):
        out["reasoning_tokens"] = coerce_int(cd.get("reasoning_tokens"))
    if out["total_tokens"] is None and out["input_tokens"] is not None and out["output_tokens"] is not None:
        out["total_tokens"] = out["input_tokens"] + out["output_tokens"]
    return {k: v for k, v in out.items() if v is not None}


def completion_columns(body: Any) -> dict[str, Any]:
    """Everything a chat.completion (or Responses API object) says: output, served model, id, usage."""
    body = json_deep_loads(body)
    if not isinstance(body, dict):
        return output_columns(body)
    out = output_columns(body)
    if isinstance(body.get("model"), str):
        out["served_model"] = body["model"]
    if isinstance(body.get("id"), str):
        out["response_id"] = body["id"]
    out.update(completion_usage(body.get("usage")))
    return out


def cost_of(*values: Any) -> float | None:
    """The first usable cost: a number, a numeric string, or a `{total: …}` / per-part map."""
    for v in values:
        v = json_deep_loads(v) if isinstance(v, str) else v
        if isinstance(v, dict):
            if v.get("total") is not None:
                v = v.get("total")
            else:
                parts = [coerce_float(x) for x in v.values()]
                parts = [p for p in parts if p is not None]
                v = sum(parts) if parts else None
        c = coerce_float(v)
        if c is not None:
            return c
    return None


def flat(record: Any, prefix: str = "") -> dict[str, Any]:
    """The record flattened to dotted keys for the `attributes` column (meta.KEY)."""
    return flatten_attributes(record, prefix) if isinstance(record, dict) else {}


def drop_none(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if v is not None}


def json_records(path: Any, sink: Sink, *, unwrap: Any = None) -> Any:
    """(where, record) for every record of a JSON export, whichever of the two shapes it has.

    One JSON document (an array of records, or one record; `unwrap` maps the document to its list,
    e.g. Phoenix's `{"data": [...]}`): `where` is the item's 1-based index. Otherwise JSON Lines,
    read line by line (never the whole file in memory): `where` is the line number, and a line that
    is not JSON is reported as file:line and skipped.
    """

    from oncall.ingest.registry import FormatError
    from oncall.ingest.source import SourceError, iter_lines, read_all_text, read_head

    try:
        head = read_head(path)
    except SourceError as exc:
        raise FormatError(str(exc)) from None
    start = (head.text or "").lstrip("\ufeff \t\r\n")[:1]
    whole_doc = head.doc is not None or (start in ("[", "{") and head.first_line_obj is None)
    if whole_doc:
        try:
            doc = head.doc if head.doc is not None else jsonio.loads(read_all_text(path))
        except SourceError as exc:
            raise FormatError(str(exc)) from None
        except ValueError as exc:
            raise FormatError(f"{path}: not valid JSON: {exc}") from None
        items = unwrap(doc) if unwrap else doc
        if items is None:
            items = [doc]
        yield from enumerate(items if isinstance(items, list) else [items], start=1)
        return
    for n, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            obj = jsonio.loads(line)
        except ValueError as exc:
            sink.problem(n, "invalid-json", f"not valid JSON ({exc}); line skipped")
            continue
        yield n, obj


def csv_header(text: str) -> list[str] | None:
    """The column names of a CSV export's first line, or None when the text is not CSV (JSON, prose)."""
    first = text.lstrip("\ufeff").split("\n", 1)[0].strip("\r")
    if "," not in first or first.startswith(("{", "[")):
        return None
    try:
        return next(csv.reader([first]))
    except (csv.Error, StopIteration):
        return None
