"""Exit codes keep their promise (issue 8, item 6; README "Exit codes").

0 ok, 1 found a problem, 2 bad usage or input, 3 an internal error (a bug): a script must never
read a crash as a finding or as its own typo. Bad input is an `InputError` raised by the core and
mapped at the CLI boundary, never "any ValueError".
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from oncall.cli import cli
from oncall.cliutil import EXIT_INTERNAL, EXIT_PROBLEM, EXIT_USAGE
from oncall.errors import InputError
from oncall.ingest.loader import load_paths
from oncall.query.filters import FilterError
from tests.conftest import ROOT


@pytest.fixture
def incident(db, tmp_path: Path) -> Path:
    p = tmp_path / "log.jsonl"
    p.write_text("".join(json.dumps({"request_id": f"r-{i}", "timestamp": 1772359200 + i * 60, "tenant": "acme",
                                     "model": "gpt-4o", "input": "q", "output": f"a {i}"}) + "\n"
                         for i in range(40)))
    assert load_paths(db, [str(p)]).problems == []
    db.close()
    return db.path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ONCALL_DB", None)
    return subprocess.run([sys.executable, "-m", "oncall", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def one_error_line(stderr: str) -> str:
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# -- bad usage: exit 2 ---------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [
    ["search", "--limit", "0"], ["search", "--limit", "-1"], ["changes", "--bucket", "0"],
    ["changes", "--bucket", "-60"], ["changes", "--limit", "0"], ["sample", "-n", "0"], ["sample", "-n", "-3"],
    ["blast-radius", "tenant=acme", "--limit", "0"], ["demo", "--no-tui", "--hours", "0"],
    ["demo", "--no-tui", "--hours", "-1"],
])
def test_counts_and_sizes_below_one_are_usage_errors(incident: Path, args: list[str]) -> None:
    res = run("--db", str(incident), *args)
    assert res.returncode == EXIT_USAGE
    line = one_error_line(res.stderr)
    assert line.startswith("oncall: error: Invalid value for") and "not in the range" in line


def test_a_bad_stratification_key_is_bad_input(incident: Path) -> None:
    res = run("--db", str(incident), "sample", "--by", "colour")
    assert res.returncode == EXIT_USAGE and "cannot stratify by 'colour'" in one_error_line(res.stderr)


def _sqlite(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    return path


@pytest.mark.parametrize("make, says", [
    (lambda d: (d / "notes.txt").write_text("shift handover notes\n" * 50) and d / "notes.txt", "not a DuckDB database"),
    (lambda d: (d / "empty.duckdb").write_bytes(b"") or d / "empty.duckdb", "not a DuckDB database"),
    (lambda d: _sqlite(d / "app.db"), "not a DuckDB database"),
    (lambda d: (d / "dir.duckdb").mkdir() or d / "dir.duckdb", "is a directory"),
])
@pytest.mark.parametrize("command", [["search"], ["label", "r-1", "good"], ["load", "{input}"]])
def test_db_that_is_not_a_duckdb_database_says_so(tmp_path: Path, make, says: str, command: list[str]) -> None:
    target = make(tmp_path)
    before = target.read_bytes() if target.is_file() else None
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"request_id": "x", "output": "y"}) + "\n")
    res = run("--db", str(target), *[str(inp) if a == "{input}" else a for a in command])
    assert res.returncode == EXIT_USAGE
    line = one_error_line(res.stderr)
    assert says in line and str(target.name) in line
    assert "extension" not in line and "in-memory" not in line
    if before is not None:
        assert target.read_bytes() == before  # never written to


def test_memory_is_not_an_incident_file(tmp_path: Path) -> None:
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"request_id": "x", "output": "y"}) + "\n")
    res = run("--db", ":memory:", "load", str(inp))
    assert res.returncode == EXIT_USAGE and "give --db a file path" in one_error_line(res.stderr)


def test_input_errors_from_the_core_exit_2(incident: Path) -> None:
    for bad in ("label=maybe", "output~/(?=x)/", "tenat=acme"):
        res = run("--db", str(incident), "search", bad)
        assert res.returncode == EXIT_USAGE, bad
        assert one_error_line(res.stderr).startswith("oncall: error: bad filter: ")


def test_filter_errors_are_input_errors() -> None:
    assert issubclass(FilterError, InputError)


# -- found a problem: exit 1 --------------------------------------------------------------------------
def test_an_unknown_request_is_a_finding(incident: Path) -> None:
    res = run("--db", str(incident), "show", "no-such-request")
    assert res.returncode == EXIT_PROBLEM


# -- internal errors: their own exit code, one line, traceback with -v --------------------------------
@pytest.mark.parametrize("exc", [ValueError("invalid literal for int() with base 10: 'x'"),
                                 KeyError("span_pk"), RuntimeError("boom\nsecond line")])
def test_an_unexpected_exception_is_an_internal_error(incident: Path, monkeypatch, exc: Exception) -> None:
    import oncall.query.search as search_mod

    def broken(*_a, **_k):
        raise exc

    monkeypatch.setattr(search_mod, "count", broken)
    res = CliRunner().invoke(cli, ["--db", str(incident), "search"])
    assert res.exit_code == EXIT_INTERNAL == 3
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert lines == [f"oncall: internal error: {type(exc).__name__}: {str(exc).splitlines()[0]}; "
                     "re-run with -v for the traceback"]

    verbose = CliRunner().invoke(cli, ["-v", "--db", str(incident), "search"])
    assert verbose.exit_code == EXIT_INTERNAL
    assert "Traceback (most recent call last)" in verbose.output and "in broken" in verbose.output


def test_an_input_error_raised_anywhere_in_the_core_is_exit_2(incident: Path, monkeypatch) -> None:
    import oncall.query.search as search_mod

    def refuses(*_a, **_k):
        raise InputError("--whatever: not allowed here")

    monkeypatch.setattr(search_mod, "count", refuses)
    res = CliRunner().invoke(cli, ["--db", str(incident), "search"])
    assert res.exit_code == EXIT_USAGE
    assert res.output.strip() == "oncall: error: --whatever: not allowed here"


# -- a reader that leaves early -------------------------------------------------------------------------
def test_a_closed_pipe_is_not_a_finding_nor_a_crash(demo_db: Path) -> None:
    """`oncall search | head -1`: exit 141 (128 + SIGPIPE) quietly, like any Unix tool; rich's default
    exited 1 ("found a problem")."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    proc = subprocess.Popen([sys.executable, "-m", "oncall", "--db", str(demo_db), "search", "--limit", "5000"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline()
    proc.stdout.close()  # the reader leaves with megabytes still to come
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141 and err.decode() == ""
