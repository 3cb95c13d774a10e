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


# -- a machine that says no ------------------------------------------------------------------------
def _mount(*args: str) -> str | None:
    """Run mount; None when it worked, else why not (for the skip reason)."""
    if os.geteuid() != 0:
        return "needs root (a tmpfs or a bind mount); CI runs as root"
    res = subprocess.run(["mount", *args], capture_output=True, text=True)
    return None if res.returncode == 0 else f"mount {' '.join(args)} refused: {res.stderr.strip()}"


@pytest.fixture
def read_only_incident(incident: Path, tmp_path: Path):
    """The incident's directory bind-mounted read-only (the original stays writable for checks)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    why = _mount("--bind", str(incident.parent), str(ro))
    if why:
        pytest.skip(why)
    try:
        why = _mount("-o", "remount,bind,ro", str(ro))
        if why:
            pytest.skip(why)
        yield ro / incident.name
    finally:
        subprocess.run(["umount", str(ro)], check=False)


@pytest.fixture
def full_disk(tmp_path: Path):
    """A 2 MB tmpfs: room for an incident's base file and journal, not for a load's part."""
    d = tmp_path / "small"
    d.mkdir()
    why = _mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(d))
    if why:
        pytest.skip(why)
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], check=False)


def files_in(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())


def test_a_read_only_incident_reads_and_refuses_writes_in_one_line(read_only_incident: Path, tmp_path: Path) -> None:
    db = str(read_only_incident)
    more = tmp_path / "more.jsonl"
    tracegen.write_lines(more, tracegen.otlp_lines(400, 3))
    before = counts(read_only_incident)
    assert oncall("--db", db, "search", "-n", "3", "--json").returncode == 0  # readers still work
    for args, doing in ((["load", "--no-progress", str(more)], "loading"),
                        (["note", "a note"], "writing to the incident's journal"),
                        (["label", "chatcmpl-gen00001000", "bad"], "writing to the incident's journal"),
                        (["postmortem", "--out", str(read_only_incident.parent / "pm.md")], "writing the postmortem")):
        res = oncall("--db", db, *args)
        assert res.returncode == 2, (args, res.stderr)
        line = res.stderr.strip()
        assert "\n" not in line and "Traceback" not in line, line
        assert str(read_only_incident.parent) in line and "read-only" in line and doing in line, line
    assert counts(read_only_incident) == before
    from oncall.tui.app import open_for_console

    store, read_only, reason = open_for_console(read_only_incident)  # the console offers read-only
    try:
        assert read_only and "read-only" in reason
    finally:
        store.close()


def test_a_full_disk_fails_the_load_in_one_line_and_removes_its_part(full_disk: Path, tmp_path: Path) -> None:
    db = full_disk / "incident.duckdb"
    big = tmp_path / "big.jsonl"
    tracegen.write_lines(big, tracegen.otlp_lines(0, 3000))

    def load_fails_for_space() -> None:
        res = oncall("--db", str(db), "load", "--no-progress", str(big))
        assert res.returncode == 2, res.stderr
        line = res.stderr.strip()
        assert "\n" not in line and line.startswith(f"oncall: error: {db}.d: no space left on the device"), line
        assert "part was removed" in line and "--db" in line
        assert not [f for f in files_in(full_disk) if "/parts/" in f or f.endswith(".tmp")], files_in(full_disk)

    # Into a new incident: the load wrote nothing, so it leaves no database (issue 26 item 7), and
    # none of the disk's space is kept from the responder.
    load_fails_for_space()
    assert files_in(full_disk) == [], files_in(full_disk)
    # Into an incident that holds the responder's work: it stays as it was, and stays writable.
    open_db(db).close()  # the base file and a note fit on this disk; a load's part does not
    assert oncall("--db", str(db), "note", "before the load").returncode == 0
    for _attempt in range(2):
        load_fails_for_space()
        assert counts(db).spans == 0
    assert oncall("--db", str(db), "note", "still writable for small things").returncode == 0
    res = oncall("--db", str(db), "timeline", "--json")
    assert res.returncode == 0 and "before the load" in res.stdout and "still writable" in res.stdout, res.stderr


def test_a_writer_that_fails_for_space_leaves_no_tmp(full_disk: Path, incident: Path) -> None:
    with open(full_disk / "filler", "wb", buffering=0) as fh:  # fill the disk to the last block
        try:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
        except OSError:
            pass
    out = full_disk / "pm.md"
    res = oncall("--db", str(incident), "postmortem", "--out", str(out))
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().startswith(f"oncall: error: {out}: no space left on the device"), res.stderr
    assert files_in(full_disk) == ["filler"]


def test_an_unreadable_directory_or_a_glob_inside_one_is_named(incident: Path, tmp_path: Path) -> None:
    if os.geteuid() != 0 or not Path("/usr/sbin/capsh").exists() and not Path("/sbin/capsh").exists():
        pytest.skip("needs root and capsh to drop the capability that lets root read any directory")
    exports = tmp_path / "exports"
    (exports / "locked").mkdir(parents=True)
    tracegen.write_lines(exports / "locked" / "a.jsonl", tracegen.otlp_lines(0, 2))
    tracegen.write_lines(exports / "b.jsonl", tracegen.otlp_lines(10, 2))
    (exports / "locked").chmod(0)
    before = counts(incident)
    try:
        for target, named in ((exports, exports / "locked"), (exports / "locked" / "*.jsonl", exports / "locked"),
                              (exports / "locked" / "a.jsonl", exports / "locked" / "a.jsonl")):
            cmd = " ".join(f"'{x}'" for x in (sys.executable, "-m", "oncall", "--db", str(incident), "load",
                                                "--no-progress", str(target)))
            res = subprocess.run(["capsh", "--drop=cap_dac_override,cap_dac_read_search", "--", "-c", cmd],
                                 capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
            assert res.returncode == 2, res.stderr
            line = res.stderr.strip()
            assert "\n" not in line and line.startswith(f"oncall: error: {named}") and "permission" in line.lower(), line
    finally:
        (exports / "locked").chmod(0o755)
    assert counts(incident) == before


from test_crash_safety import KILL_IN_FINISH  # noqa: E402 - a load killed between its two transactions


def test_a_killed_loads_part_is_removed_by_the_next_writer_of_any_kind(incident: Path, tmp_path: Path) -> None:
    more = tmp_path / "more.jsonl"
    tracegen.write_lines(more, tracegen.otlp_lines(600, 50))
    parts = incident.parent / (incident.name + ".d") / "parts"
    registered = sorted(p.name for p in parts.glob("part-*.duckdb"))
    res = subprocess.run([sys.executable, "-c", KILL_IN_FINISH, str(incident), str(more)], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == -9, res.stderr
    assert sorted(p.name for p in parts.glob("part-*.duckdb")) != registered  # the killed load's part
    assert oncall("--db", str(incident), "note", "a note, not a load").returncode == 0
    assert sorted(p.name for p in parts.glob("part-*.duckdb")) == registered
    assert counts(incident).spans == GOOD


# -- replay never loses a request silently ----------------------------------------------------------
REPLAY_KEY = "sk-test-campaign-0123456789abcdef"


def _replay_incident(tmp_path: Path, n: int) -> Path:
    from replay_helpers import build_incident, record

    return build_incident(tmp_path, [record(i, f"Where is parcel {i:04d}?", f"Parcel {i} is in Lyon.")
                                     for i in range(n)], name="replay.duckdb")


def _replay(db: Path, suite: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ONCALL_TEST_KEY": REPLAY_KEY, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "oncall", "replay", "--db", str(db), *args, "--json"],
                          env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)


def _results(db: Path) -> list[tuple]:
    with open_db(db, read_only=True) as store:
        return store.cursor().execute(
            """SELECT span_pk, status, error_kind, error, length(output_text) FROM replay_results
               QUALIFY row_number() OVER (PARTITION BY span_pk, repeat_index ORDER BY result_id DESC) = 1
               ORDER BY span_pk""").fetchall()


def test_replay_answers_that_are_not_completions_are_each_requests_error(tmp_path: Path) -> None:
    from openai_server import OpenAIServer
    from replay_helpers import write_suite

    db = _replay_incident(tmp_path, 4)
    with OpenAIServer() as srv:
        suite = write_suite(tmp_path, srv.base_url, concurrency=1, max_attempts=2)
        # request 1: an HTML page twice (both attempts); request 2: JSON of another shape, then a good answer
        srv.answer_raw_next(b"<html><body>502 Bad Gateway</body></html>", content_type="text/html", times=2)
        srv.answer_raw_next(b'{"status": "queued", "job": 7}')
        res = _replay(db, suite, "--suite", str(suite), "--target", "loop", "--yes", "--no-progress")
        assert res.returncode == 1, res.stderr  # a request failed: a finding, not a crash
        assert "Traceback" not in res.stderr and "internal error" not in res.stderr
        out = json.loads(res.stdout)
        assert out["status"] == "finished" and "1 request(s) failed" in out["reason"]
        rows = _results(db)
        assert len(rows) == 4  # every planned request has a result
        failed = [r for r in rows if r[1] == "error"]
        assert len(failed) == 1 and failed[0][2] == "bad_response" and "not a chat completion" in failed[0][3]
        assert sum(r[1] == "ok" for r in rows) == 3
        again = _replay(db, suite, "--resume", "1", "--no-progress")  # --resume retries the one without
        assert again.returncode == 0, again.stderr
        assert [r[1] for r in _results(db)] == ["ok"] * 4


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_replay_a_runaway_answer_is_cut_with_a_mark(tmp_path: Path, stream: bool) -> None:
    from openai_server import OpenAIServer
    from replay_helpers import write_suite

    from oncall.replay.engine import MAX_ANSWER_CHARS

    db = _replay_incident(tmp_path, 2)
    huge = " ".join(["all-work-and-no-play" * 500] * (MAX_ANSWER_CHARS // 10_000 + 50))  # 10 KB words: few chunks
    with OpenAIServer(answerer=lambda req: huge if "0000" in json.dumps(req) else None) as srv:
        suite = write_suite(tmp_path, srv.base_url, concurrency=1, stream=stream)
        res = _replay(db, suite, "--suite", str(suite), "--target", "loop", "--yes", "--no-progress")
        assert res.returncode == 0, res.stderr
    lengths = sorted(r[4] for r in _results(db))
    assert lengths[0] < 100 and MAX_ANSWER_CHARS < lengths[1] < MAX_ANSWER_CHARS + 100
    with open_db(db, read_only=True) as store:
        cut = store.cursor().execute("SELECT output_text FROM replay_results ORDER BY length(output_text) DESC "
                                     "LIMIT 1").fetchone()[0]
    assert cut.endswith(f"[oncall: answer cut at {MAX_ANSWER_CHARS:,} of {len(huge):,} characters]")


def test_replay_a_worker_failing_for_any_reason_records_why(tmp_path: Path, monkeypatch) -> None:
    from click.testing import CliRunner
    from openai_server import OpenAIServer
    from replay_helpers import write_suite

    from oncall.cli import cli
    from oncall.replay import conversation, store

    db = _replay_incident(tmp_path, 3)
    real = conversation.Conversation.request_params

    def broken(self, *a, **k):
        if "0001" in (self.original.output_text or "") + str(self.prefix):
            raise KeyError("a bug in oncall")
        return real(self, *a, **k)

    monkeypatch.setattr(conversation.Conversation, "request_params", broken)
    monkeypatch.setenv("ONCALL_TEST_KEY", REPLAY_KEY)
    with OpenAIServer() as srv:
        suite = write_suite(tmp_path, srv.base_url, concurrency=2)
        res = CliRunner().invoke(cli, ["replay", "--db", str(db), "--suite", str(suite), "--target", "loop",
                                       "--yes", "--no-progress", "--json"])
        assert res.exit_code == 1, res.output
        rows = _results(db)
        assert [r[1] for r in rows].count("error") == 1 and len(rows) == 3
        assert next(r for r in rows if r[1] == "error")[3].startswith("oncall failed replaying this request: KeyError")
        # a result lost between the worker and the journal: the run is not "finished"
        monkeypatch.setattr(conversation.Conversation, "request_params", real)
        add = store.ReplayStore.add_result

        def drop_one(self, run_id, span_pk, k, fields):
            if not getattr(drop_one, "dropped", False):
                drop_one.dropped = True
                return None
            return add(self, run_id, span_pk, k, fields)

        monkeypatch.setattr(store.ReplayStore, "add_result", drop_one)
        res = CliRunner().invoke(cli, ["replay", "--db", str(db), "--suite", str(suite), "--target", "loop",
                                       "--yes", "--no-progress", "--json"])
        out = json.loads(res.stdout)
        assert res.exit_code == 1 and out["status"] == "incomplete" and "--resume 2" in out["reason"], res.output
        monkeypatch.setattr(store.ReplayStore, "add_result", add)
        res = CliRunner().invoke(cli, ["replay", "--db", str(db), "--resume", "2", "--no-progress", "--json"])
        assert res.exit_code == 0, res.output


def test_replay_a_run_whose_process_died_shows_interrupted(tmp_path: Path) -> None:
    import signal
    import time

    from openai_server import OpenAIServer
    from replay_helpers import write_suite

    db = _replay_incident(tmp_path, 40)
    env = {**os.environ, "ONCALL_TEST_KEY": REPLAY_KEY, "PYTHONPATH": str(ROOT)}
    with OpenAIServer(latency=0.3) as srv:
        suite = write_suite(tmp_path, srv.base_url, concurrency=1)
        proc = subprocess.Popen([sys.executable, "-m", "oncall", "replay", "--db", str(db), "--suite", str(suite),
                                 "--target", "loop", "--yes", "--no-progress"], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while len(srv.completions()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        listed = json.loads(oncall("--db", str(db), "replay", "list", "--json").stdout)
        assert listed[0]["status"] == "running"  # alive: running
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    listed = json.loads(oncall("--db", str(db), "replay", "list", "--json").stdout)
    assert listed[0]["status"] == "interrupted" and f"PID {proc.pid}" in listed[0]["reason"]
    shown = oncall("--db", str(db), "replay", "show", "1")
    assert "status: interrupted" in shown.stdout, shown.stdout


# -- redaction where the campaign found gaps ---------------------------------------------------------
def test_the_campaigns_secrets_reach_no_file_of_the_incident_and_no_export(incident: Path, tmp_path: Path) -> None:
    import secretcorpus as sc

    new = ["url-password-slash-hash", "url-encoded-space", "url-encoded-json", "sendgrid", "url-slack-webhook",
           "url-key-param", "odbc-pwd"]
    text = " | ".join(sc.SHAPED[k] for k in new)
    named = {"private_key_id": sc.NAMED["private_key_id"], "pass": sc.NAMED["pass"]}
    needles = [p for k in new for p in sc._parts(sc.SHAPED[k])] + list(named.values())
    rec = {**tracegen.generic_record(900), "output_text": text, "metadata": named, "error": text}
    logs = tmp_path / "leaky.jsonl"
    logs.write_text(json.dumps(rec) + "\n")
    assert oncall("--db", str(incident), "load", "--no-progress", str(logs)).returncode == 0
    assert oncall("--db", str(incident), "note", f"pasted from the runbook: {text}").returncode == 0  # the journal
    out = tmp_path / "pm.md"
    assert oncall("--db", str(incident), "postmortem", "--out", str(out)).returncode == 0
    evalset = tmp_path / "evalset"
    assert oncall("--db", str(incident), "label", "req-00000900", "bad", "--note", text).returncode == 0
    res = oncall("--db", str(incident), "export", "evalset", "--format", "jsonl", "--out", str(evalset))
    assert res.returncode == 0 and list(evalset.rglob("*")), res.stderr
    files = [p for p in [out, *incident.parent.rglob("*"), *evalset.rglob("*")] if p.is_file() and p != logs]
    for p in files:
        data = p.read_bytes()
        leaked = [n for n in needles if n.encode() in data]
        assert not leaked, (p, leaked)
