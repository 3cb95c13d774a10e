"""Langfuse single-trace download `{trace, observations}` (trace-formats.md §4.1).

One row for the trace itself (kind "trace", span id = trace id; it carries session, user, release,
environment, tags and the trace's input/output) and one per observation; top-level observations
hang under the trace row, so the tree matches Langfuse's UI and cohort keys inherit down it.
The full `observations` list is used: the copies under `trace.observations` have their I/O nulled.
Observation `metadata` is a JSON string whose `attributes` are the original OTel span attributes
(stringified); they are mapped with the OTel mapper first, then Langfuse's own fields win.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from oncall.ingest import retrieval
from oncall.ingest.canonical import normalize_status
from oncall.ingest.contracts import Sink
from oncall.ingest.decode import coerce_float, coerce_int, json_deep_loads, normalize_id, to_epoch_us
from oncall.ingest.mapping import apply_status, map_attributes
from oncall.ingest.records import cost_of, drop_none, flat, input_columns, output_columns
from oncall.ingest.registry import FormatError, LoadOptions
from oncall.ingest.source import Head, SourceError, read_all_text

NAME = "langfuse-trace"
DESCRIPTION = "Langfuse trace download ({trace, observations} JSON, one trace per file or a list of them)"

KINDS = {"GENERATION": "llm", "SPAN": "span", "EVENT": "event", "AGENT": "agent", "TOOL": "tool",
         "CHAIN": "chain", "RETRIEVER": "retriever", "EVALUATOR": "evaluator", "EMBEDDING": "embedding",
         "GUARDRAIL": "guardrail"}


def _is_trace_doc(obj: Any) -> bool:
    return (isinstance(obj, dict) and isinstance(obj.get("trace"), dict) and "id" in obj["trace"]
            and isinstance(obj.get("observations", []), list))


def sniff(head: Head) -> bool:
    doc = head.doc
    if isinstance(doc, list) and doc:
        doc = doc[0]
    if doc is not None:
        return _is_trace_doc(doc)
    text = (head.text or "").lstrip("\ufeff \t\r\n")[:4096]
    return not head.complete and text.startswith("{") and '"trace"' in text[:64] and '"observations"' in text


def _id(value: Any, hex_len: int) -> str | None:
    return normalize_id(value, hex_len=hex_len) if value not in (None, "") else None


def trace_row(tr: dict[str, Any]) -> dict[str, Any]:
    start = to_epoch_us(tr.get("timestamp"))
    latency_s = coerce_float(tr.get("latency"))
    trace_id = _id(tr.get("id"), 32)
    body = {k: v for k, v in tr.items() if k != "observations"}  # light copies; the full ones are rows
    md = json_deep_loads(tr.get("metadata"))
    row: dict[str, Any] = {
        "trace_id": trace_id, "span_id": trace_id, "parent_id": None,
        "name": tr.get("name"), "kind": "trace",
        "start_time": start,
        "end_time": start + int(latency_s * 1e6) if start is not None and latency_s is not None else None,
        "latency_ms": latency_s * 1000.0 if latency_s is not None else None,
        "session_id": tr.get("sessionId"), "user_id": tr.get("userId"),
        "release": tr.get("release"), "env": tr.get("environment"),
        "status": "unset",
        "attributes": {**flat(body), **(flat(md, "metadata.") if isinstance(md, dict) else {})},
        "raw": tr,
    }
    row.update(input_columns(tr.get("input")))
    row.update({k: v for k, v in output_columns(tr.get("output")).items() if k in ("output_messages", "output_text")})
    if isinstance(md, dict):
        row["tenant"] = md.get("tenant") or md.get("tenant_id")
        row["feature"] = md.get("feature")
    return drop_none(row)


def observation_row(ob: dict[str, Any], tr: dict[str, Any]) -> dict[str, Any]:
    md = json_deep_loads(ob.get("metadata"))
    md = md if isinstance(md, dict) else {}
    # A blob-storage export keeps metadata as ClickHouse's Map(String, String): nested values are JSON text.
    otel_attrs = json_deep_loads(md.get("attributes"))
    otel_attrs = otel_attrs if isinstance(otel_attrs, dict) else {}
    resource = json_deep_loads(md.get("resourceAttributes"))
    resource = resource if isinstance(resource, dict) else {}
    scope_md = json_deep_loads(md.get("scope"))
    scope = scope_md.get("name") if isinstance(scope_md, dict) else None
    kind = KINDS.get(str(ob.get("type") or "").upper(), str(ob.get("type") or "span").lower())
    # What the original OTel attributes say (provider, requested/served model, cohort keys)…
    row: dict[str, Any] = map_attributes(otel_attrs, resource=resource, scope=scope, name=ob.get("name"),
                                         kind=kind) if otel_attrs else {"kind": kind}
    trace_id = _id(ob.get("traceId") or tr.get("id"), 32)
    parent = _id(ob.get("parentObservationId"), 16) or _id(tr.get("id"), 32)
    start = to_epoch_us(ob.get("startTime"))
    end = to_epoch_us(ob.get("endTime"))
    latency_s = coerce_float(ob.get("latency"))
    usage = ob.get("usageDetails") if isinstance(ob.get("usageDetails"), dict) else {}
    legacy = ob.get("usage") if isinstance(ob.get("usage"), dict) else {}

    # …then Langfuse's own fields, which are what its UI shows.
    row.update(drop_none({
        "trace_id": trace_id, "span_id": _id(ob.get("id"), 16), "parent_id": parent,
        "name": ob.get("name"), "kind": kind,
        "start_time": start, "end_time": end,
        "latency_ms": (end - start) / 1000.0 if start is not None and end is not None
        else (latency_s * 1000.0 if latency_s is not None else None),
        "ttft_ms": _ttft_ms(ob, start),
        "input_tokens": coerce_int(_first(usage.get("input"), ob.get("inputUsage"), legacy.get("input"),
                                          ob.get("promptTokens"))),
        "output_tokens": coerce_int(_first(usage.get("output"), ob.get("outputUsage"), legacy.get("output"),
                                           ob.get("completionTokens"))),
        "total_tokens": coerce_int(_first(usage.get("total"), ob.get("totalUsage"), legacy.get("total"))),
        "cached_tokens": coerce_int(_first(usage.get("input_cache_read"), usage.get("input_cached_tokens"))),
        "reasoning_tokens": coerce_int(_first(usage.get("output_reasoning"), usage.get("output_reasoning_tokens"))),
        "cost": cost_of(ob.get("costDetails"), ob.get("totalCost"), ob.get("calculatedTotalCost")),
        "prompt_name": ob.get("promptName"),
        "prompt_version": None if ob.get("promptVersion") is None else str(ob.get("promptVersion")),
        "env": ob.get("environment"),
    }))
    if kind not in ("llm", "embedding"):
        # Langfuse gives every observation zero usage and cost; only model calls have real ones. The
        # API's v2 observations say it with an empty usageDetails instead: either way a count left over
        # from the OTel attributes (an agent run's roll-up) is not this observation's usage, so a file,
        # a blob export and both API versions map the record alike.
        langfuse_usage = [*usage.values(), *legacy.values(), ob.get("inputUsage"), ob.get("outputUsage"),
                          ob.get("totalUsage")]
        langfuse_cost = [*(ob.get("costDetails") or {}).values(), ob.get("totalCost"), ob.get("calculatedTotalCost")]
        no_usage = not any(_positive(v) for v in langfuse_usage)
        no_cost = not any(_positive(v) for v in langfuse_cost)
        for col in ("input_tokens", "output_tokens", "total_tokens", "cached_tokens", "reasoning_tokens", "cost"):
            if row.get(col) in (0, 0.0) or (no_cost if col == "cost" else no_usage):
                row.pop(col, None)
    if ob.get("model") and not row.get("model"):
        row["model"] = ob["model"]  # one ambiguous value (trace-formats §8.10); served only if OTel said so
    inp = input_columns(ob.get("input"))
    out = output_columns(ob.get("output"))
    if kind != "tool":
        row.update(inp)
        row.update({k: v for k, v in out.items() if k != "response_id" or kind == "llm"})
    else:
        row.update({k: v for k, v in inp.items() if k == "input_text"})
        if "output_text" in out:
            row["output_text"] = out["output_text"]
    if not row.get("tool_calls") and isinstance(ob.get("toolCalls"), list) and ob["toolCalls"]:
        row["tool_calls"] = [{"id": c.get("id"), "name": c.get("name"), "arguments": c.get("arguments")}
                             for c in ob["toolCalls"] if isinstance(c, dict)]
    if kind in ("retriever", "embedding") and row.get("retrieved") is None and row.get("embedding_model") is None:
        # Langfuse's own fields: the retriever's query and documents are its input and output.
        app_md = {k: v for k, v in md.items() if k not in ("attributes", "resourceAttributes", "scope")}
        row.update(retrieval.from_records(kind, ob.get("input"), ob.get("output"), app_md, model=row.get("model"),
                                          output_captured=end is not None and level_ok(ob)))
    attrs = flat({k: v for k, v in ob.items() if k != "metadata"})
    attrs.update(flat(md, "metadata."))
    attrs.update(otel_attrs)  # the original OTel keys, unprefixed, so meta.gen_ai.system works
    row["attributes"] = attrs
    row["raw"] = ob
    level = str(ob.get("level") or "").upper()
    status = "error" if level == "ERROR" else normalize_status(level) if level else "unset"
    apply_status(row, status, ob.get("statusMessage") if status == "error" else None)
    return drop_none(row)


def _positive(value: Any) -> bool:
    number = coerce_float(value) if not isinstance(value, dict) else None
    return number is not None and number > 0


def level_ok(ob: dict[str, Any]) -> bool:
    return str(ob.get("level") or "").upper() != "ERROR"


def _first(*values: Any) -> Any:
    for v in values:
        if v is not None:
            return v
    return None


def _ttft_ms(ob: dict[str, Any], start: int | None) -> float | None:
    t = coerce_float(ob.get("timeToFirstToken"))
    if t is not None:
        return t * 1000.0
    cst = to_epoch_us(ob.get("completionStartTime"))
    if cst is not None and start is not None and cst >= start:
        return (cst - start) / 1000.0
    return None


def add_trace_doc(doc: dict[str, Any], sink: Sink, where: int | None) -> int:
    tr = doc["trace"]
    n = 0
    try:
        sink.add(trace_row(tr), where)
        n += 1
    except (TypeError, ValueError, AttributeError) as exc:
        sink.problem(where, "bad-trace", f"trace {tr.get('id')!r} cannot be read: {exc}")
    for i, ob in enumerate(doc.get("observations") or [], start=1):
        if not isinstance(ob, dict) or ob.get("id") in (None, ""):
            sink.problem(where, "bad-observation", f"observation #{i} has no id; skipped")
            continue
        try:
            sink.add(observation_row(ob, tr), where)
            n += 1
        except (TypeError, ValueError, AttributeError) as exc:
            sink.problem(where, "bad-observation", f"observation {ob.get('id')!r} cannot be read: {exc}")
    return n


def read(path: Path, sink: Sink, options: LoadOptions) -> None:
    try:
        doc = json.loads(read_all_text(path))
    except SourceError as exc:
        raise FormatError(str(exc)) from None
    except ValueError as exc:
        raise FormatError(f"{path}: not valid JSON: {exc}") from None
    docs = doc if isinstance(doc, list) else [doc]
    added = 0
    for i, d in enumerate(docs, start=1):
        if not _is_trace_doc(d):
            sink.problem(i, "not-a-trace", "item is not a Langfuse {trace, observations} document; skipped")
            continue
        added += add_trace_doc(d, sink, i if isinstance(doc, list) else None)
    if added == 0:
        raise FormatError(f"{path}: no Langfuse traces found")
