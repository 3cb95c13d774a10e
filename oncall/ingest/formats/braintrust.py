"""Braintrust logs: the API's fetch answer and UI download, and the SDK's own `/logs3` rows.

braintrust `py/src/braintrust/logger.py`: each span is a row `{id, span_id, root_span_id,
span_parents, span_attributes {name, type}, input, output, metadata, metrics {start, end,
prompt_tokens, completion_tokens, tokens, prompt_cached_tokens, completion_reasoning_tokens,
time_to_first_token}, error, tags, created}`. The SDK sends a span when it starts and merges the
rest in later rows with `_is_merge: true` (`/logs3` `{"rows": [...]}`); the API
(`/v1/project_logs/{id}/fetch` → `{"events": [...]}`) and the UI's JSON download hand back each row
merged. Accepted: those documents, JSON arrays of rows and JSON Lines of rows or of `{"rows"}` bodies.

- Rows of one `id` are merged in file order (`_is_merge` rows deep-merge into the row before).
- trace = `root_span_id`, parent = the first of `span_parents`; kind from `span_attributes.type`
  (`llm` calls; `task` chain; `tool`/`function` tool; `score`/`eval` evaluator).
- Times are `metrics.start`/`end` (epoch seconds); TTFT `metrics.time_to_first_token` (seconds).
- `metadata.model` is the requested model; the served one is not logged. The app's metadata
  (tenant, user, session…) is usually on the root span and reaches the calls by inheritance.
- A failed wrapped call is logged with no output and, in the SDK version tested, no `error`: it
  is kept as a call with no answer, not invented as a failure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oncall.ingest.canonical import call_kind, classify_error, http_status_from
from oncall.ingest.contracts import Sink
from oncall.ingest.decode import coerce_float, coerce_int, normalize_id, to_epoch_us
from oncall.ingest.mapping import apply_status, map_attributes
from oncall.ingest.records import drop_none, flat, input_columns, json_records, output_columns
from oncall.ingest.registry import FormatError, LoadOptions
from oncall.ingest.source import Head

NAME = "braintrust"
DESCRIPTION = "Braintrust logs: project_logs fetch / UI download rows and the SDK's /logs3 rows (merged by id)"

_KINDS = {"llm": "llm", "task": "chain", "tool": "tool", "function": "tool", "score": "evaluator",
          "eval": "evaluator", "facet": "span", "automation": "span"}


def _is_row(obj: Any) -> bool:
    return isinstance(obj, dict) and "span_id" in obj and "root_span_id" in obj and "id" in obj


def _rows(doc: Any) -> list[Any] | None:
    if isinstance(doc, dict):
        for key in ("events", "rows", "objects"):
            if isinstance(doc.get(key), list):
                return doc[key]
    if isinstance(doc, list):
        return doc
    return None


def sniff(head: Head) -> bool:
    doc = head.doc if head.doc is not None else head.first_line_obj
    rows = _rows(doc)
    if rows:
        return _is_row(rows[0])
    if _is_row(doc):
        return True
    text = (head.text or "").lstrip("\ufeff \t\r\n")[:4096]
    return not head.complete and '"root_span_id"' in text and '"span_attributes"' in text


def _deep_merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(old)
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        elif v is not None:
            out[k] = v
    return out


def _error(rec: dict[str, Any]) -> str | None:
    err = rec.get("error")
    if err in (None, ""):
        return None
    if isinstance(err, dict):
        return str(err.get("message") or err.get("error") or err)
    return str(err)


def row_of(rec: dict[str, Any]) -> dict[str, Any]:
    attrs = rec.get("span_attributes") if isinstance(rec.get("span_attributes"), dict) else {}
    metrics = rec.get("metrics") if isinstance(rec.get("metrics"), dict) else {}
    md = rec.get("metadata") if isinstance(rec.get("metadata"), dict) else {}
    parents = rec.get("span_parents") if isinstance(rec.get("span_parents"), list) else []
    kind = call_kind(kind=_KINDS.get(str(attrs.get("type") or ""), attrs.get("type"))) or "span"
    start = to_epoch_us(metrics.get("start")) or to_epoch_us(rec.get("created"))
    end = to_epoch_us(metrics.get("end"))
    row: dict[str, Any] = map_attributes({f"metadata.{k}": v for k, v in md.items()}) if md else {}
    row.pop("kind", None)
    row.update({
        "trace_id": normalize_id(rec.get("root_span_id")), "span_id": normalize_id(rec.get("span_id")),
        "parent_id": normalize_id(parents[0]) if parents else None, "name": attrs.get("name"), "kind": kind,
        "start_time": start, "end_time": end,
        "latency_ms": (end - start) / 1000.0 if start is not None and end is not None else None,
    })
    if kind == "llm":
        row["model"] = md.get("model")
        row["provider"] = md.get("provider")
        row["input_tokens"] = coerce_int(metrics.get("prompt_tokens"))
        row["output_tokens"] = coerce_int(metrics.get("completion_tokens"))
        row["total_tokens"] = coerce_int(metrics.get("tokens"))
        row["cached_tokens"] = coerce_int(metrics.get("prompt_cached_tokens"))
        row["reasoning_tokens"] = coerce_int(metrics.get("completion_reasoning_tokens"))
        ttft = coerce_float(metrics.get("time_to_first_token"))
        row["ttft_ms"] = ttft * 1000.0 if ttft is not None else None
        row.update(input_columns(rec.get("input")))
        row.update(output_columns(rec.get("output")))
    else:
        row.update({k: v for k, v in input_columns(rec.get("input")).items() if k == "input_text"})
        out = output_columns(rec.get("output"))
        if out.get("output_text"):
            row["output_text"] = out["output_text"]
    row["attributes"] = flat({k: v for k, v in rec.items() if k not in ("input", "output")})
    row["raw"] = rec
    err = _error(rec)
    if err is not None:
        row["http_status"] = http_status_from(err)
        row["error"] = err
        row["error_type"] = classify_error(row["http_status"], None, err)
        apply_status(row, "error", err)
    elif kind == "llm" and not row.get("output_messages") and not row.get("output_text") \
            and row.get("output_tokens") is None:
        row["attributes"]["oncall.no_answer"] = True  # ended without output, usage or error: not "ok"
        apply_status(row, "unset")
    else:
        apply_status(row, "ok" if end is not None else "unset")
    return drop_none(row)


def read(path: Path, sink: Sink, options: LoadOptions) -> None:
    merged: dict[str, dict[str, Any]] = {}
    where: dict[str, int] = {}
    for n, obj in json_records(path, sink, unwrap=_rows):
        rows = [obj] if _is_row(obj) else _rows(obj)
        if rows is None:
            sink.problem(n, "not-braintrust", "not a Braintrust log row or {events|rows} document; skipped")
            continue
        for rec in rows:
            if not isinstance(rec, dict) or rec.get("id") in (None, ""):
                sink.problem(n, "not-braintrust", "a row without an id; skipped")
                continue
            rid = str(rec["id"])
            where.setdefault(rid, n)
            old = merged.get(rid)
            # `_is_merge` rows complete the row before; in an export each id is whole already
            merged[rid] = dict(rec) if old is None else _deep_merge(old, rec)
    added = 0
    for rid, rec in merged.items():
        if rec.get("span_id") in (None, "") or rec.get("root_span_id") in (None, ""):
            sink.problem(where[rid], "missing-id", f"row {rid!r} never got its span_id/root_span_id; skipped")
            continue
        try:
            sink.add(row_of(rec), where[rid])
            added += 1
        except (TypeError, ValueError, AttributeError) as exc:
            sink.problem(where[rid], "bad-row", f"row {rid!r} cannot be read: {exc}")
    if added == 0:
        raise FormatError(f"{path}: no Braintrust log rows found")
