"""OpenTelemetry `ConsoleSpanExporter` output, from the Python SDK or the Node (JS) SDK.

Python (`ReadableSpan.to_json()` printed one after another): not OTLP — `context.trace_id` is
`0x`-prefixed hex, `kind` is `SpanKind.CLIENT`, times are ISO strings, attributes a plain dict, and
the objects are indented and concatenated (neither a JSON array nor JSON Lines), so they are read
with a streaming `raw_decode` loop.

Node (`@opentelemetry/sdk-trace-base` `console.dir(info, {depth: 3})`): not JSON at all but
`util.inspect` literals (oncall.ingest.node_inspect) — `traceId`, `id`, `parentSpanContext.spanId`
(SDK 2.x) or `parentId` (1.x), `timestamp` and `duration` in microseconds, `kind` in the JS enum
(0 internal, 1 server, 2 client, …), `status.code` 0/1/2, events with HrTime `time`. Lines between
the span literals (the application's own logging on the same stdout) are skipped and counted.
What Node did not print (strings past 10,000 characters, values nested past the depth limit) is
reported per span as `truncated`.

Each row's line is the line where its object starts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from oncall.ingest import node_inspect
from oncall.ingest.canonical import normalize_span_kind, normalize_status
from oncall.ingest.contracts import Sink
from oncall.ingest.decode import to_epoch_us
from oncall.ingest.formats.otlp import build_row
from oncall.ingest.registry import FormatError, LoadOptions
from oncall.ingest.source import Head, SourceError, read_all_text

NAME = "otel-console"
DESCRIPTION = ("OpenTelemetry ConsoleSpanExporter output: Python (concatenated span.to_json() objects) "
               "or Node (util.inspect literals, e.g. the Vercel AI SDK)")

_WS = " \t\r\n,"


def iter_json_values(text: str) -> Iterator[tuple[int, Any, str | None]]:
    """(start line, value, error) for each JSON value in concatenated/pretty-printed text.

    After a value that does not parse, the error names the problem and scanning resumes at the next
    line starting with `{` so one broken object costs only itself.
    """
    dec = json.JSONDecoder()
    pos, line, n = 0, 1, len(text)
    while True:
        start = pos
        while pos < n and text[pos] in _WS:
            pos += 1
        line += text.count("\n", start, pos)
        if pos >= n:
            return
        try:
            value, end = dec.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            yield line, None, f"not valid JSON: {exc.msg} (at line {exc.lineno}, column {exc.colno})"
            nxt = text.find("\n{", pos + 1)
            if nxt < 0:
                return
            line += text.count("\n", pos, nxt + 1)
            pos = nxt + 1
            continue
        yield line, value, None
        line += text.count("\n", pos, end)
        pos = end


def _is_console_span(obj: Any) -> bool:
    if not isinstance(obj, dict) or not isinstance(obj.get("context"), dict):
        return False
    ctx = obj["context"]
    kind = obj.get("kind")
    return "trace_id" in ctx and "span_kind" not in obj and (
        (isinstance(kind, str) and kind.startswith("SpanKind.")) or str(ctx.get("trace_id", "")).startswith("0x"))


def sniff(head: Head) -> bool:
    if not head.text:
        return False
    text = head.text.lstrip("\ufeff \t\r\n")
    if text.startswith("{"):
        for _, value, err in iter_json_values(text):
            if err is None:
                return _is_console_span(value) or is_node_console_span(value)
            break
    return _sniff_node(head.text)


def _sniff_node(text: str) -> bool:
    """The first `{` literal in the head (after any log lines) is a Node console span."""
    for _, lit, err, _ in node_inspect.iter_literals(text):
        if lit is not None:
            return is_node_console_span(lit.value)
        if err is not None:
            return False
    return False


# -- Node ----------------------------------------------------------------------------------------
_JS_SPAN_KINDS = {0: "internal", 1: "server", 2: "client", 3: "producer", 4: "consumer"}


def js_span_kind(value: Any) -> str | None:
    """The OpenTelemetry JS `SpanKind` enum (INTERNAL = 0, unlike OTLP's 1) as a name."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _JS_SPAN_KINDS.get(value)
    return normalize_span_kind(value)


def is_node_console_span(obj: Any) -> bool:
    """What the JS SDK's ConsoleSpanExporter prints (its `_exportInfo`): ids, µs times, attributes,
    and the resource or instrumentation scope (which a Zipkin span, also `traceId/id/timestamp`, lacks)."""
    return (isinstance(obj, dict) and isinstance(obj.get("traceId"), str) and isinstance(obj.get("id"), str)
            and "timestamp" in obj and isinstance(obj.get("attributes"), dict)
            and any(k in obj for k in ("resource", "instrumentationScope", "instrumentationLibrary")))


def _plain(value: Any) -> Any:
    """Elided values as what can be kept: a cut string keeps its printed part, the rest is unknown."""
    if isinstance(value, node_inspect.Elided):
        return value.text if value.kind == "truncated-string" else None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value if not (isinstance(v, node_inspect.Elided) and v.kind == "more-items")]
    return value


def _printed(value: Any) -> Any:
    """The literal as Node printed it, for `raw`: elided values as their text (`[Object]`, …)."""
    if isinstance(value, node_inspect.Elided):
        return value.text
    if isinstance(value, dict):
        return {k: _printed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_printed(v) for v in value]
    return value


def _has_elided(value: Any) -> bool:
    if isinstance(value, node_inspect.Elided):
        return True
    if isinstance(value, dict):
        return any(_has_elided(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_elided(v) for v in value)
    return False


def node_console_row(obj: dict[str, Any], raw: Any = None, cut: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The canonical row of one Node console span. Attributes in `cut` (Node did not print them in
    full) are kept as printed in `attributes` but not mapped: half a JSON prompt is not a message."""
    parent = obj.get("parentId")
    if parent is None and isinstance(obj.get("parentSpanContext"), dict):
        parent = obj["parentSpanContext"].get("spanId")
    start = obj.get("timestamp")
    duration = obj.get("duration")
    start_us = int(start // 1) if isinstance(start, (int, float)) else None
    end_us = None
    if start_us is not None and isinstance(duration, (int, float)):
        end_us = int((start + duration) // 1)
    status = obj.get("status") if isinstance(obj.get("status"), dict) else {}
    res = obj.get("resource")
    res_attrs = res.get("attributes") if isinstance(res, dict) and isinstance(res.get("attributes"), dict) else {}
    scope = obj.get("instrumentationScope") or obj.get("instrumentationLibrary") or {}
    events = [{"name": ev.get("name"), "attributes": ev.get("attributes") if isinstance(ev.get("attributes"), dict)
               else {}, "time": to_epoch_us(ev.get("time"))}
              for ev in obj.get("events") or () if isinstance(ev, dict)]
    attrs = obj.get("attributes") or {}
    row = build_row(
        trace_id=obj.get("traceId"), span_id=obj.get("id"), parent_id=parent, name=obj.get("name"),
        span_kind=js_span_kind(obj.get("kind")), start_us=start_us, end_us=end_us,
        attrs={k: v for k, v in attrs.items() if k not in cut}, resource=res_attrs,
        scope_name=scope.get("name") if isinstance(scope, dict) else None, events=events,
        status=normalize_status(status.get("code")), status_message=status.get("message"),
        raw=obj if raw is None else raw,
    )
    for k in cut:
        row["attributes"][k] = attrs.get(k)
    return row


def read_node(text: str, sink: Sink) -> int:
    """Add every Node console span literal in `text`; returns how many were added."""
    added = 0
    skipped_lines, first_skipped = 0, None
    for line, lit, err, skipped in node_inspect.iter_literals(text):
        if skipped:
            skipped_lines += skipped
            first_skipped = first_skipped or line
        if err is not None:
            sink.problem(line, "invalid-literal", f"{err}; object skipped")
            continue
        if lit is None:
            continue
        obj = lit.value
        if not is_node_console_span(obj):
            sink.problem(line, "not-a-span", "object has no traceId/id/timestamp/attributes; "
                                              "not a console span; skipped")
            continue
        if lit.elided:
            shown = ", ".join(lit.elided[:5]) + (f" and {len(lit.elided) - 5} more" if len(lit.elided) > 5 else "")
            sink.problem(line, "truncated", f"span {obj.get('name')!r}: Node's console printer cut {shown} "
                                            "(depth or length limit); the rest of the span is loaded")
        plain = _plain(obj)
        try:
            cut = frozenset(k for k, v in (obj.get("attributes") or {}).items() if _has_elided(v)) \
                if isinstance(obj.get("attributes"), dict) else frozenset()
            row = node_console_row(plain, raw=_printed(obj), cut=cut)
        except (TypeError, ValueError, AttributeError) as exc:
            sink.problem(line, "bad-span", f"span {obj.get('name')!r} cannot be read: {exc}; skipped")
            continue
        if not row.get("trace_id") or not row.get("span_id"):
            sink.problem(line, "missing-id", f"span {obj.get('name')!r} has an empty traceId/id; skipped")
            continue
        sink.add(row, line)
        added += 1
    if skipped_lines and added:
        sink.problem(first_skipped, "not-a-span", f"{skipped_lines} line(s) outside the span objects "
                                                  "(application logging on the same stdout) skipped")
    return added


# -- Python --------------------------------------------------------------------------------------
def _resource_attrs(res: Any) -> dict[str, Any]:
    if not isinstance(res, dict):
        return {}
    if isinstance(res.get("attributes"), dict):  # SDK ≥1.2x: {"attributes": {…}, "schema_url": ""}
        return res["attributes"]
    return res


def console_row(obj: dict[str, Any]) -> dict[str, Any]:
    ctx = obj.get("context") or {}
    status = obj.get("status") or {}
    events = [{"name": ev.get("name"), "attributes": ev.get("attributes") or {},
               "time": to_epoch_us(ev.get("timestamp"))}
              for ev in obj.get("events") or () if isinstance(ev, dict)]
    return build_row(
        trace_id=ctx.get("trace_id"), span_id=ctx.get("span_id"), parent_id=obj.get("parent_id"),
        name=obj.get("name"), span_kind=normalize_span_kind(obj.get("kind")),
        start_us=to_epoch_us(obj.get("start_time")), end_us=to_epoch_us(obj.get("end_time")),
        attrs=obj.get("attributes") or {}, resource=_resource_attrs(obj.get("resource")), scope_name=None,
        events=events, status=normalize_status(status.get("status_code")),
        status_message=status.get("description"), raw=obj,
    )


def json_flavour(text: str) -> bool:
    """The first object (at the first line starting with `{`) is JSON: Python's console, not Node's."""
    at = 0 if text.startswith("{") else text.find("\n{") + 1
    if at == 0 and not text.startswith("{"):
        return True  # no object at all: the JSON reader reports what is there
    first = next(iter_json_values(text[at:]), None)
    return first is not None and first[2] is None


def read(path: Path, sink: Sink, options: LoadOptions) -> None:
    try:
        text = read_all_text(path)
    except SourceError as exc:
        raise FormatError(str(exc)) from None
    if not json_flavour(text):
        # Not JSON: Node's util.inspect output (or nothing this format reads).
        if read_node(text, sink) == 0:
            raise FormatError(f"{path}: no console span objects found (neither Python span.to_json() "
                              "JSON nor Node util.inspect span literals)")
        return
    added = 0
    for line, obj, err in iter_json_values(text):
        if err is not None:
            sink.problem(line, "invalid-json", f"{err}; object skipped")
            continue
        for span in obj if isinstance(obj, list) else [obj]:
            node = is_node_console_span(span)
            if not node and not _is_console_span(span):
                sink.problem(line, "not-a-span", "object has no context.trace_id; not a console span dump; skipped")
                continue
            try:
                row = node_console_row(span) if node else console_row(span)
            except (TypeError, ValueError, AttributeError) as exc:
                sink.problem(line, "bad-span", f"span {span.get('name')!r} cannot be read: {exc}; skipped")
                continue
            if not row.get("trace_id") or not row.get("span_id"):
                sink.problem(line, "missing-id", f"span {span.get('name')!r} has no context.trace_id/span_id")
                continue
            sink.add(row, line)
            added += 1
    if added == 0:
        raise FormatError(f"{path}: no console span objects found")
