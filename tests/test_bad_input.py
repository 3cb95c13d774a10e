"""Bad input end to end: every problem is reported as `file:line: reason`, the rest of the file loads.

Covers, through load_paths and the CLI, with OTLP JSON Lines and generic JSONL: a truncated last
line, invalid UTF-8 in one line, wrong types, a 10 MB output, duplicate spans, an empty file, a
directory of mixed formats, an unknown format, --strict, and loading the same file twice.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
import tracegen

from oncall.ingest import writer
from oncall.ingest.loader import load_paths
from oncall.store import open_db

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _importers():
    tracegen.require_formats("otlp-jsonl", "generic")


def span_count(db) -> int:
    return db.cursor().execute("SELECT count(*) FROM spans").fetchone()[0]


def one_row(db, where: str, params: list) -> dict:
    rel = db.cursor().execute(f"SELECT * FROM spans WHERE {where}", params)
    cols = [d[0] for d in rel.description]
    rows = rel.fetchall()
    assert len(rows) == 1, f"expected one span where {where} {params}, got {len(rows)}"
    return dict(zip(cols, rows[0], strict=True))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "oncall", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def assert_problem_at(report, path: Path, line: int) -> None:
    lines = [p.line for p in report.problems]
    assert line in lines, f"expected a problem at {path}:{line}; got {[str(p) for p in report.problems]}"
    p = next(p for p in report.problems if p.line == line)
    assert str(p).startswith(f"{path}:{line}: ")
    assert p.message.strip()


LINE_FORMATS = {
    "otlp": (tracegen.otlp_lines, "otlp-jsonl"),
    "generic": (tracegen.generic_lines, "generic"),
}


@pytest.mark.parametrize("kind", sorted(LINE_FORMATS))
def test_truncated_last_line(db, tmp_path, kind):
    make, fmt = LINE_FORMATS[kind]
    lines = make(0, 10)
    path = tmp_path / f"{kind}.jsonl"
    path.write_text("\n".join(lines[:9]) + "\n" + lines[9][: len(lines[9]) // 2], encoding="utf-8")
    report = load_paths(db, [str(path)])
    assert [(f.status, f.format) for f in report.files] == [("loaded", fmt)]
    assert report.spans_added == 9
    assert_problem_at(report, path, 10)
    assert span_count(db) == 9


@pytest.mark.parametrize("kind", sorted(LINE_FORMATS))
def test_invalid_utf8_in_one_line(db, tmp_path, kind):
    make, fmt = LINE_FORMATS[kind]
    lines = [ln.encode() for ln in make(0, 10)]
    lines[2] = lines[2].replace(b"Answer number 2", b"Answer \xff\xfe number 2")
    path = tmp_path / f"{kind}.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    report = load_paths(db, [str(path)])
    assert [(f.status, f.format) for f in report.files] == [("loaded", fmt)]
    assert report.spans_added == 9
    assert_problem_at(report, path, 3)
    assert "utf" in next(p for p in report.problems if p.line == 3).message.lower()


def test_wrong_types_generic(db, tmp_path):
    recs = [tracegen.generic_record(i) for i in range(5)]
    recs[1]["input_tokens"] = "many"  # string where a number goes
    recs[2]["model"] = {"name": "gpt-4o-mini"}  # object where a string goes
    recs[3]["output_tokens"] = [1, 2]
    path = tmp_path / "generic.jsonl"
    tracegen.write_lines(path, [json.dumps(r) for r in recs])
    report = load_paths(db, [str(path)])
    assert [f.status for f in report.files] == ["loaded"], report.to_dict()
    # Either the bad record is reported at its line or it loads with the bad field left empty;
    # it never takes the rest of the file down and never stores a wrong value.
    loaded = {r[0] for r in db.cursor().execute("SELECT request_id FROM spans").fetchall()}
    reported = {p.line for p in report.problems}
    for i in range(5):
        assert f"req-{i:08d}" in loaded or (i + 1) in reported, f"record {i} neither loaded nor reported"
    assert {"req-00000000", "req-00000004"} <= loaded
    if "req-00000001" in loaded:
        row = one_row(db, "request_id = ?", ["req-00000001"])
        assert row["input_tokens"] is None
        assert row["output_tokens"] == recs[1]["output_tokens"]
        assert "many" in row["raw"]  # the original value is kept
    if "req-00000002" in loaded:
        row = one_row(db, "request_id = ?", ["req-00000002"])
        assert row["model"] is None or "gpt-4o-mini" in row["model"]
    if "req-00000003" in loaded:
        assert one_row(db, "request_id = ?", ["req-00000003"])["output_tokens"] is None


def test_wrong_types_otlp(db, tmp_path):
    spans = [tracegen.otlp_span(i) for i in range(5)]
    for kv in spans[1]["attributes"]:
        if kv["key"] == "gen_ai.usage.input_tokens":
            kv["value"] = {"stringValue": "many"}
    spans[2]["name"] = {"not": "a string"}
    spans[3]["startTimeUnixNano"] = "yesterday"
    path = tmp_path / "otlp.jsonl"
    tracegen.write_lines(path, [tracegen.otlp_line([s]) for s in spans])
    report = load_paths(db, [str(path)])
    assert [f.status for f in report.files] == ["loaded"], report.to_dict()
    loaded = {r[0] for r in db.cursor().execute("SELECT response_id FROM spans").fetchall()}
    reported = {p.line for p in report.problems}
    for i in range(5):
        assert f"chatcmpl-gen{i:08d}" in loaded or (i + 1) in reported, f"span {i} neither loaded nor reported"
    assert {"chatcmpl-gen00000000", "chatcmpl-gen00000004"} <= loaded
    if "chatcmpl-gen00000001" in loaded:
        row = one_row(db, "response_id = ?", ["chatcmpl-gen00000001"])
        assert row["input_tokens"] is None
        assert row["output_tokens"] == 21
    if "chatcmpl-gen00000003" in loaded:
        assert one_row(db, "response_id = ?", ["chatcmpl-gen00000003"])["start_time"] is None


@pytest.mark.parametrize("kind", sorted(LINE_FORMATS))
def test_ten_megabyte_output(db, tmp_path, kind):
    big = ("The quick brown fox jumps over the lazy dog. " * 240_000)[: 10 * 1024 * 1024]
    make, fmt = LINE_FORMATS[kind]
    lines = make(0, 3)
    lines[1] = (tracegen.otlp_line([tracegen.otlp_span(1, output=big)]) if kind == "otlp"
                else json.dumps(tracegen.generic_record(1, output=big)))
    path = tmp_path / f"{kind}.jsonl"
    tracegen.write_lines(path, lines)
    report = load_paths(db, [str(path)])
    assert [(f.status, f.format) for f in report.files] == [("loaded", fmt)]
    assert report.problems == []
    assert report.spans_added == 3
    n = db.cursor().execute("SELECT max(length(output_text)) FROM spans").fetchone()[0]
    assert n == len(big)


@pytest.mark.parametrize("chunk", [250_000, 3], ids=["one-bucket", "many-buckets"])
def test_duplicate_spans_kept_once(db, tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(writer, "FINISH_CHUNK_SPANS", chunk)  # finish() works through buckets of traces
    lines = tracegen.otlp_lines(0, 6)
    lines.append(lines[2])  # an exporter retry
    path = tmp_path / "dups.jsonl"
    tracegen.write_lines(path, lines)
    report = load_paths(db, [str(path)])
    f = report.files[0]
    assert (f.status, f.spans, f.duplicates) == ("loaded", 6, 1)
    assert span_count(db) == 6
    # An overlapping export (different file, some spans already loaded) adds only the new ones.
    overlap = tmp_path / "overlap.jsonl"
    tracegen.write_lines(overlap, tracegen.otlp_lines(4, 6))
    f2 = load_paths(db, [str(overlap)]).files[0]
    assert (f2.status, f2.spans, f2.duplicates) == ("loaded", 4, 2)
    assert span_count(db) == 10


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"], ids=["zero-bytes", "blank-lines"])
def test_empty_file(db, tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    report = load_paths(db, [str(path)])
    f = report.files[0]
    assert f.status in ("failed", "skipped")
    text = " ".join([f.note or ""] + [str(p) for p in f.problems])
    assert "empty" in text.lower(), text
    assert span_count(db) == 0
    res = run_cli("--db", str(tmp_path / "cli.duckdb"), "load", str(path))
    assert "Traceback" not in res.stderr
    assert "empty" in (res.stdout + res.stderr).lower()
    assert res.returncode in (1, 2)


def test_directory_of_mixed_formats(db, tmp_path):
    d = tmp_path / "exports"
    (d / "nested").mkdir(parents=True)
    tracegen.write_lines(d / "a-otlp.jsonl", tracegen.otlp_lines(0, 5))
    tracegen.write_lines(d / "b-generic.jsonl", tracegen.generic_lines(100, 4))
    with gzip.open(d / "nested" / "c-otlp.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(tracegen.otlp_lines(200, 3)) + "\n")
    bad = tracegen.otlp_lines(300, 3)
    bad[1] = "{not json"
    tracegen.write_lines(d / "d-otlp-bad-line.jsonl", bad)
    report = load_paths(db, [str(d)])
    got = {Path(f.path).name: (f.status, f.format, f.spans) for f in report.files}
    assert got == {
        "a-otlp.jsonl": ("loaded", "otlp-jsonl", 5),
        "b-generic.jsonl": ("loaded", "generic", 4),
        "c-otlp.jsonl.gz": ("loaded", "otlp-jsonl", 3),
        "d-otlp-bad-line.jsonl": ("loaded", "otlp-jsonl", 2),
    }
    assert_problem_at(report, d / "d-otlp-bad-line.jsonl", 2)
    assert len(report.problems) == 1
    assert span_count(db) == 14


UNKNOWN = b"\x00\x01\x02\x03binary blob that is no trace export\x00\xff" * 20


def test_unknown_format_lists_supported(db, tmp_path):
    from oncall.ingest import registry

    path = tmp_path / "mystery.bin"
    path.write_bytes(UNKNOWN)
    report = load_paths(db, [str(path)])
    f = report.files[0]
    assert f.status == "failed"
    msg = str(f.problems[0])
    assert msg.startswith(f"{path}: ")
    for name in registry.names():
        assert name in msg
    res = run_cli("--db", str(tmp_path / "cli.duckdb"), "load", str(path))
    assert res.returncode == 2, res
    assert "Traceback" not in res.stderr
    assert "otlp-jsonl" in res.stderr and str(path) in res.stderr


def test_unknown_format_among_good_files_is_not_usage_error(tmp_path):
    good = tmp_path / "good.jsonl"
    tracegen.write_lines(good, tracegen.otlp_lines(0, 3))
    (tmp_path / "mystery.bin").write_bytes(UNKNOWN)
    res = run_cli("--db", str(tmp_path / "cli.duckdb"), "load", str(good), str(tmp_path / "mystery.bin"))
    assert res.returncode == 1, res  # it ran, loaded what it could, and found a problem
    assert "mystery.bin" in res.stderr


def test_strict_makes_a_problem_fatal_and_writes_nothing(tmp_path):
    lines = tracegen.otlp_lines(0, 8)
    lines[4] = lines[4][:40]
    path = tmp_path / "bad.jsonl"
    tracegen.write_lines(path, lines)
    db_path = tmp_path / "cli.duckdb"
    res = run_cli("--db", str(db_path), "load", "--strict", str(path))
    assert res.returncode == 2, res
    assert f"{path}:5" in res.stderr
    assert "Traceback" not in res.stderr
    from oncall.store import open_db

    db = open_db(db_path)
    try:
        con = db.cursor()
        assert con.execute("SELECT count(*) FROM spans").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM imports WHERE status = 'loaded'").fetchone()[0] == 0
    finally:
        db.close()
    # Without --strict the same file loads all but the bad line, exit 0, problem on stderr.
    res = run_cli("--db", str(db_path), "load", str(path))
    assert res.returncode == 0, res
    assert f"{path}:5: " in res.stderr


def test_loading_the_same_file_twice_adds_nothing(db, tmp_path):
    path = tmp_path / "once.jsonl"
    tracegen.write_lines(path, tracegen.otlp_lines(0, 7))
    first = load_paths(db, [str(path)])
    assert first.spans_added == 7
    second = load_paths(db, [str(path)])
    assert [f.status for f in second.files] == ["already-loaded"]
    assert second.spans_added == 0
    copy = tmp_path / "copy-under-another-name.jsonl"
    copy.write_bytes(path.read_bytes())
    third = load_paths(db, [str(copy)])
    assert third.spans_added == 0
    assert span_count(db) == 7
    assert db.cursor().execute("SELECT count(*) FROM span_ids WHERE id_kind = 'span'").fetchone()[0] == 7


def _family_lines(traces: int) -> list[str]:
    """Traces of root -> child -> grandchild where only the root carries tenant and user."""
    out = []
    for t in range(traces):
        tid = f"{t + 1:032x}"
        root, child, grand = f"{t + 1:08x}00000001", f"{t + 1:08x}00000002", f"{t + 1:08x}00000003"
        # Children first, as a batching exporter writes them (the root ends last).
        out.append(json.dumps({"trace_id": tid, "span_id": grand, "parent_id": child, "kind": "llm",
                               "model": "gpt-4o", "start_time": 1_700_000_000 + t}))
        out.append(json.dumps({"trace_id": tid, "span_id": child, "parent_id": root, "kind": "agent",
                               "start_time": 1_700_000_000 + t, "feature": "own-feature"}))
        out.append(json.dumps({"trace_id": tid, "span_id": root, "kind": "chain", "tenant": f"tenant-{t % 4}",
                               "user_id": f"u{t}", "feature": "root-feature", "start_time": 1_700_000_000 + t}))
    return out


@pytest.mark.parametrize("chunk", [250_000, 5], ids=["one-bucket", "many-buckets"])
def test_inheritance_is_the_same_in_buckets(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(writer, "FINISH_CHUNK_SPANS", chunk)
    path = tmp_path / "family.jsonl"
    tracegen.write_lines(path, _family_lines(30))
    db = open_db(tmp_path / f"family-{chunk}.duckdb")
    try:
        assert load_paths(db, [str(path)]).spans_added == 90
        rows = db.cursor().execute(
            "SELECT kind, tenant, user_id, feature, inherited->>'$.tenant.from_span' FROM spans "
            "WHERE trace_id = ? ORDER BY span_id", [f"{8:032x}"]).fetchall()
        root = f"{8:08x}00000001"
        assert rows == [("chain", "tenant-3", "u7", "root-feature", None),
                        ("agent", "tenant-3", "u7", "own-feature", root),
                        ("llm", "tenant-3", "u7", "own-feature", root)]
        assert db.cursor().execute("SELECT count(*) FROM spans WHERE tenant IS NULL").fetchone()[0] == 0
    finally:
        db.close()
