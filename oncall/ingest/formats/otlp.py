"""OTLP/JSON trace documents: `ExportTraceServiceRequest` / `TracesData` (trace-formats.md §1).

Accepts the spec's camelCase and protobuf's snake_case field names, the pre-1.0
`instrumentationLibrarySpans`, a list of documents, and one resourceSpans entry per span. The span
conversion (`span_row`) is shared with the JSON Lines reader, which calls it per line.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from oncall.ingest import jsonio
from oncall.ingest.canonical import normalize_span_kind, normalize_status
from oncall.ingest.contracts import Sink
from oncall.ingest.decode import coerce_float, json_deep_loads, normalize_id, to_epoch_us
from oncall.ingest.formats import litellm_otel, logfire_stream
from oncall.ingest.mapping import apply_status, map_attributes
from oncall.ingest.registry import FormatError, LoadOptions
from oncall.ingest.source import Head, SourceError, read_all_text

NAME = "otlp-json"
DESCRIPTION = "OTLP/JSON trace export (ExportTraceServiceRequest / TracesData, camelCase or snake_case)"

_SCOPE_KEYS = ("scopeSpans", "scope_spans", "instrumentationLibrarySpans", "instrumentation_library_spans")


# -- AnyValue ------------------------------------------------------------------------------------
def decode_any(v: Any) -> Any:
    """An OTLP AnyValue (camelCase or snake_case) as a plain Python value."""
    if not isinstance(v, dict):
        return v  # already plain (some writers emit bare values)
    for k, val in v.items():
        if val is None:
            continue  # pydantic/JSON encoders that write every oneof field (Phoenix's /spans/otlpv1)
        if k in ("stringValue", "string_value"):
            return val
        if k in ("intValue", "int_value"):
            try:
                return int(val)
            except (TypeError, ValueError):
                return val
        if k in ("doubleValue", "double_value"):
            f = coerce_float(val)
            return f if f is not None else val
        if k in ("boolValue", "bool_value"):
            return val if isinstance(val, bool) else str(val).lower() == "true"
        if k in ("arrayValue", "array_value"):
            return [decode_any(x) for x in (val or {}).get("values") or []]
        if k in ("kvlistValue", "kvlist_value"):
            return decode_kv((val or {}).get("values") or [])
        if k in ("bytesValue", "bytes_value"):
            try:
                return base64.b64decode(val).hex()
            except (ValueError, TypeError):
                return val
    return None  # {} = empty AnyValue


def encode_any(v: Any) -> dict[str, Any]:
    """A plain value as an OTLP/JSON AnyValue (the inverse of decode_any): the form the redactor
    reads a key/value list in, so a span rebuilt from decoded attributes keeps no secret in `raw`."""
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, (list, tuple)):
        return {"arrayValue": {"values": [encode_any(x) for x in v]}}
    if isinstance(v, dict):
        return {"kvlistValue": {"values": encode_kv(v)}}
    return {} if v is None else {"stringValue": str(v)}


def encode_kv(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": str(k), "value": encode_any(v)} for k, v in d.items()]


def decode_kv(kvs: Any) -> dict[str, Any]:
    """OTLP `[{"key", "value": AnyValue}]` as a dict (a plain dict passes through)."""
    if isinstance(kvs, dict):
        return kvs
    out: dict[str, Any] = {}
    for kv in kvs or ():
        if isinstance(kv, dict) and "key" in kv:
            out[str(kv["key"])] = decode_any(kv.get("value"))
    return out


# -- document walking ----------------------------------------------------------------------------
BadShape = Callable[[str], None]  # told about each part of a document that is not the shape OTLP has


def _ignore(_: str) -> None:
    pass


def _shape(value: Any) -> str:
    """What a value is, for a message: 'an array of 3', 'a string', …"""
    if isinstance(value, list):
        return f"an array of {len(value)}"
    return {dict: "an object", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def resource_spans_of(doc: Any, on_bad: BadShape = _ignore) -> list[dict[str, Any]]:
    if isinstance(doc, list):
        return [rs for d in doc for rs in resource_spans_of(d, on_bad)]
    if not isinstance(doc, dict):
        return []
    key = "resourceSpans" if "resourceSpans" in doc else "resource_spans"
    rs = doc.get(key)
    if rs is None:
        return []
    if not isinstance(rs, list):
        on_bad(f"{key} is {_shape(rs)}, not an array of ResourceSpans; skipped")
        return []
    for i, r in enumerate(rs):
        if not isinstance(r, dict):
            on_bad(f"{key}[{i}] is {_shape(r)} where a ResourceSpans object belongs; skipped")
    return [r for r in rs if isinstance(r, dict)]


def iter_spans(doc: Any, on_bad: BadShape = _ignore) -> Iterator[tuple[dict[str, Any], str | None, dict[str, Any]]]:
    """(decoded resource attributes, scope name, span) for every span in a document; each part that
    is not the shape OTLP has (an array where an object belongs …) is told to `on_bad` and skipped."""
    for i, rs in enumerate(resource_spans_of(doc, on_bad)):
        res = decode_kv(((rs.get("resource") or {}).get("attributes")) or [])
        for key in _SCOPE_KEYS:
            scopes = rs.get(key)
            if scopes is None:
                continue
            if not isinstance(scopes, list):
                on_bad(f"resourceSpans[{i}].{key} is {_shape(scopes)}, not an array; skipped")
                continue
            for j, ss in enumerate(scopes):
                if not isinstance(ss, dict):
                    on_bad(f"resourceSpans[{i}].{key}[{j}] is {_shape(ss)} where an object belongs; skipped")
                    continue
                scope = ss.get("scope") or ss.get("instrumentationLibrary") or ss.get("instrumentation_library") or {}
                scope_name = scope.get("name") if isinstance(scope, dict) else None
                spans = ss.get("spans")
                if spans is None:
                    continue
                if not isinstance(spans, list):
                    on_bad(f"resourceSpans[{i}].{key}[{j}].spans is {_shape(spans)}, not an array; skipped")
                    continue
                for k, span in enumerate(spans):
                    if isinstance(span, dict):
                        yield res, scope_name, span
                    else:
                        on_bad(f"resourceSpans[{i}].{key}[{j}].spans[{k}] is {_shape(span)} where a span "
                               "object belongs; skipped")


def is_otlp_doc(obj: Any) -> bool:
    if isinstance(obj, list):
        return bool(obj) and is_otlp_doc(obj[0])
    return isinstance(obj, dict) and ("resourceSpans" in obj or "resource_spans" in obj)


# -- one span ------------------------------------------------------------------------------------
def _g(span: dict[str, Any], camel: str, snake: str) -> Any:
    v = span.get(camel)
    return span.get(snake) if v is None else v


def build_row(*, trace_id: Any, span_id: Any, parent_id: Any, name: Any, span_kind: Any,
              start_us: int | None, end_us: int | None, attrs: dict[str, Any], resource: dict[str, Any],
              scope_name: str | None, events: list[dict[str, Any]], status: str, status_message: Any,
              raw: Any, kind_override: Any = None) -> dict[str, Any]:
    """The canonical row of one span, whatever envelope it came in (OTLP, console, JS, Phoenix)."""
    row: dict[str, Any] = map_attributes(attrs, resource=resource, scope=scope_name, events=events,
                                         name=name if isinstance(name, str) else None,
                                         kind=None if kind_override in (None, "") else str(kind_override))
    row.setdefault("kind", "span")
    row["trace_id"] = normalize_id(trace_id, hex_len=32)
    row["span_id"] = normalize_id(span_id, hex_len=16)
    parent = normalize_id(parent_id, hex_len=16) if parent_id not in (None, "") else None
    row["parent_id"] = parent if parent and parent.strip("0") else None
    row["name"] = None if name is None else str(name)
    row["span_kind"] = span_kind
    row["start_time"] = start_us
    row["end_time"] = end_us
    if start_us is not None and end_us is not None:
        row["latency_ms"] = (end_us - start_us) / 1000.0
    if row.get("ttft_ms") is None and start_us is not None:
        row["ttft_ms"] = ttft_from_chunk_events(events, start_us) or ttft_from_attributes(attrs, start_us)
    if status == "unset" and (attrs.get("error.type") not in (None, "") or level_error(attrs)):
        status = "error"  # semconv: error.type is set only when the operation ended in an error
    elif status == "ok" and attrs.get("error.type") not in (None, "") and (row.get("http_status") or 0) >= 400:
        # An OK status cannot be changed once set, so LiteLLM's otel callback, writing a failed call
        # onto a caller's span an earlier call already marked OK, leaves OK beside error.type, the
        # HTTP status and the exception event: those say what happened.
        status = "error"
    litellm_otel.clear_stale_response(row, attrs)
    full = dict(attrs)
    for k, v in resource.items():
        full[f"resource.{k}"] = v
    if scope_name:
        full["scope.name"] = scope_name
    row["attributes"] = full
    row["raw"] = raw
    apply_status(row, status, status_message)
    return row


# OpenLLMetry records one span event per streamed chunk: `gen_ai.content.completion.chunk` (0.55+)
# or `llm.content.completion.chunk` (≤0.54), with no TTFT attribute; the first one is the first token.
_CHUNK_EVENTS = ("gen_ai.content.completion.chunk", "llm.content.completion.chunk")


def _first_token_event(name: Any) -> bool:
    """OpenInference's "First Token Stream Event", Vercel's `ai.stream.firstChunk` and their kin."""
    if not isinstance(name, str):
        return False
    if name.startswith("mlflow.chunk.item."):  # MLflow autolog: one event per streamed chunk
        return True
    n = name.lower().replace("_", " ").replace(".", " ")
    return "first token" in n or "first chunk" in n or "firstchunk" in n or "firsttoken" in n


def ttft_from_chunk_events(events: list[dict[str, Any]], start_us: int) -> float | None:
    first = min((ev["time"] for ev in events if ev.get("time") is not None
                 and (ev.get("name") in _CHUNK_EVENTS or _first_token_event(ev.get("name")))), default=None)
    return (first - start_us) / 1000.0 if first is not None and first >= start_us else None


def ttft_from_attributes(attrs: dict[str, Any], start_us: int) -> float | None:
    """Langfuse SDKs: `langfuse.observation.completion_start_time` (ISO, JSON-encoded) is the first token."""
    first = to_epoch_us(json_deep_loads(attrs.get("langfuse.observation.completion_start_time")))
    return (first - start_us) / 1000.0 if first is not None and first >= start_us else None


def level_error(attrs: dict[str, Any]) -> bool:
    """Langfuse SDKs mark a failed observation with level ERROR, not always with the span status."""
    level = attrs.get("langfuse.observation.level")
    return isinstance(level, str) and level.strip('"').upper() == "ERROR"


class SpanLinks:
    """The few things a span's row needs from other spans of the file, added as they arrive.

    - pydantic-ai leaves a failed streamed call's chat span UNSET, with no error attributes, no
      exception event and an empty output; the error (ERROR status, exception event with the
      provider's HTTP status) is on its parent `invoke_agent` span, exported after it. Such chat
      spans wait until the file is read; one whose parent failed takes the parent's error
      (`oncall.error_from` names the parent).
    - LiteLLM's otel callback (see litellm_otel.py): a `raw_gen_ai_request` child is the LLM row of a
      call written onto a caller's span (unless the caller's span is that same call: one call per
      caller, as behind LiteLLM's proxy), or, under LiteLLM's own `litellm_request` span, a copy
      whose tool calls the parent lacks. A child waits only until its parent arrives.
    Only pydantic-ai and LiteLLM spans wait or are remembered, so memory stays bounded on big files.
    """

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.held: list[tuple[dict[str, Any], int | None]] = []  # pydantic-ai unanswered chat spans
        self.errors: dict[str, dict[str, Any]] = {}  # pydantic-ai failed span id -> its error
        self.litellm_requests: set[str] = set()  # span ids of LiteLLM's own per-call spans
        self.callers: dict[str, str | None] = {}  # span a LiteLLM call was written onto -> its response id
        self.waiting_for_tool_calls: dict[str, tuple[dict[str, Any], int | None]] = {}
        self.raw_by_parent: dict[str, list[tuple[dict[str, Any], int | None, str]]] = {}
        self.calls_on_callers: dict[str, int] = {}  # caller span id -> calls read from its raw children
        self.streams = logfire_stream.StreamMerger(sink.add)  # Logfire: a streamed call's request span + log

    def add(self, row: dict[str, Any], line: int | None) -> None:
        attrs = row.get("attributes") or {}
        scope = attrs.get("scope.name")
        if scope == "pydantic-ai":
            self._add_pydantic_ai(row, line)
            return
        if scope == litellm_otel.SCOPE and litellm_otel.raw_provider(attrs) is not None:
            self._add_raw(row, line, litellm_otel.raw_provider(attrs))
            return
        if attrs.get("litellm.call_id") is not None:
            self._add_litellm_call(row, line, scope)
            return
        if scope is not None and scope.startswith(logfire_stream.SCOPE_PREFIX):
            logfire_stream.clear_unanswered_served(row)
            if self.streams.offer(row, line):
                return
        self.sink.add(row, line)

    # -- pydantic-ai
    def _add_pydantic_ai(self, row: dict[str, Any], line: int | None) -> None:
        if row.get("status") == "error":
            self.errors[row["span_id"]] = {k: row.get(k) for k in ("error", "error_type", "http_status")}
        if _unanswered_call(row):
            self.held.append((row, line))
        else:
            self.sink.add(row, line)

    # -- LiteLLM
    def _add_litellm_call(self, row: dict[str, Any], line: int | None, scope: str | None) -> None:
        """A span carrying a LiteLLM call: its own `litellm_request` span, or a caller's span."""
        sid = row["span_id"]
        own = scope == litellm_otel.SCOPE and row.get("name") == litellm_otel.REQUEST_SPAN
        if own:
            self.litellm_requests.add(sid)
        else:
            self.callers[sid] = row.get("response_id")
        waiting = own and row.get("finish_reason") == "tool_calls" and not row.get("tool_calls")
        if waiting:
            self.waiting_for_tool_calls[sid] = (row, line)
        else:
            self.sink.add(row, line)
        for child, cline, provider in self.raw_by_parent.pop(sid, []):
            self._place_raw(child, cline, provider)

    def _add_raw(self, row: dict[str, Any], line: int | None, provider: str) -> None:
        parent = row.get("parent_id") or ""
        if parent in self.litellm_requests or parent in self.callers:
            self._place_raw(row, line, provider)
        else:
            self.raw_by_parent.setdefault(parent, []).append((row, line, provider))

    def _place_raw(self, row: dict[str, Any], line: int | None, provider: str, caller_unknown: bool = False) -> None:
        parent = row.get("parent_id") or ""
        call = litellm_otel.raw_request_columns(row["attributes"], provider)
        if parent in self.litellm_requests:
            self._fold(parent, row, call)
        elif caller_unknown or self.callers.get(parent) is None or self.callers[parent] != call.get("response_id"):
            # a call LiteLLM wrote onto its caller's span: this child is the only whole record of it
            row.update(call)
            row["attributes"]["oncall.call_of_caller_span"] = parent or None
            self.calls_on_callers[parent] = self.calls_on_callers.get(parent, 0) + 1
        self.sink.add(row, line)

    def _fold(self, parent: str, raw: dict[str, Any], call: dict[str, Any]) -> None:
        """A raw child of LiteLLM's own span: give a waiting parent the tool calls only the child has."""
        waiting = self.waiting_for_tool_calls.pop(parent, None)
        if waiting is None:
            return
        row, line = waiting
        if call.get("tool_calls"):
            for col in ("output_messages", "tool_calls", "output_text"):
                if call.get(col):
                    row[col] = call[col]
            row["attributes"]["oncall.tool_calls_from"] = raw["span_id"]
        self.sink.add(row, line)

    def finish(self) -> None:
        self.streams.finish()
        for row, line in self.held:
            err = self.errors.get(row.get("parent_id") or "")
            if err is not None:
                row.update({k: v for k, v in err.items() if v is not None})
                row["attributes"]["oncall.error_from"] = row["parent_id"]
                # nothing was answered: the response model pydantic-ai fills in is the requested name
                row.pop("served_model", None)
                apply_status(row, "error", err.get("error"))
            self.sink.add(row, line)
        for children in self.raw_by_parent.values():  # parents not in the file
            for row, line, provider in children:
                self._place_raw(row, line, provider, caller_unknown=True)
        for row, line in self.waiting_for_tool_calls.values():
            self.sink.add(row, line)
        overwritten = {k: n for k, n in self.calls_on_callers.items() if k in self.callers}
        if overwritten:
            self.sink.note = (
                f"LiteLLM's otel callback wrote {sum(overwritten.values())} calls onto {len(overwritten)} caller "
                "span(s) it did not make, each call overwriting the one before: each is read from its "
                "raw_gen_ai_request span (the requested model is not exported there), the caller's span keeps "
                "only its last call")
        self.held.clear()
        self.raw_by_parent.clear()
        self.waiting_for_tool_calls.clear()


def _unanswered_call(row: dict[str, Any]) -> bool:
    if row.get("kind") != "llm" or row.get("status") != "unset" or row.get("response_id"):
        return False
    if row.get("output_tokens") is not None or row.get("input_tokens") is not None:
        return False
    out = row.get("output_messages") or []
    if any(m.get("content") not in (None, "") or m.get("tool_calls") for m in out):
        return False
    row.pop("output_messages", None)  # pydantic-ai writes one assistant message with no parts
    return True


def span_row(span: dict[str, Any], resource: dict[str, Any], scope_name: str | None) -> dict[str, Any]:
    """Canonical row for one OTLP span (camelCase or snake_case)."""
    attrs = decode_kv(span.get("attributes"))
    events = []
    for ev in span.get("events") or ():
        if isinstance(ev, dict):
            events.append({"name": ev.get("name"), "attributes": decode_kv(ev.get("attributes")),
                           "time": to_epoch_us(_g(ev, "timeUnixNano", "time_unix_nano"), "ns")})
    status = span.get("status") or {}
    code = status.get("code") if isinstance(status, dict) else None
    return build_row(
        trace_id=_g(span, "traceId", "trace_id"), span_id=_g(span, "spanId", "span_id"),
        parent_id=_g(span, "parentSpanId", "parent_span_id"), name=span.get("name"),
        span_kind=normalize_span_kind(span.get("kind")),
        start_us=to_epoch_us(_g(span, "startTimeUnixNano", "start_time_unix_nano"), "ns"),
        end_us=to_epoch_us(_g(span, "endTimeUnixNano", "end_time_unix_nano"), "ns") or None,  # 0: not ended
        attrs=attrs, resource=resource, scope_name=scope_name, events=events,
        status=normalize_status(code), status_message=status.get("message") if isinstance(status, dict) else None,
        raw=span,
    )


def add_document(doc: Any, sink: Sink, line: int | None, path: Path, linker: SpanLinks | None = None) -> int:
    """Add every span of one TracesData document; returns how many were added (or held by `linker`)."""
    n = 0
    add = linker.add if linker is not None else sink.add
    for res, scope_name, span in iter_spans(doc, lambda msg: sink.problem(line, "bad-shape", msg)):
        try:
            row = span_row(span, res, scope_name)
        except (TypeError, ValueError, AttributeError, OverflowError, RecursionError) as exc:
            sink.problem(line, "bad-span", f"span {span.get('name')!r} cannot be read: {exc}")
            continue
        if not row.get("trace_id") or not row.get("span_id"):
            sink.problem(line, "missing-id", f"span {span.get('name')!r} has no traceId/spanId; skipped")
            continue
        if row["attributes"].get("logfire.span_type") == "pending_span":
            continue  # Logfire's "started" twin of a span (its own id, start = end); the span itself follows
        add(row, line)
        n += 1
    return n


# -- format contract -----------------------------------------------------------------------------
def sniff(head: Head) -> bool:
    if head.doc is not None:
        return is_otlp_doc(head.doc)
    if head.complete or head.text is None:
        return False
    # Too big for the head to parse: a pretty-printed document starts with `{` and names
    # resourceSpans early; a JSON Lines file has a whole document on its first line (otlp-jsonl).
    if is_otlp_doc(head.first_line_obj) or starts_long_otlp_line(head):
        return False
    start = head.text.lstrip("\ufeff \t\r\n")[:4096]
    return start[:1] in "{[" and ('"resourceSpans"' in start or '"resource_spans"' in start)


def starts_long_otlp_line(head: Head) -> bool:
    """The head begins with one compact TracesData line too long to parse within the head.

    Collector fileexporter batches can put megabytes on one line; that is JSON Lines (a compact
    single document is the same thing as a one-line JSON Lines file), unlike a pretty-printed document.
    """
    if head.complete or not head.text:
        return False
    text = head.text.lstrip("\ufeff \t\r\n")
    nl = text.find("\n")
    first = text if nl < 0 else text[:nl]
    return len(first) > 4096 and first.startswith(('{"resourceSpans"', '{"resource_spans"'))


def read(path: Path, sink: Sink, options: LoadOptions) -> None:
    try:
        text = read_all_text(path)
    except SourceError as exc:
        raise FormatError(str(exc)) from None
    try:
        doc = jsonio.loads(text)
    except ValueError as exc:
        raise FormatError(f"{path}: not valid JSON ({exc}); an OTLP/JSON export must be one JSON document "
                          "(use --format otlp-jsonl for one document per line)") from None
    if not is_otlp_doc(doc):
        raise FormatError(f"{path}: no resourceSpans/resource_spans at the top level; not an OTLP/JSON trace export")
    linker = SpanLinks(sink)
    n = add_document(doc, sink, None, path, linker)
    linker.finish()
    if n == 0 and not sink.problems:
        sink.problem(None, "empty", "the document holds no spans")
