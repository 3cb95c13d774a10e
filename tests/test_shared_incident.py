"""One incident, many hands: consoles, scripts and loads on one incident at once, with real processes.

Every write is durable and visible to the others; nothing is lost, duplicated or half-written; an
unfinished load is invisible to readers; the demo never erases a responder's work.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tracegen

from oncall.ingest.loader import load_paths
from oncall.query.labels import add_label, add_note
from oncall.store import StoreError, open_db
from oncall.store.db import incident_files, wait_for
from oncall.store.parts import sidecar_dir

ROOT = Path(__file__).resolve().parent.parent


def oncall(db: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "oncall", "--db", str(db), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"oncall {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


@pytest.fixture
def loaded(tmp_path: Path) -> Path:
    tracegen.require_formats("otlp-jsonl")
    db_path = tmp_path / "incident.duckdb"
    a = tmp_path / "a.jsonl"
    tracegen.write_lines(a, tracegen.otlp_lines(0, 300))
    db = open_db(db_path)
    try:
        assert load_paths(db, [str(a)]).spans_added == 300
    finally:
        db.close()
    return db_path


def first_pks(db_path: Path, n: int) -> list[int]:
    db = open_db(db_path, read_only=True)
    try:
        return [int(r[0]) for r in db.cursor().execute(
            "SELECT span_pk FROM spans ORDER BY span_pk LIMIT ?", [n]).fetchall()]
    finally:
        db.close()


def test_a_reader_sees_another_process_write_within_two_seconds(loaded: Path) -> None:
    reader = open_db(loaded, read_only=True)
    try:
        pk = first_pks(loaded, 1)[0]
        oncall(loaded, "label", str(_request_of(reader, pk)), "bad", "--note", "wrong refund policy")
        oncall(loaded, "note", "paged at 02:04, looking at acme")
        assert reader.refresh() is True  # both commands have finished: one refresh folds both in
        assert reader.refresh() is False
        cur = reader.cursor()
        assert cur.execute("SELECT label, note FROM labels").fetchall() == [("bad", "wrong refund policy")]
        assert cur.execute("SELECT text FROM notes").fetchall() == [("paged at 02:04, looking at acme",)]
        assert [r[0] for r in cur.execute("SELECT kind FROM trail ORDER BY event_id").fetchall()][-2:] == \
            ["label", "note"]
    finally:
        reader.close()


def _request_of(db, pk: int) -> str:
    row = db.cursor().execute("SELECT coalesce(request_id, response_id, span_id) FROM spans WHERE span_pk = ?",
                              [pk]).fetchone()
    return row[0]


def test_read_only_refuses_writes_but_never_blocks_writers(loaded: Path) -> None:
    ro = open_db(loaded, read_only=True)
    rw = open_db(loaded)
    try:
        with pytest.raises(StoreError, match="read-only"):
            add_note(ro, "from a read-only console")
        add_note(rw, "from a script while a read-only console is open")
        assert ro.refresh() is True
        assert ro.cursor().execute("SELECT count(*) FROM notes").fetchone()[0] == 1
    finally:
        ro.close()
        rw.close()


WRITER = """
import sys
from oncall.store import open_db
from oncall.query.labels import add_label, add_note
db = open_db(sys.argv[1])
who, n, pks = sys.argv[2], int(sys.argv[3]), [int(x) for x in sys.argv[4].split(',')]
for i in range(n):
    add_label(db, pks[i % len(pks)], 'bad' if i % 2 else 'good', note=f'{who}-{i}', author=who)
    add_note(db, f'{who} note {i}', author=who)
db.close()
"""


@pytest.mark.slow
def test_concurrent_writers_and_a_load_lose_and_duplicate_nothing(loaded: Path, tmp_path: Path) -> None:
    """Three label/note loops, a load and a reader polling, all at once, as separate processes."""
    b = tmp_path / "b.jsonl"
    tracegen.write_lines(b, tracegen.otlp_lines(300, 5_000))
    pks = ",".join(str(p) for p in first_pks(loaded, 20))
    reader = open_db(loaded, read_only=True)
    n = 40
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(loaded), f"w{k}", str(n), pks], cwd=ROOT,
                                stderr=subprocess.PIPE, text=True) for k in range(3)]
    load = subprocess.Popen([sys.executable, "-m", "oncall", "--db", str(loaded), "load", "--no-progress", str(b)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen_labels = []
    try:
        while any(p.poll() is None for p in [*writers, load]):
            reader.refresh()
            seen_labels.append(reader.cursor().execute("SELECT count(*) FROM labels").fetchone()[0])
            time.sleep(0.05)
        for p in [*writers, load]:
            assert p.returncode == 0, p.stderr.read()
        reader.refresh()
        cur = reader.cursor()
        assert seen_labels == sorted(seen_labels), "a reader saw labels disappear"
        assert cur.execute("SELECT count(*), count(DISTINCT label_id), min(label_id), max(label_id) FROM labels"
                           ).fetchone() == (3 * n, 3 * n, 1, 3 * n)
        assert cur.execute("SELECT count(*), count(DISTINCT note_id) FROM notes").fetchone() == (3 * n, 3 * n)
        for k in range(3):
            notes = [r[0] for r in cur.execute("SELECT note FROM labels WHERE author = ? ORDER BY label_id",
                                               [f"w{k}"]).fetchall()]
            assert notes == [f"w{k}-{i}" for i in range(n)], "one writer's labels came back out of order"
        # A label and its trail event are one write: as many label events as labels.
        assert cur.execute("SELECT count(*) FROM trail WHERE kind = 'label'").fetchone()[0] == 3 * n
        assert cur.execute("SELECT count(*), count(DISTINCT (trace_id, span_id)) FROM spans").fetchone() == \
            (5_300, 5_300)
    finally:
        reader.close()
        for p in [*writers, load]:
            if p.poll() is None:
                p.kill()


KILL_WRITER = """
import sys, os
from oncall.store import open_db
db = open_db(sys.argv[1])
# A writer that dies mid-entry: half a line, no newline, as a SIGKILL during write() would leave.
with open(db.dir / 'journal.jsonl', 'ab') as fh:
    fh.write(b'{"seq": 99, "rows": [["notes", {"text": "half')
os._exit(0)
"""


def test_a_torn_journal_entry_is_never_read_and_the_next_writer_cuts_it(loaded: Path) -> None:
    db = open_db(loaded)
    try:
        add_note(db, "before")
        subprocess.run([sys.executable, "-c", KILL_WRITER, str(loaded)], cwd=ROOT, check=True)
        reader = open_db(loaded, read_only=True)
        assert reader.cursor().execute("SELECT text FROM notes").fetchall() == [("before",)]
        add_note(db, "after")
        assert reader.refresh()
        assert [r[0] for r in reader.cursor().execute("SELECT text FROM notes ORDER BY note_id").fetchall()] == \
            ["before", "after"]
        reader.close()
        assert b"half" not in (db.dir / "journal.jsonl").read_bytes()
    finally:
        db.close()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_an_unfinished_load_is_invisible_to_readers_before_any_write(loaded: Path, tmp_path: Path) -> None:
    """Killed mid-file, a load's rows are never counted: not even before the next write cleans up."""
    b = tmp_path / "b.jsonl"
    tracegen.write_lines(b, tracegen.otlp_lines(300, 150_000))
    proc = subprocess.Popen([sys.executable, "-m", "oncall", "--db", str(loaded), "load", "--no-progress", str(b)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    part_dir = sidecar_dir(loaded) / "parts"
    try:
        # Wait until the second part exists and has grown (rows are being written into it).
        assert wait_for(lambda: any(p.stat().st_size > 4_000_000 for p in part_dir.glob("part-2.duckdb*")),
                        120, 0.05), "the load never started writing"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = oncall(loaded, "search", "--json", "--limit", "1", "kind=llm,span,agent,tool,chain")
    assert json.loads(out.stdout)["total"] <= 300
    reader = open_db(loaded, read_only=True)
    try:
        assert reader.cursor().execute("SELECT count(*) FROM spans").fetchone()[0] == 300
        assert reader.cursor().execute("SELECT count(*) FROM imports").fetchone()[0] == 1
    finally:
        reader.close()
    # The next load salvages nothing of the killed file and loads it whole.
    oncall(loaded, "load", "--no-progress", str(b))
    reader = open_db(loaded, read_only=True)
    try:
        assert reader.cursor().execute("SELECT count(*), count(DISTINCT (trace_id, span_id)) FROM spans"
                                       ).fetchone() == (150_300, 150_300)
    finally:
        reader.close()


_family = tracegen.family_lines


def test_a_root_loaded_after_its_children_still_gives_them_its_keys(tmp_path: Path) -> None:
    """Children in one load, their root (with tenant) in a later one: the children gain the tenant
    without the earlier part, which readers hold open, being written; labels on them survive."""
    families = [_family(i) for i in range(20)]
    db_path = tmp_path / "incident.duckdb"
    (tmp_path / "children.jsonl").write_text("\n".join(c for _, c in families) + "\n")
    (tmp_path / "roots.jsonl").write_text("\n".join(r for r, _ in families) + "\n")
    db = open_db(db_path)
    reader = open_db(db_path, read_only=True)
    try:
        load_paths(db, [str(tmp_path / "children.jsonl")])
        reader.refresh()
        cur = reader.cursor()
        child_pk = cur.execute("SELECT span_pk FROM spans WHERE parent_id IS NOT NULL ORDER BY span_pk LIMIT 1"
                               ).fetchone()[0]
        before = cur.execute("SELECT tenant FROM spans WHERE span_pk = ?", [child_pk]).fetchone()[0]
        add_label(db, child_pk, "bad", note="before its root arrived")
        load_paths(db, [str(tmp_path / "roots.jsonl")])
        assert reader.refresh()
        after = cur.execute("SELECT tenant, inherited->>'$.tenant.from_span' FROM spans WHERE span_pk = ?",
                            [child_pk]).fetchall()
        total = cur.execute("SELECT count(*), count(DISTINCT span_pk) FROM spans").fetchone()
        assert total == (40, 40)
        assert before is None
        assert after == [("acme-0", f"{1:08x}" + "f" * 8)]
        assert cur.execute("SELECT count(*) FROM spans WHERE kind = 'llm' AND tenant LIKE 'acme-%'"
                           ).fetchone()[0] == 20
        labelled = cur.execute("SELECT s.tenant FROM labels l JOIN spans s USING (span_pk)").fetchall()
        assert labelled == [("acme-0",)]
        assert json.loads(oncall(db_path, "search", "--json", "tenant=acme-3").stdout)["total"] == 1
    finally:
        reader.close()
        db.close()


def test_the_demo_never_erases_a_responders_work(tmp_path: Path) -> None:
    db_path = tmp_path / "demo.duckdb"
    oncall(db_path, "demo", "--no-tui", "--hours", "1")
    oncall(db_path, "note", "acme says refunds broke at 01:15")
    again = oncall(db_path, "demo", "--no-tui", "--hours", "1", check=False)
    assert again.returncode == 2
    assert "1 notes" in again.stderr and "--force" in again.stderr
    db = open_db(db_path, read_only=True)
    try:
        assert db.cursor().execute("SELECT text FROM notes").fetchall() == [("acme says refunds broke at 01:15",)]
    finally:
        db.close()
    forced = oncall(db_path, "demo", "--no-tui", "--hours", "1", "--force")
    assert forced.returncode == 0
    db = open_db(db_path, read_only=True)
    try:
        assert db.cursor().execute("SELECT count(*) FROM notes").fetchone()[0] == 0
    finally:
        db.close()


def test_incident_files_and_copy(loaded: Path, tmp_path: Path) -> None:
    from oncall.store.db import copy_incident

    db = open_db(loaded)
    add_note(db, "copied along")
    db.close()
    files = incident_files(loaded)
    assert loaded in files and any(f.name == "journal.jsonl" for f in files)
    assert any(f.name.startswith("part-") for f in files)
    dst = tmp_path / "copy" / "incident.duckdb"
    dst.parent.mkdir()
    copy_incident(loaded, dst)
    shutil.rmtree(sidecar_dir(loaded))
    loaded.unlink()
    copy = open_db(dst, read_only=True)
    try:
        assert copy.cursor().execute("SELECT count(*) FROM spans").fetchone()[0] == 300
        assert copy.cursor().execute("SELECT text FROM notes").fetchall() == [("copied along",)]
    finally:
        copy.close()


def test_an_incident_built_before_the_journal_reads_as_it_is_and_takes_new_work(tmp_path: Path) -> None:
    """A single-file incident (spans, labels, a 'loading' import left by a killed load, in the base
    file) opens read-only as it is; new labels continue its ids; a load dedupes against its spans."""
    import duckdb

    tracegen.require_formats("otlp-jsonl")
    db_path = tmp_path / "old.duckdb"
    open_db(db_path).close()  # the base file, schema v2
    src = tmp_path / "a.jsonl"
    tracegen.write_lines(src, tracegen.otlp_lines(0, 50))
    staging = tmp_path / "staging.duckdb"
    s = open_db(staging)
    load_paths(s, [str(src)])
    s.close()
    part = sidecar_dir(staging) / "parts" / "part-1.duckdb"
    con = duckdb.connect(str(db_path))
    con.execute(f"ATTACH '{part}' AS p (READ_ONLY)")
    # The old file predates later columns (cost_source …): copy the ones it has.
    cols = [r[0] for r in con.execute("SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
                                      "AND table_name = 'spans'").fetchall()]
    con.execute(f"INSERT INTO spans SELECT {', '.join(cols)} FROM p.spans")
    con.execute("INSERT INTO span_ids SELECT * FROM p.span_ids")
    con.execute("INSERT INTO imports SELECT * FROM p.imports")
    pk = con.execute("SELECT min(span_pk) FROM spans").fetchone()[0]
    con.execute("INSERT INTO labels VALUES (7, ?, 'req', 'bad', 'old verdict', 'alice', now())", [pk])
    # A load that died in the old layout: its rows stay in the file, marked 'loading'.
    con.execute("INSERT INTO imports VALUES (99, 'x', 'y', 0, 'otlp-jsonl', now(), NULL, 1, 0, 0, 'loading', NULL)")
    con.execute("INSERT INTO spans (span_pk, import_id, trace_id, span_id, kind) VALUES (999999, 99, 't', 's', 'llm')")
    con.execute("DETACH p")
    con.close()

    db = open_db(db_path)
    try:
        cur = db.cursor()
        assert cur.execute("SELECT count(*) FROM spans").fetchone()[0] == 50
        assert cur.execute("SELECT count(*) FROM imports").fetchone()[0] == 1
        assert add_label(db, pk, "good", note="new verdict") == 8
        assert cur.execute("SELECT label_id, note FROM labels ORDER BY label_id").fetchall() == \
            [(7, "old verdict"), (8, "new verdict")]
        again = tmp_path / "again.jsonl"
        tracegen.write_lines(again, tracegen.otlp_lines(0, 60))
        report = load_paths(db, [str(again)])
        assert report.spans_added == 10 and report.files[0].duplicates == 50
        assert cur.execute("SELECT count(*), count(DISTINCT (trace_id, span_id)) FROM spans").fetchone() == (60, 60)
    finally:
        db.close()
