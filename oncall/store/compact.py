"""Compaction: many small load parts merged into fewer, larger ones, in the background.

A live receiver registers a load part every second (thousands an hour); every part is one more
branch in each view (store.db), so lookups and scans slow down with the part count. Compaction
keeps the count at a handful, and keeps the store's rule: no process writes a file another reads.

1. Pick a run of parts (policy below) while holding nothing but the compaction lock.
2. Under the load lock, only long enough to take the next part number, create
   `parts/merged-N.duckdb`: loads number their parts under the same lock, and the merged- name
   keeps a load's salvage (store.loadparts) from ever taking it for an unfinished load.
3. Copy the run's rows into it as the views show them (spans a later part superseded are left out;
   dedupe across parts was done by each load, so nothing is doubled), with the run's ids, imports,
   problems and superseded lists; checkpoint; close.
4. Register it in the journal as replacing the run, ranked as the run's newest part: a load that
   registered meanwhile, and superseded a span of the run, still wins over the merged copy.
5. Delete the run's files. Readers that attached them hold them open until their next refresh
   moves them to the merged part (store.db), so nobody is blocked and no query fails.

Killed at any point, the incident stays readable and complete: before step 4 the merged file is an
unregistered leftover (the next compaction deletes it); after it, the old files are replaced
leftovers (deleted the same way).

Policy (size tiers, as in a log-structured merge tree): a part's tier is log_FANOUT of its span
count. When FANOUT or more parts of tier <= t sit side by side in rank order, the smallest such t
merges. A stream of same-size parts then keeps at most FANOUT - 1 parts per tier. Every part is
a branch that each query's planner binds and optimises (a lookup's planning grows from ~1 ms with
one part to tens of ms with ten, bench/RESULTS.md), so few parts matter more than rewriting:
FANOUT is 3, and beyond max_parts (10) live parts the cheapest side-by-side run merges whatever
its tiers. Simulated over an hour of one-second parts (tests/test_compaction.py): 7 live parts
on average, never more than 10, each span rewritten ~7 times.

Where it runs: the live receiver starts a `Compactor` thread; `oncall load` runs a bounded pass
after its load (merges of small parts only); `oncall compact` runs a full pass, or merges every
part into one with --full.
"""

from __future__ import annotations

import math
import os
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from oncall.store.db import IncidentDB, StoreError, exclusive_lock, load_lock, open_db, utc_cursor
from oncall.store.loadparts import detach_part, remove_part_file
from oncall.store.parts import (
    PART_TABLES_DDL,
    merged_files,
    merged_number,
    numbers_on_disk,
    part_files,
    part_number,
    parts_dir,
    sidecar_dir,
)
from oncall.store.schema import spans_ddl

# Tables every part holds, copied into the merged part (meta is its own).
_COPIED = ("spans", "span_ids", "imports", "problems")


@dataclass(frozen=True)
class Policy:
    """When parts merge. `max_spans` bounds one merge (a pass after a load keeps to small merges)."""

    fanout: int = 3
    max_spans: int | None = None
    max_parts: int = 10  # beyond this, the cheapest side-by-side parts merge whatever their tiers

    def tier(self, spans: int) -> int:
        return int(math.log(max(spans, 1), self.fanout))


DEFAULT_POLICY = Policy()
# `oncall load` merges only runs this small after its load, so a load never waits long for it.
AFTER_LOAD_POLICY = Policy(max_spans=200_000)


@dataclass(frozen=True)
class PartInfo:
    number: int
    rank: int
    spans: int


@dataclass
class Merge:
    parts: list[int]
    into: int
    spans: int
    seconds: float


@dataclass
class CompactReport:
    parts_before: int = 0
    parts_after: int = 0
    merges: list[Merge] = field(default_factory=list)
    removed_files: int = 0
    busy: bool = False  # another compaction held the lock: nothing was done

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class CompactionError(StoreError):
    """A merge could not be written or registered; the incident is unchanged."""


def choose_run(parts: list[PartInfo], policy: Policy = DEFAULT_POLICY) -> list[PartInfo]:
    """The next run of parts to merge (in rank order), or [] when the layout is settled."""
    parts = sorted(parts, key=lambda p: p.rank)
    for t in sorted({policy.tier(p.spans) for p in parts}):
        run: list[PartInfo] = []
        for p in [*parts, None]:
            if p is not None and policy.tier(p.spans) <= t:
                run.append(p)  # smaller parts between ride along
                continue
            picked = _within_budget(run, policy)
            # Only parts of tier t count: a big part must not absorb each small one as it arrives
            # (that rewrites the big part every time).
            if sum(policy.tier(q.spans) == t for q in picked) >= policy.fanout:
                return picked
            run = []
    return _cheapest_window(parts, policy)


def _cheapest_window(parts: list[PartInfo], policy: Policy) -> list[PartInfo]:
    """Over max_parts: the side-by-side parts, just enough of them, that are cheapest to rewrite."""
    width = len(parts) - policy.max_parts + 1
    if width < 2:
        return []
    windows = [parts[i:i + width] for i in range(len(parts) - width + 1)]
    best = min(windows, key=lambda w: sum(p.spans for p in w))
    if policy.max_spans is not None and sum(p.spans for p in best) > policy.max_spans:
        return []
    return best


def _within_budget(run: list[PartInfo], policy: Policy) -> list[PartInfo]:
    if policy.max_spans is None:
        return run
    picked, total = [], 0
    for p in run:  # oldest first: what is left stays side by side for the next merge
        if total + p.spans > policy.max_spans:
            break
        picked.append(p)
        total += p.spans
    return picked


def live_parts(db: IncidentDB) -> list[PartInfo]:
    """The incident's live parts with their sizes, in rank order."""
    cur = db.cursor()
    ranks = db.part_ranks()
    out = []
    for number, alias in db.attached_parts().items():
        spans = int(cur.execute(f"SELECT count(*) FROM {alias}.spans").fetchone()[0])
        out.append(PartInfo(number, ranks[number], spans))
    return sorted(out, key=lambda p: p.rank)


def compact(db: IncidentDB, policy: Policy = DEFAULT_POLICY, *, full: bool = False,
            stop: threading.Event | None = None) -> CompactReport:
    """Merge parts until the policy is satisfied (or, with full, into one part). Never blocks readers.

    Returns at once (report.busy) when another process is compacting the incident.
    """
    if db.read_only:
        raise StoreError(f"{db.path} is open read-only; compaction needs it writable")
    report = CompactReport()
    with _compaction_lock(db.path) as held:
        if not held:
            report.busy = True
            return report
        db.refresh()
        report.removed_files += remove_leftovers(db)
        report.parts_before = len(db.attached_parts())
        while not (stop is not None and stop.is_set()):
            parts = live_parts(db)
            run = parts if full and len(parts) > 1 else ([] if full else choose_run(parts, policy))
            if not run:
                break
            report.merges.append(merge(db, [p.number for p in run], stop=stop))
            report.removed_files += remove_leftovers(db)
        report.parts_after = len(db.attached_parts())
    return report


def merge(db: IncidentDB, numbers: list[int], stop: threading.Event | None = None) -> Merge:
    """Write the live parts `numbers` into one new part, register it in their place, delete theirs.

    The caller holds the compaction lock (compact() does).
    """
    t0 = time.perf_counter()
    db.refresh()
    ranks = db.part_ranks()
    missing = [n for n in numbers if n not in ranks]
    if missing:
        raise CompactionError(f"parts {missing} are not live parts of {db.path}")
    numbers = sorted(numbers, key=ranks.__getitem__)
    with load_lock(db.path):
        # Loads take their numbers under this lock; the file's existence reserves ours.
        number = max(numbers_on_disk(db.path) | db.registered_parts(), default=0) + 1
        path = parts_dir(db.path) / f"merged-{number}.duckdb"
        cur = _create_merged_part(db, path)
    alias = "mergepart"
    try:
        imports: list[int] = []
        # One transaction for the whole copy: DuckDB writes its row groups straight into the file
        # and checkpoints once, at the detach. Committing each INSERT on its own re-wrote them
        # through the WAL and its automatic checkpoints: a merge of 9 one-second parts of 8k spans
        # cost 24-31 us of CPU per span, against 13-17 in one transaction (same run).
        cur.execute("BEGIN TRANSACTION")
        for n in numbers:
            if stop is not None and stop.is_set():
                raise _Stopped
            for table in _COPIED:
                cur.execute(f"INSERT INTO {alias}.main.{table} {db.part_select(n, table)}")
            src = db.attached_parts()[n]
            cur.execute(f"INSERT INTO {alias}.main.superseded SELECT span_pk, by_import FROM {src}.superseded")
            imports += [int(r[0]) for r in cur.execute(f"SELECT import_id FROM {src}.imports").fetchall()]
        cur.execute(f"CREATE INDEX span_ids_id ON {alias}.main.span_ids(id)")
        cur.execute(f"INSERT INTO {alias}.main.meta VALUES ('kind', 'merged-part'), ('replaces', ?)",
                    [",".join(str(n) for n in numbers)])
        spans = int(cur.execute(f"SELECT count(*) FROM {alias}.main.spans").fetchone()[0])
        cur.execute("COMMIT")
        detach_part(db, cur, alias)
        cur = None
        db.register_merged_part(number, path.name, rank=max(ranks[n] for n in numbers), replaces=numbers,
                                imports=sorted(imports))
    except BaseException as exc:
        if cur is not None:
            _close_quietly(db, cur, alias)
        remove_part_file(path)
        if isinstance(exc, _Stopped):
            raise CompactionError("compaction stopped before the merge was registered; nothing changed") from None
        raise
    remove_leftovers(db)
    return Merge(parts=numbers, into=number, spans=spans, seconds=round(time.perf_counter() - t0, 3))


class _Stopped(Exception):
    pass


def _create_merged_part(db: IncidentDB, path: Path):  # -> duckdb cursor
    remove_part_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cur = utc_cursor(db.con)
    cur.execute(f"ATTACH '{str(path).replace(chr(39), chr(39) * 2)}' AS mergepart")
    cur.execute("USE mergepart")
    cur.execute("BEGIN TRANSACTION")
    cur.execute(spans_ddl())
    # The id index is built once the rows are in (faster than maintaining it row by row).
    for ddl in PART_TABLES_DDL:
        if not ddl.startswith("CREATE INDEX"):
            cur.execute(ddl)
    cur.execute("COMMIT")
    cur.execute("USE memory")
    return cur


def _close_quietly(db: IncidentDB, cur, alias: str) -> None:
    try:
        cur.execute("ROLLBACK")  # the merge's transaction, if it is still open
    except Exception:  # noqa: BLE001 - not in one
        pass
    try:
        cur.execute("USE memory")
        cur.execute(f"DETACH {alias}")
    except Exception:  # noqa: BLE001 - already failing; the file is deleted next
        pass
    try:
        cur.close()
    except Exception:  # noqa: BLE001
        pass


def remove_leftovers(db: IncidentDB) -> int:
    """Delete what a merge killed midway left: unregistered merged files, files of replaced parts.

    Only under the compaction lock (no merge in progress). Readers still reading a replaced file
    keep it open; a new reader never attaches one.
    """
    registered = db.registered_parts()
    replaced = db.replaced_parts()
    removed = 0
    for path in merged_files(db.path):
        number = merged_number(path)
        if number is not None and (number not in registered or number in replaced):
            remove_part_file(path)
            removed += 1
    for path in part_files(db.path):
        if part_number(path) in replaced:
            remove_part_file(path)
            removed += 1
    return removed


def _compaction_lock(db_path: Path) -> AbstractContextManager[bool]:
    """Held by one compaction at a time; yields False (without waiting) if another holds it."""
    return exclusive_lock(sidecar_dir(db_path) / "compact.lock", block=False)


class Compactor:
    """Compacts an incident in a background thread (the live receiver runs one).

        compactor = Compactor(db_path)
        compactor.start()
        ...                     # register parts as usual; compactor.poke() wakes it at once
        compactor.stop()        # a merge in progress is abandoned (its file deleted), never half-registered

    The thread opens the incident on its own connection, so it shares nothing with the caller's.
    It checks every `interval` seconds, or when poked. Errors are kept in `errors` (the last 20)
    and the thread carries on: compaction is an optimisation, never a reason to stop receiving.
    """

    def __init__(self, db_path: str | os.PathLike[str], policy: Policy = DEFAULT_POLICY,
                 interval: float = 5.0) -> None:
        self.db_path = Path(db_path)
        self.policy = policy
        self.interval = interval
        self.errors: list[str] = []
        self.merges: list[Merge] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Compactor:
        self._thread = threading.Thread(target=self._run, name="oncall-compactor", daemon=True)
        self._thread.start()
        return self

    def poke(self) -> None:
        self._wake.set()

    def stop(self, timeout: float | None = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        db = open_db(self.db_path)
        try:
            while not self._stop.is_set():
                try:
                    report = compact(db, self.policy, stop=self._stop)
                    self.merges += report.merges
                except CompactionError as exc:
                    if not self._stop.is_set():
                        self._error(exc)
                except Exception as exc:  # noqa: BLE001 - see the class docstring
                    self._error(exc)
                self._wake.wait(self.interval)
                self._wake.clear()
        finally:
            db.close()

    def _error(self, exc: BaseException) -> None:
        self.errors = [*self.errors[-19:], f"{type(exc).__name__}: {exc}"]
