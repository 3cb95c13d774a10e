"""Resolving whatever id a responder is handed to one request.

The customer quotes the app's request id, the log line has the provider's `chatcmpl-…`, the dashboard
links a trace id, Langfuse and LangSmith show their own ids. All of them are indexed in `span_ids`
(ART index) at load time; a unique prefix is enough. A trace id resolves to the trace's LLM call
(the first one when there are several).
"""

from __future__ import annotations

from typing import Any


class UnknownRequest(LookupError):
    def __init__(self, text: str, suggestions: list[str]) -> None:
        self.text = text
        self.suggestions = suggestions
        hint = f"; close matches: {', '.join(suggestions)}" if suggestions else ""
        super().__init__(f"no request, response, trace or span id matches {text!r}{hint}")


class AmbiguousRequest(LookupError):
    def __init__(self, text: str, candidates: list[str]) -> None:
        self.text = text
        self.candidates = candidates
        many = f"{len(candidates)}+" if len(candidates) >= 20 else str(len(candidates))
        super().__init__(f"{text!r} matches {many} different ids: {', '.join(candidates[:8])}"
                         f"{' …' if len(candidates) > 8 else ''}; give more characters")


_KIND_ORDER = "CASE i.id_kind WHEN 'request' THEN 0 WHEN 'response' THEN 1 WHEN 'span' THEN 2 ELSE 3 END"


def _best_span(con: Any, id_value: str) -> int | None:
    """The span an exact id names, preferring an LLM span (a trace or request id covers several)."""
    row = con.execute(
        f"""SELECT s.span_pk FROM span_ids i JOIN spans s ON s.span_pk = i.span_pk
            WHERE i.id = ?
            ORDER BY (s.kind = 'llm') DESC, {_KIND_ORDER}, s.start_time, s.span_pk LIMIT 1""", [id_value]).fetchone()
    if row:
        return int(row[0])
    # A trace id also names the spans of that trace.
    row = con.execute(
        """SELECT span_pk FROM spans WHERE trace_id = ? ORDER BY (kind = 'llm') DESC, start_time, span_pk LIMIT 1""",
        [id_value]).fetchone()
    return int(row[0]) if row else None


def resolve_request(con: Any, text: str) -> int:
    """span_pk of the request `text` names (an exact id or a unique prefix); raises Unknown/AmbiguousRequest."""
    t = text.strip()
    if not t:
        raise UnknownRequest(text, [])
    found = _best_span(con, t)
    if found is not None:
        return found
    low = t.lower()
    if low != t:
        found = _best_span(con, low)
        if found is not None:
            return found
    # Unique prefix (ids are case-sensitive in exports, but a pasted hex id may be upper-case).
    esc = low.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    ids = [r[0] for r in con.execute(
        "SELECT DISTINCT id FROM span_ids WHERE id >= ? AND id < ? || chr(1114111) LIMIT 20", [t, t]).fetchall()]
    if not ids and low != t:
        ids = [r[0] for r in con.execute(
            "SELECT DISTINCT id FROM span_ids WHERE lower(id) LIKE ? ESCAPE '\\' LIMIT 20", [esc + "%"]).fetchall()]
    if len(ids) == 1:
        found = _best_span(con, ids[0])
        if found is not None:
            return found
    if len(ids) > 1:
        # Several ids of one trace (a request id inherited by child spans, say) are one request;
        # ids in different traces are different requests.
        traces = con.execute(
            f"SELECT count(DISTINCT s.trace_id) FROM span_ids i JOIN spans s ON s.span_pk = i.span_pk "
            f"WHERE i.id IN ({', '.join('?' for _ in ids)})", ids).fetchone()[0]
        if traces == 1:
            found = _best_span(con, ids[0])
            if found is not None:
                return found
        raise AmbiguousRequest(text, sorted(ids))
    raise UnknownRequest(text, suggest(con, t))


def suggest(con: Any, text: str, n: int = 5) -> list[str]:
    """Ids sharing the longest prefix with `text` (a mistyped or truncated id)."""
    for cut in range(len(text) - 1, 2, -1):
        prefix = text[:cut]
        rows = con.execute("SELECT DISTINCT id FROM span_ids WHERE id >= ? AND id < ? || chr(1114111) "
                           "ORDER BY id LIMIT ?", [prefix, prefix, n]).fetchall()
        if rows:
            return [r[0] for r in rows]
    return []
