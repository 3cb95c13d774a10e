"""Load parts: each `oncall load` writes its spans into a DuckDB file of its own.

Readers hold the incident's files open read-only, and DuckDB lets nobody write a file that another
process reads; so a load never writes a file anyone reads. It creates `<db>.d/parts/part-N.duckdb`,
writes and finishes its files there (each file in its own transactions, as before), closes it,
and only then registers it in the journal. Until registered, nobody attaches it: an unfinished load
is invisible. A load that died leaves an unregistered part; the next load salvages the files it had
finished (their imports say 'loaded') and deletes the rest.

A part holds the same tables as the base file for what it loaded (spans, span_ids, imports,
problems) plus `superseded`: spans of earlier parts that this load rewrote (a root span arriving
after its children gives them inherited keys) — readers show the newest copy (store.db).
"""

from __future__ import annotations

import re
from pathlib import Path

PART_RE = re.compile(r"^part-(\d+)\.duckdb$")
# A merged part (oncall/store/compact.py): never salvaged as a load's, registered by its journal entry.
MERGED_RE = re.compile(r"^merged-(\d+)\.duckdb$")
# span_pk = import_id << PK_SHIFT | row: unique across parts without a shared sequence.
PK_SHIFT = 40

PART_TABLES_DDL = [
    """CREATE TABLE span_ids (id VARCHAR NOT NULL, id_kind VARCHAR NOT NULL, span_pk BIGINT NOT NULL)""",
    "CREATE INDEX span_ids_id ON span_ids(id)",
    """CREATE TABLE imports (
        import_id INTEGER PRIMARY KEY, path VARCHAR NOT NULL, sha256 VARCHAR NOT NULL, size_bytes BIGINT,
        format VARCHAR, started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ, spans BIGINT, duplicates BIGINT,
        problems BIGINT, status VARCHAR, options JSON)""",
    """CREATE TABLE problems (import_id INTEGER, file VARCHAR, line BIGINT, kind VARCHAR, message VARCHAR)""",
    "CREATE TABLE superseded (span_pk BIGINT NOT NULL, by_import INTEGER NOT NULL)",
    "CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
]


def sidecar_dir(db_path: Path) -> Path:
    """`incident.duckdb` keeps its journal and load parts in `incident.duckdb.d/`."""
    return db_path.with_name(db_path.name + ".d")


def parts_dir(db_path: Path) -> Path:
    return sidecar_dir(db_path) / "parts"


def part_number(path: Path) -> int | None:
    m = PART_RE.match(path.name)
    return int(m.group(1)) if m else None


def part_files(db_path: Path) -> list[Path]:
    d = parts_dir(db_path)
    if not d.is_dir():
        return []
    return sorted((p for p in d.iterdir() if part_number(p) is not None), key=lambda p: part_number(p) or 0)


def merged_files(db_path: Path) -> list[Path]:
    """Merged parts on disk, registered or not (an unregistered one is a merge that died)."""
    d = parts_dir(db_path)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if MERGED_RE.match(p.name))


def merged_number(path: Path) -> int | None:
    m = MERGED_RE.match(path.name)
    return int(m.group(1)) if m else None


def numbers_on_disk(db_path: Path) -> set[int]:
    """Part numbers some file already holds: a load's part or a merged one (they share the numbering)."""
    out = {part_number(p) for p in part_files(db_path)} | {merged_number(p) for p in merged_files(db_path)}
    return {n for n in out if n is not None}
