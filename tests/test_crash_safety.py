"""A load killed with SIGKILL mid-file leaves the database exactly as it was before that file.

File A is loaded; then `oncall load B` (a big OTLP JSON Lines file) runs in a subprocess and is
SIGKILLed while it is busy importing. The reopened database must hold exactly A (spans, ids,
imports, problems), and B must then load completely.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tracegen

from oncall.ingest.loader import load_paths
from oncall.store import open_db

ROOT = Path(__file__).resolve().parent.parent
A_SPANS = 500
B_SPANS = 150_000
# Busy for this much CPU time means imports are done and B's rows are being parsed and written.
KILL_AFTER_CPU_S = 2.5


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def snapshot(db_path: Path) -> dict[str, object]:
    db = open_db(db_path)
    try:
        con = db.cursor()
        return {
            "spans": con.execute("SELECT trace_id, span_id, import_id, response_id FROM spans "
                                 "ORDER BY trace_id, span_id").fetchall(),
            "span_ids": con.execute("SELECT count(*) FROM span_ids").fetchone()[0],
            "imports": con.execute("SELECT import_id, path, sha256, spans, status FROM imports "
                                   "ORDER BY import_id").fetchall(),
            "problems": con.execute("SELECT count(*) FROM problems").fetchone()[0],
        }
    finally:
        db.close()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigkill_mid_file_leaves_database_as_before(tmp_path):
    tracegen.require_formats("otlp-jsonl")
    db_path = tmp_path / "incident.duckdb"
    a = tmp_path / "a.jsonl"
    b = tmp_path / "b.jsonl"
    tracegen.write_lines(a, tracegen.otlp_lines(0, A_SPANS))
    tracegen.write_lines(b, tracegen.otlp_lines(A_SPANS, B_SPANS))

    db = open_db(db_path)
    report = load_paths(db, [str(a)])
    db.close()
    assert report.spans_added == A_SPANS, report.to_dict()
    before = snapshot(db_path)
    assert len(before["spans"]) == A_SPANS

    proc = subprocess.Popen(
        [sys.executable, "-m", "oncall", "--db", str(db_path), "load", "--no-progress", str(b)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while cpu_seconds(proc.pid) < KILL_AFTER_CPU_S:
            if proc.poll() is not None:
                pytest.fail(f"the load of B finished before it could be killed (exit {proc.returncode}); "
                            f"make B bigger than {B_SPANS} spans. stderr: {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("the load of B never got busy")
            time.sleep(0.05)
        assert proc.poll() is None, "the load of B ended before SIGKILL"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    assert snapshot(db_path) == before

    db = open_db(db_path)
    try:
        report = load_paths(db, [str(b)])
        assert [f.status for f in report.files] == ["loaded"], report.to_dict()
        assert report.spans_added == B_SPANS
        assert report.problems == []
        con = db.cursor()
        assert con.execute("SELECT count(*) FROM spans").fetchone()[0] == A_SPANS + B_SPANS
        assert con.execute("SELECT count(DISTINCT (trace_id, span_id)) FROM spans").fetchone()[0] == A_SPANS + B_SPANS
    finally:
        db.close()
