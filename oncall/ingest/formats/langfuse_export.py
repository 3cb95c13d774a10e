"""Langfuse batch export of traces or observations: JSONL, one JSON array, or CSV (trace-formats.md §4.2).

Observation rows carry `traceId`, `type`, `startTime`, … (plus `traceName`, `userId`, `traceTags`);
trace rows carry `id`, `timestamp`, `name`, `userId`, `sessionId`, `release`, … The observation export
drops `sessionId`, so load the trace export too: both land in the same traces and the trace row's
session and user reach the observations by inheritance. CSV cells are not JSON-parsed by Langfuse;
input/output/metadata cells are decoded here when they hold JSON.

Blob-storage exports (the scheduled S3/GCS/Azure integration: JSONL, CSV or Parquet of traces,
observations and enriched observations) carry ClickHouse's snake_case column names
(langfuse `packages/shared/src/server/repositories/observations.ts`
`getObservationsForBlobStorageExport`: `trace_id`, `parent_observation_id`, `start_time`,
`provided_model_name`, `usage_details` and `cost_details` maps, `completion_start_time`,
`prompt_name`/`prompt_version`, …; traces: `user_id`, `session_id`, `timestamp`, `tags`, …). They
are read under the same names as the UI export. Parquet is read by DuckDB (oncall.ingest.parquet).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from oncall.ingest import parquet
from oncall.ingest.contracts import Sink
from oncall.ingest.decode import json_deep_loads
from oncall.ingest.formats.langfuse import observation_row, trace_row
from oncall.ingest.records import csv_header, json_records
from oncall.ingest.registry import FormatError, LoadOptions
from oncall.ingest.source import Head, SourceError, open_binary, read_head

NAME = "langfuse-export"
DESCRIPTION = ("Langfuse exports of traces or observations: the UI batch export (JSONL, JSON, CSV) and the "
               "blob-storage integration (JSONL, CSV, Parquet)")

_OBS_KEYS = {"traceId", "type", "startTime"}
# Blob-storage exports: ClickHouse column names -> the UI export's names (the mapping reads those).
_SNAKE = {"trace_id": "traceId", "parent_observation_id": "parentObservationId", "start_time": "startTime",
          "end_time": "endTime", "completion_start_time": "completionStartTime", "provided_model_name": "model",
          "model_parameters": "modelParameters", "usage_details": "usageDetails", "cost_details": "costDetails",
          "provided_usage_details": "providedUsageDetails", "provided_cost_details": "providedCostDetails",
          "status_message": "statusMessage", "prompt_name": "promptName", "prompt_version": "promptVersion",
          "prompt_id": "promptId", "user_id": "userId", "session_id": "sessionId", "trace_name": "traceName",
          "trace_tags": "traceTags", "total_cost": "totalCost", "internal_model_id": "internalModelId"}


def _camel(obj: Any) -> Any:
    if not isinstance(obj, dict) or not (_SNAKE.keys() & obj.keys()):
        return obj
    out = {_SNAKE.get(k, k): v for k, v in obj.items()}
    if "usageDetails" in out and out.get("model") is None and obj.get("model") is not None:
        out["model"] = obj["model"]
    return out
_TRACE_KEYS = {"id", "timestamp", "name"}
_TRACE_HINTS = {"sessionId", "userId", "bookmarked", "public", "release"}


def _is_observation(obj: Any) -> bool:
    return isinstance(obj, dict) and _OBS_KEYS <= obj.keys() and "id" in obj


def _is_trace(obj: Any) -> bool:
    return (isinstance(obj, dict) and _TRACE_KEYS <= obj.keys() and len(_TRACE_HINTS & obj.keys()) >= 2
            and "observations" not in obj and "traceId" not in obj)


def _is_row(obj: Any) -> bool:
    obj = _camel(obj)
    return _is_observation(obj) or _is_trace(obj)


def sniff(head: Head) -> bool:
    if head.is_parquet:
        return _is_row(dict.fromkeys(head.extra.get("columns") or (), ""))
    doc = head.doc
    if isinstance(doc, list) and doc:
        return _is_row(doc[0])
    if _is_row(head.first_line_obj):
        return True
    cols = csv_header(head.text or "") if head.text else None
    return bool(cols) and _is_row(dict.fromkeys(cols, ""))


def _row(obj: dict[str, Any]) -> dict[str, Any]:
    obj = {k: (None if v == "" else v) for k, v in _camel(obj).items()}  # CSV: empty cell = absent
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
        # A top-level observation hangs under its trace's row (span id = trace id), as in the trace
        # download: loaded beside the traces export (or after it), the trace's user, session and
        # metadata reach it by inheritance, which is the only way the observations table has them.
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
    if parquet.is_parquet(path):
        added = 0
        try:
            for n, rec in parquet.records(path, progress=lambda done, total: sink.progress(done)):
                added += _add(rec, n, sink)
        except parquet.ParquetError as exc:
            raise FormatError(str(exc)) from None
        if added == 0:
            raise FormatError(f"{path}: no Langfuse export rows found")
        return
    try:
        head = read_head(path)
    except SourceError as exc:
        raise FormatError(str(exc)) from None
    added = 0
    if csv_header(head.text or "") is not None:
        with open_binary(path) as fh:
            reader = csv.DictReader(io.TextIOWrapper(fh, encoding="utf-8-sig", newline=""))
            for rec in reader:
                added += _add(rec, reader.line_num, sink)
    else:
        for where, obj in json_records(path, sink):
            added += _add(obj, where, sink)
    if added == 0:
        raise FormatError(f"{path}: no Langfuse export rows found")
