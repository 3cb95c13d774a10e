"""OTLP protobuf files: `.pb` request bodies and the Collector file exporter's `format: proto` framing.

Two containers of the same message (`ExportTraceServiceRequest`, wire-identical to `TracesData`):

- a saved request body (what an OTLP/HTTP exporter POSTs to `/v1/traces`, possibly gzip): one
  message, or several written back to back (protobuf merges them: the spans of all);
- the OpenTelemetry Collector `fileexporter` with `format: proto`: each message prefixed with its
  length as a 4-byte big-endian unsigned integer (open-telemetry/opentelemetry-collector-contrib
  `exporter/fileexporter/marshaller.go`, `buffered_writer`), each payload zstd-compressed when the
  exporter's `compression: zstd` is set.

Messages are decoded with the official generated classes (`oncall.ingest.otlp_proto`, shared with
`oncall receive`) into the OTLP/JSON form and read by the one OTLP mapping, so a span loaded from
protobuf and the same span from OTLP/JSON give the same row. A frame that does not decode is
reported as `file:frame N` (its byte offset in the message) and skipped; the rest loads.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from oncall.ingest.contracts import Sink
from oncall.ingest.formats.otlp import SpanLinks, add_document
from oncall.ingest.otlp_proto import ProtoDecodeError, decode_request
from oncall.ingest.registry import FormatError, LoadOptions
from oncall.ingest.source import ZSTD_MAGIC, Head, SourceError, open_binary

NAME = "otlp-protobuf"
DESCRIPTION = ("OTLP protobuf: saved ExportTraceServiceRequest bodies (.pb) and the Collector file exporter's "
               "length-prefixed `format: proto` files")

_FIELD_RESOURCE_SPANS = 0x0A  # field 1 (resource_spans), wire type 2
MAX_FRAME = 512 * 1024 * 1024


def _varint(data: bytes, pos: int) -> tuple[int, int] | None:
    value = shift = 0
    while pos < len(data) and shift < 64:
        b = data[pos]
        value |= (b & 0x7F) << shift
        pos += 1
        if not b & 0x80:
            return value, pos
        shift += 7
    return None


def _plain_message_start(data: bytes, size: int) -> bool:
    """The bytes start like an ExportTraceServiceRequest: field 1, a length that fits the file,
    and inside it a ResourceSpans whose first field is a resource (1) or scope spans (2)."""
    if len(data) < 4 or data[0] != _FIELD_RESOURCE_SPANS:
        return False
    v = _varint(data, 1)
    if v is None:
        return False
    length, pos = v
    return 0 < length <= size and pos < len(data) and data[pos] in (0x0A, 0x12, 0x1A)


def _framed_start(data: bytes, size: int) -> bool:
    if len(data) < 5:
        return False
    length = int.from_bytes(data[:4], "big")
    if not 0 < length <= min(size - 4, MAX_FRAME):
        return False
    payload = data[4:]
    return payload.startswith(ZSTD_MAGIC) or _plain_message_start(payload, length)


def _container(head: Head, size: int) -> str | None:
    if head.is_parquet or not head.data:
        return None
    if head.text is not None and not head.extra.get("invalid_utf8"):
        stripped = head.text.lstrip()
        if stripped[:1] in ("{", "[") or not stripped:
            return None  # JSON or text, not protobuf
    if _framed_start(head.data, size):
        return "framed"
    if _plain_message_start(head.data, size):
        return "message"
    return None


def sniff(head: Head) -> bool:
    size = head.extra.get("size") or (len(head.data) if head.complete else 1 << 62)
    return _container(head, size) is not None


def _frames(fh: io.BufferedIOBase) -> Iterator[tuple[int, int, bytes | None, str | None]]:
    """(frame number, byte offset, payload, problem) for each length-prefixed frame."""
    n = offset = 0
    while True:
        prefix = fh.read(4)
        if not prefix:
            return
        n += 1
        if len(prefix) < 4:
            yield n, offset, None, f"the file ends inside frame {n}'s length prefix ({len(prefix)} of 4 bytes)"
            return
        length = int.from_bytes(prefix, "big")
        if length > MAX_FRAME:
            yield n, offset, None, f"frame {n} claims {length} bytes (over {MAX_FRAME}): not a proto file exporter frame"
            return
        payload = fh.read(length)
        if len(payload) < length:
            yield n, offset, None, f"the file ends inside frame {n} ({len(payload)} of {length} bytes; truncated write?)"
            return
        yield n, offset, payload, None
        offset += 4 + length


def _decode(payload: bytes) -> dict[str, Any]:
    if payload.startswith(ZSTD_MAGIC):  # fileexporter `compression: zstd` compresses each message
        import zstandard

        try:
            payload = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(payload), read_across_frames=True).read()
        except zstandard.ZstdError as exc:
            raise ProtoDecodeError(f"zstd payload does not decompress: {exc}") from None
    return decode_request(payload)


def read(path: Path, sink: Sink, options: LoadOptions) -> None:
    from oncall.ingest.source import file_size, read_head

    try:
        head = read_head(path)
        head.extra["size"] = file_size(path)
        container = _container(head, head.extra["size"] if not head.complete else len(head.data)) or "message"
        linker = SpanLinks(sink)
        spans = 0
        with open_binary(path) as fh:
            if container == "message":
                try:
                    spans += add_document(_decode(fh.read()), sink, None, path, linker)
                except ProtoDecodeError as exc:
                    raise FormatError(f"{path}: {exc}") from None
            else:
                done = 0
                for n, offset, payload, problem in _frames(fh):
                    if problem is not None:
                        sink.problem(n, "bad-frame", problem)
                        break
                    done += 4 + len(payload or b"")
                    sink.progress(done)
                    try:
                        spans += add_document(_decode(payload or b""), sink, n, path, linker)
                    except ProtoDecodeError as exc:
                        sink.problem(n, "bad-frame", f"frame {n} (byte {offset}): {exc}; skipped")
        linker.finish()
    except (OSError, EOFError, SourceError) as exc:
        raise FormatError(f"{path}: cannot read: {exc}") from None
    if spans == 0 and not sink.problems:
        sink.problem(None, "empty", "the protobuf file holds no spans")
