"""Resolving whatever id a responder is handed to one request.

The customer quotes the app's request id, the log line has the provider's `chatcmpl-…`, the dashboard
links a trace id, Langfuse and LangSmith show their own ids. All of them are indexed in `span_ids`
(ART index) at load time; a unique prefix is enough. A trace id resolves to the trace's LLM call
(the first one when there are several).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The one request key: how a request is named everywhere oncall writes it (tables, the trail, labels,
# replay results, the eval set, the postmortem). The app's request id, else the provider's response
# id, else the span id, else the database's own span_pk. Empty strings count as missing.
REQUEST_KEY_COLUMNS = ("request_id", "response_id", "span_id")


def request_key(row: Mapping[str, Any]) -> str:
    """The request key of a span row (a mapping with the REQUEST_KEY_COLUMNS and span_pk)."""
    for col in REQUEST_KEY_COLUMNS:
        v = row.get(col)
        if v:
            return str(v)
    return str(row["span_pk"])


def request_key_sql(alias: str = "s") -> str:
    """The same key in SQL, for a span table aliased `alias`."""
    cols = ", ".join(f"nullif({alias}.{c}, '')" for c in REQUEST_KEY_COLUMNS)
    return f"coalesce({cols}, CAST({alias}.span_pk AS VARCHAR))"


def span_request_key(con: Any, span_pk: int) -> str:
    """The request key of one span by its span_pk (str(span_pk) when the span is not there)."""
    row = con.execute(f"SELECT {request_key_sql('s')} FROM spans s WHERE s.span_pk = ?", [span_pk]).fetchone()
    return str(row[0]) if row else str(span_pk)


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
