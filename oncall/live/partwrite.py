"""Writing received spans as one load part: the load path's part, writer, dedupe and registration.

A flush is one import in one new part, written exactly as `oncall load` writes a file
(ingest.loader): rows go through the same FileWriter (redaction, Arrow batches), a first transaction
commits them marked 'loading', a second dedupes against everything loaded before (an exporter's
retry of spans already written adds nothing), resolves inherited cohort keys down each trace,
estimates cost and indexes ids. The part is checkpointed (fsynced) and registered in the journal
before this returns: only then may the receiver acknowledge the requests whose spans it holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from oncall.ingest.loader import PartWriter
from oncall.ingest.writer import FileWriter
from oncall.live.status import FORMAT
from oncall.store.db import IncidentDB, load_lock, now_utc
from oncall.store.loadparts import discard_import


@dataclass
class PartResult:
    part: int
    import_id: int
    spans: int  # rows added (after dedupe)
    duplicates: int


def write_part(db: IncidentDB, rows: list[dict[str, Any]] | pa.Table, *, source: str, digest: str,
               problems: list[tuple[str, str]] | None = None, size_bytes: int = 0) -> PartResult:
    """Write rows (canonical rows, or already staged as the writer's Arrow batch: ingest.writer.stage_rows)
    as a new registered part (durable when this returns). Loads take turns with this."""
    with load_lock(db.path):
        db.refresh()
        part = PartWriter(db)
        registered = False
        try:
            import_id = part.new_import_id()
            result = _write_import(part, import_id, rows, source=source, digest=digest,
                                   problems=problems or [], size_bytes=size_bytes)
            part.close(register=True)
            registered = True
        finally:
            if not registered:
                part.close(register=False)
    return PartResult(part.number, result[0], result[1], result[2])


def _write_import(part: PartWriter, import_id: int, rows: list[dict[str, Any]] | pa.Table, *, source: str, digest: str,
                  problems: list[tuple[str, str]], size_bytes: int) -> tuple[int, int, int]:
    con = part.cur
    started = now_utc()
    con.execute("BEGIN TRANSACTION")
    writer = FileWriter(con, import_id, Path(source), FORMAT)
    try:
        if isinstance(rows, pa.Table):
            writer.add_arrow(rows)
        else:
            for row in rows:
                writer.add(row)
        writer.write_all()
        con.execute(
            "INSERT INTO imports VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [import_id, source, digest, size_bytes, FORMAT, started, None, writer.added, 0, len(problems),
             "loading", json.dumps({"live": True})])
        con.execute("COMMIT")
    except BaseException:
        writer.abort()
        con.execute("ROLLBACK")
        raise
    try:
        con.execute("BEGIN TRANSACTION")
        writer.finish()
        # Spans rejected by the mapping (partial_success), then what the writer itself removed (times
        # out of range …): nothing is dropped without a problem row.
        found = [(None, kind, msg) for kind, msg in problems] + list(writer.problems)
        con.execute(
            "UPDATE imports SET finished_at = ?, spans = ?, duplicates = ?, problems = ?, status = 'loaded' "
            "WHERE import_id = ?", [now_utc(), writer.added, writer.duplicates, len(found), import_id])
        if found:
            con.executemany("INSERT INTO problems VALUES (?, ?, ?, ?, ?)",
                            [[import_id, source, line, kind, msg] for line, kind, msg in found[:10000]])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        discard_import(con, import_id)
        raise
    return import_id, writer.added, writer.duplicates
