"""Compaction of load parts (oncall/store/compact.py): fewer parts, the same incident, nobody blocked.

What a responder must be able to rely on while a live receiver writes a part a second and the
compactor merges them behind their console:
- every view reads exactly the same rows before and after (superseded copies, dedupe, ids, imports);
- a console open during the merge keeps answering, then moves to the merged part;
- a load registered while a merge runs, superseding spans of the merged run, still wins;
- a merge killed (SIGKILL) at any step leaves the incident readable and complete, and the next
  compaction or load cleans up after it without taking its file for a load's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import tracegen

from oncall.ingest.loader import load_paths
from oncall.query.labels import add_label
from oncall.store import open_db
from oncall.store.compact import Compactor, PartInfo, Policy, choose_run, compact, live_parts, merge
from oncall.store.db import copy_incident, wait_for
from oncall.store.parts import merged_files, part_files

ROOT = Path(__file__).resolve().parent.parent
SPAN_COLS = "span_pk, import_id, trace_id, span_id, parent_id, tenant, inherited, output_text, response_id, raw"


_family = tracegen.family_lines


def snapshot(db) -> dict[str, object]:
    db.refresh()
    cur = db.cursor()
    return {
        "spans": cur.execute(f"SELECT {SPAN_COLS} FROM spans ORDER BY span_pk").fetchall(),
        "span_ids": cur.execute("SELECT id, id_kind, span_pk FROM span_ids ORDER BY ALL").fetchall(),
        "imports": cur.execute("SELECT import_id, path, sha256, spans, duplicates, status FROM imports "
                               "ORDER BY import_id").fetchall(),
        "problems": cur.execute("SELECT * FROM problems ORDER BY ALL").fetchall(),
        "labels": cur.execute("SELECT span_pk, label FROM labels ORDER BY ALL").fetchall(),
    }


def second_loads(tmp_path: Path, db_path: Path, n: int, *, families: bool = True) -> None:
    """n small loads, as a live receiver's one-second parts: plain spans, children whose root comes
    in a later load (their copies supersede the earlier ones), a retried duplicate, a bad line."""
    db = open_db(db_path)
    try:
        for k in range(n):
            lines = tracegen.otlp_lines(k * 10, 10)
            if families:
                lines.append(_family(1000 + k)[1])  # a child now...
                if k:
                    lines.append(_family(1000 + k - 1)[0])  # ...its root one load later
                if k % 3 == 2:
                    lines.append(tracegen.otlp_lines((k - 1) * 10, 1)[0])  # a retry: deduped
                if k == 4:
                    lines.append("{not json")
            f = tmp_path / f"second-{k}.jsonl"
            tracegen.write_lines(f, lines)
            load_paths(db, [str(f)])
    finally:
        db.close()


@pytest.fixture(scope="module")
def twelve_loads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tracegen.require_formats("otlp-jsonl")
    tmp = tmp_path_factory.mktemp("twelve")
    db_path = tmp / "incident.duckdb"
    second_loads(tmp, db_path, 12)
    return db_path


@pytest.fixture
def incident(twelve_loads: Path, tmp_path: Path) -> Path:
    """Twelve one-second loads (a copy for each test, with the files they loaded beside it)."""
    db_path = tmp_path / "incident.duckdb"
    copy_incident(twelve_loads, db_path)
    for f in twelve_loads.parent.glob("second-*.jsonl"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    return db_path


def test_merging_keeps_every_row_and_removes_the_old_files(incident: Path) -> None:
    db = open_db(incident)
    try:
        pk = db.cursor().execute("SELECT span_pk FROM spans WHERE parent_id IS NOT NULL ORDER BY 1 LIMIT 1"
                                 ).fetchone()[0]
        add_label(db, pk, "bad", note="labelled before the merge")
        before = snapshot(db)
        assert len(db.attached_parts()) == 12
        superseded = db.cursor().execute("SELECT count(*) FROM _superseded").fetchone()[0]
        assert superseded >= 10, "the fixture must supersede spans across parts"
        report = compact(db, Policy(fanout=4))
        assert report.merges and report.parts_after < 4, report
        assert snapshot(db) == before
        # The old parts' files are gone; one merged file per live part that is a merge.
        assert [p.name for p in part_files(incident)] == []
        assert len(merged_files(incident)) == report.parts_after
    finally:
        db.close()
    fresh = open_db(incident, read_only=True)  # a process opening now reads the journal from the start
    try:
        assert snapshot(fresh) == before
        assert fresh.warnings == []
    finally:
        fresh.close()


def test_a_stopped_merge_changes_nothing_and_the_next_one_runs(incident: Path) -> None:
    """A merge copies in one transaction: stopped (or failing) inside it, the transaction is rolled
    back and the merged file detached, so the next merge can attach its own."""
    from oncall.store.compact import CompactionError

    db = open_db(incident)
    try:
        before = snapshot(db)
        numbers = sorted(db.attached_parts())[:3]
        stop = threading.Event()
        stop.set()
        with pytest.raises(CompactionError):
            merge(db, numbers, stop=stop)
        assert merged_files(incident) == [] and snapshot(db) == before
        assert merge(db, numbers).spans > 0
        assert snapshot(db) == before
    finally:
        db.close()


def test_full_compaction_and_more_loads_after_it(incident: Path, tmp_path: Path) -> None:
    db = open_db(incident)
    try:
        before = snapshot(db)
        report = compact(db, full=True)
        assert report.parts_after == 1 and snapshot(db) == before
        # A root arriving after the merge supersedes the merged part's copy of its child.
        f = tmp_path / "late-root.jsonl"
        tracegen.write_lines(f, [_family(1011)[0], *tracegen.otlp_lines(500, 5)])
        load_paths(db, [str(f)])
        cur = db.cursor()
        assert cur.execute("SELECT count(*), count(DISTINCT span_pk), count(DISTINCT (trace_id, span_id)) "
                           "FROM spans").fetchone() == (len(before["spans"]) + 6,) * 3
        assert cur.execute("SELECT count(*) FROM spans WHERE tenant = 'acme-1011'").fetchone()[0] == 2
        assert compact(db, full=True).parts_after == 1
        assert cur.execute("SELECT count(*) FROM spans WHERE tenant = 'acme-1011'").fetchone()[0] == 2
        # The same file again is still recognised as loaded (imports survive merges).
        again = load_paths(db, [str(tmp_path / "second-3.jsonl")])
        assert [f.status for f in again.files] == ["already-loaded"]
    finally:
        db.close()


def test_a_reader_keeps_reading_during_and_after_a_merge(incident: Path) -> None:
    reader = open_db(incident, read_only=True)
    writer = open_db(incident)
    try:
        before = snapshot(reader)
        cur = reader.cursor()
        # A query through the old views, still running when the merge registers and deletes files.
        rel = cur.execute("SELECT span_pk, output_text FROM spans ORDER BY span_pk")
        compact(writer, full=True)
        assert rel.fetchall() == [(r[0], r[7]) for r in before["spans"]]
        assert cur.execute("SELECT count(*) FROM spans").fetchone()[0] == len(before["spans"])  # not refreshed yet
        assert reader.refresh() is True
        assert len(reader.attached_parts()) == 1
        assert snapshot(reader) == before
        assert reader.warnings == []
    finally:
        reader.close()
        writer.close()


def test_a_load_registered_while_a_merge_runs_still_wins(incident: Path, tmp_path: Path) -> None:
    """The late root of a child in the merged run is loaded after the merge copied the child."""
    compactor = open_db(incident)
    loader = open_db(incident)
    late = tmp_path / "late.jsonl"
    tracegen.write_lines(late, [_family(1011)[0]])
    register = compactor.register_merged_part

    def load_then_register(*args, **kwargs):
        report = load_paths(loader, [str(late)])
        assert report.spans_added == 1
        return register(*args, **kwargs)

    compactor.register_merged_part = load_then_register  # type: ignore[method-assign]
    try:
        merge(compactor, list(compactor.attached_parts()))
        for db in (compactor, loader):
            db.refresh()
            cur = db.cursor()
            assert cur.execute("SELECT count(*) FROM spans WHERE tenant = 'acme-1011'").fetchone()[0] == 2
            assert cur.execute("SELECT count(*) = count(DISTINCT span_pk) FROM spans").fetchone()[0]
        assert len(compactor.attached_parts()) == 2
    finally:
        compactor.close()
        loader.close()


KILL_AT = """
import os, signal, sys
from oncall.store import compact as c, open_db
from oncall.store.db import IncidentDB
step = sys.argv[2]
def die(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)
if step == "writing":  # the merged file half written
    real_create, real_select = c._create_merged_part, IncidentDB.part_select
    calls = []
    def create(*a, **k):
        calls.append("created")
        return real_create(*a, **k)
    def select(self, *a, **k):
        if calls:
            calls.append(1)
            if len(calls) > 9:
                die()
        return real_select(self, *a, **k)
    c._create_merged_part = create
    IncidentDB.part_select = select
elif step == "registering":  # the file finished, not yet registered
    IncidentDB.register_merged_part = die
elif step == "deleting":  # registered, the replaced files not yet deleted
    real_remove, calls = c.remove_leftovers, []
    def remove(*a, **k):
        calls.append(1)
        if len(calls) > 1:  # the first clears what earlier merges left, before this one starts
            die()
        return real_remove(*a, **k)
    c.remove_leftovers = remove
db = open_db(sys.argv[1])
c.compact(db, full=True)
"""


@pytest.mark.parametrize("step", ["writing", "registering", "deleting"])
def test_a_merge_killed_at_any_step_leaves_the_incident_complete(incident: Path, tmp_path: Path,
                                                                   step: str) -> None:
    db = open_db(incident)
    before = snapshot(db)
    db.close()
    proc = subprocess.run([sys.executable, "-c", KILL_AT, str(incident), step], cwd=ROOT, capture_output=True,
                          timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert merged_files(incident), "the merge died before writing anything: the test tests nothing"
    reader = open_db(incident, read_only=True)
    try:
        assert snapshot(reader) == before
        assert reader.warnings == []
    finally:
        reader.close()
    # The next load salvages nothing of it (a merged file is never taken for a load's part)...
    db = open_db(incident)
    try:
        f = tmp_path / "after.jsonl"
        tracegen.write_lines(f, tracegen.otlp_lines(5000, 3))
        assert load_paths(db, [str(f)]).spans_added == 3
        assert len(snapshot(db)["spans"]) == len(before["spans"]) + 3
        # ...and the next compaction removes what the killed one left.
        report = compact(db, full=True)
        assert report.removed_files >= 1 or step == "deleting" and not part_files(incident)
        assert len(snapshot(db)["spans"]) == len(before["spans"]) + 3
        assert len(merged_files(incident)) == 1 and part_files(incident) == []
    finally:
        db.close()


def test_size_tiers_keep_a_stream_of_parts_few() -> None:
    """An hour of one-second parts under the default policy: few parts, each span rewritten a few times."""
    policy = Policy()
    parts: list[PartInfo] = []
    number = most = written = 0
    counts = []
    for _ in range(3600):  # an hour of one-second parts of ~280 spans (1M spans)
        number += 1
        parts.append(PartInfo(number, number, 280))
        while run := choose_run(parts, policy):
            number += 1
            merged = PartInfo(number, max(p.rank for p in run), sum(p.spans for p in run))
            written += merged.spans
            parts = sorted([p for p in parts if p not in run] + [merged], key=lambda p: p.rank)
        most = max(most, len(parts))
        counts.append(len(parts))
    assert sum(p.spans for p in parts) == 3600 * 280
    assert most <= policy.max_parts and sum(counts) / len(counts) < 8
    assert written / (3600 * 280) < 8, "write amplification"
    assert [p.rank for p in parts] == sorted(p.rank for p in parts)
    # A big part does not absorb each small part as it arrives (that rewrites it every time).
    assert choose_run([PartInfo(1, 1, 1_000_000), PartInfo(2, 2, 280), PartInfo(3, 3, 280)], policy) == []
    # Bounded merges leave big runs alone.
    big = [PartInfo(i, i, 100_000) for i in range(1, 4)]
    assert choose_run(big, Policy(max_spans=200_000)) == []
    assert choose_run(big, policy) == big


def test_the_background_compactor_merges_while_loads_go_on(tmp_path: Path) -> None:
    tracegen.require_formats("otlp-jsonl")
    db_path = tmp_path / "incident.duckdb"
    second_loads(tmp_path, db_path, 1, families=False)
    compactor = Compactor(db_path, Policy(fanout=3), interval=0.05).start()
    db = open_db(db_path)
    try:
        for k in range(1, 10):
            f = tmp_path / f"live-{k}.jsonl"
            tracegen.write_lines(f, tracegen.otlp_lines(k * 10, 10))
            load_paths(db, [str(f)])
            compactor.poke()
        assert wait_for(lambda: len(db.registered_parts()) > 10 and len(db.attached_parts()) < 3, 30), \
            (compactor.errors, db.attached_parts())
    finally:
        compactor.stop()
        db.close()
    assert compactor.errors == [] and compactor.merges
    reader = open_db(db_path, read_only=True)
    try:
        assert reader.cursor().execute("SELECT count(*), count(DISTINCT span_pk) FROM spans").fetchone() == (100, 100)
    finally:
        reader.close()


def test_oncall_compact_command(incident: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "oncall", "--db", str(incident), "compact", "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["parts_before"] == 12 and report["parts_after"] == 1 and not report["busy"]
    assert [m["parts"] for m in report["merges"]] == [list(range(1, 13))]
    proc = subprocess.run([sys.executable, "-m", "oncall", "--db", str(incident), "compact", "--full"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "1 load part(s) before, 1 now" in proc.stdout, proc.stdout + proc.stderr


def test_live_parts_reports_sizes(incident: Path) -> None:
    db = open_db(incident, read_only=True)
    try:
        parts = live_parts(db)
        assert len(parts) == 12 and all(p.spans >= 10 for p in parts)
        assert [p.rank for p in parts] == sorted(p.rank for p in parts)
    finally:
        db.close()


def test_another_compaction_running_is_not_waited_for(incident: Path) -> None:
    from oncall.store.compact import _compaction_lock

    db = open_db(incident)
    try:
        with _compaction_lock(incident) as held:
            assert held
            done = threading.Event()
            result = {}

            def other() -> None:
                result["report"] = compact(db)
                done.set()

            threading.Thread(target=other).start()
            assert done.wait(10)
            assert result["report"].busy and not result["report"].merges
    finally:
        db.close()
    assert os.path.exists(incident)


def test_a_load_that_leaves_many_parts_says_how_to_merge_them(tmp_path: Path, monkeypatch) -> None:
    """The pass after a load merges only small runs (bounded, so a load never waits long); when parts
    are left past max_parts, the responder is told that queries slow down and what merges them."""
    from click.testing import CliRunner

    import oncall.store.compact as compact_module
    from oncall.cli import cli

    monkeypatch.setattr(compact_module, "AFTER_LOAD_POLICY", Policy(max_spans=1, max_parts=2))  # merges nothing
    db = tmp_path / "i.duckdb"
    notes = []
    for k in range(3):
        src = tmp_path / f"load{k}.jsonl"
        src.write_text("\n".join(tracegen.otlp_lines(k * 10, 10)) + "\n")
        result = CliRunner().invoke(cli, ["--db", str(db), "load", "--no-progress", str(src)])
        assert result.exit_code == 0, result.output
        notes.append("`oncall compact` merges them" in result.stderr)
    assert notes == [False, False, True]
    assert "the incident has 3 load parts" in result.stderr
