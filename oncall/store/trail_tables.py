"""The responder's records: append-only tables kept in the incident's journal.

Everything a responder (or a script, a replay, a runbook) writes while others read the incident
goes through `IncidentDB.append()` into the journal (oncall/store/journal.py); every process folds
the journal into in-memory tables of these names, so they read like any other table. Rows are
immutable: a change of state is a newer row (latest wins).

To add a table, add an entry here: its id column (assigned by append(), 1, 2, 3 … per table) and
its columns in order. Columns may be added at the end later (older journal rows read as NULL);
never rename or retype one that has shipped. Column types: BIGINT, INTEGER, DOUBLE, BOOLEAN,
VARCHAR, JSON, TIMESTAMPTZ.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Table:
    id: str | None
    columns: list[tuple[str, str]]
    # Tables that older single-file incident databases already hold (schema v1/v2): their rows are
    # read beside the journal's, under the same name.
    legacy: bool = False

    @property
    def names(self) -> list[str]:
        return [c for c, _ in self.columns]


TABLES: dict[str, Table] = {
    "labels": Table(id="label_id", legacy=True, columns=[
        ("label_id", "BIGINT"), ("span_pk", "BIGINT"), ("request_key", "VARCHAR"), ("label", "VARCHAR"),
        ("note", "VARCHAR"), ("author", "VARCHAR"), ("created_at", "TIMESTAMPTZ"),
    ]),
    "notes": Table(id="note_id", legacy=True, columns=[
        ("note_id", "BIGINT"), ("text", "VARCHAR"), ("author", "VARCHAR"), ("created_at", "TIMESTAMPTZ"),
        ("span_pk", "BIGINT"),
    ]),
    "trail": Table(id="event_id", legacy=True, columns=[
        ("event_id", "BIGINT"), ("at_time", "TIMESTAMPTZ"), ("actor", "VARCHAR"), ("kind", "VARCHAR"),
        ("summary", "VARCHAR"), ("detail", "JSON"),
    ]),
    # Key/value facts about the incident (the demo's truth, …); the latest row for a key wins.
    "meta": Table(id=None, legacy=True, columns=[("key", "VARCHAR"), ("value", "VARCHAR")]),
}
