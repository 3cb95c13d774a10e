"""Everything about one request: conversation, tool calls, models, tokens, cost, metadata, labels, trace tree."""

from __future__ import annotations

import json
from typing import Any

from oncall.store.schema import SPAN_COLUMN_NAMES

_JSON = ("input_messages", "output_messages", "tool_calls", "attributes", "inherited")
MAX_TREE = 2000  # spans of one trace shown; a runaway agent loop can have many more


def _load(v: Any) -> Any:
    if v is None or not isinstance(v, str):
        return v
    try:
        return json.loads(v)
    except ValueError:
        return v


def request_detail(con: Any, span_pk: int, *, with_raw: bool = False) -> dict[str, Any]:
    """The request as a dict with stable field names (`oncall show --json` prints it)."""
    cols = [c for c in SPAN_COLUMN_NAMES if with_raw or c != "raw"]
    row = con.execute(f"SELECT {', '.join(cols)} FROM spans WHERE span_pk = ?", [span_pk]).fetchone()
    if row is None:
        raise LookupError(f"no span with span_pk {span_pk}")
    d = dict(zip(cols, row, strict=True))
    for k in _JSON:
        d[k] = _load(d.get(k))
    if with_raw:
        d["raw"] = _load(d.get("raw"))
    d["labels"] = [
        {"label": r[0], "note": r[1], "author": r[2], "at": r[3]}
        for r in con.execute("SELECT label, note, author, created_at FROM labels WHERE span_pk = ? "
                             "ORDER BY created_at, label_id", [span_pk]).fetchall()]
    d["notes"] = [
        {"text": r[0], "author": r[1], "at": r[2]}
        for r in con.execute("SELECT text, author, created_at FROM notes WHERE span_pk = ? ORDER BY created_at",
                             [span_pk]).fetchall()]
    d["trace"] = trace_tree(con, d["trace_id"], focus=span_pk)
    return d


def trace_tree(con: Any, trace_id: str, *, focus: int | None = None) -> list[dict[str, Any]]:
    """The trace's spans in tree order with depth, offset from the trace start and duration (ms)."""
    rows = con.execute(
        """SELECT span_pk, span_id, parent_id, name, kind, status, error_type, model, served_model,
                  start_time, end_time, latency_ms, input_tokens, output_tokens, cost, cost_source
           FROM spans WHERE trace_id = ? ORDER BY start_time NULLS LAST, span_pk LIMIT ?""",
        [trace_id, MAX_TREE]).fetchall()
    names = ["span_pk", "span_id", "parent_id", "name", "kind", "status", "error_type", "model", "served_model",
             "start_time", "end_time", "latency_ms", "input_tokens", "output_tokens", "cost", "cost_source"]
    spans = [dict(zip(names, r, strict=True)) for r in rows]
    if not spans:
        return []
    t0 = min((s["start_time"] for s in spans if s["start_time"] is not None), default=None)
    by_id = {s["span_id"]: s for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for s in spans:
        parent = s["parent_id"] if s["parent_id"] in by_id else None  # orphans (parent not exported) are roots
        children.setdefault(parent, []).append(s)
    out: list[dict[str, Any]] = []
    seen: set[int] = set()

    def walk(parent: str | None, depth: int) -> None:
        for s in children.get(parent, []):
            if s["span_pk"] in seen:  # a cycle in bad data must not hang the tree
                continue
            seen.add(s["span_pk"])
            s["depth"] = depth
            s["offset_ms"] = ((s["start_time"] - t0).total_seconds() * 1000.0
                              if t0 is not None and s["start_time"] is not None else None)
            s["focus"] = s["span_pk"] == focus
            out.append(s)
            walk(s["span_id"], depth + 1)

    walk(None, 0)
    for s in spans:  # anything unreachable (cycles) still shows
        if s["span_pk"] not in seen:
            s.update(depth=0, offset_ms=None, focus=s["span_pk"] == focus)
            out.append(s)
    return out
