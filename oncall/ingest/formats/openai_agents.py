"""The OpenAI Agents SDK's own trace export: what its `BackendSpanExporter` posts to `/v1/traces/ingest`.

openai/openai-agents-python `src/agents/tracing/processors.py` posts `{"data": [item, …]}` where an
item is a trace (`{"object": "trace", "id": "trace_…", "workflow_name", "group_id", "metadata"}`)
or a span (`{"object": "trace.span", "id": "span_…", "trace_id", "parent_id", "started_at",
"ended_at", "span_data": {"type": …}, "error": {message, data} | null}`; `span_data` per
`src/agents/tracing/span_data.py`). Accepted as those request bodies (one JSON document or one per
line), a JSON array of items, or JSON Lines of items (a custom processor writing `export()`).

- The trace becomes a row (kind `trace`, span id = trace id) holding the session (`group_id`) and
  the cohort keys of its `metadata`; top-level spans hang under it, so every call inherits them.
  Its times are its spans' (the SDK exports none).
- `generation` (chat-completions models) and `response` (Responses API) spans are the LLM calls;
  `function` spans are tools, `agent` spans agents; `custom` `task`/`turn` spans carry usage
  roll-ups and are not calls (canonical.call_kind). A generation's output is a list of chat
  messages, or, when streamed, a Responses-API object whose text and tool calls are dug out.
- Usage that is all zeros (a streamed chat completion the SDK asked no usage for) is unknown, not 0.
- A call whose error is recorded only on an enclosing span (`Error in agent run` on the agent)
  takes that error when it has no output of its own (`meta.oncall.error_from` names the span).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oncall.ingest.canonical import call_kind, classify_error, http_status_from
from oncall.ingest.contracts import Sink
from oncall.ingest.decode import json_deep_loads, normalize_id, to_epoch_us
from oncall.ingest.dialects import usage_keys
from oncall.ingest.mapping import apply_status, map_attributes
from oncall.ingest.records import drop_none, flat, input_columns, json_records, output_columns
from oncall.ingest.registry import FormatError, LoadOptions
from oncall.ingest.source import Head

NAME = "openai-agents"
DESCRIPTION = "OpenAI Agents SDK trace export (/v1/traces/ingest bodies, or trace/span items as JSON or JSON Lines)"

_KINDS = {"generation": "llm", "response": "llm", "function": "tool", "agent": "agent", "handoff": "span",
          "guardrail": "guardrail", "mcp_tools": "span", "transcription": "span", "speech": "span",
          "speech_group": "span"}
_CUSTOM_KINDS = {"task": "chain", "turn": "span"}


def _is_item(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("object") in ("trace", "trace.span") and "id" in obj


def _items(doc: Any) -> list[Any] | None:
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        return doc["data"]
    if isinstance(doc, list):
        return doc
    return None


def sniff(head: Head) -> bool:
    doc = head.doc if head.doc is not None else head.first_line_obj
    items = _items(doc)
    if items:
        return _is_item(items[0])
    if _is_item(doc):
        return True
    text = (head.text or "").lstrip("\ufeff \t\r\n")[:4096]
    return not head.complete and '"object": "trace' in text.replace('":"', '": "') and '"span_data"' in text


def _usage(value: Any) -> dict[str, int]:
    u = usage_keys(value)
    if u and not any(u.values()):
        return {}  # all zeros: the SDK did not get usage (a streamed chat completion), not "no tokens"
    return u


def _output(value: Any) -> dict[str, Any]:
    v = json_deep_loads(value)
    if isinstance(v, list) and len(v) == 1 and isinstance(v[0], dict) and v[0].get("object") == "response":
        v = v[0]  # streamed: one Responses-API object
    out = output_columns(v)
    if out.get("response_id") == "__fake_id__":
        out.pop("response_id")  # the SDK's placeholder when it rebuilds a response from a stream
    if isinstance(v, dict) and v.get("object") == "response" and not out.get("response_id"):
        for item in v.get("output") or ():
            pd = item.get("provider_data") if isinstance(item, dict) else None
            if isinstance(pd, dict) and isinstance(pd.get("response_id"), str):
                out["response_id"] = pd["response_id"]  # the provider's id
                break
    return out


def _error(item: dict[str, Any]) -> str | None:
    err = item.get("error")
    if not isinstance(err, dict):
        return None
    data = err.get("data") if isinstance(err.get("data"), dict) else {}
    detail = data.get("error") or data.get("message")
    msg = err.get("message")
    return f"{msg}: {detail}" if msg and detail else str(detail or msg or "error")


def trace_row(item: dict[str, Any]) -> dict[str, Any]:
    tid = normalize_id(item.get("id"))
    md = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
    row = map_attributes({f"metadata.{k}": v for k, v in md.items()}) if md else {}
    row.update({"trace_id": tid, "span_id": tid, "parent_id": None, "name": item.get("workflow_name"),
                "kind": "trace", "session_id": item.get("group_id") or row.get("session_id"),
                "attributes": flat(item), "raw": item})
    apply_status(row, "unset")
    return drop_none(row)


def span_row(item: dict[str, Any]) -> dict[str, Any]:
    sd = item.get("span_data") if isinstance(item.get("span_data"), dict) else {}
    stype = str(sd.get("type") or "")
    name = sd.get("name")
    if stype == "custom":
        data = sd.get("data") if isinstance(sd.get("data"), dict) else {}
        stated = _CUSTOM_KINDS.get(str(data.get("sdk_span_type") or name), "span")
    else:
        stated = _KINDS.get(stype, stype or "span")
    trace_id = normalize_id(item.get("trace_id"))
    start, end = to_epoch_us(item.get("started_at")), to_epoch_us(item.get("ended_at"))
    row: dict[str, Any] = {
        "trace_id": trace_id, "span_id": normalize_id(item.get("id")),
        "parent_id": normalize_id(item.get("parent_id")) or trace_id,
        "name": name or (f"{stype} {sd.get('model')}" if sd.get("model") else stype) or "span",
        "kind": call_kind(kind=stated) or "span",
        "start_time": start, "end_time": end,
        "latency_ms": (end - start) / 1000.0 if start is not None and end is not None else None,
    }
    if stype in ("generation", "response"):
        row["model"] = sd.get("model")
        row.update(_usage(sd.get("usage")))
        if sd.get("input") is not None:
            row.update(input_columns(sd["input"]))
        if sd.get("output") is not None:
            row.update(_output(sd["output"]))
        if stype == "response" and sd.get("response_id"):
            row["response_id"] = sd["response_id"]
        for col, key in (("input_tokens", "gen_ai.usage.input_tokens"), ("output_tokens", "gen_ai.usage.output_tokens"),
                         ("total_tokens", "gen_ai.usage.total_tokens"),
                         ("cached_tokens", "gen_ai.usage.cache_read.input_tokens"),
                         ("reasoning_tokens", "gen_ai.usage.reasoning.output_tokens")):
            if key in row:
                row[col] = row.pop(key)
        if row.get("total_tokens") is None and row.get("input_tokens") is not None and row.get("output_tokens") is not None:
            row["total_tokens"] = row["input_tokens"] + row["output_tokens"]
    elif stype == "function":
        row["input_text"] = sd.get("input") if isinstance(sd.get("input"), str) else None
        row["output_text"] = sd.get("output") if isinstance(sd.get("output"), str) else None
    row["attributes"] = flat(item)
    row["raw"] = item
    err = _error(item)
    if err is not None:
        row["http_status"] = http_status_from(err)
        row["error"] = err
        row["error_type"] = classify_error(row["http_status"], None, err)
    apply_status(row, "error" if err is not None else "ok" if end is not None else "unset", err)
    return drop_none(row)


class _Linker:
    """Calls with neither output nor error wait for the file's end: an enclosing span may hold their
    error. Traces wait too: their times are their spans'."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.traces: dict[str, tuple[dict[str, Any], int]] = {}
        self.bounds: dict[str, tuple[int | None, int | None]] = {}
        self.parents: dict[str, str | None] = {}
        self.errors: dict[str, dict[str, Any]] = {}
        self.held: list[tuple[dict[str, Any], int]] = []

    def add(self, row: dict[str, Any], where: int) -> None:
        tid, sid = row["trace_id"], row["span_id"]
        if row["kind"] == "trace":
            self.traces[tid] = (row, where)
            return
        lo, hi = self.bounds.get(tid, (None, None))
        s, e = row.get("start_time"), row.get("end_time")
        self.bounds[tid] = (s if lo is None or (s is not None and s < lo) else lo,
                            e if hi is None or (e is not None and e > hi) else hi)
        self.parents[sid] = row.get("parent_id")
        if row.get("status") == "error":
            self.errors[sid] = {k: row.get(k) for k in ("error", "error_type", "http_status")}
        if row["kind"] == "llm" and row.get("status") != "error" and not row.get("output_messages") \
                and not row.get("output_text") and row.get("output_tokens") is None:
            self.held.append((row, where))
        else:
            self.sink.add(row, where)

    def _enclosing_error(self, sid: str) -> tuple[str, dict[str, Any]] | None:
        seen = 0
        cur = self.parents.get(sid)
        while cur and seen < 64:
            if cur in self.errors:
                return cur, self.errors[cur]
            cur, seen = self.parents.get(cur), seen + 1
        return None

    def finish(self) -> None:
        for row, where in self.held:
            found = self._enclosing_error(row["span_id"])
            if found is not None:
                src, err = found
                row.update({k: v for k, v in err.items() if v is not None})
                row["attributes"]["oncall.error_from"] = src
                apply_status(row, "error", err.get("error"))
            self.sink.add(row, where)
        for tid, (row, where) in self.traces.items():
            lo, hi = self.bounds.get(tid, (None, None))
            if lo is not None:
                row["start_time"], row["end_time"] = lo, hi
                if hi is not None:
                    row["latency_ms"] = (hi - lo) / 1000.0
            self.sink.add(row, where)


def read(path: Path, sink: Sink, options: LoadOptions) -> None:
    linker = _Linker(sink)
    added = 0
    for where, obj in json_records(path, sink, unwrap=_items):
        items = _items(obj) if not _is_item(obj) else [obj]
        if items is None:
            sink.problem(where, "not-an-item", "not an Agents SDK trace or span item; skipped")
            continue
        for item in items:
            if not _is_item(item):
                sink.problem(where, "not-an-item", "not an Agents SDK trace or span item; skipped")
                continue
            try:
                row = trace_row(item) if item["object"] == "trace" else span_row(item)
            except (TypeError, ValueError, AttributeError) as exc:
                sink.problem(where, "bad-item", f"item {item.get('id')!r} cannot be read: {exc}")
                continue
            if not row.get("trace_id"):
                sink.problem(where, "missing-id", f"span {item.get('id')!r} has no trace_id; skipped")
                continue
            linker.add(row, where)
            added += 1
    linker.finish()
    if added == 0:
        raise FormatError(f"{path}: no OpenAI Agents SDK traces or spans found")

