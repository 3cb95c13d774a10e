"""The responder's verdicts and notes: labels on requests and free timeline notes, in the incident database."""

from __future__ import annotations

from typing import Any

from oncall.store.db import current_user, now_utc

VERDICTS = ("good", "bad")


def add_label(db: Any, span_pk: int, verdict: str, note: str | None = None, author: str | None = None,
              request_key: str | None = None) -> int:
    """Record a good/bad verdict (the latest one counts) and put it on the timeline."""
    if verdict not in VERDICTS:
        raise ValueError(f"label must be one of {', '.join(VERDICTS)}, not {verdict!r}")
    cur = db.cursor()
    label_id = int(cur.execute("SELECT coalesce(max(label_id), 0) + 1 FROM labels").fetchone()[0])
    who = author or current_user()
    cur.execute("INSERT INTO labels VALUES (?, ?, ?, ?, ?, ?, ?)",
                [label_id, span_pk, request_key, verdict, note, who, now_utc()])
    db.record_event("label", f"labelled {request_key or span_pk} {verdict}" + (f": {note}" if note else ""),
                    {"span_pk": span_pk, "request": request_key, "label": verdict, "note": note}, actor=who)
    return label_id


def add_note(db: Any, text: str, author: str | None = None, span_pk: int | None = None) -> int:
    """A note on the incident timeline, or on one request when span_pk is given."""
    if not text.strip():
        raise ValueError("a note needs some text")
    cur = db.cursor()
    note_id = int(cur.execute("SELECT coalesce(max(note_id), 0) + 1 FROM notes").fetchone()[0])
    who = author or current_user()
    cur.execute("INSERT INTO notes (note_id, text, author, created_at, span_pk) VALUES (?, ?, ?, ?, ?)",
                [note_id, text, who, now_utc(), span_pk])
    db.record_event("note", text, {"note_id": note_id, "span_pk": span_pk}, actor=who)
    return note_id


def labels_for(con: Any, span_pk: int) -> list[dict[str, Any]]:
    rows = con.execute("SELECT label, note, author, created_at FROM labels WHERE span_pk = ? "
                       "ORDER BY created_at, label_id", [span_pk]).fetchall()
    return [{"label": r[0], "note": r[1], "author": r[2], "at": r[3]} for r in rows]
