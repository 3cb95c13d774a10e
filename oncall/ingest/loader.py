"""`oncall load`: expand paths, detect formats, import each file in its own transaction, summarise."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from oncall.display import iso_utc
from oncall.errors import MachineError, is_machine_error
from oncall.ingest import registry
from oncall.ingest.registry import FormatError, LoadOptions
from oncall.ingest.source import (
    TRUNCATED_MARK,
    SourceError,
    TruncatedStream,
    expand_paths,
    file_size,
    read_head,
    sha256_of,
)
from oncall.ingest.writer import FileWriter, TooManyProblems
from oncall.redact import redact_text
from oncall.store.db import IncidentDB, load_lock, now_utc
from oncall.store.loadparts import (
    attach_new_part,
    detach_part,
    discard_import,
    discard_part,
    remove_part_file,
    salvage_unregistered_parts,
)
from oncall.store.parts import numbers_on_disk, parts_dir, sidecar_dir


@dataclass
class Problem:
    file: str
    line: int | None
    kind: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.kind}: {self.message}"


@dataclass
class FileResult:
    path: str
    format: str | None
    status: str  # loaded | already-loaded | skipped | failed
    spans: int = 0
    duplicates: int = 0
    problems: list[Problem] = field(default_factory=list)
    note: str | None = None
    import_id: int | None = None
    records: int = 0  # records read: loaded, duplicates and skipped
    skipped: int = 0  # records reported as problems and left out
    warnings: list[Problem] = field(default_factory=list)  # loaded, but worth a word (absurd times)


@dataclass
class LoadReport:
    files: list[FileResult] = field(default_factory=list)

    @property
    def problems(self) -> list[Problem]:
        return [p for f in self.files for p in f.problems]

    @property
    def spans_added(self) -> int:
        return sum(f.spans for f in self.files)

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]

    @property
    def warnings(self) -> list[Problem]:
        return [w for f in self.files for w in f.warnings]

    @property
    def bugs(self) -> list[FileResult]:
        """Files that failed on an error in oncall itself (exit 3), not on their content."""
        return [f for f in self.files if any(p.kind == INTERNAL for p in f.problems)]

    def to_dict(self) -> dict[str, Any]:
        return {"files": [asdict(f) for f in self.files], "spans_added": self.spans_added,
                "problems": [asdict(p) for p in self.problems],
                "warnings": [asdict(w) for w in self.warnings]}


INTERNAL = "internal"  # the problem kind of a file that failed on a bug in oncall


class LoadError(Exception):
    """Bad usage or input that stops the whole load (unknown format forced, no files, --strict)."""


ProgressFn = Callable[[str, int, int], None]  # (file, bytes done, bytes total)


def load_paths(db: IncidentDB, args: list[str], *, fmt: str | None = None,
               options: LoadOptions | None = None, progress: ProgressFn | None = None,
               waiting: Callable[[], None] | None = None) -> LoadReport:
    """Import every file named by args (files, directories, globs) into a new load part.

    Loads take turns (store.db.load_lock; `waiting` is called if another is running). The part is
    registered, and so becomes visible to every reader, when the last file is done.
    """
    options = options or LoadOptions()
    if db.read_only:
        raise LoadError(f"{db.path} is open read-only; loading needs it writable (drop --read-only)")
    try:
        paths = expand_paths(args)
    except SourceError as exc:
        raise LoadError(str(exc)) from None
    if not paths:
        raise LoadError(f"no files found in {' '.join(args)}")
    if fmt is not None:
        registry.get(fmt)  # fail early on an unknown --format
    explicit = len(paths) == 1 and Path(args[0]).is_file() if len(args) == 1 else False
    report = LoadReport()
    try:
        with load_lock(db.path, waiting):
            _load_into_part(db, paths, report, fmt=fmt, options=options, progress=progress, explicit=explicit)
    except (OSError, duckdb.Error) as exc:
        if not is_machine_error(exc):
            raise
        done = [f.path for f in report.files if f.status == "loaded"]
        lost = f"; the {len(done)} file(s) it had loaded are not kept either, load them again" if done else ""
        raise MachineError(sidecar_dir(db.path), exc, f"loading into {db.path}; this load's part was removed{lost}") \
            from None
    return report


def _load_into_part(db: IncidentDB, paths: list[Path], report: LoadReport, *, fmt: str | None,
                    options: LoadOptions, progress: ProgressFn | None, explicit: bool) -> None:
    """Load every file into one new part (under the load lock). A refusal by the machine (a full
    disk) removes the part at once: a failed checkpoint leaves it unreadable, and the space it
    holds is what the responder needs back."""
    db.refresh()
    salvage_unregistered_parts(db)
    part = PartWriter(db)
    try:
        for path in paths:
            result = load_file(db, path, fmt=fmt, options=options, progress=progress, explicit=explicit,
                               part=part)
            report.files.append(result)
            # --strict fails the file with a problem, never the files after it (issue 23); a
            # single file named alone is the whole load, so its failure is the load's error.
            if options.strict and len(paths) == 1 and (result.status == "failed" or result.problems):
                first = result.problems[0] if result.problems else None
                raise LoadError(str(first) if first else f"{path}: {result.note}")
    except BaseException as exc:
        if is_machine_error(exc):
            part.discard()
            raise
        # Files finished before the failure stay loaded (each file is all or nothing).
        part.close(register=True)
        raise
    try:
        part.close(register=True)
    except BaseException as exc:
        if is_machine_error(exc):
            part.discard()
        raise


class PartWriter:
    """The load part this load writes: attached read-write as `newpart` in the incident's DuckDB.

    Its cursor's default catalog is the part, so `spans`, `imports` … name the part's own tables,
    while `memory.main.spans` (the incident's view, without this part) is everything loaded before.
    """

    def __init__(self, db: IncidentDB) -> None:
        self.db = db
        # Merged parts and parts they replaced share the numbering (oncall/store/compact.py).
        taken = numbers_on_disk(db.path) | db.registered_parts()
        self.number = max(taken, default=0) + 1
        self.path = parts_dir(db.path) / f"part-{self.number}.duckdb"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.cur = attach_new_part(db, self.path, "newpart")
        except BaseException:
            discard_part(db, None, "newpart", self.path)
            raise
        prior = db.cursor().execute("SELECT coalesce(max(import_id), 0) FROM imports").fetchone()[0]
        self.next_import = int(prior) + 1
        self.imports: list[int] = []

    def new_import_id(self) -> int:
        iid = self.next_import
        self.next_import += 1
        return iid

    def discard(self) -> None:
        """Drop the part without checkpointing it (the disk is full): detach, delete its files."""
        discard_part(self.db, self.cur, "newpart", self.path)

    def close(self, register: bool) -> None:
        cur = self.cur
        loaded = [int(r[0]) for r in cur.execute(
            "SELECT import_id FROM imports WHERE status = 'loaded' ORDER BY import_id").fetchall()]
        detach_part(self.db, cur, "newpart")
        if register and loaded:
            self.db.register_part(self.number, loaded)
        else:
            remove_part_file(self.path)


def load_file(db: IncidentDB, path: Path, *, part: PartWriter, fmt: str | None = None,
              options: LoadOptions | None = None, progress: ProgressFn | None = None,
              explicit: bool = True) -> FileResult:
    """Import one file in its own transactions (all or nothing). Whatever goes wrong inside one file
    fails that file only: a bad file in a directory never stops the files after it."""
    try:
        return _load_file(db, path, part=part, fmt=fmt, options=options, progress=progress, explicit=explicit)
    except RecursionError:
        return FileResult(str(path), fmt, "failed", problems=[Problem(
            str(path), None, "too-deep", "nested too deeply to read (JSON deeper than Python's recursion "
            "limit); nothing from this file was loaded")])
    except Exception as exc:  # noqa: BLE001 - a bug in an importer: this file fails, the load goes on
        if is_machine_error(exc):
            raise  # the disk is full or read-only: no later file can be written either
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "(no message)"
        return FileResult(str(path), fmt, "failed", problems=[Problem(
            str(path), None, INTERNAL, f"oncall failed on this file ({type(exc).__name__}: {redact_text(first)}); "
            "nothing from it was loaded; this is a bug in oncall, please report it with the file's shape")])


def _load_file(db: IncidentDB, path: Path, *, part: PartWriter, fmt: str | None = None,
               options: LoadOptions | None = None, progress: ProgressFn | None = None,
               explicit: bool = True) -> FileResult:
    options = options or LoadOptions()
    spath = str(path)
    own = Path(db.path).resolve()
    resolved = Path(path).resolve()
    if resolved in (own, own.with_name(own.name + ".wal")) or resolved.is_relative_to(sidecar_dir(own)):
        # `oncall load .` in the incident's own directory must not try to read the database itself.
        return FileResult(spath, None, "skipped", note="the incident database itself")
    try:
        size = file_size(path)
        digest = sha256_of(path)
    except OSError as exc:
        return FileResult(spath, None, "failed", problems=[Problem(spath, None, "unreadable", str(exc))])
    con = part.cur
    # Loaded before (the incident's imports) or earlier in this same load (the part's own).
    prior = con.execute(
        "SELECT import_id, format FROM (SELECT * FROM memory.main.imports UNION ALL SELECT * FROM imports) "
        "WHERE sha256 = ? AND status = 'loaded' "
        "AND coalesce(options->>'$.column_map', '{}') = ? LIMIT 1",
        [digest, json.dumps(options.column_map, sort_keys=True)],
    ).fetchone()
    if prior:
        return FileResult(spath, prior[1], "already-loaded", import_id=int(prior[0]),
                          note=f"same content already loaded (import {prior[0]})")
    try:
        head = read_head(path)
    except SourceError as exc:
        return FileResult(spath, None, "failed", problems=[Problem(spath, None, _failure_kind(exc),
                                                                   str(exc).removeprefix(f"{spath}: "))])

    if head.complete and not head.data.strip():
        # Checked before detection so the responder hears "empty", not "unknown format".
        what = "is empty (0 bytes)" if not head.data else "holds only whitespace"
        return FileResult(spath, None, "failed", problems=[Problem(
            spath, None, "empty", f"the file {what} after decompression; nothing to load "
            "(was the exporter flushed before the copy?)")])

    if fmt is not None:
        module = registry.get(fmt)
    else:
        module = registry.detect(head)
        if module is None:
            supported = ", ".join(registry.names())
            return FileResult(spath, None, "failed", problems=[Problem(
                spath, None, "unknown-format",
                ("its first record is JSON nested too deeply to read, so the format cannot be told; "
                 if head.extra.get("too_deep") else "cannot tell the format from the content; ")
                + f"supported formats: {supported} (use --format NAME to force one)")])
        if module.NAME == registry.NOT_DATA:
            reason = module.describe(head)
            return FileResult(spath, None, "skipped", note=f"not trace data: {reason}")

    return write_import(part, spath, module.NAME, digest, size,
                        lambda writer: module.read(path, writer, options), options=options, progress=progress)


def write_import(part: PartWriter, name: str, fmt: str, digest: str, size: int | None,
                 read: Callable[[FileWriter], None], *, options: LoadOptions | None = None,
                 progress: ProgressFn | None = None, extra: dict[str, Any] | None = None) -> FileResult:
    """Write one import (a file, or one pull from a source) into the load's part, all or nothing.

    `read(writer)` hands the writer every canonical row (a format's read(), a source's pull()).
    FormatError, SourceError and TooManyProblems mean the input is unusable: the import is rolled
    back and reported failed. Anything else (an interrupt, a source that failed mid-stream with
    an exception of its own) rolls back and propagates. `extra` lands in imports.options.
    """
    options = options or LoadOptions()
    import_id = part.new_import_id()
    started = now_utc()
    con = part.cur
    # Two transactions in the load's part. The first writes the file's rows with the import marked
    # 'loading'; the second dedupes, resolves inherited keys, indexes ids and marks it 'loaded'.
    # Resolving inheritance inside the first (an UPDATE of rows not yet committed) made the commit
    # rewrite them: 7.9 s against 1.3 s for 200k OTLP spans. Nobody reads the part until the load
    # registers it; a load that dies leaves it unregistered, and the next load keeps only its
    # 'loaded' imports (salvage_unregistered_parts), so a killed load leaves the incident as it was
    # before that file.
    con.execute("BEGIN TRANSACTION")
    writer = FileWriter(con, import_id, name, fmt, strict=options.strict,
                        on_progress=(lambda done: progress(name, done, size or 0)) if progress else None)
    try:
        read(writer)
        writer.write_all()
        con.execute(
            "INSERT INTO imports VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [import_id, name, digest, size, fmt, started, None, writer.added, 0, len(writer.problems),
             "loading", json.dumps({"column_map": options.column_map, **(extra or {})}, sort_keys=True)],
        )
        con.execute("COMMIT")
    except (FormatError, SourceError, TooManyProblems) as exc:
        writer.abort()
        con.execute("ROLLBACK")
        kind = _failure_kind(exc)
        msg = str(exc)
        prefix = f"{name}: "
        return FileResult(name, fmt, "failed",
                          problems=[Problem(name, None, kind, msg.removeprefix(prefix))])
    except BaseException:
        writer.abort()
        _rollback(con)  # a full disk may have invalidated the part already: keep the first error
        raise
    try:
        con.execute("BEGIN TRANSACTION")
        writer.finish()
        problems = [Problem(name, line, kind, msg) for line, kind, msg in writer.problems]
        con.execute(
            "UPDATE imports SET finished_at = ?, spans = ?, duplicates = ?, problems = ?, status = 'loaded' "
            "WHERE import_id = ?",
            [now_utc(), writer.added, writer.duplicates, len(problems), import_id])
        if problems:
            con.executemany(
                "INSERT INTO problems VALUES (?, ?, ?, ?, ?)",
                [[import_id, p.file, p.line, p.kind, p.message] for p in problems[:10000]],
            )
        con.execute("COMMIT")
    except BaseException as exc:
        _rollback(con)
        if not is_machine_error(exc):
            discard_import(con, import_id)
        raise
    if progress:
        progress(name, size or 0, size or 0)
    warnings = [Problem(name, line, "absurd-time", msg) for line, msg in writer.warnings]
    return FileResult(name, fmt, "loaded", spans=writer.added, duplicates=writer.duplicates,
                      problems=problems, import_id=import_id, note=writer.note,
                      records=writer.added + writer.duplicates + len(problems), skipped=len(problems),
                      warnings=warnings)


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        pass  # no transaction left: the part was invalidated (disk full); the caller raises the cause


def _failure_kind(exc: Exception) -> str:
    """The problem kind of a file that failed whole: strict, truncated (a cut gzip/zstd stream, also as
    the FormatError an importer wrapped it in), unreadable or unusable."""
    if isinstance(exc, TooManyProblems):
        return "strict"
    if isinstance(exc, TruncatedStream) or TRUNCATED_MARK in str(exc):
        return "truncated"
    return "unreadable" if isinstance(exc, SourceError) else "unusable"


def summary(db: IncidentDB, import_ids: list[int] | None = None) -> dict[str, Any]:
    """What is in the database (or in the given imports): spans, traces, time range, models, tenants."""
    con = db.cursor()
    where = ""
    params: list[Any] = []
    if import_ids is not None:
        if not import_ids:
            where = "WHERE false"
        else:
            where = f"WHERE import_id IN ({', '.join('?' for _ in import_ids)})"
            params = list(import_ids)
    row = con.execute(
        f"""SELECT count(*), count(DISTINCT trace_id), min(start_time), max(coalesce(end_time, start_time)),
                   count(*) FILTER (WHERE kind = 'llm'), count(*) FILTER (WHERE status = 'error'),
                   count(*) FILTER (WHERE kind = 'llm' AND status = 'error')
            FROM spans {where}""", params).fetchone()

    def top(col: str) -> list[dict[str, Any]]:
        rows = con.execute(
            f"SELECT {col}, count(*) AS n, count(*) FILTER (WHERE kind = 'llm') AS llm FROM spans {where} "
            f"{'AND' if where else 'WHERE'} {col} IS NOT NULL "
            f"GROUP BY 1 ORDER BY llm DESC, n DESC, 1 LIMIT 20", params).fetchall()
        return [{"value": r[0], "spans": int(r[1]), "llm_calls": int(r[2])} for r in rows]

    return {
        "spans": int(row[0]),
        "traces": int(row[1]),
        "llm_spans": int(row[4]),
        "errors": int(row[5]),  # spans of every kind (a failed call often fails its parents too)
        "llm_errors": int(row[6]),  # failed LLM calls: what "N LLM calls, M errors" means
        "start": iso_utc(row[2]) if row[2] else None,
        "end": iso_utc(row[3]) if row[3] else None,
        "models_requested": top("model"),
        "models_served": top("served_model"),
        "tenants": top("tenant"),
    }
