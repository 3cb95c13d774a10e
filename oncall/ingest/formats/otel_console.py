"""Python SDK `ConsoleSpanExporter` dumps (`ReadableSpan.to_json()` printed one after another).

Not OTLP: `context.trace_id` is `0x`-prefixed hex, `kind` is `SpanKind.CLIENT`, times are ISO
strings, attributes a plain dict, and the objects are indented and concatenated (neither a JSON
array nor JSON Lines), so they are read with a streaming `raw_decode` loop. Each row's line is the
line where its object starts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from oncall.ingest.canonical import normalize_span_kind, normalize_status
from oncall.ingest.decode import to_epoch_us
from oncall.ingest.formats.otlp import build_row
from oncall.ingest.registry import FormatError, LoadOptions
from oncall.ingest.source import Head, SourceError, read_all_text

NAME = "otel-console"
DESCRIPTION = "OpenTelemetry Python ConsoleSpanExporter output (concatenated span.to_json() objects)"

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
    if not text.startswith("{"):
        return False
    for _, value, err in iter_json_values(text if head.complete else text[: len(text)]):
        return err is None and _is_console_span(value)
    return False


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


def read(path: Path, sink: Any, options: LoadOptions) -> None:
    try:
        text = read_all_text(path)
    except SourceError as exc:
        raise FormatError(str(exc)) from None
    added = 0
    for line, obj, err in iter_json_values(text):
        if err is not None:
            sink.problem(line, "invalid-json", f"{err}; object skipped")
            continue
        for span in obj if isinstance(obj, list) else [obj]:
            if not _is_console_span(span):
                sink.problem(line, "not-a-span", "object has no context.trace_id; not a console span dump; skipped")
                continue
            try:
                row = console_row(span)
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
