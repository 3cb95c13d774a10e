"""The action audit trail: a row per phase in the incident database's `actions` table, and the same
rows in an append-only JSON Lines file beside the database (`<db>.actions.jsonl`), fsynced, so the
record survives even a database that is lost or rebuilt.

Rows are immutable: an action is a `started` row written before anything is changed, then one
final row (verified, unverified, unchanged, aborted, failed); the latest row of an action_id wins.
The action id is the row id of its `started` row.

Everything stored passes through secrets.scrub().
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from oncall.actions.secrets import scrub

TABLE = "actions"
ID_COLUMN = "action_row"

# The table as oncall/store/trail_tables.py declares it (name, DuckDB type).
COLUMNS: list[tuple[str, str]] = [
    ("action_row", "BIGINT"),
    ("action_id", "BIGINT"),
    ("status", "VARCHAR"),
    ("at_time", "TIMESTAMPTZ"),
    ("who", "VARCHAR"),
    ("why", "VARCHAR"),
    ("target", "VARCHAR"),
    ("adapter", "VARCHAR"),
    ("op", "VARCHAR"),
    ("runbook", "VARCHAR"),
    ("step", "VARCHAR"),
    ("undo_of", "BIGINT"),
    ("plan", "JSON"),
    ("gate", "JSON"),
    ("before", "JSON"),
    ("after", "JSON"),
    ("result", "VARCHAR"),
    ("error", "VARCHAR"),
    ("verification", "JSON"),
    ("applied", "JSON"),
]
_JSON_COLUMNS = {name for name, typ in COLUMNS if typ == "JSON"}


def jsonl_path(db: Any) -> Path:
    return Path(str(db.path) + ".actions.jsonl")


def append_row(db: Any, row: dict[str, Any]) -> int:
    """Append one audit row to the database and the JSONL file; returns its action_row id."""
    row = scrub(row)
    stored = {k: (json.dumps(v, default=str) if k in _JSON_COLUMNS and v is not None else v)
              for k, v in row.items()}
    row_id = _db_append(db, stored)
    # A `started` row has no action_id yet: the action is named by that row's own id.
    line = json.dumps({ID_COLUMN: row_id, **row, "action_id": row.get("action_id") or row_id},
                      default=str, ensure_ascii=False)
    path = jsonl_path(db)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return row_id


def _db_append(db: Any, row: dict[str, Any]) -> int:
    if hasattr(db, "append"):
        return int(db.append(TABLE, row))
    return _temporary_insert(db, row)


# ---- TEMPORARY: until the lead's `store:` commit (db.append, trail_tables.py) is on main. -------
# Nothing outside oncall/store may issue DDL or INSERT; this fallback does both, and goes away in
# the merge that switches to db.append (the table then comes from trail_tables.py).
def _temporary_insert(db: Any, row: dict[str, Any]) -> int:
    cur = db.cursor()
    cols = ", ".join(f'"{n}" {t}' for n, t in COLUMNS)
    cur.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} ({cols})")
    row_id = int(cur.execute(f"SELECT coalesce(max({ID_COLUMN}), 0) + 1 FROM {TABLE}").fetchone()[0])
    values = {**row, ID_COLUMN: row_id}
    names = [n for n, _ in COLUMNS]
    cur.execute(f"INSERT INTO {TABLE} ({', '.join(chr(34) + n + chr(34) for n in names)}) "
                f"VALUES ({', '.join('?' for _ in names)})", [values.get(n) for n in names])
    return row_id
# ---- end TEMPORARY --------------------------------------------------------------------------------


# Rows of the table with a started row's missing action_id filled in with its own row id.
_ROWS = f"(SELECT * REPLACE (coalesce(action_id, {ID_COLUMN}) AS action_id) FROM {TABLE})"


def _has_table(cur: Any) -> bool:
    return bool(cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ? "
                            "AND table_schema = 'main'", [TABLE]).fetchone()[0])


def _decode(names: list[str], values: tuple[Any, ...]) -> dict[str, Any]:
    d = dict(zip(names, values, strict=True))
    for k in _JSON_COLUMNS:
        if isinstance(d.get(k), str):
            d[k] = json.loads(d[k])
    if d.get("at_time") is not None and hasattr(d["at_time"], "isoformat"):
        d["at_time"] = d["at_time"].isoformat()
    return d


def list_actions(db: Any) -> list[dict[str, Any]]:
    """Every action, as its latest row (plus `started_at` from its first), oldest first."""
    cur = db.cursor()
    if not _has_table(cur):
        return []
    rel = cur.execute(
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


def action_rows(db: Any, action_id: int) -> list[dict[str, Any]]:
    """Every row of one action, in the order written (empty if there is no such action)."""
    cur = db.cursor()
    if not _has_table(cur):
        return []
    rel = cur.execute(f"SELECT * FROM {_ROWS} WHERE action_id = ? ORDER BY {ID_COLUMN}", [action_id])
    names = [d[0] for d in rel.description]
    return [_decode(names, v) for v in rel.fetchall()]


def undone_by(db: Any, action_id: int) -> list[dict[str, Any]]:
    """The latest rows of the actions that undid `action_id`."""
    return [a for a in list_actions(db) if a.get("undo_of") == action_id]
