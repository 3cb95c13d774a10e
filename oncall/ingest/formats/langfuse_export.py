"""Langfuse batch export of traces or observations: JSONL, one JSON array, or CSV (trace-formats.md §4.2).

Observation rows carry `traceId`, `type`, `startTime`, … (plus `traceName`, `userId`, `traceTags`);
trace rows carry `id`, `timestamp`, `name`, `userId`, `sessionId`, `release`, … The observation export
drops `sessionId`, so load the trace export too: both land in the same traces and the trace row's
session and user reach the observations by inheritance. CSV cells are not JSON-parsed by Langfuse;
input/output/metadata cells are decoded here when they hold JSON.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from oncall.ingest.contracts import Sink
from oncall.ingest.decode import json_deep_loads
from oncall.ingest.formats.langfuse import observation_row, trace_row
from oncall.ingest.records import json_records
from oncall.ingest.registry import FormatError, LoadOptions
from oncall.ingest.source import Head, SourceError, open_binary, read_head

NAME = "langfuse-export"
DESCRIPTION = "Langfuse batch export of traces or observations (JSONL, JSON array or CSV)"

_OBS_KEYS = {"traceId", "type", "startTime"}
_TRACE_KEYS = {"id", "timestamp", "name"}
_TRACE_HINTS = {"sessionId", "userId", "bookmarked", "public", "release"}


def _is_observation(obj: Any) -> bool:
    return isinstance(obj, dict) and _OBS_KEYS <= obj.keys() and "id" in obj


def _is_trace(obj: Any) -> bool:
    return (isinstance(obj, dict) and _TRACE_KEYS <= obj.keys() and len(_TRACE_HINTS & obj.keys()) >= 2
            and "observations" not in obj and "traceId" not in obj)


def _is_row(obj: Any) -> bool:
    return _is_observation(obj) or _is_trace(obj)


def _csv_header(text: str) -> list[str] | None:
    first = text.lstrip("\ufeff").split("\n", 1)[0].strip("\r")
    if "," not in first or first.startswith(("{", "[")):
        return None
    try:
        return next(csv.reader([first]))
    except (csv.Error, StopIteration):
        return None


def sniff(head: Head) -> bool:
    doc = head.doc
    if isinstance(doc, list) and doc:
        return _is_row(doc[0])
    if _is_row(head.first_line_obj):
        return True
    cols = _csv_header(head.text or "") if head.text else None
    return bool(cols) and _is_row(dict.fromkeys(cols, ""))


def _row(obj: dict[str, Any]) -> dict[str, Any]:
    obj = {k: (None if v == "" else v) for k, v in obj.items()}  # CSV: empty cell = absent
    for k in ("input", "output", "metadata", "usageDetails", "costDetails", "modelParameters", "tags",
              "traceTags", "toolCalls", "usage"):
        if isinstance(obj.get(k), str):
            obj[k] = json_deep_loads(obj[k])
    if _is_observation(obj):
        trace = {"id": obj.get("traceId"), "name": obj.get("traceName"), "userId": obj.get("userId"),
                 "sessionId": obj.get("sessionId")}
        row = observation_row(obj, trace)
        # Export rows carry the trace's user (and sometimes session): give the observation its own copy.
        for col, key in (("user_id", "userId"), ("session_id", "sessionId")):
            if obj.get(key) and not row.get(col):
                row[col] = obj[key]
        if not obj.get("parentObservationId"):
            row.pop("parent_id", None)  # no trace row in an observation export: a top-level observation is a root
        return row
    return trace_row(obj)


def _add(obj: Any, where: int, sink: Sink) -> bool:
    if not _is_row(obj):
        sink.problem(where, "not-a-row", "not a Langfuse trace or observation export row; skipped")
        return False
    try:
        sink.add(_row(obj), where)
    except (TypeError, ValueError, AttributeError) as exc:
        sink.problem(where, "bad-row", f"row {obj.get('id')!r} cannot be read: {exc}")
        return False
    return True


def read(path: Path, sink: Sink, options: LoadOptions) -> None:
    try:
        head = read_head(path)
    except SourceError as exc:
        raise FormatError(str(exc)) from None
    added = 0
    if _csv_header(head.text or "") is not None:
        with open_binary(path) as fh:
            reader = csv.DictReader(io.TextIOWrapper(fh, encoding="utf-8-sig", newline=""))
            for rec in reader:
                added += _add(rec, reader.line_num, sink)
    else:
        for where, obj in json_records(path, sink):
            added += _add(obj, where, sink)
    if added == 0:
        raise FormatError(f"{path}: no Langfuse export rows found")
