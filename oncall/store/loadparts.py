"""The writing side of load parts (oncall/store/parts.py): create, attach, salvage, discard.

Used by the loader while it holds the load lock (store.db.load_lock): nobody else writes parts
then, and readers never attach a part that is not registered, so these may change them freely.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from oncall.store.db import IncidentDB, _sql_str, utc_cursor
from oncall.store.parts import PART_TABLES_DDL, part_files, part_number
from oncall.store.schema import spans_ddl


def attach_new_part(db: IncidentDB, path: Path, alias: str) -> duckdb.DuckDBPyConnection:
    """Create the part file, attach it read-write in the incident's DuckDB and return a cursor on it."""
    remove_part_file(path)
    cur = utc_cursor(db.con)
    cur.execute(f"ATTACH '{_sql_str(path)}' AS {alias}")
    cur.execute(f"USE {alias}")
    cur.execute("BEGIN TRANSACTION")
    cur.execute(spans_ddl())
    for ddl in PART_TABLES_DDL:
        cur.execute(ddl)
    cur.execute("INSERT INTO meta VALUES ('kind', 'load-part')")
    cur.execute("COMMIT")
    return cur


def detach_part(db: IncidentDB, cur: duckdb.DuckDBPyConnection, alias: str) -> None:
    """Checkpoint (DuckDB fsyncs the file) and detach, so readers may attach it read-only."""
    cur.execute(f"CHECKPOINT {alias}")
    cur.execute("USE memory")
    cur.execute(f"DETACH {alias}")
    cur.close()


def discard_part(db: IncidentDB, cur: duckdb.DuckDBPyConnection | None, alias: str, path: Path) -> None:
    """Detach a part without checkpointing it and delete its files: what a load does when the disk
    is full (the failed checkpoint has invalidated the part; its space is needed back)."""
    for sql in ("ROLLBACK", "USE memory", f"DETACH {alias}"):
        try:
            (cur or db.con).execute(sql)
        except duckdb.Error:
            pass  # not in a transaction, already detached, or the part was invalidated
    if cur is not None:
        cur.close()
    remove_part_file(path)


def remove_part_file(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".wal").unlink(missing_ok=True)


def discard_import(con: duckdb.DuckDBPyConnection, import_id: int) -> None:
    """Remove every row an unfinished import wrote (in the catalog `con` uses): spans, ids, problems."""
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("DELETE FROM span_ids WHERE span_pk IN (SELECT span_pk FROM spans WHERE import_id = ?)",
                    [import_id])
        con.execute("DELETE FROM superseded WHERE span_pk IN (SELECT span_pk FROM spans WHERE import_id = ?)",
                    [import_id])
        con.execute("DELETE FROM problems WHERE import_id = ?", [import_id])
        con.execute("DELETE FROM spans WHERE import_id = ?", [import_id])
        con.execute("DELETE FROM imports WHERE import_id = ?", [import_id])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def salvage_unregistered_parts(db: IncidentDB) -> list[int]:
    """Parts a killed load left behind: keep the files it finished (register them), drop the rest.

    Returns the part numbers registered. A part that cannot even be opened (killed while it was
    being created) is deleted.
    """
    registered = db.registered_parts()
    saved = []
    for path in part_files(db.path):
        number = part_number(path)
        if number is None or number in registered:
            continue
        alias = f"salvage{number}"
        cur = utc_cursor(db.con)
        try:
            cur.execute(f"ATTACH '{_sql_str(path)}' AS {alias}")
        except duckdb.Error:
            cur.close()
            remove_part_file(path)
            continue
        try:
            cur.execute(f"USE {alias}")
            for (iid,) in cur.execute("SELECT import_id FROM imports WHERE status <> 'loaded'").fetchall():
                discard_import(cur, int(iid))
            # A load killed between its two transactions also left spans of no import.
            cur.execute("DELETE FROM spans WHERE import_id NOT IN (SELECT import_id FROM imports)")
            loaded = [int(r[0]) for r in cur.execute("SELECT import_id FROM imports ORDER BY 1").fetchall()]
        except duckdb.Error:
            loaded = []
        detach_part(db, cur, alias)
        if loaded:
            db.register_part(number, loaded)
            saved.append(number)
        else:
            remove_part_file(path)
    return saved
