"""Flat span-attribute maps: one JSON object whose keys are dotted span attributes.

Test fixtures and hand-made repro files (`*.attrs.json`: `{"gen_ai.request.model": …,
"llm.token_count.prompt": …}`) have no envelope, ids or times. The ids are derived from the
content (a hash of the canonical JSON), so loading the same map twice dedupes. A JSON array of
such maps is accepted too (one span each).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from oncall.ingest.canonical import normalize_status
from oncall.ingest.contracts import Sink
from oncall.ingest.formats.otlp import build_row
from oncall.ingest.mapping import flatten_attributes
from oncall.ingest.registry import FormatError, LoadOptions
from oncall.ingest.source import Head, SourceError, read_all_text

NAME = "span-attributes"
DESCRIPTION = "a flat map of span attributes (gen_ai.*, llm.*, ai.*, traceloop.* keys) without an envelope"

_KNOWN = ("gen_ai.", "llm.", "openinference.", "ai.", "traceloop.", "input.value", "output.value",
          "langfuse.", "langsmith.", "session.id", "user.id")
# Top-level keys of other formats: a map holding these is an envelope, not attributes.
_ENVELOPE = {"resourceSpans", "resource_spans", "spanContext", "context", "trace", "observations", "post",
             "patch", "choices", "messages", "custom_id", "call_type"}


def _is_attr_map(obj: Any) -> bool:
    if not isinstance(obj, dict) or not obj or _ENVELOPE & obj.keys():
        return False
    known = sum(1 for k in obj if k.startswith(_KNOWN))
    dotted = sum(1 for k in obj if "." in k)
    return known >= 1 and dotted * 2 >= len(obj)


def sniff(head: Head) -> bool:
    doc = head.doc
    if isinstance(doc, list):
        return bool(doc) and all(_is_attr_map(d) for d in doc[:5])
    return _is_attr_map(doc)


def attr_row(attrs: dict[str, Any]) -> dict[str, Any]:
    flat = flatten_attributes(attrs)
    digest = hashlib.sha256(json.dumps(attrs, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()
    trace_id = flat.get("langsmith.trace.id") or digest[:32]
    span_id = flat.get("langsmith.span.id") or digest[32:48]
    status = "error" if flat.get("error.type") else "unset"
    return build_row(trace_id=trace_id, span_id=span_id, parent_id=flat.get("langsmith.span.parent_id"),
                     name=flat.get("name") or flat.get("gen_ai.operation.name"), span_kind=None,
                     start_us=None, end_us=None, attrs=flat, resource={}, scope_name=None, events=[],
                     status=normalize_status(status), status_message=None, raw=attrs)


def read(path: Path, sink: Sink, options: LoadOptions) -> None:
    try:
        doc = json.loads(read_all_text(path))
    except SourceError as exc:
        raise FormatError(str(exc)) from None
    except ValueError as exc:
        raise FormatError(f"{path}: not valid JSON ({exc})") from None
    maps = doc if isinstance(doc, list) else [doc]
    added = 0
    for i, m in enumerate(maps, start=1):
        if not isinstance(m, dict) or not m:
            sink.problem(i, "not-attributes", "record is not a JSON object of span attributes; skipped")
            continue
        sink.add(attr_row(m), i)
        added += 1
    if added == 0:
        raise FormatError(f"{path}: no attribute maps found")
