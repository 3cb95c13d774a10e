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
    # Replay (oncall/replay/store.py): a row per run, a row per state change of a run (latest wins),
    # a row per finished replay of one request (latest per span_pk/repeat_index wins).
    "replay_runs": Table(id="run_id", columns=[
        ("run_id", "BIGINT"), ("created_at", "TIMESTAMPTZ"), ("author", "VARCHAR"), ("target", "VARCHAR"),
        ("model", "VARCHAR"), ("base_url", "VARCHAR"), ("target_spec", "JSON"), ("filter", "VARCHAR"),
        ("baseline", "VARCHAR"), ("prompt", "JSON"), ("params", "JSON"), ("repeat", "INTEGER"),
        ("sample_n", "INTEGER"), ("seed", "BIGINT"), ("concurrency", "INTEGER"), ("judge", "VARCHAR"),
        ("max_requests", "BIGINT"), ("max_cost", "DOUBLE"), ("estimate", "JSON"), ("items", "JSON"),
    ]),
    "replay_run_states": Table(id="state_id", columns=[
        ("state_id", "BIGINT"), ("run_id", "BIGINT"), ("created_at", "TIMESTAMPTZ"), ("status", "VARCHAR"),
        ("reason", "VARCHAR"), ("counts", "JSON"),
        # the process that wrote the state, so a 'running' run whose process died reads 'interrupted'
        ("pid", "BIGINT"), ("pid_started", "VARCHAR"), ("host", "VARCHAR"),
    ]),
    "replay_results": Table(id="result_id", columns=[
        ("result_id", "BIGINT"), ("run_id", "BIGINT"), ("span_pk", "BIGINT"), ("repeat_index", "INTEGER"),
        ("created_at", "TIMESTAMPTZ"), ("status", "VARCHAR"), ("error_kind", "VARCHAR"), ("error", "VARCHAR"),
        ("output_text", "VARCHAR"), ("output_messages", "JSON"), ("finish_reason", "VARCHAR"),
        ("served_model", "VARCHAR"), ("response_id", "VARCHAR"), ("input_tokens", "BIGINT"),
        ("output_tokens", "BIGINT"), ("latency_ms", "DOUBLE"), ("ttft_ms", "DOUBLE"), ("cost", "DOUBLE"),
        ("attempts", "INTEGER"), ("steps", "INTEGER"), ("diverged", "VARCHAR"), ("judge", "JSON"),
        ("checks", "JSON"), ("notes", "JSON"),
    ]),
    # A responder's verdict on one replay pair (the console's g/b on the compare screen; latest wins).
    "replay_labels": Table(id="replay_label_id", columns=[
        ("replay_label_id", "BIGINT"), ("run_id", "BIGINT"), ("span_pk", "BIGINT"), ("repeat_index", "INTEGER"),
        ("label", "VARCHAR"), ("author", "VARCHAR"), ("created_at", "TIMESTAMPTZ"),
    ]),
    # Timeline entries starred for the report (oncall/postmortem/timeline.py); latest row per key wins.
    "stars": Table(id="star_id", columns=[
        ("star_id", "BIGINT"), ("entry_key", "VARCHAR"), ("starred", "BOOLEAN"), ("author", "VARCHAR"),
        ("created_at", "TIMESTAMPTZ"),
    ]),
    # `oncall watch` (oncall/live/watch.py): one row per alert sent to one target (trigger or resolve);
    # the latest row per (dedup_key, target) is that alert's state there, so a restarted watch never
    # sends one twice. `detail` keeps what resolving needs (cohort, value, began_at, effects).
    "notifications": Table(id="notification_id", columns=[
        ("notification_id", "BIGINT"), ("at_time", "TIMESTAMPTZ"), ("dedup_key", "VARCHAR"), ("action", "VARCHAR"),
        ("target", "VARCHAR"), ("target_kind", "VARCHAR"), ("kind", "VARCHAR"), ("title", "VARCHAR"),
        ("detail", "JSON"),
    ]),
    # Key/value facts about the incident (the demo's truth, …); the latest row for a key wins.
    "meta": Table(id=None, legacy=True, columns=[("key", "VARCHAR"), ("value", "VARCHAR")]),
    # Actions (oncall/actions/audit.py): a `started` row before anything is changed (action_id NULL: the
    # action is named by that row's id), then one final row with the same action_id; latest wins.
    "actions": Table(id="action_row", columns=[
        ("action_row", "BIGINT"), ("action_id", "BIGINT"), ("status", "VARCHAR"), ("at_time", "TIMESTAMPTZ"),
        ("who", "VARCHAR"), ("why", "VARCHAR"), ("target", "VARCHAR"), ("adapter", "VARCHAR"), ("op", "VARCHAR"),
        ("runbook", "VARCHAR"), ("step", "VARCHAR"), ("undo_of", "BIGINT"), ("plan", "JSON"), ("gate", "JSON"),
        ("before", "JSON"), ("after", "JSON"), ("result", "VARCHAR"), ("error", "VARCHAR"),
        ("verification", "JSON"), ("applied", "JSON"),
    ]),
}
