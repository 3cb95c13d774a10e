"""Opening the incident: one base DuckDB file, load parts and a journal, shared by many processes.

DuckDB allows one read-write process or many read-only ones per file. A responder keeps the console
open while, beside it, a script labels, the next hour's export loads, a replay or a runbook runs,
and a colleague opens a second console. So no process ever holds a file read-write that another
reads:

- `incident.duckdb`, the base file, is only read (written once when created, or by a migration of
  an older file when nobody else has it open). Incidents built by oncall before the journal hold
  their spans, labels, notes and trail here; those are read beside the newer data.
- `incident.duckdb.d/parts/part-N.duckdb`: each load writes a file of its own and registers it when
  it is finished (oncall/store/parts.py). Loads take turns (a lock file); readers never wait.
- `incident.duckdb.d/journal.jsonl`: the responder's records (labels, notes, trail, replay results,
  actions …) and the registration of parts, appended under a lock and fsynced
  (oncall/store/journal.py).
- Compaction (oncall/store/compact.py) merges many small parts into a new file, registers it as
  replacing them, and only then deletes theirs; readers that attached them keep reading their open
  files until their next refresh moves them to the merged part.

Every process opens an in-memory DuckDB, attaches the base and the registered parts read-only, and
folds the journal into in-memory tables; views under the familiar names (`spans`, `span_ids`,
`imports`, `problems`, `labels`, `notes`, `trail`, `meta`, and every table of trail_tables.py) put
them together, so queries read as if it were one database. `refresh()` folds in what others wrote
since (the console calls it every second); a command sees everything written before it started.

Measured at 1M spans (bench/RESULTS.md): views over one part query as fast as its tables. Over
many parts every statement binds and optimises every part's branch (~0.5 ms a part), so fewer
statements and fewer parts (compaction) are what keep queries fast; and an ungrouped aggregate
holding a floating-point sum scans the parts one after another on one core (DuckDB keeps such a
sum's order fixed), so aggregate over the views grouped (registry.measure groups by a constant).
"""

from __future__ import annotations

import fcntl
import getpass
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import orjson

from oncall.errors import MachineError, is_machine_error
from oncall.store.journal import Journal, JournalError
from oncall.store.migrations import MIGRATIONS, SCHEMA_VERSION
from oncall.store.parts import parts_dir, sidecar_dir
from oncall.store.schema import SPAN_COLUMNS
from oncall.store.trail_tables import TABLES, Table

DEFAULT_DB = "incident.duckdb"
JOURNAL_NAME = "journal.jsonl"


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


def _is_duckdb_file(path: Path) -> bool:
    """DuckDB files carry the magic bytes 'DUCK' at offset 8."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError:
        return True  # let DuckDB report what is wrong
    return head[8:12] == b"DUCK"  # an empty file is not one either


def _open_error(path: Path, exc: duckdb.Error) -> StoreError:
    msg = str(exc)
    m = _LOCK_RE.search(msg)
    if m:
        return StoreError(
            f"{path} is held read-write by PID {m.group('pid')} ({m.group('prog')}), which is not oncall "
            "or is an older oncall; close it (oncall itself never holds an incident file read-write "
            "while others read it)")
    if (path.exists() and not _is_duckdb_file(path)) or "not a valid DuckDB database file" in msg:
        return StoreError(f"{path} is not a DuckDB database (an incident database is made by "
                          "`oncall load` or `oncall demo`); check --db")
    return StoreError(f"cannot open {path}: {msg.splitlines()[0]}")


def connect_file(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    """A connection to one DuckDB file, in UTC, with oncall's memory limit."""
    if path.exists() and not _is_duckdb_file(path):
        raise StoreError(f"{path} is not a DuckDB database (an incident database is made by "
                         "`oncall load` or `oncall demo`); check --db")
    try:
        con = duckdb.connect(str(path), read_only=read_only, config={"memory_limit": memory_limit()})
    except duckdb.Error as exc:
        raise _open_error(path, exc) from None
    # Times are stored as TIMESTAMPTZ; show and bucket them in UTC whatever the machine's zone.
    con.execute("SET TimeZone = 'UTC'")
    return con


def utc_cursor(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A new cursor in UTC: DuckDB cursors start in the machine's zone, not their parent's."""
    cur = con.cursor()
    cur.execute("SET TimeZone = 'UTC'")
    return cur


# -- base file: creation and migrations ------------------------------------------------------------

def _schema_version(con: duckdb.DuckDBPyConnection, catalog: str | None = None) -> int:
    where = f"AND table_catalog = '{catalog}'" if catalog else ""
    has_meta = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta' "
        f"AND table_schema = 'main' {where}").fetchone()[0]
    if not has_meta:
        return 0
    prefix = f"{catalog}." if catalog else ""
    row = con.execute(f"SELECT value FROM {prefix}meta WHERE key = 'schema_version'").fetchone()
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


def _base_is_current(path: Path) -> bool:
    if not path.exists():
        return False
    probe = connect_file(path, read_only=True)
    try:
        return _schema_version(probe) == SCHEMA_VERSION
    finally:
        probe.close()


def _create_or_upgrade_base(path: Path) -> None:
    """Create a new base file, or migrate an older one (needs nobody else to have it open).

    A current base file needs neither (it is never written again), so opening it takes no lock and
    writes nothing: an incident on a read-only disk opens, and its first write says why it cannot."""
    if _base_is_current(path):
        return
    with _exclusive(sidecar_dir(path) / "create.lock"):
        if path.exists():
            probe = connect_file(path, read_only=True)
            try:
                version = _schema_version(probe)
            finally:
                probe.close()
            if version == SCHEMA_VERSION:
                return
            if version > SCHEMA_VERSION:
                raise StoreError(f"{path} has schema version {version}, newer than this oncall "
                                 f"understands ({SCHEMA_VERSION}); upgrade oncall")
        try:
            con = connect_file(path, read_only=False)
        except StoreError as exc:
            if path.exists():
                raise StoreError(f"{path} was written by an older oncall and must be upgraded once, "
                                 "which needs every other oncall session on it closed") from exc
            raise
        try:
            _migrate(con, path)
            con.execute("CHECKPOINT")
        finally:
            con.close()


@contextmanager
def _exclusive(lock_path: Path, waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """An exclusive flock on a lock file; `waiting` is called once if it has to wait."""
    with exclusive_lock(lock_path, waiting=waiting):
        yield


@contextmanager
def exclusive_lock(lock_path: Path, *, waiting: Callable[[], None] | None = None,
                   block: bool = True) -> Iterator[bool]:
    """An exclusive flock on a lock file, held for the block; yields whether it is held.

    If another process holds it: with block, call `waiting` once and wait; without, yield False.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not block:
                yield False
                return
            if waiting:
                waiting()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield True
    finally:
        os.close(fd)


# -- the shared view ---------------------------------------------------------------------------------

# Column lists of the tables that base and parts both hold (the views select them by name, so a
# part written by an older oncall, lacking a newer column, reads that column as NULL).
_SHARED_TABLES: dict[str, list[tuple[str, str]]] = {
    "spans": [(name, dtype) for name, dtype, _, _ in SPAN_COLUMNS],
    "span_ids": [("id", "VARCHAR"), ("id_kind", "VARCHAR"), ("span_pk", "BIGINT")],
    "imports": [("import_id", "INTEGER"), ("path", "VARCHAR"), ("sha256", "VARCHAR"), ("size_bytes", "BIGINT"),
                ("format", "VARCHAR"), ("started_at", "TIMESTAMPTZ"), ("finished_at", "TIMESTAMPTZ"),
                ("spans", "BIGINT"), ("duplicates", "BIGINT"), ("problems", "BIGINT"), ("status", "VARCHAR"),
                ("options", "JSON")],
    "problems": [("import_id", "INTEGER"), ("file", "VARCHAR"), ("line", "BIGINT"), ("kind", "VARCHAR"),
                 ("message", "VARCHAR")],
}

# The type a journal value is bound as (JSON as its text, which the INSERT casts as a VARCHAR would be).
_PARAM_TYPES = {"BIGINT": "BIGINT", "INTEGER": "INTEGER", "DOUBLE": "DOUBLE", "BOOLEAN": "BOOLEAN",
                "VARCHAR": "VARCHAR", "JSON": "VARCHAR", "TIMESTAMPTZ": "TIMESTAMPTZ"}


def _memory_table(name: str) -> str:
    """Journal rows of a table that older base files also hold live beside them in `_j_<name>`."""
    return f"_j_{name}" if TABLES[name].legacy else name


def _to_row_value(value: Any, dtype: str) -> Any:
    if value is None:
        return None
    if dtype == "TIMESTAMPTZ":
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        dt = datetime.fromisoformat(str(value))
        return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    if dtype == "JSON":
        return value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    if dtype == "VARCHAR":
        return value if isinstance(value, str) else str(value)
    if dtype in ("BIGINT", "INTEGER"):
        return int(value)
    if dtype == "DOUBLE":
        return float(value)
    if dtype == "BOOLEAN":
        return bool(value)
    return value


class IncidentDB:
    """One incident. `con` belongs to the opening thread; other threads call cursor()."""

    def __init__(self, path: Path, read_only: bool) -> None:
        self.path = path
        self.dir = sidecar_dir(path)
        self.read_only = read_only
        self.warnings: list[str] = []
        self._local = threading.local()
        self._lock = threading.RLock()
        self._journal = Journal(self.dir / JOURNAL_NAME)
        self._parts: dict[int, str] = {}  # live part number -> attached alias
        # A part's rank orders it for superseded spans: a load's is its number, a merged part's the
        # highest rank it replaced (so a load registered while it was being merged still wins).
        self._rank: dict[int, int] = {}
        self._registered: set[int] = set()  # every part number the journal has named, replaced ones too
        self._replaced: set[int] = set()  # parts a merged part replaced: never attached again
        self._detach: list[str] = []  # aliases of replaced parts, detached once the views no longer read them
        self._missing: dict[int, Path] = {}  # registered, file not found (yet): maybe replaced meanwhile
        self._part_cols: dict[str, dict[str, set[str]]] = {}  # alias -> its tables' columns (parts never change)
        self._next_id: dict[str, int] = {}
        self._views_dirty = True
        self.con = duckdb.connect(":memory:", config={"memory_limit": memory_limit()})
        self.con.execute("SET TimeZone = 'UTC'")
        try:
            self.con.execute(f"ATTACH '{_sql_str(path)}' AS base (READ_ONLY)")
        except duckdb.Error as exc:
            self.con.close()
            raise _open_error(path, exc) from None
        self._base_columns = self._columns("base")
        # The base file never changes while open; an empty base table (every incident built since
        # load parts) is left out of the views, so one part reads exactly like a plain table.
        self._base_rows = {t: bool(self.con.execute(f"SELECT count(*) FROM (SELECT 1 FROM base.{t} LIMIT 1)")
                                   .fetchone()[0]) for t in self._base_columns}
        self._create_memory_tables()
        self._start_ids()
        self.refresh()

    # -- connections -------------------------------------------------------------------------
    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for the calling thread (DuckDB connections are not shared across threads), in UTC."""
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = utc_cursor(self.con)
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
        return _schema_version(self.con, "base")

    def _columns(self, catalog: str) -> dict[str, set[str]]:
        rows = self.con.execute(
            "SELECT table_name, column_name FROM duckdb_columns() WHERE database_name = ? AND schema_name = 'main'",
            [catalog]).fetchall()
        out: dict[str, set[str]] = {}
        for table, col in rows:
            out.setdefault(table, set()).add(col)
        return out

    def _create_memory_tables(self) -> None:
        for name, spec in TABLES.items():
            cols = ", ".join(f"{c} {t}" for c, t in spec.columns)
            self.con.execute(f"CREATE TABLE {_memory_table(name)} ({cols})")
        # by_part is the superseding part's rank; src the number of the part whose table listed it.
        self.con.execute("CREATE TABLE _superseded (span_pk BIGINT, by_part INTEGER, src INTEGER)")

    def _start_ids(self) -> None:
        for name, spec in TABLES.items():
            self._next_id[name] = 1
            if spec.id and spec.legacy and spec.id in self._base_columns.get(name, set()):
                top = self.con.execute(f"SELECT max({spec.id}) FROM base.{name}").fetchone()[0]
                self._next_id[name] = int(top or 0) + 1

    # -- folding in what others wrote ------------------------------------------------------------
    def refresh(self) -> bool:
        """Fold in journal entries written since the last call; True if anything changed."""
        with self._lock:
            try:
                entries = self._journal.read_new()
            except JournalError as exc:
                raise StoreError(str(exc)) from None
            self._fold(entries)
            if self._views_dirty:
                self._build_views()
            return bool(entries)

    def _settle_missing(self) -> None:
        """A registered part whose file is gone was (almost always) just replaced by a merge.

        The merge is registered before the old files are deleted, so the journal already says so:
        read on once. Whatever is still missing after that is lost, and the responder is told.
        """
        if not self._missing:
            return
        try:
            more = self._journal.read_new()
        except JournalError as exc:
            raise StoreError(str(exc)) from None
        if more:
            self._fold(more)
            return
        for path in sorted(self._missing.values()):
            self._warn(f"{path} is registered in the journal but missing; its spans are not shown")
        self._missing.clear()

    def _fold(self, entries: list[dict[str, Any]]) -> None:
        rows_by_table: dict[str, list[dict[str, Any]]] = {}
        # A reader opening after a merge reads the parts it replaced before the merge: skip them.
        replaced_later = {int(n) for e in entries if "compacted" in e for n in e["compacted"].get("replaces", [])}
        for entry in entries:
            if "part" in entry:
                self._attach_part(entry["part"], skip=replaced_later)
            if "compacted" in entry:
                self._attach_part(entry["compacted"], skip=replaced_later)
                self._retire(int(n) for n in entry["compacted"].get("replaces", []))
            for table, row in entry.get("rows", []):
                if table not in TABLES:
                    self._warn(f"the journal holds rows of table {table!r}, unknown to this oncall "
                               "(written by a newer version?); they are not shown")
                    continue
                rows_by_table.setdefault(table, []).append(row)
        cur = self.cursor()
        for table, rows in rows_by_table.items():
            spec = TABLES[table]
            # One list parameter per column, zipped by unnest. Not an Arrow table: pa.array imports
            # pandas, and that import was 0.5 s of the console's start (cProfile of open_db, load 5).
            cols = ", ".join(f"unnest(?::{_PARAM_TYPES.get(t, 'VARCHAR')}[])" for _, t in spec.columns)
            cur.execute(f"INSERT INTO {_memory_table(table)} SELECT {cols}",
                        [[_to_row_value(r.get(c), t) for r in rows] for c, t in spec.columns])
            if spec.id:
                top = max(int(r[spec.id]) for r in rows if r.get(spec.id) is not None)
                self._next_id[table] = max(self._next_id[table], top + 1)
        self._settle_missing()

    def _attach_part(self, part: dict[str, Any], skip: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        number = int(part["part"])
        self._registered.add(number)
        if number in self._parts or number in self._replaced or number in skip:
            return
        path = parts_dir(self.path) / Path(str(part.get("file") or f"part-{number}.duckdb")).name
        rank = int(part.get("rank", number))
        alias = f"p{number}"
        try:
            self.con.execute(f"ATTACH '{_sql_str(path)}' AS {alias} (READ_ONLY)")
        except duckdb.IOException:
            if path.exists():
                raise
            self._missing[number] = path
            return
        self.con.execute(f"INSERT INTO _superseded SELECT span_pk, {rank}, {number} FROM {alias}.superseded")
        self._parts[number] = alias
        self._rank[number] = rank
        self._views_dirty = True

    def _retire(self, numbers: Iterable[int]) -> None:
        """Parts replaced by a merged part: out of the views now, detached after the views are rebuilt.

        A query already running on one keeps reading it (DuckDB holds the attached file until it ends).
        """
        for number in numbers:
            self._registered.add(number)
            self._replaced.add(number)
            self._missing.pop(number, None)
            alias = self._parts.pop(number, None)
            self._rank.pop(number, None)
            if alias is not None:
                self.con.execute("DELETE FROM _superseded WHERE src = ?", [number])
                self._detach.append(alias)
                self._views_dirty = True

    def _warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def _build_views(self) -> None:
        cur = self.cursor()
        loading = []
        if "imports" in self._base_columns:
            loading = [r[0] for r in cur.execute(
                "SELECT import_id FROM base.imports WHERE status = 'loading'").fetchall()]
        superseded_by = {int(r[0]) for r in cur.execute("SELECT DISTINCT by_part FROM _superseded").fetchall()}
        for table, columns in _SHARED_TABLES.items():
            branches = []
            if self._base_rows.get(table):
                where = ""
                if loading and table in ("spans", "imports", "problems"):
                    where = f" WHERE import_id NOT IN ({', '.join(str(int(i)) for i in loading)})"
                elif loading and table == "span_ids":
                    where = (" WHERE span_pk NOT IN (SELECT span_pk FROM base.spans WHERE import_id IN "
                             f"({', '.join(str(int(i)) for i in loading)}))")
                if table == "spans" and superseded_by:
                    where += (" AND " if where else " WHERE ") + "span_pk NOT IN (SELECT span_pk FROM _superseded)"
                branches.append(_branch("base", table, columns, self._base_columns[table]) + where)
            for number in sorted(self._parts, key=self._rank.__getitem__):
                branches.append(self.part_select(number, table, superseded_by))
            if not branches:
                cols = ", ".join(f"NULL::{t} AS {c}" for c, t in columns)
                branches.append(f"SELECT {cols} WHERE false")
            cur.execute(f"CREATE OR REPLACE VIEW {table} AS " + " UNION ALL ".join(branches))
        for name, spec in TABLES.items():
            if not spec.legacy:
                continue
            cols = spec.columns
            mem = f"SELECT {', '.join(c for c, _ in cols)} FROM {_memory_table(name)}"
            base_have = self._base_columns.get(name)
            if name == "meta":
                # The latest journal value of a key wins over the base file's.
                latest = ("SELECT key, last(value ORDER BY rowid) AS value FROM _j_meta GROUP BY key")
                base = ("SELECT key, value FROM base.meta WHERE key NOT IN (SELECT key FROM _j_meta)"
                        if base_have else None)
                sql = latest + (f" UNION ALL {base}" if base else "")
            elif base_have and self._base_rows.get(name):
                sql = _branch("base", name, cols, base_have) + " UNION ALL " + mem
            else:
                sql = mem
            cur.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")
        self._views_dirty = False
        self._detach_replaced()

    def _detach_replaced(self) -> None:
        pending, self._detach = self._detach, []
        for alias in pending:
            self._part_cols.pop(alias, None)
            try:
                self.con.execute(f"DETACH {alias}")
            except duckdb.Error:
                self._detach.append(alias)  # still in use somehow: try again at the next refresh

    def part_select(self, number: int, table: str, superseded_by: set[int] | None = None) -> str:
        """The SELECT of a live part's rows as the views show them: the incident's columns (NULL for
        one the part lacks), spans that a higher-ranked part superseded left out.

        Catalog-qualified (memory.main._superseded), so a merge writing into another catalog can
        run it as is. `superseded_by` (the ranks that supersede anything) saves a lookup per part.
        """
        alias = self._parts[number]
        columns = _SHARED_TABLES[table]
        sql = _branch(alias, table, columns, self._part_columns(alias).get(table, set()))
        if table != "spans":
            return sql
        if superseded_by is None:
            superseded_by = {int(r[0]) for r in self.cursor().execute(
                "SELECT DISTINCT by_part FROM memory.main._superseded").fetchall()}
        rank = self._rank[number]
        if any(b > rank for b in superseded_by):
            sql += f" WHERE span_pk NOT IN (SELECT span_pk FROM memory.main._superseded WHERE by_part > {rank})"
        return sql

    def _part_columns(self, alias: str) -> dict[str, set[str]]:
        if alias not in self._part_cols:
            self._part_cols[alias] = self._columns(alias)
        return self._part_cols[alias]

    # -- writing: the responder's records ----------------------------------------------------------
    def append(self, table: str, row: dict[str, Any]) -> int:
        """Append one row to a trail table (trail_tables.py); returns its id (0 for id-less tables)."""
        return self.append_many([(table, row)])[0]

    def append_many(self, rows: list[tuple[str, dict[str, Any] | Callable[[list[int]], dict[str, Any]]]]
                    ) -> list[int]:
        """Append rows all or nothing, durable before returning, visible to others at their next refresh.

        A row may be a function of the ids assigned to the rows before it (a trail event naming the
        label it records).
        """
        if self.read_only:
            raise StoreError(f"{self.path} is open read-only (--read-only); nothing can be written")
        with self._lock, self._journal_for_writing() as journal:
            self._fold(journal.read_new())
            next_id = dict(self._next_id)
            ids: list[int] = []
            out: list[list[Any]] = []
            for table, row in rows:
                spec = _table(table)
                row = dict(row(ids) if callable(row) else row)
                unknown = set(row) - set(spec.names)
                if unknown:
                    raise ValueError(f"table {table} has no column(s) {', '.join(sorted(unknown))}")
                if spec.id:
                    row[spec.id] = next_id[table]
                    next_id[table] += 1
                ids.append(int(row[spec.id]) if spec.id else 0)
                # Responders paste things; the journal is part of the incident, so nothing secret stays.
                out.append([table, {k: _redact(v) for k, v in row.items()}])
            journal.write(lambda seq: {"seq": seq, "at": now_utc().isoformat(), "pid": os.getpid(), "rows": out})
            self._fold(journal.read_new())
        return ids

    def record_event(self, kind: str, summary: str, detail: dict[str, Any] | None = None,
                     actor: str | None = None) -> int:
        """Append an event to the trail (the timeline is built from it)."""
        return self.append("trail", {"at_time": now_utc(), "actor": actor or current_user(), "kind": kind,
                                     "summary": summary, "detail": detail})

    def set_meta(self, key: str, value: str) -> None:
        self.append("meta", {"key": key, "value": value})

    # -- registering a load part (oncall/ingest/loader.py) -------------------------------------------
    @contextmanager
    def _journal_for_writing(self) -> Iterator[Any]:
        """The journal, locked for an append; a full or read-only disk is a MachineError naming it."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            with self._journal.locked() as journal:
                yield journal
        except OSError as exc:
            if not is_machine_error(exc):
                raise
            raise MachineError(self._journal.path, exc, "writing to the incident's journal") from None

    def register_part(self, number: int, imports: list[int]) -> None:
        with self._lock, self._journal_for_writing() as journal:
            self._fold(journal.read_new())
            journal.write(lambda seq: {"seq": seq, "at": now_utc().isoformat(), "pid": os.getpid(),
                                       "part": {"part": number, "imports": imports}})
            self._fold(journal.read_new())
            self._build_views()

    def register_merged_part(self, number: int, file: str, rank: int, replaces: list[int],
                             imports: list[int]) -> None:
        """Register a merged part (oncall/store/compact.py) in place of the parts it replaces."""
        with self._lock, self._journal.locked() as journal:
            self._fold(journal.read_new())
            live = set(self._parts)
            if not set(replaces) <= live:
                raise StoreError(f"parts {sorted(set(replaces) - live)} were already replaced or never registered; "
                                 "the merge is discarded")
            journal.write(lambda seq: {"seq": seq, "at": now_utc().isoformat(), "pid": os.getpid(),
                                       "compacted": {"part": number, "file": file, "rank": rank,
                                                     "replaces": sorted(replaces), "imports": imports}})
            self._fold(journal.read_new())
            self._build_views()

    def registered_parts(self) -> set[int]:
        """Every part number the journal has registered, those replaced by a merge included."""
        self.refresh()
        return set(self._registered)

    def replaced_parts(self) -> set[int]:
        """Registered parts that a merged part replaced (their files may be deleted)."""
        self.refresh()
        return set(self._replaced)

    def attached_parts(self) -> dict[int, str]:
        """The live parts (number -> attached alias), in no particular order."""
        return dict(self._parts)

    def part_ranks(self) -> dict[int, int]:
        """The live parts' ranks (a load's own number; a merged part's highest replaced rank)."""
        return dict(self._rank)

    def has_responder_work(self) -> dict[str, int]:
        """How many labels, notes and trail events (other than the demo's own) the incident holds."""
        cur = self.cursor()
        return {
            "labels": int(cur.execute("SELECT count(*) FROM labels").fetchone()[0]),
            "notes": int(cur.execute("SELECT count(*) FROM notes").fetchone()[0]),
            "trail events": int(cur.execute(
                "SELECT count(*) FROM trail WHERE kind NOT IN ('demo', 'load')").fetchone()[0]),
        }


def _redact(value: Any) -> Any:
    from oncall.redact import redact_text

    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


def _table(name: str) -> Table:
    try:
        return TABLES[name]
    except KeyError:
        raise ValueError(f"no trail table {name!r}; declared tables: {', '.join(sorted(TABLES))}") from None


def _branch(catalog: str, table: str, columns: list[tuple[str, str]], have: set[str]) -> str:
    cols = ", ".join(c if c in have else f"NULL::{t} AS {c}" for c, t in columns)
    return f"SELECT {cols} FROM {catalog}.{table}"


def _sql_str(path: Path) -> str:
    return str(path).replace("'", "''")


# -- opening, copying, removing ----------------------------------------------------------------------

def open_db(path: str | os.PathLike[str] | None = None, *, read_only: bool = False,
            create: bool = True) -> IncidentDB:
    """Open the incident (creating or upgrading its base file first unless read-only)."""
    p = default_db_path(path)
    if str(p) == ":memory:":
        raise StoreError(":memory: is not an incident file; give --db a file path such as ./incident.duckdb")
    if not p.exists():
        if read_only or not create:
            raise StoreError(f"{p} does not exist; load data first with `oncall load` or `oncall demo`")
        if p.parent and not p.parent.exists():
            raise StoreError(f"cannot create {p}: directory {p.parent} does not exist")
        if holds_incident_data(sidecar_dir(p)):
            # The base was deleted and its parts and journal left behind: reusing them would revive
            # the old incident's imports ("already loaded", 0 spans) under a new one.
            side = sidecar_dir(p)
            raise StoreError(f"{side} holds the load parts and journal of an incident whose base file {p.name} "
                             f"is gone; to start a new incident here move it away (mv '{side}' '{side}.old') "
                             f"or remove it, or choose another --db")
    if p.is_dir():
        raise StoreError(f"{p} is a directory; --db names the incident database file")
    if p.exists() and not _is_duckdb_file(p):
        raise StoreError(f"{p} is not a DuckDB database (an incident database is made by "
                         "`oncall load` or `oncall demo`); check --db")
    if not read_only:
        try:
            _create_or_upgrade_base(p)
        except OSError as exc:
            if not is_machine_error(exc):
                raise
            raise MachineError(p, exc, "creating the incident" if not p.exists() else "upgrading the incident") \
                from None
    db = IncidentDB(p, read_only)
    version = db.schema_version()
    if version != SCHEMA_VERSION:
        db.close()
        if version > SCHEMA_VERSION:
            raise StoreError(f"{p} has schema version {version}, newer than this oncall understands "
                             f"({SCHEMA_VERSION}); upgrade oncall")
        raise StoreError(f"{p} has schema version {version}, this oncall needs {SCHEMA_VERSION}; "
                         "open it once without --read-only to upgrade it")
    if not read_only:
        _salvage_killed_loads(db)
    return db


def _salvage_killed_loads(db: IncidentDB) -> None:
    """A load killed before it registered its part left the part behind: the first writer to open the
    incident (not only the next load, README) keeps the files it finished and removes the rest.
    Skipped while a load runs (its part is not abandoned), and on a disk that refuses writes."""
    from oncall.fileio import writable_refusal
    from oncall.store.loadparts import salvage_unregistered_parts
    from oncall.store.parts import part_files

    if not part_files(db.path) or writable_refusal(parts_dir(db.path)) is not None:
        return
    with exclusive_lock(sidecar_dir(db.path) / "load.lock", block=False) as held:
        if not held:
            return  # a load is running: its part is not abandoned
        try:
            salvage_unregistered_parts(db)
        except Exception as exc:  # noqa: BLE001 - a salvage that cannot finish is retried by the next writer
            if not is_machine_error(exc):
                raise


def load_lock(db_path: Path, waiting: Callable[[], None] | None = None) -> Any:
    """Loads take turns: the lock every load holds from choosing its import ids to registering."""
    return _exclusive(sidecar_dir(db_path) / "load.lock", waiting)


def incident_files(db_path: Path) -> list[Path]:
    """Every file that makes up the incident (the base file, its WAL, the journal and parts)."""
    out = [p for p in (db_path, db_path.with_name(db_path.name + ".wal")) if p.exists()]
    d = sidecar_dir(db_path)
    if d.is_dir():
        out += sorted(p for p in d.rglob("*") if p.is_file())
    return out


def copy_incident(src: Path, dst: Path) -> None:
    """Copy an incident (base file, journal, parts) to another path, e.g. to work on a copy."""
    shutil.copyfile(src, dst)
    d = sidecar_dir(src)
    if d.is_dir():
        shutil.copytree(d, sidecar_dir(dst), ignore=shutil.ignore_patterns("*.lock"))


def holds_incident_data(side: Path) -> bool:
    """Whether a sidecar directory holds an incident's records (a journal or a load part), as
    opposed to lock files a failed start left."""
    if (side / JOURNAL_NAME).is_file():
        return True
    parts = side / "parts"  # parts_dir() of the base this sidecar belongs to
    return parts.is_dir() and any(parts.iterdir())


def is_absent(db_path: Path) -> bool:
    """No base file and no incident data beside it: opening it for writing starts a new incident."""
    return not db_path.exists() and not holds_incident_data(sidecar_dir(db_path))


def discard_if_unused(db: IncidentDB) -> bool:
    """Remove an incident nothing was written to (no journal, no load part): a load that recognised
    no file leaves no database behind. Closes `db`; True when it removed the files."""
    db.close()
    if holds_incident_data(sidecar_dir(db.path)):
        return False
    remove_incident(db.path)
    return True


def remove_incident(db_path: Path) -> None:
    """Delete an incident's files (the demo rebuilding itself). Callers check for responder work."""
    for p in (db_path, db_path.with_name(db_path.name + ".wal")):
        p.unlink(missing_ok=True)
    shutil.rmtree(sidecar_dir(db_path), ignore_errors=True)


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Poll until predicate() is true or the timeout passes (tests and verification helpers)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
