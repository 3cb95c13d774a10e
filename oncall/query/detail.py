"""Everything about one request: conversation, tool calls, models, tokens, cost, metadata, labels, trace tree."""

from __future__ import annotations

import json
from typing import Any

from oncall.store.schema import SPAN_COLUMN_NAMES

_JSON = ("input_messages", "output_messages", "tool_calls", "attributes", "inherited", "retrieved_docs")
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
    d["trace"], d["trace_spans"] = trace_spans(con, d["trace_id"], focus=span_pk)
    return d


SPAN_FIELDS = ["span_pk", "span_id", "parent_id", "name", "kind", "status", "error_type", "model", "served_model",
               "start_time", "end_time", "latency_ms", "input_tokens", "output_tokens", "cost", "cost_source"]
INDENT_CAP = 16  # deeper spans are drawn at this indentation with their depth written out


def trace_tree(con: Any, trace_id: str, *, focus: int | None = None, limit: int = MAX_TREE) -> list[dict[str, Any]]:
    """The trace's spans in tree order with depth, offset from the trace start and duration (ms)."""
    return trace_spans(con, trace_id, focus=focus, limit=limit)[0]


def trace_spans(con: Any, trace_id: str, *, focus: int | None = None,
                limit: int = MAX_TREE) -> tuple[list[dict[str, Any]], int]:
    """(spans in tree order, how many spans the trace has).

    A trace with more than `limit` spans shows its first `limit` by start time plus every ancestor
    of `focus`, so the request's own path from the root is always complete. Nothing here recurses:
    a 10,000-span chain (an agent that calls itself) is as cheap as a wide trace.
    """
    sql = (f"SELECT {', '.join(SPAN_FIELDS)} FROM spans WHERE trace_id = ? "
           "ORDER BY start_time NULLS LAST, span_pk LIMIT ?")
    spans = [dict(zip(SPAN_FIELDS, r, strict=True)) for r in con.execute(sql, [trace_id, limit + 1]).fetchall()]
    total = len(spans)
    if total > limit:
        spans, total = _first_and_focus_path(con, trace_id, spans[:limit], focus)
    return tree_order(spans, focus), total


def _first_and_focus_path(con: Any, trace_id: str, first: list[dict[str, Any]],
                          focus: int | None) -> tuple[list[dict[str, Any]], int]:
    """The first spans by time plus the focus span's ancestors (read from the trace's id skeleton)."""
    skeleton = con.execute("SELECT span_pk, span_id, parent_id FROM spans WHERE trace_id = ?", [trace_id]).fetchall()
    pk_of = {span_id: pk for pk, span_id, _ in skeleton}
    parent_of = {pk: parent for pk, _, parent in skeleton}
    have = {s["span_pk"] for s in first}
    want: list[int] = []
    pk = focus if focus in parent_of else None
    while pk is not None and pk not in have:  # walk up, not recurse; `have` also stops a cycle
        have.add(pk)
        want.append(pk)
        pk = pk_of.get(parent_of[pk])
    extra: list[dict[str, Any]] = []
    if want:
        rows = con.execute(f"SELECT {', '.join(SPAN_FIELDS)} FROM spans WHERE span_pk IN "
                           "(SELECT unnest(?::BIGINT[]))", [want]).fetchall()
        extra = [dict(zip(SPAN_FIELDS, r, strict=True)) for r in rows]
    return first + extra, len(skeleton)


def tree_order(spans: list[dict[str, Any]], focus: int | None = None) -> list[dict[str, Any]]:
    """Spans in depth-first order (children by start time), each with depth, offset_ms and focus set.

    An explicit stack, never recursion: Python's recursion limit (1,000) is far below the depth
    of a runaway agent loop.
    """
    if not spans:
        return []
    spans = sorted(spans, key=lambda s: (s["start_time"] is None, s["start_time"] or 0, s["span_pk"]))
    t0 = min((s["start_time"] for s in spans if s["start_time"] is not None), default=None)
    by_id = {s["span_id"]: s for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for s in spans:
        parent = s["parent_id"] if s["parent_id"] in by_id else None  # orphans (parent not exported) are roots
        children.setdefault(parent, []).append(s)
    out: list[dict[str, Any]] = []
    seen: set[int] = set()
    stack: list[tuple[dict[str, Any], int]] = [(s, 0) for s in reversed(children.get(None, []))]
    while stack:
        s, depth = stack.pop()
        if s["span_pk"] in seen:  # a span id exported twice (or a cycle in bad data) must not repeat or hang
            continue
        seen.add(s["span_pk"])
        s["depth"] = depth
        s["offset_ms"] = ((s["start_time"] - t0).total_seconds() * 1000.0
                          if t0 is not None and s["start_time"] is not None else None)
        s["focus"] = s["span_pk"] == focus
        out.append(s)
        stack.extend((c, depth + 1) for c in reversed(children.get(s["span_id"], [])))
    for s in spans:  # anything unreachable (cycles) still shows
        if s["span_pk"] not in seen:
            s.update(depth=0, offset_ms=None, focus=s["span_pk"] == focus)
            out.append(s)
    return out


def tree_indent(depth: int, step: int = 2, cap: int = INDENT_CAP) -> str:
    """Indentation for a span at `depth`: `step` spaces a level up to `cap` levels, then the depth in
    figures, so a 10,000-deep chain stays readable in a terminal instead of 20,000 columns wide."""
    if depth <= cap:
        return " " * (step * depth)
    mark = f"…{depth} "
    return " " * max(0, step * cap - len(mark)) + mark
