"""One OTLP/HTTP request body to canonical span rows, through the same mapping as `oncall load`.

The body is protobuf (`application/x-protobuf`, decoded by `opentelemetry-proto`'s classes) or
OTLP/JSON (`application/json`), optionally gzip-compressed. Both become an OTLP/JSON document that
ingest.formats.otlp maps exactly as it maps an exported file, so a span reads the same whether it was
received live or loaded later from the exporter's file. Spans the mapping cannot use (no trace or span
id, unreadable values) are counted as rejected with the reason: the OTLP response's
`partial_success` tells the exporter, and the part's problems table keeps it.

The rows are staged as the writer's Arrow batch right here (ingest.writer.stage_rows), in the
request's own thread: a request waiting for its part then holds one Arrow table, not hundreds of
thousands of Python dicts and strings that every garbage collection would walk again.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from oncall.ingest.formats.otlp import SpanLinks, add_document, is_otlp_doc
from oncall.ingest.otlp_proto import ProtoDecodeError, decode_request
from oncall.ingest.writer import stage_rows
from oncall.redact import redact_text

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# Where the rows say they came from (spans.source_file); one per receiver.
SOURCE_PREFIX = "otlp-http://"
MAX_PROBLEMS = 20  # reasons kept per request; the count is always exact


class PayloadError(Exception):
    """The request cannot be used at all; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Decoded:
    rows: list[dict[str, Any]] = field(default_factory=list)  # while mapping; emptied once staged
    table: pa.Table | None = None  # the rows as the writer's Arrow batch (ingest.writer.stage_rows)
    rejected: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)  # (kind, message), at most MAX_PROBLEMS
    body_bytes: int = 0
    digest: bytes = b""

    @property
    def spans(self) -> int:
        """Spans to write (staged, or still rows while mapping)."""
        return self.table.num_rows if self.table is not None else len(self.rows)

    def error_message(self) -> str:
        if not self.rejected:
            return ""
        first = "; ".join(m for _, m in self.problems[:3])
        return f"{self.rejected} span(s) rejected: {first}"


class _RowSink:
    """What the OTLP mapping writes into (the FileWriter's add/problem contract), kept in memory."""

    def __init__(self, out: Decoded) -> None:
        self.out = out
        self.note: str | None = None

    def add(self, row: dict[str, Any], line: int | None = None) -> None:
        self.out.rows.append(row)

    def problem(self, line: int | None, kind: str, message: str) -> None:
        self.out.rejected += 1
        if len(self.out.problems) < MAX_PROBLEMS:
            # It may quote the span (its name): redacted like the span itself before it is kept.
            self.out.problems.append((kind, redact_text(message) or ""))

    def progress(self, done: int) -> None:
        pass

    @property
    def problems(self) -> list[tuple[str, str]]:
        return self.out.problems


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def decompress(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """The body without its Content-Encoding (gzip or deflate), refusing to inflate past max_bytes."""
    enc = (content_encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        return body
    if enc not in ("gzip", "x-gzip", "deflate"):
        raise PayloadError(415, f"Content-Encoding {enc!r} is not supported; use gzip or none")
    # A small gzip body can inflate to gigabytes: decompress in steps and stop past the limit.
    wbits = 16 + zlib.MAX_WBITS if enc != "deflate" else zlib.MAX_WBITS
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(body, max_bytes + 1)
        if len(out) > max_bytes:
            raise PayloadError(413, f"the request inflates to more than {max_bytes:,} bytes; send smaller batches")
        out += d.flush()
        if not d.eof:
            raise PayloadError(400, f"the {enc} body is truncated")
    except (zlib.error, gzip.BadGzipFile) as exc:
        raise PayloadError(400, f"the body is not valid {enc}: {exc}") from None
    if len(out) > max_bytes:
        raise PayloadError(413, f"the request inflates to more than {max_bytes:,} bytes; send smaller batches")
    return out


def decode_body(body: bytes, content_type: str | None, content_encoding: str | None, *,
                max_bytes: int, source: str) -> Decoded:
    """Rows of one export request; raises PayloadError (400, 413, 415) when the body cannot be used."""
    kind = media_type(content_type)
    if kind not in (PROTOBUF, JSON):
        raise PayloadError(415, f"Content-Type {content_type!r} is not OTLP; send {PROTOBUF} or {JSON}")
    data = decompress(body, content_encoding, max_bytes)
    if kind == PROTOBUF:
        try:
            doc: Any = decode_request(data)
        except ProtoDecodeError as exc:
            raise PayloadError(400, str(exc)) from None
    else:
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise PayloadError(400, f"the body is not valid JSON: {exc}") from None
        if not isinstance(doc, dict) or (doc and not is_otlp_doc(doc)):
            raise PayloadError(400, "the JSON body is not an OTLP ExportTraceServiceRequest (no resourceSpans)")
    out = Decoded(body_bytes=len(data), digest=hashlib.sha256(data).digest())
    sink = _RowSink(out)
    linker = SpanLinks(sink)  # the links the mapping needs between spans of one request
    add_document(doc, sink, None, Path(source), linker)
    linker.finish()
    for row in out.rows:
        row["source_file"] = source
    rows, out.rows = out.rows, []
    out.table = stage_rows(rows, sink.problem)
    return out
