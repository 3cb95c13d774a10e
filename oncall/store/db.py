"""Opening the incident database: path resolution, locking errors, migrations, cursors per thread."""

from __future__ import annotations

import getpass
import json
import os
import re
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from oncall.store.migrations import MIGRATIONS, SCHEMA_VERSION

DEFAULT_DB = "incident.duckdb"


class StoreError(Exception):
    """The incident database cannot be opened or used; the message says what to do."""


def default_db_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """--db PATH wins, then $ONCALL_DB, then ./incident.duckdb."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("ONCALL_DB")
    if env:
        return Path(env)
    return Path(DEFAULT_DB)


def current_user() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


def now_utc() -> datetime:
    return datetime.now(UTC)


_LOCK_RE = re.compile(r"Conflicting lock is held in (?P<prog>.*?) \(PID (?P<pid>\d+)\)")


DEFAULT_MEMORY_LIMIT = "2GB"


def memory_limit() -> str:
    """DuckDB's memory limit: $ONCALL_MEMORY_LIMIT, else 2 GB.

    DuckDB's own default is 80 % of RAM, and its buffer pool keeps what it wrote cached up to the
    limit, so a load's peak memory grew with the file: with a quarter of RAM (6 GB here) 1M OTLP
    spans peaked at 1.8 GB and 2M at 2.9 GB; at 1 GB the 1M load peaked at 1.2 GB in the same time.
    A fixed bound makes DuckDB spill instead, and leaves a responder's laptop room for the rest.
    """
    return os.environ.get("ONCALL_MEMORY_LIMIT") or DEFAULT_MEMORY_LIMIT


_DUCKDB_MAGIC = b"DUCK"  # bytes 8..12 of every DuckDB database file


def _not_a_database(path: Path) -> str | None:
    """Why an existing `path` cannot be an incident database, or None. Checked before DuckDB sees it:
    DuckDB's own errors for these name an extension download (SQLite files) or an in-memory database."""
    if str(path) == ":memory:":
        return ":memory: is not an incident file; give --db a file path such as ./incident.duckdb"
    if path.is_dir():
        return f"{path} is a directory, not an incident database; give --db the .duckdb file"
    if not path.exists():
        return None
    try:
        with path.open("rb") as fh:
            head = fh.read(12)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    if head[8:12] != _DUCKDB_MAGIC:
        return (f"{path} is not a DuckDB database (an incident database is the .duckdb file `oncall load` "
                "or `oncall demo` wrote); check --db or $ONCALL_DB")
    return None


def _connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    why = _not_a_database(path)
    if why:
        raise StoreError(why)
    try:
        con = duckdb.connect(str(path), read_only=read_only,
                             config={"memory_limit": memory_limit()})
        # Times are stored as TIMESTAMPTZ; show and bucket them in UTC whatever the machine's zone.
        con.execute("SET TimeZone = 'UTC'")
        return con
    except duckdb.IOException as exc:
        msg = str(exc)
        m = _LOCK_RE.search(msg)
        if m:
            raise StoreError(
                f"{path} is in use by PID {m.group('pid')} ({m.group('prog')}); "
                "close that oncall session or open a copy of the file"
            ) from None
        if read_only and not path.exists():
            raise StoreError(f"{path} does not exist; load data first with `oncall load` or `oncall demo`") from None
        raise StoreError(f"cannot open {path}: {msg.splitlines()[0]}") from None
    except duckdb.Error as exc:
        raise StoreError(f"cannot open {path}: {str(exc).splitlines()[0]}") from None


class IncidentDB:
    """One incident database file. `con` belongs to the opening thread; other threads call cursor()."""

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection, read_only: bool) -> None:
        self.path = path
        self.con = con
        self.read_only = read_only
        self._local = threading.local()

    # -- connections -------------------------------------------------------------------------
    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for the calling thread (DuckDB connections are not shared across threads)."""
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self.con.cursor()
            self._local.cursor = cur
        return cur

    def close(self) -> None:
        try:
            self.con.close()
        except duckdb.Error:
            pass

    def __enter__(self) -> IncidentDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema ------------------------------------------------------------------------------
    def schema_version(self) -> int:
        return _schema_version(self.con)

    # -- the responder's trail -----------------------------------------------------------------
    def record_event(self, kind: str, summary: str, detail: dict[str, Any] | None = None,
                     actor: str | None = None) -> int:
        """Append an event to the trail (the timeline is built from it)."""
        cur = self.cursor()
        event_id = cur.execute("SELECT nextval('trail_id_seq')").fetchone()[0]
        cur.execute(
            "INSERT INTO trail VALUES (?, ?, ?, ?, ?, ?)",
            [event_id, now_utc(), actor or current_user(), kind, summary,
             json.dumps(detail) if detail is not None else None],
        )
        return int(event_id)


def _schema_version(con: duckdb.DuckDBPyConnection) -> int:
    has_meta = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta' AND table_schema = 'main'"
    ).fetchone()[0]
    if not has_meta:
        return 0
    row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def _migrate(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    version = _schema_version(con)
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {version}, newer than this oncall understands ({SCHEMA_VERSION}); "
            "upgrade oncall"
        )
    if version == SCHEMA_VERSION:
        return
    con.execute("BEGIN TRANSACTION")
    try:
        if version == 0:
            con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
            con.execute("INSERT INTO meta VALUES ('schema_version', '0')")
        for step in MIGRATIONS[version:]:
            step(con)
        con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)])
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


def discard_import(con: duckdb.DuckDBPyConnection, import_id: int) -> None:
    """Remove every row an unfinished import wrote: its spans, ids, problems and the import itself."""
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("DELETE FROM span_ids WHERE span_pk IN (SELECT span_pk FROM spans WHERE import_id = ?)",
                    [import_id])
        con.execute("DELETE FROM problems WHERE import_id = ?", [import_id])
        con.execute("DELETE FROM spans WHERE import_id = ?", [import_id])
        con.execute("DELETE FROM imports WHERE import_id = ?", [import_id])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _discard_interrupted_loads(con: duckdb.DuckDBPyConnection) -> None:
    """A load writes its rows, then finishes them in a second transaction (ingest.loader). One that
    died in between left an import marked 'loading'; take it out so the database is as it was."""
    for (import_id,) in con.execute("SELECT import_id FROM imports WHERE status = 'loading'").fetchall():
        discard_import(con, int(import_id))


def open_db(path: str | os.PathLike[str] | None = None, *, read_only: bool = False,
            create: bool = True) -> IncidentDB:
    """Open (and create/upgrade unless read-only) the incident database."""
    p = default_db_path(path)
    if not p.exists():
        if read_only or not create:
            raise StoreError(f"{p} does not exist; load data first with `oncall load` or `oncall demo`")
        if p.parent and not p.parent.exists():
            raise StoreError(f"cannot create {p}: directory {p.parent} does not exist")
    con = _connect(p, read_only)
    if read_only:
        version = _schema_version(con)
        if version != SCHEMA_VERSION:
            con.close()
            raise StoreError(
                f"{p} has schema version {version}, this oncall needs {SCHEMA_VERSION}; "
                "open it once without --read-only to upgrade it"
            )
    else:
        _migrate(con, p)
        _discard_interrupted_loads(con)
    return IncidentDB(p, con, read_only)
