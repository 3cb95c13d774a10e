"""OTLP/JSON Lines: the OpenTelemetry file exporter / Collector `fileexporter` form.

One `TracesData` document per line, no ordering guarantee, retries may repeat a span (the writer
dedupes on (trace_id, span_id)). A bad line (invalid JSON or UTF-8, not a TracesData) is reported
as `file:line` and skipped; the rest of the file loads. Built for million-line files: one
JSON parse per line, the shared span conversion, nothing else per line.
"""

from __future__ import annotations

from pathlib import Path

from oncall.ingest import jsonio
from oncall.ingest.contracts import Sink
from oncall.ingest.formats.otlp import SpanLinks, add_document, is_otlp_doc, starts_long_otlp_line
from oncall.ingest.registry import FormatError, LoadOptions
from oncall.ingest.source import Head, iter_lines

NAME = "otlp-jsonl"
DESCRIPTION = "OTLP/JSON Lines (OpenTelemetry file exporter: one TracesData document per line)"

PROGRESS_EVERY = 4096  # lines


def sniff(head: Head) -> bool:
    if starts_long_otlp_line(head):
        return True
    if not is_otlp_doc(head.first_line_obj) or isinstance(head.first_line_obj, list):
        return False
    # A complete single-document file parses as a whole and belongs to otlp-json.
    return head.doc is None


def read(path: Path, sink: Sink, options: LoadOptions) -> None:
    loads = jsonio.loads
    done = 0
    spans = 0
    bad = 0
    lines = 0
    linker = SpanLinks(sink)  # what a span needs from others (pydantic-ai, LiteLLM), at the end
    for n, line in iter_lines(path):
        done += len(line) + 1
        if n % PROGRESS_EVERY == 0:
            sink.progress(done)
        if not line.strip():
            continue
        lines += 1
        try:
            # Decode explicitly: json.loads(bytes) would guess UTF-16/32 from stray leading bytes.
            doc = loads(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            bad += 1
            sink.problem(n, "invalid-json", f"invalid UTF-8 at byte {exc.start} of the line; line skipped")
            continue
        except jsonio.TooDeep as exc:
            bad += 1
            sink.problem(n, "too-deep", f"{exc}; line skipped")
            continue
        except ValueError as exc:
            bad += 1
            sink.problem(n, "invalid-json", f"not valid JSON ({exc}); line skipped (truncated write?)")
            continue
        if not is_otlp_doc(doc):
            bad += 1
            keys = ", ".join(list(doc)[:5]) if isinstance(doc, dict) else type(doc).__name__
            sink.problem(n, "not-otlp", f"line is not a TracesData document (no resourceSpans; has {keys}); skipped")
            continue
        spans += add_document(doc, sink, n, path, linker)
    linker.finish()
    sink.progress(done)
    if spans == 0 and bad and bad == lines:
        raise FormatError(f"{path}: none of the {lines} lines is an OTLP TracesData document; first problem: "
                          f"line {sink.problems[0][0]}: {sink.problems[0][2]}")
