"""Finding requests: filtered, newest first, paged by keyset (never OFFSET over the whole table).

A page holds compact rows (ids, cohort keys, model, status, tokens, cost, a 200-character output
preview, the latest label); full text is fetched only for the request being read (detail.py).
Keyset paging on (start_time, span_pk) keeps page N as cheap as page 1 on a million rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from oncall.query.filters import Filter, compile_filter
from oncall.query.labels import latest_label_sql

PREVIEW_CHARS = 200
ROW_COLUMNS = ["span_pk", "start_time", "request_id", "response_id", "trace_id", "span_id", "tenant", "user_id",
               "session_id", "feature", "model", "served_model", "prompt_version", "provider", "status",
               "error_type", "latency_ms", "input_tokens", "output_tokens", "cost", "finish_reason", "cost_source"]
SORTABLE = {"start_time", "latency_ms", "cost", "input_tokens", "output_tokens", "tenant", "model", "served_model",
            "status", "feature"}


@dataclass(frozen=True)
class Cursor:
    """Position after the last row of a page (keyset: sort value, then span_pk)."""
    value: Any
    span_pk: int


@dataclass
class Page:
    rows: list[dict[str, Any]] = field(default_factory=list)
    next: Cursor | None = None
    notes: list[str] = field(default_factory=list)


def _select() -> str:
    cols = ", ".join(f"s.{c}" for c in ROW_COLUMNS)
    return (f"{cols}, left(s.output_text, {PREVIEW_CHARS}) AS output_preview, "
            f"{latest_label_sql('s.span_pk')} AS label, "
            "EXISTS (SELECT 1 FROM notes n WHERE n.span_pk = s.span_pk) AS has_note")


def _rows(cur: Any) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def rows_by_pk(con: Any, select: str, span_pks: Sequence[int], order: str = "",
               select_params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """`SELECT {select} FROM spans s` for the given span_pks (a page, a sample), as dicts.

    Picked first, fetched second: joining a top-N subquery to `spans` left the key filter to the
    join, and the scan decoded the text of every row group holding a pick (page_at at row 500,000:
    691 ms against 81 ms). The key range prunes row groups by their min/max; `= ANY` keeps exactly
    the picks, so only their rows' text is decompressed.
    """
    if not span_pks:
        return []
    keys = [int(k) for k in span_pks]
    con.execute(f"SELECT {select} FROM spans s WHERE s.span_pk BETWEEN ? AND ? AND s.span_pk = ANY(?) {order}",
                [*select_params, min(keys), max(keys), keys])
    return _rows(con)


def search(con: Any, flt: Filter | str | Sequence[str] | None, *, limit: int = 50, before: Cursor | None = None,
           order_by: str = "start_time", descending: bool = True) -> Page:
    """One page of matching requests, newest first by default; pass `page.next` to get the next page."""
    if order_by not in SORTABLE:
        raise ValueError(f"cannot sort by {order_by!r}; sortable: {', '.join(sorted(SORTABLE))}")
    c = compile_filter(con, flt, alias="s")
    where, params = c.where, list(c.params)
    cmp = "<" if descending else ">"
    direction = "DESC" if descending else "ASC"
    if before is not None:
        if before.value is None:
            where += f" AND s.{order_by} IS NULL AND s.span_pk {cmp} ?"
            params.append(before.span_pk)
        else:
            where += (f" AND (s.{order_by} {cmp} ? OR (s.{order_by} = ? AND s.span_pk {cmp} ?)"
                      f" OR s.{order_by} IS NULL)")
            params += [before.value, before.value, before.span_pk]
    order = f"ORDER BY s.{order_by} {direction} NULLS LAST, s.span_pk {direction} LIMIT ?"
    # The caller's own connection, not a new cursor of it: that one would escape the caller's
    # interrupt (the console interrupts the pages of a superseded filter); callers' cursors are UTC.
    cur = con
    rows = None
    if order_by == "start_time" and descending and (before is None or before.value is not None):
        rows = _newest_in_windows(cur, where, params, order, limit, before.value if before else None)
    if rows is None:
        cur.execute(f"SELECT {_select()} FROM spans s WHERE {where} {order}", params + [int(limit) + 1])
        rows = _rows(cur)
    nxt = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        nxt = Cursor(last[order_by], int(last["span_pk"]))
    return Page(rows, nxt, c.notes)


# Newest-first pages look in the newest 1/64 of the incident's time range, then 1/8, then everywhere.
# DuckDB's top-N evaluates the filter on every row; a text term over 125k unique outputs took 320 ms,
# while the newest slice skips most row groups by their start_time ranges. Exact: a window that
# yields more than a page holds the newest matches, since everything outside it is older.
WINDOW_FRACTIONS = (1 / 64, 1 / 8)


def _newest_in_windows(cur: Any, where: str, params: list[Any], order: str, limit: int,
                       upper: Any) -> list[dict[str, Any]] | None:
    lo, hi = cur.execute("SELECT min(start_time), max(start_time) FROM spans").fetchone()
    if lo is None or hi is None or hi <= lo:
        return None
    top = upper if upper is not None else hi
    for frac in WINDOW_FRACTIONS:
        cur.execute(f"SELECT {_select()} FROM spans s WHERE {where} AND s.start_time >= ? {order}",
                    params + [top - (hi - lo) * frac, int(limit) + 1])
        rows = _rows(cur)
        if len(rows) > limit:
            return rows
    return None


def count(con: Any, flt: Filter | str | Sequence[str] | None) -> int:
    return count_noted(con, flt)[0]


def count_noted(con: Any, flt: Filter | str | Sequence[str] | None) -> tuple[int, list[str]]:
    """(how many requests match, how the filter's times and arguments were read): the explorer's
    "N of M" and the notes beside it."""
    c = compile_filter(con, flt, alias="s")
    return int(con.execute(f"SELECT count(*) FROM spans s WHERE {c.where}", c.params).fetchone()[0]), list(c.notes)


# Columns whose distinct values a responder counts (users, sessions, tenants affected …).
DISTINCT_COLUMNS = ("user_id", "session_id", "tenant", "feature", "model", "served_model", "provider",
                    "prompt_version", "release", "trace_id")


def count_distinct(con: Any, flt: Filter | str | Sequence[str] | None, columns: Sequence[str]) -> dict[str, int]:
    """How many distinct values each column takes over the filter (NULLs not counted)."""
    bad = [c for c in columns if c not in DISTINCT_COLUMNS]
    if bad:
        from oncall.errors import InputError

        raise InputError(f"cannot count distinct {', '.join(bad)}; columns: {', '.join(DISTINCT_COLUMNS)}")
    if not columns:
        return {}
    c = compile_filter(con, flt, alias="s")
    row = con.execute(f"SELECT {', '.join(f'count(DISTINCT s.{col})' for col in columns)} FROM spans s "
                      f"WHERE {c.where}", c.params).fetchone()
    return {col: int(v) for col, v in zip(columns, row, strict=True)}


def page_at(con: Any, flt: Filter | str | Sequence[str] | None, offset: int, limit: int = 100,
            order_by: str = "start_time", descending: bool = True) -> list[dict[str, Any]]:
    """Rows `offset`..`offset+limit` of the ordered result, for a virtual table that can jump anywhere.

    The ordering runs on narrow columns (span_pk and the sort key) and only the page's rows are
    fetched with text previews, so a jump to row 900,000 costs one sort of two columns, not a scan of
    the outputs. Scrolling forward page by page should prefer `search(before=…)`.
    """
    if order_by not in SORTABLE:
        raise ValueError(f"cannot sort by {order_by!r}; sortable: {', '.join(sorted(SORTABLE))}")
    c = compile_filter(con, flt, alias="s")
    direction = "DESC" if descending else "ASC"
    order = f"ORDER BY s.{order_by} {direction} NULLS LAST, s.span_pk {direction}"
    # The caller's own connection, not a new cursor of it: that one would escape the caller's
    # interrupt (the console interrupts the pages of a superseded filter); callers' cursors are UTC.
    cur = con
    page = [int(r[0]) for r in cur.execute(f"SELECT s.span_pk FROM spans s WHERE {c.where} {order} LIMIT ? OFFSET ?",
                                           list(c.params) + [int(limit), int(offset)]).fetchall()]
    return rows_by_pk(cur, _select(), page, order)


def position_of(con: Any, flt: Filter | str | Sequence[str] | None, start_time: Any, span_pk: int,
                descending: bool = True) -> int:
    """The 0-based index of one row in `page_at`'s start_time ordering of the filter's rows.

    A console following live traffic keeps its cursor on the same request while newer rows arrive
    above it (or below, ascending): this says where that request is now."""
    c = compile_filter(con, flt, alias="s")
    op = ">" if descending else "<"
    row = con.execute(
        f"SELECT count(*) FROM spans s WHERE {c.where} AND (s.start_time {op} ? OR (s.start_time = ? AND s.span_pk {op} ?))",
        [*c.params, start_time, start_time, int(span_pk)]).fetchone()
    return int(row[0])
