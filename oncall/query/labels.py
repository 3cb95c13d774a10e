"""The responder's verdicts and notes: labels on requests and free timeline notes, in the incident database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oncall.query.ids import span_request_key
from oncall.store.db import current_user, now_utc

if TYPE_CHECKING:
    from oncall.store.contracts import Store

VERDICTS = ("good", "bad")

# The one rule for "the label of a request": its latest label by created_at, and label_id (the later
# write) when two share a clock tick. Every query reads a request's label through these two, so the
# explorer, the reader, compare, gates, the postmortem and the eval set cannot disagree.
LATEST_ORDER = "created_at DESC, label_id DESC"
LATEST_LABELS = (f"(SELECT * FROM labels QUALIFY row_number() OVER (PARTITION BY span_pk ORDER BY {LATEST_ORDER}) = 1)")


# A request's own notes (`n` in the console's reader, `notes` rows with its span_pk), one row per
# span with their texts joined oldest first: they travel with the request as its label's note does.
REQUEST_NOTES = ("(SELECT span_pk, string_agg(text, '\n' ORDER BY created_at, note_id) AS notes FROM notes "
                 "WHERE span_pk IS NOT NULL GROUP BY span_pk)")


def latest_label_sql(span_pk_expr: str) -> str:
    """A scalar subquery: the latest label ('good', 'bad' or NULL) of the span `span_pk_expr` names."""
    return f"(SELECT ll.label FROM labels ll WHERE ll.span_pk = {span_pk_expr} ORDER BY ll.{LATEST_ORDER.replace(', ', ', ll.')} LIMIT 1)"


def add_label(db: Store, span_pk: int, verdict: str, note: str | None = None, author: str | None = None) -> int:
    """Record a good/bad verdict (the latest one counts) and put it on the timeline, in one write.
    The label records the span's request key (oncall.query.ids.request_key), whatever id named it."""
    if verdict not in VERDICTS:
        raise ValueError(f"label must be one of {', '.join(VERDICTS)}, not {verdict!r}")
    request_key = span_request_key(db.cursor(), span_pk)
    who = author or current_user()
    at = now_utc()
    ids = db.append_many([
        ("labels", {"span_pk": span_pk, "request_key": request_key, "label": verdict, "note": note,
                    "author": who, "created_at": at}),
        ("trail", lambda ids: {
            "at_time": at, "actor": who, "kind": "label",
            "summary": f"labelled {request_key or span_pk} {verdict}" + (f": {note}" if note else ""),
            "detail": {"label_id": ids[0], "span_pk": span_pk, "request": request_key, "label": verdict,
                       "note": note}}),
    ])
    return ids[0]


def add_note(db: Store, text: str, author: str | None = None, span_pk: int | None = None) -> int:
    """A note on the incident timeline, or on one request when span_pk is given, in one write."""
    if not text.strip():
        raise ValueError("a note needs some text")
    who = author or current_user()
    at = now_utc()
    ids = db.append_many([
        ("notes", {"text": text, "author": who, "created_at": at, "span_pk": span_pk}),
        ("trail", lambda ids: {"at_time": at, "actor": who, "kind": "note", "summary": text,
                               "detail": {"note_id": ids[0], "span_pk": span_pk}}),
    ])
    return ids[0]


def labels_for(con: Any, span_pk: int) -> list[dict[str, Any]]:
    """A span's labels, oldest first (the last is the one that counts)."""
    rows = con.execute("SELECT label, note, author, created_at FROM labels WHERE span_pk = ? "
                       "ORDER BY created_at, label_id", [span_pk]).fetchall()
    return [{"label": r[0], "note": r[1], "author": r[2], "at": r[3]} for r in rows]
