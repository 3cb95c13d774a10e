"""The action audit trail: a row per phase in the incident database's `actions` table, and the same
rows in an append-only JSON Lines file beside the database (`<db>.actions.jsonl`), fsynced, so the
record survives even a database that is lost or rebuilt.

Rows are immutable: an action is a `started` row written before anything is changed, then one
final row (verified, unverified, unchanged, aborted, failed); the latest row of an action_id wins.
Action ids are numbered 1, 2, 3 … in the order actions start (an undo is an action); incidents
written before that name an action by the row id of its `started` row.

Everything stored passes through secrets.scrub() (and the store redacts credentials again).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oncall.actions.secrets import scrub

if TYPE_CHECKING:
    from oncall.store.contracts import Store

TABLE = "actions"  # declared in oncall/store/trail_tables.py
ID_COLUMN = "action_row"


def jsonl_path(db: Store) -> Path:
    return Path(str(db.path) + ".actions.jsonl")


def append_row(db: Store, row: dict[str, Any]) -> int:
    """Append one audit row to the database (db.append: durable, visible to every other process) and
    to the JSONL file; returns the row's action id. A `started` row (no action_id yet) starts a new
    action: it takes the next action id, 1, 2, 3 … with no gaps (its final row and an undo's rows
    take none), chosen under the store's write lock so two processes never take the same one."""
    row = scrub(row)
    if row.get("action_id"):
        row_id = int(db.append(TABLE, row))
    else:
        def numbered(_ids: list[int]) -> dict[str, Any]:
            row["action_id"] = next_action_id(db)
            return row

        row_id = int(db.append_many([(TABLE, numbered)])[0])
    line = json.dumps({ID_COLUMN: row_id, **row}, default=str, ensure_ascii=False)
    fd = os.open(jsonl_path(db), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return int(row["action_id"])


def next_action_id(db: Store) -> int:
    """One more than the highest action id (an action written before ids were numbered this way is
    named by its started row's id, which _ROWS reads)."""
    got = db.cursor().execute(f"SELECT max(coalesce(action_id, {ID_COLUMN})) FROM {TABLE}").fetchone()[0]
    return int(got or 0) + 1


# Rows of the table with a started row's missing action_id filled in with its own row id.
_ROWS = f"(SELECT * REPLACE (coalesce(action_id, {ID_COLUMN}) AS action_id) FROM {TABLE})"


def _decode(names: list[str], values: tuple[Any, ...]) -> dict[str, Any]:
    d = dict(zip(names, values, strict=True))
    for k in ("plan", "gate", "before", "after", "verification", "applied"):
        if isinstance(d.get(k), str):
            d[k] = json.loads(d[k])
    if d.get("at_time") is not None and hasattr(d["at_time"], "isoformat"):
        d["at_time"] = d["at_time"].isoformat()
    return d


def list_actions(db: Store) -> list[dict[str, Any]]:
    """Every action, as its latest row (plus `started_at` from its first), oldest first."""
    db.refresh()
    rel = db.cursor().execute(
        f"SELECT a.*, s.at_time AS started_at FROM {_ROWS} a "
        f"JOIN (SELECT action_id, min(at_time) AS at_time FROM {_ROWS} GROUP BY action_id) s USING (action_id) "
        f"QUALIFY row_number() OVER (PARTITION BY a.action_id ORDER BY a.{ID_COLUMN} DESC) = 1 "
        f"ORDER BY a.action_id")
    names = [d[0] for d in rel.description]
    out = []
    for values in rel.fetchall():
        d = _decode(names, values)
        if d.get("started_at") is not None and hasattr(d["started_at"], "isoformat"):
            d["started_at"] = d["started_at"].isoformat()
        out.append(d)
    return out


def action_rows(db: Store, action_id: int) -> list[dict[str, Any]]:
    """Every row of one action, in the order written (empty if there is no such action)."""
    db.refresh()
    rel = db.cursor().execute(f"SELECT * FROM {_ROWS} WHERE action_id = ? ORDER BY {ID_COLUMN}", [action_id])
    names = [d[0] for d in rel.description]
    return [_decode(names, v) for v in rel.fetchall()]


def undone_by(db: Store, action_id: int) -> list[dict[str, Any]]:
    """The latest rows of the actions that undid `action_id`."""
    return [a for a in list_actions(db) if a.get("undo_of") == action_id]
