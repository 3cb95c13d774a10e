"""LangSmith runs (trace-formats.md §5).

Accepts the ingest payload `{"post": [RunCreate…], "patch": [RunUpdate…]}` (what the SDK sends to
`/runs/batch`, and `/runs/multipart` reassembled), a JSON array of runs (API / `list_runs` dumps)
and JSON Lines of either: payloads, or bare run bodies as `POST /runs` / `PATCH /runs/{id}` carry
them. Every create and update of one run is merged into one record before mapping, whichever order
they arrive in: by `id`, or by `trace_id` + `dotted_order` when the update has no id (JS SDK). A
run that never got its update (no `end_time`) is kept with status unset and `unfinished: true`.
The `session_id`/`session_name` *fields* are the tracing project, not a conversation: conversation
ids come from `extra.metadata.{thread_id, session_id, conversation_id}`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from oncall.ingest import jsonio, parquet, retrieval
from oncall.ingest.canonical import normalize_kind, normalize_provider, normalize_status
from oncall.ingest.contracts import Sink
from oncall.ingest.decode import coerce_int, json_deep_loads, normalize_id, to_epoch_us
from oncall.ingest.mapping import apply_status
from oncall.ingest.records import completion_columns, completion_usage, cost_of, drop_none, flat, input_columns
from oncall.ingest.registry import FormatError, LoadOptions
from oncall.ingest.source import Head, SourceError, iter_lines, read_all_text

NAME = "langsmith"
DESCRIPTION = ("LangSmith runs ({post, patch} ingest payloads, also captured SDK traffic as JSON Lines; run arrays "
               "and list_runs dumps; every create and update of a run merged; the bulk export's Parquet)")

_SESSION_KEYS = ("thread_id", "session_id", "conversation_id")


def _is_run(obj: Any) -> bool:
    return isinstance(obj, dict) and ("run_type" in obj or "dotted_order" in obj) and (
        "trace_id" in obj or "id" in obj)


def _is_payload(obj: Any) -> bool:
    return isinstance(obj, dict) and (isinstance(obj.get("post"), list) or isinstance(obj.get("patch"), list)) and (
        any(_is_run(r) for r in (obj.get("post") or []) + (obj.get("patch") or [])))


# LangSmith bulk export (Parquet in the team's bucket, "equivalent fields as the Run data format":
# docs.langchain.com/langsmith/data-export, /langsmith/run-data-format): one row per run, nested
# objects (inputs, outputs, extra, events) as JSON text.
_PARQUET_COLUMNS = {"id", "run_type"}


def sniff(head: Head) -> bool:
    if head.is_parquet:
        cols = set(head.extra.get("columns") or ())
        return _PARQUET_COLUMNS <= cols and bool({"trace_id", "dotted_order", "parent_run_id"} & cols)
    doc = head.doc
    if doc is not None:
        if _is_payload(doc):
            return True
        return isinstance(doc, list) and bool(doc) and _is_run(doc[0])
    if _is_run(head.first_line_obj) or _is_payload(head.first_line_obj):
        return True
    text = (head.text or "").lstrip("\ufeff \t\r\n")[:8192]
    return not head.complete and '"dotted_order"' in text and '"run_type"' in text


def merge_runs(post: list[Any], patch: list[Any]) -> list[dict[str, Any]]:
    """Each created run with its updates applied (updates win; `extra` merges one level deep)."""
    return merge_records([("post", r) for r in post] + [("patch", r) for r in patch])


# Merge order inside one run: its create, then bare records that have not ended, then bare records
# that have, then explicit updates. Arrival order only breaks ties, so a file whose updates come
# before their creates (batches flushed out of order, files concatenated) merges the same way.
_RANK = {"post": 0, "patch": 3}


def _rank(op: str | None, rec: dict[str, Any]) -> int:
    if op in _RANK:
        return _RANK[op]
    return 2 if rec.get("end_time") is not None or rec.get("error") or rec.get("outputs") else 1


def merge_records(records: list[tuple[str | None, Any]]) -> list[dict[str, Any]]:
    """Merge every create and update of one run into one record, whichever order they arrived in.

    `records` are (op, record): op is "post" or "patch" when the transport said so ({post, patch}
    payloads), None for a bare record (JSON Lines of request bodies, `list_runs` dumps). Records are
    grouped by `id`, or by `trace_id` + `dotted_order` when an update carries no id (JS SDK).
    """
    order_to_id: dict[tuple[str, Any], str] = {}
    for _, r in records:
        if isinstance(r, dict) and r.get("id") is not None and r.get("dotted_order") is not None:
            order_to_id.setdefault((str(r.get("trace_id")), r["dotted_order"]), str(r["id"]))
    groups: dict[Any, list[tuple[int, int, dict[str, Any]]]] = {}
    for i, (op, r) in enumerate(records):
        if not isinstance(r, dict):
            continue
        if r.get("id") is not None:
            key: Any = str(r["id"])
        else:
            okey = (str(r.get("trace_id")), r.get("dotted_order"))
            key = order_to_id.get(okey, okey if r.get("dotted_order") is not None else ("record", i))
        groups.setdefault(key, []).append((_rank(op, r), i, r))
    runs = []
    for parts in groups.values():
        parts.sort(key=lambda p: (p[0], p[1]))
        run = dict(parts[0][2])
        for _, _, u in parts[1:]:
            _apply_update(run, u)
        runs.append(run)
    return runs


def _apply_update(target: dict[str, Any], update: dict[str, Any]) -> None:
    for k, v in update.items():
        if k == "extra" and isinstance(v, dict) and isinstance(target.get("extra"), dict):
            target["extra"] = {**target["extra"], **v,
                               "metadata": {**(target["extra"].get("metadata") or {}), **(v.get("metadata") or {})}}
        elif v is not None and v != {} and v != []:
            target[k] = v


def _parent_from_dotted_order(dotted: Any) -> str | None:
    """`…Z<parent-uuid>.…Z<run-uuid>`: the second-to-last segment names the parent."""
    if not isinstance(dotted, str) or "." not in dotted:
        return None
    seg = dotted.split(".")[-2]
    return seg.split("Z", 1)[1] if "Z" in seg else None


def run_row(run: dict[str, Any]) -> dict[str, Any]:
    extra = json_deep_loads(run.get("extra")) or {}
    meta = extra.get("metadata") if isinstance(extra.get("metadata"), dict) else {}
    inv = extra.get("invocation_params") if isinstance(extra.get("invocation_params"), dict) else {}
    inputs = json_deep_loads(run.get("inputs"))
    outputs = json_deep_loads(run.get("outputs"))
    kind = normalize_kind(run.get("run_type")) or "span"
    start = to_epoch_us(run.get("start_time"))
    end = to_epoch_us(run.get("end_time"))
    parent = run.get("parent_run_id")
    if parent in (None, "", "None"):
        parent = _parent_from_dotted_order(run.get("dotted_order"))
    row: dict[str, Any] = {
        "trace_id": normalize_id(run.get("trace_id") or run.get("id")),
        "span_id": normalize_id(run.get("id")),
        "parent_id": normalize_id(parent) if parent else None,
        "name": run.get("name"),
        "kind": kind,
        "start_time": start, "end_time": end,
        "latency_ms": (end - start) / 1000.0 if start is not None and end is not None else None,
        "provider": normalize_provider(meta.get("ls_provider")),
        "model": meta.get("ls_model_name") or (inputs.get("model") if isinstance(inputs, dict) else None)
        or inv.get("model") or inv.get("model_name"),
        "session_id": next((str(meta[k]) for k in _SESSION_KEYS if meta.get(k) not in (None, "")), None),
        "user_id": meta.get("user_id"),
        "tenant": meta.get("tenant") or meta.get("tenant_id"),
        "feature": meta.get("feature"),
        "prompt_name": meta.get("prompt_name") or meta.get("lc_hub_repo"),
        "prompt_version": meta.get("prompt_version") or meta.get("lc_hub_commit_hash"),
        "release": meta.get("revision_id") or meta.get("release"),
        "env": meta.get("env") or meta.get("environment"),
        "request_id": meta.get("request_id"),
        "cost": cost_of(run.get("total_cost")),
    }
    if kind == "tool":
        row["input_text"] = _as_text(inputs)
        row["output_text"] = _as_text(outputs)
    else:
        row.update(input_columns(inputs))
        if isinstance(outputs, dict) and isinstance(outputs.get("generations"), list):
            gens = [g for batch in outputs["generations"] for g in (batch if isinstance(batch, list) else [batch])]
            msgs = [g.get("message", {}).get("kwargs", g.get("message")) if isinstance(g.get("message"), dict)
                    else {"role": "assistant", "content": g.get("text")} for g in gens if isinstance(g, dict)]
            row.update(completion_columns({"choices": [{"message": {**m, "role": "assistant"}} for m in msgs
                                                       if isinstance(m, dict)]}))
            llm_out = outputs.get("llm_output") if isinstance(outputs.get("llm_output"), dict) else {}
            row.update(completion_usage(llm_out.get("token_usage")))
        elif outputs not in (None, {}, ""):
            row.update(completion_columns(outputs))
    usage = outputs.get("usage_metadata") if isinstance(outputs, dict) else None
    if isinstance(usage, dict):
        row["input_tokens"] = coerce_int(usage.get("input_tokens"))
        row["output_tokens"] = coerce_int(usage.get("output_tokens"))
        row["total_tokens"] = coerce_int(usage.get("total_tokens"))
        details_in = usage.get("input_token_details") or {}
        details_out = usage.get("output_token_details") or {}
        row["cached_tokens"] = coerce_int(details_in.get("cache_read")) if isinstance(details_in, dict) else None
        row["reasoning_tokens"] = coerce_int(details_out.get("reasoning")) if isinstance(details_out, dict) else None
    for col, key in (("input_tokens", "prompt_tokens"), ("output_tokens", "completion_tokens"),
                     ("total_tokens", "total_tokens")):
        if row.get(col) is None and run.get(key) is not None:
            row[col] = coerce_int(run.get(key))
    if kind in ("retriever", "embedding"):  # run_type retriever / embedding (oncall.ingest.retrieval)
        row.update(retrieval.from_records(kind, inputs, outputs, meta, model=row.get("model"),
                                          output_captured=end is not None and not run.get("error")))
    row["ttft_ms"] = _ttft_ms(run, start)
    row["attributes"] = flat({k: v for k, v in run.items() if k not in ("inputs", "outputs")})
    row["raw"] = run
    error = run.get("error")
    status = normalize_status(run.get("status")) if run.get("status") else ("error" if error else
                                                                             "ok" if end is not None else "unset")
    if error and status != "error":
        status = "error"
    if end is None and status != "error":
        # Created but never updated (the process died, the update was lost, or list_runs shows it
        # "pending"): kept, status unset, and marked so `meta.unfinished=true` finds it.
        row["attributes"]["unfinished"] = True
        status = "unset"
    apply_status(row, status, error)
    return drop_none(row)


def _as_text(value: Any) -> str | None:
    if value in (None, "", {}):
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _ttft_ms(run: dict[str, Any], start: int | None) -> float | None:
    first = to_epoch_us(run.get("first_token_time"))
    if first is None:
        for ev in json_deep_loads(run.get("events")) or []:
            if isinstance(ev, dict) and ev.get("name") == "new_token":
                first = to_epoch_us(ev.get("time"))
                break
    if first is None or start is None or first < start:
        return None
    return (first - start) / 1000.0


def _add_runs(runs: list[dict[str, Any]], sink: Sink, where: int | None) -> int:
    n = 0
    for i, run in enumerate(runs, start=1):
        at = where if where is not None else i
        if not _is_run(run) and not run.get("id"):
            sink.problem(at, "not-a-run", "record has no id/trace_id/run_type; not a LangSmith run; skipped")
            continue
        try:
            sink.add(run_row(run), at)
            n += 1
        except (TypeError, ValueError, AttributeError) as exc:
            sink.problem(at, "bad-run", f"run {run.get('id')!r} cannot be read: {exc}")
    return n


def read(path: Path, sink: Sink, options: LoadOptions) -> None:
    if parquet.is_parquet(path):
        added = 0
        try:
            for n, run in parquet.records(path, progress=lambda done, total: sink.progress(done)):
                added += _add_runs([run], sink, n)
        except parquet.ParquetError as exc:
            raise FormatError(str(exc)) from None
        if added == 0:
            raise FormatError(f"{path}: no LangSmith runs in the Parquet file")
        return
    try:
        text = read_all_text(path)
    except SourceError as exc:
        raise FormatError(str(exc)) from None
    added = 0
    try:
        doc = jsonio.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and _is_payload(doc):
        added = _add_runs(merge_runs(doc.get("post") or [], doc.get("patch") or []), sink, None)
    elif isinstance(doc, list):
        added = _add_runs(merge_records([(None, r) for r in doc]), sink, None)
    else:
        # JSON Lines: {post, patch} payloads or bare runs, one per line; the creates and updates of
        # one run may be on different lines, in any order.
        records: list[tuple[str | None, Any]] = []
        lines: dict[int, int] = {}
        for n, line in iter_lines(path):
            if not line.strip():
                continue
            try:
                obj = jsonio.loads(line)
            except ValueError as exc:
                sink.problem(n, "invalid-json", f"not valid JSON ({exc}); line skipped")
                continue
            if _is_payload(obj):
                for op in ("post", "patch"):
                    for r in obj.get(op) or []:
                        lines.setdefault(id(r), n)
                        records.append((op, r))
            elif isinstance(obj, dict):
                lines.setdefault(id(obj), n)
                records.append((None, obj))
            else:
                sink.problem(n, "not-a-run", "line is not a JSON object; skipped")
        first_line = {str(r.get("id")): lines[id(r)] for _, r in reversed(records) if isinstance(r, dict)}
        for run in merge_records(records):
            added += _add_runs([run], sink, first_line.get(str(run.get("id"))))
    if added == 0:
        raise FormatError(f"{path}: no LangSmith runs found")
