"""Deterministic synthetic trace records for the robustness and crash-safety tests.

Two shapes, both one record per line:
- OTLP JSON Lines as the OpenTelemetry file exporter writes them (one TracesData per line, GenAI
  semantic-convention attributes, nanosecond-string times, lower-case hex ids);
- generic JSONL request logs whose keys are the canonical column names (what the generic importer
  reads without --map).
Ids are derived from the index, so the same index always gives the same span.
"""

from __future__ import annotations

import json
from typing import Any

T0_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


def require_formats(*names: str) -> None:
    """Fail (never skip) when an importer these tests drive is not registered: a renamed or
    dropped importer must break the tests that cover it, not hide them."""
    from oncall.ingest import registry

    missing = [n for n in names if n not in registry.names()]
    assert not missing, f"importer(s) {', '.join(missing)} not registered; formats: {', '.join(registry.names())}"


def trace_id(i: int) -> str:
    return f"{i + 1:032x}"


def span_id(i: int) -> str:
    return f"{i + 1:016x}"


def _kv(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"stringValue": str(value)}}


def otlp_span(i: int, *, output: str | None = None, error: bool = False) -> dict[str, Any]:
    """One GenAI chat span (its own trace) as an OTLP JSON span object."""
    start = T0_NS + i * 1_000_000_000
    text = output if output is not None else f"Answer number {i}: the capital of France is Paris."
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.response.id": f"chatcmpl-gen{i:08d}",
        "gen_ai.usage.input_tokens": 12 + i % 7,
        "gen_ai.usage.output_tokens": 20 + i % 5,
        "gen_ai.input.messages": json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": f"Question number {i}?"}]}]),
        "gen_ai.output.messages": json.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": text}], "finish_reason": "stop"}]),
        "tenant.id": f"tenant-{i % 3}",
    }
    span: dict[str, Any] = {
        "traceId": trace_id(i), "spanId": span_id(i), "parentSpanId": "",
        "name": "chat gpt-4o-mini", "kind": 3,
        "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + 350_000_000),
        "attributes": [_kv(k, v) for k, v in attrs.items()],
        "status": {"code": 2, "message": "Error code: 429 - rate limit"} if error else {},
    }
    if error:
        span["attributes"].append(_kv("error.type", "RateLimitError"))
    return span


def otlp_line(spans: list[dict[str, Any]]) -> str:
    doc = {"resourceSpans": [{
        "resource": {"attributes": [_kv("service.name", "support-bot")]},
        "scopeSpans": [{"scope": {"name": "opentelemetry.instrumentation.openai_v2", "version": "2.4b0"},
                        "spans": spans}],
    }]}
    return json.dumps(doc, separators=(",", ":"))


def otlp_lines(start: int, count: int) -> list[str]:
    return [otlp_line([otlp_span(i)]) for i in range(start, start + count)]


def generic_record(i: int, *, output: str | None = None) -> dict[str, Any]:
    start_s = T0_NS // 1_000_000_000 + i
    return {
        "request_id": f"req-{i:08d}",
        "trace_id": trace_id(i),
        "span_id": span_id(i),
        "start_time": f"{_iso(start_s)}",
        "end_time": f"{_iso(start_s)}".replace("Z", ".350Z"),
        "model": "gpt-4o-mini",
        "served_model": "gpt-4o-mini-2024-07-18",
        "provider": "openai",
        "tenant": f"tenant-{i % 3}",
        "status": "ok",
        "input_tokens": 12 + i % 7,
        "output_tokens": 20 + i % 5,
        "input_text": f"Question number {i}?",
        "output_text": output if output is not None else f"Answer number {i}: the capital of France is Paris.",
    }


def generic_lines(start: int, count: int) -> list[str]:
    return [json.dumps(generic_record(i)) for i in range(start, start + count)]


def _iso(epoch_s: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_lines(path, lines: list[str]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(line)
            fh.write("\n")


def family_lines(i: int) -> tuple[str, str]:
    """A root span carrying the tenant and its LLM child without one, as two OTLP lines (root, child):
    loaded root after child, the child inherits the tenant and its earlier copy is superseded."""
    child = otlp_span(i)
    child["attributes"] = [a for a in child["attributes"] if a["key"] != "tenant.id"]
    child["parentSpanId"] = f"{i + 1:08x}" + "f" * 8
    root = {"traceId": child["traceId"], "spanId": child["parentSpanId"], "parentSpanId": "",
            "name": "POST /support", "kind": 2, "startTimeUnixNano": child["startTimeUnixNano"],
            "endTimeUnixNano": child["endTimeUnixNano"], "attributes": [_kv("tenant.id", f"acme-{i}")],
            "status": {}}
    return otlp_line([root]), otlp_line([child])
