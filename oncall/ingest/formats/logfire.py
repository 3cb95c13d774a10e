"""Logfire query exports: rows of the `records` table, as the query API, the CLI or the UI hand them out.

pydantic/logfire `docs/reference/sql.md` (the `records` columns) and `logfire/experimental/
query_client.py` (`query_json_rows` → `{"columns": [...], "rows": [{col: value}]}`, `query_json` →
column-oriented `{"columns": [{"name", "values": [...]}]}`, `query_csv`, `query_arrow`). Accepted:
those two JSON shapes, a JSON array or JSON Lines of row objects, CSV with a header and Parquet (an
Arrow answer saved; read by DuckDB).

A row is a span (or a log, a span with no duration): `trace_id`, `span_id`, `parent_span_id` (hex),
`span_name`, `start_timestamp`, `end_timestamp`, `attributes` (JSON object: the OTel attributes, e.g.
pydantic-ai's `gen_ai.*`), `otel_events` (JSON list), `otel_status_code`, `otel_status_message`,
`exception_type`/`exception_message`, `otel_resource_attributes`, `otel_scope_name`, `tags`, `level`.
Each row goes through the one OTel mapping. Rows of `kind = 'pending_span'` (the started twins in
`records_full`) are skipped: the span itself is its own row.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from oncall.ingest import parquet
from oncall.ingest.canonical import normalize_status
from oncall.ingest.contracts import Sink
from oncall.ingest.decode import json_deep_loads, to_epoch_us
from oncall.ingest.formats.otlp import SpanLinks, build_row
from oncall.ingest.records import csv_header, json_records
from oncall.ingest.registry import FormatError, LoadOptions
from oncall.ingest.source import Head, SourceError, open_binary

NAME = "logfire"
DESCRIPTION = "Logfire query exports of the records table (query API JSON rows or columns, JSON Lines, CSV, Parquet)"

_COLUMNS = {"trace_id", "span_id", "span_name", "start_timestamp"}


def _is_row(obj: Any) -> bool:
    return isinstance(obj, dict) and _COLUMNS <= obj.keys()


def _rows(doc: Any) -> list[Any] | None:
    """The row objects of a query answer (row- or column-oriented), or a plain list."""
    if isinstance(doc, dict) and isinstance(doc.get("rows"), list):
        return doc["rows"]
    if isinstance(doc, dict) and isinstance(doc.get("columns"), list) and doc["columns"] \
            and isinstance(doc["columns"][0], dict) and "values" in doc["columns"][0]:
        cols = doc["columns"]
        n = max((len(c.get("values") or []) for c in cols), default=0)
        return [{c["name"]: (c.get("values") or [None] * n)[i] for c in cols} for i in range(n)]
    if isinstance(doc, list):
        return doc
    return None


def sniff(head: Head) -> bool:
    if head.is_parquet:
        return _COLUMNS <= set(head.extra.get("columns") or ())
    doc = head.doc if head.doc is not None else head.first_line_obj
    rows = _rows(doc)
    if rows:
        return _is_row(rows[0])
    if _is_row(doc):
        return True
    cols = csv_header(head.text or "") if head.text else None
    if cols:
        return _COLUMNS <= set(cols)
    text = (head.text or "").lstrip("\ufeff \t\r\n")[:4096]
    return not head.complete and '"span_name"' in text and '"start_timestamp"' in text and '"trace_id"' in text


def _obj(value: Any) -> dict[str, Any]:
    v = json_deep_loads(value) if isinstance(value, str) else value
    return v if isinstance(v, dict) else {}


def row_of(rec: dict[str, Any]) -> dict[str, Any]:
    events = []
    for ev in json_deep_loads(rec.get("otel_events")) or []:
        if isinstance(ev, dict):
            events.append({"name": ev.get("name"), "attributes": _obj(ev.get("attributes")),
                           "time": to_epoch_us(ev.get("timestamp", ev.get("time_unix_nano")))})
    status = normalize_status(rec.get("otel_status_code"))
    message = rec.get("otel_status_message") or rec.get("exception_message")
    if status != "error" and rec.get("is_exception") in (True, "true") and str(rec.get("level")) in ("17", "error"):
        status = "error"
    if status == "error" and rec.get("exception_type") and not any(e["name"] == "exception" for e in events):
        events.append({"name": "exception", "attributes": {"exception.type": rec["exception_type"],
                                                           "exception.message": rec.get("exception_message")}})
    attrs = _obj(rec.get("attributes"))
    if rec.get("tags"):
        attrs.setdefault("logfire.tags", json_deep_loads(rec["tags"]))
    return build_row(
        trace_id=rec.get("trace_id"), span_id=rec.get("span_id"), parent_id=rec.get("parent_span_id"),
        name=rec.get("span_name"), span_kind=None,
        start_us=to_epoch_us(rec.get("start_timestamp")), end_us=to_epoch_us(rec.get("end_timestamp")),
        attrs=attrs, resource=_obj(rec.get("otel_resource_attributes")), scope_name=rec.get("otel_scope_name"),
        events=events, status=status, status_message=message, raw=rec,
    )


def _records(path: Path, sink: Sink) -> Any:
    if parquet.is_parquet(path):
        try:
            yield from parquet.records(path, progress=lambda done, total: sink.progress(done))
        except parquet.ParquetError as exc:
            raise FormatError(str(exc)) from None
        return
    with open_binary(path) as fh:
        head = fh.read(4096).decode("utf-8", errors="replace")
    if csv_header(head) is not None:
        with open_binary(path) as fh:
            reader = csv.DictReader(io.TextIOWrapper(fh, encoding="utf-8-sig", newline=""))
            for rec in reader:
                yield reader.line_num, {k: (None if v == "" else v) for k, v in rec.items()}
        return
    for n, obj in json_records(path, sink, unwrap=_rows):
        rows = [obj] if _is_row(obj) else _rows(obj) or [obj]
        for rec in rows:
            yield n, rec


def read(path: Path, sink: Sink, options: LoadOptions) -> None:
    linker = SpanLinks(sink)  # pydantic-ai's failed streamed calls take their agent run's error
    added = 0
    try:
        for n, rec in _records(path, sink):
            if not _is_row(rec):
                sink.problem(n, "not-a-record", "not a Logfire records row (trace_id, span_id, span_name, "
                             "start_timestamp); skipped")
                continue
            if rec.get("kind") == "pending_span":
                continue
            try:
                row = row_of(rec)
            except (TypeError, ValueError, AttributeError) as exc:
                sink.problem(n, "bad-row", f"record {rec.get('span_name')!r} cannot be read: {exc}")
                continue
            if row["attributes"].get("logfire.span_type") == "pending_span":
                continue
            linker.add(row, n)
            added += 1
    except SourceError as exc:
        raise FormatError(str(exc)) from None
    linker.finish()
    if added == 0:
        raise FormatError(f"{path}: no Logfire records found")
