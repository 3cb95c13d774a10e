"""The fault campaign of issue 23, kept: hostile input and a hostile machine, through the real CLI.

Every bad input is generated here. For each case the campaign checks what a responder sees at 2 AM:
the exit code (README "Exit codes": 2 bad input or a machine that says no, 1 a file that failed,
3 only a bug in oncall), the message naming the file and line, and the incident's counts before
and after (a bad record is skipped, every good one loaded, nothing lost or doubled).

Machine cases need root (a size-limited tmpfs, a read-only bind mount); where the test is not
root, or the kernel refuses the mount, they are skipped with the reason.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import tracegen

from oncall.ingest.loader import load_paths
from oncall.store import open_db
from oncall.store.db import copy_incident

ROOT = Path(__file__).resolve().parent.parent
GOOD = 5  # spans in the incident before every case
DEEP = "[" * 10_000 + "]" * 10_000


def oncall(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ONCALL_DB", None)
    return subprocess.run([sys.executable, "-m", "oncall", *args], env=env, capture_output=True, text=True,
                          timeout=300, cwd=cwd)


@dataclass
class Counts:
    spans: int
    imports: int
    problems: int


def counts(db_path: Path) -> Counts:
    db = open_db(db_path, read_only=True)
    try:
        con = db.cursor()
        return Counts(*(int(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
                        for t in ("spans", "imports", "problems")))
    finally:
        db.close()


@pytest.fixture(scope="module")
def base_incident(tmp_path_factory) -> Path:
    """An incident holding GOOD spans, copied for each case (so 'before' is the same every time)."""
    tracegen.require_formats("otlp-jsonl", "otlp-json", "generic")
    d = tmp_path_factory.mktemp("base")
    good = d / "good.jsonl"
    tracegen.write_lines(good, tracegen.otlp_lines(1000, GOOD))
    db = open_db(d / "incident.duckdb")
    try:
        assert load_paths(db, [str(good)]).problems == []
    finally:
        db.close()
    return d / "incident.duckdb"


@pytest.fixture
def incident(base_incident: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "incident.duckdb"
    copy_incident(base_incident, dst)
    assert counts(dst).spans == GOOD
    return dst


def otlp_with(bad: str, good_before: int = 2, good_after: int = 2) -> str:
    """OTLP JSON Lines: good lines, the bad line, good lines (the bad one is line good_before + 1)."""
    lines = tracegen.otlp_lines(0, good_before) + [bad] + tracegen.otlp_lines(good_before, good_after)
    return "\n".join(lines) + "\n"


def generic_with(bad: str, good_before: int = 2, good_after: int = 2) -> str:
    lines = tracegen.generic_lines(0, good_before) + [bad] + tracegen.generic_lines(good_before, good_after)
    return "\n".join(lines) + "\n"


def otlp_span_line(**changes) -> str:
    span = tracegen.otlp_span(77)
    span.update(changes)
    return tracegen.otlp_line([span])


def generic_record_line(**fields) -> str:
    rec = {k: v for k, v in tracegen.generic_record(77).items() if k not in fields and k != "start_time"}
    body = json.dumps(rec)[:-1]
    return body + "".join(f', "{k}": {v}' for k, v in fields.items()) + "}"


def deep_attribute_line() -> str:
    span = tracegen.otlp_span(77)
    span["attributes"].append({"key": "deep", "value": "__DEEP__"})
    # AnyValue arrays in arrays, 2,000 deep: deeper than any JSON reader allows (built as text: json.dumps
    # itself cannot write it).
    nested = '{"arrayValue": {"values": [' * 2000 + '{"stringValue": "leaf"}' + "]}}" * 2000
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).replace('"__DEEP__"', nested)


def int_infinity_line() -> str:
    span = tracegen.otlp_span(77)
    span["attributes"].append({"key": "n", "value": {"intValue": "__INF__"}})
    return tracegen.otlp_line([span]).replace('"__INF__"', "Infinity")


# (name, file name, content, loaded from the file, the bad line, words the message holds)
BAD_RECORDS = [
    ("otlp: 10,000-deep line", "deep.jsonl", lambda: otlp_with('{"resourceSpans":' + DEEP + "}"), 4, 3, "nested deeper"),
    ("otlp: 10,000-deep attribute value", "deepattr.jsonl", lambda: otlp_with(deep_attribute_line()), 4, 3,
     "nested deeper"),
    ("generic: 10,000-deep line", "deep.jsonl", lambda: generic_with('{"request_id": "x", "v": ' + DEEP + "}"), 4, 3,
     "nested deeper"),
    ("otlp: intValue Infinity", "inf.jsonl", lambda: otlp_with(int_infinity_line()), 4, 3, "infinity"),
    ("otlp: start time 1e27 ns", "t27.jsonl", lambda: otlp_with(otlp_span_line(startTimeUnixNano="1" + "0" * 27)),
     4, 3, "start_time is out of range"),
    ("generic: created_at 1e20", "c20.jsonl", lambda: generic_with(generic_record_line(created_at="1e20")), 4, 3,
     "no unit"),
    ("generic: created_at 253402300800", "c10k.jsonl",
     lambda: generic_with(generic_record_line(created_at="253402300800")), 4, 3, "no unit"),
    ("generic: year 0", "y0.jsonl", lambda: generic_with(generic_record_line(created_at='"0000-06-01T00:00:00Z"')),
     4, 3, "before year 1"),
    ("generic: year 10000", "y10k.jsonl",
     lambda: generic_with(generic_record_line(created_at='"10000-01-01T00:00:00Z"')), 4, 3, "past 9999"),
    ("generic: epoch before year 1", "neg.jsonl",
     lambda: generic_with(generic_record_line(created_at="-62135596801")), 4, 3, "before year 1"),
    ("otlp: resourceSpans [[...]]", "nested.jsonl",
     lambda: otlp_with(json.dumps({"resourceSpans": [json.loads(tracegen.otlp_lines(77, 1)[0])["resourceSpans"]]})),
     4, 3, "resourceSpans[0] is an array"),
    ("otlp: spans is an object", "spansobj.jsonl",
     lambda: otlp_with(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": tracegen.otlp_span(77)}]}]})),
     4, 3, "spans is an object"),
]


@pytest.mark.parametrize("case", BAD_RECORDS, ids=[c[0] for c in BAD_RECORDS])
def test_a_bad_record_is_named_and_skipped(incident: Path, tmp_path: Path, case) -> None:
    _, fname, make, loaded, line, words = case
    path = tmp_path / fname
    path.write_text(make(), encoding="utf-8")
    before = counts(incident)
    res = oncall("--db", str(incident), "load", "--no-progress", str(path))
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr
    named = [ln for ln in res.stderr.splitlines() if ln.startswith(f"{path}:{line}: ")]
    assert named and words.lower() in named[0].lower(), res.stderr
    assert f"{loaded + 1:,} records read, 1 skipped" in res.stdout, res.stdout
    after = counts(incident)
    assert (after.spans, after.imports, after.problems) == (before.spans + loaded, before.imports + 1,
                                                            before.problems + 1)
    # Every later command reads the incident (no time Python cannot hold, no JSON it cannot parse).
    for cmd in (["search", "-n", "50", "--json"], ["changes", "--json"]):
        later = oncall("--db", str(incident), *cmd)
        assert later.returncode in (0, 1), (cmd, later.stderr)


@pytest.mark.parametrize("case", BAD_RECORDS[:4], ids=[c[0] for c in BAD_RECORDS[:4]])
def test_strict_fails_that_file_only(incident: Path, tmp_path: Path, case) -> None:
    _, fname, make, _, line, _ = case
    bad = tmp_path / "in" / f"a-{fname}"
    bad.parent.mkdir()
    bad.write_text(make(), encoding="utf-8")
    after_it = bad.parent / "b-good.jsonl"
    tracegen.write_lines(after_it, tracegen.otlp_lines(500, 3))
    before = counts(incident)
    res = oncall("--db", str(incident), "load", "--no-progress", "--strict", str(bad.parent))
    assert res.returncode == 2, res.stderr
    assert f"{bad}:{line}" in res.stderr and "Traceback" not in res.stderr
    assert counts(incident).spans == before.spans + 3  # the file after the bad one loaded


def test_a_bad_file_in_a_directory_never_stops_the_files_after_it(incident: Path, tmp_path: Path) -> None:
    d = tmp_path / "exports"
    d.mkdir()
    (d / "1-deep.jsonl").write_text(otlp_with('{"resourceSpans":' + DEEP + "}", 0, 0))
    (d / "2-good.jsonl").write_text("\n".join(tracegen.otlp_lines(200, 4)) + "\n")
    (d / "3-truncated.jsonl.gz").write_bytes(gzip.compress(otlp_with("", 50, 0).encode())[:200])
    (d / "4-good.jsonl").write_text("\n".join(tracegen.otlp_lines(300, 2)) + "\n")
    before = counts(incident)
    for _attempt in range(2):  # rerunning: the same word, nothing doubled
        res = oncall("--db", str(incident), "load", "--no-progress", str(d))
        assert res.returncode == 1, res.stderr  # it ran, loaded what it could, and a file failed
        assert "Traceback" not in res.stderr and "internal error" not in res.stderr
        assert f"{d / '1-deep.jsonl'}: unknown-format: its first record is JSON nested too deeply" in res.stderr
        assert f"{d / '3-truncated.jsonl.gz'}: truncated: truncated gzip stream" in res.stderr
        assert counts(incident).spans == before.spans + 6


def test_absurd_times_load_with_a_warning_naming_them(incident: Path, tmp_path: Path) -> None:
    year_3000 = tracegen.otlp_span(80)
    year_3000["startTimeUnixNano"] = str(32_503_680_000 * 10**9)
    year_3000["endTimeUnixNano"] = str(32_503_680_001 * 10**9)
    backwards = tracegen.otlp_span(81)
    backwards["endTimeUnixNano"] = str(int(backwards["startTimeUnixNano"]) - 5 * 10**9)
    path = tmp_path / "absurd.jsonl"
    tracegen.write_lines(path, [tracegen.otlp_line([s]) for s in (tracegen.otlp_span(79), year_3000, backwards)])
    slow = tmp_path / "slow.jsonl"
    tracegen.write_lines(slow, tracegen.generic_lines(0, 1) + [generic_record_line(
        created_at='"2026-01-01T00:00:00Z"', latency_ms="1.7e13")])
    before = counts(incident)
    res = oncall("--db", str(incident), "load", "--no-progress", str(path), str(slow))
    assert res.returncode == 0, res.stderr
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("warning: ")]
    assert any(f"{path}:2: " in w and "3000-01-01" in w for w in warnings), res.stderr
    assert any(f"{path}:3: " in w and "negative duration" in w for w in warnings), res.stderr
    assert any(f"{slow}:2: " in w and "1.7e+13 ms" in w for w in warnings), res.stderr
    assert counts(incident).spans == before.spans + 5


def test_a_ragged_csv_names_its_rows(incident: Path, tmp_path: Path) -> None:
    path = tmp_path / "calls.csv"
    path.write_text("request_id,model,input,output\n"
                    "r1,gpt-4o,hi,hello\n"
                    "r2,gpt-4o,a,b,c,d\n"
                    "r3,gpt-4o\n"
                    "r4,gpt-4o,q,a\n")
    before = counts(incident)
    res = oncall("--db", str(incident), "load", "--no-progress", "--json", str(path))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert [(p["line"], p["kind"]) for p in out["problems"]] == [(3, "bad-csv-row"), (4, "bad-csv-row")]
    assert out["files"][0]["records"] == 4 and out["files"][0]["skipped"] == 2
    assert counts(incident).spans == before.spans + 2
    db = open_db(incident, read_only=True)
    try:
        rows = db.cursor().execute("SELECT request_id, model, output_text, source_line FROM spans "
                                   "WHERE source_format = 'generic' ORDER BY source_line").fetchall()
    finally:
        db.close()
    assert rows == [("r1", "gpt-4o", "hello", 2), ("r4", "gpt-4o", "a", 5)]


@pytest.mark.parametrize("comp", ["gzip", "zstd"])
@pytest.mark.parametrize("cut", ["in the head", "past the head"])
@pytest.mark.parametrize("fmt", ["otlp", "generic-jsonl", "generic-csv"])
def test_a_truncated_compressed_file_loads_nothing(incident: Path, tmp_path: Path, comp: str, cut: str,
                                                   fmt: str) -> None:
    import zstandard

    n = 20 if cut == "in the head" else 3000  # 3000 records decompress to well past the 256 KB head
    if fmt == "otlp":
        text = "\n".join(tracegen.otlp_lines(0, n)) + "\n"
    elif fmt == "generic-jsonl":
        text = "\n".join(tracegen.generic_lines(0, n)) + "\n"
    else:
        text = "request_id,model,output\n" + "".join(f"r{i},gpt-4o,answer {i} " + "x" * 100 + "\n" for i in range(n))
    data = gzip.compress(text.encode()) if comp == "gzip" else zstandard.ZstdCompressor().compress(text.encode())
    path = tmp_path / f"export.{comp}"
    path.write_bytes(data[: len(data) * 3 // 4])
    before = counts(incident)
    res = oncall("--db", str(incident), "load", "--no-progress", str(path))
    assert res.returncode == 2, res.stderr
    line = res.stderr.strip().splitlines()[-1]
    assert line.startswith(f"oncall: error: {path}: truncated: truncated {comp} stream"), res.stderr
    assert "EOFError" not in res.stderr and "empty" not in line
    assert counts(incident) == before
