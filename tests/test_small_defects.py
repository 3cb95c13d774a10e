"""The smaller defects of issue 26 item 7, each pinned by a test that failed before its fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from oncall.cli import cli
from oncall.ingest.loader import load_paths
from oncall.store import open_db
from tests.conftest import ROOT, fixtures_dir
from tests.tracegen import otlp_line, otlp_span, write_lines


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    env.pop("ONCALL_DB", None)
    return subprocess.run([sys.executable, "-m", "oncall", *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=cwd)


@pytest.fixture
def otlp_incident(tmp_path: Path) -> Path:
    """Five GenAI calls with no status set (OTLP `unset`) and tokens but no cost (estimated: ~$0.0000138)."""
    src = tmp_path / "spans.jsonl"
    write_lines(src, [otlp_line([otlp_span(i)]) for i in range(5)])
    db = open_db(tmp_path / "incident.duckdb")
    try:
        assert load_paths(db, [str(src)]).problems == []
    finally:
        db.close()
    return tmp_path / "incident.duckdb"


def test_every_subcommand_takes_db(tmp_path: Path) -> None:
    missing = []

    def walk(cmd: click.Command, path: list[str]) -> None:
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])
        elif "--db" not in {o for p in cmd.params for o in getattr(p, "opts", [])}:
            missing.append(" ".join(path))

    walk(cli, [])
    assert missing == []
    res = run("runbook", "list", "--db", str(tmp_path / "x.duckdb"))
    assert res.returncode == 0, res.stderr
    assert "provider-outage" in res.stdout


def test_a_sidecar_without_its_base_is_never_reused(otlp_incident: Path, tmp_path: Path) -> None:
    src = tmp_path / "spans.jsonl"
    otlp_incident.unlink()
    res = run("load", "--db", str(otlp_incident), str(src))
    assert res.returncode == 2
    assert "holds the load parts and journal of an incident whose base file incident.duckdb is gone" in res.stderr
    assert "mv " in res.stderr and not otlp_incident.exists()  # nothing created, nothing reported "already loaded"


def test_a_load_that_recognises_no_file_creates_no_database(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a trace export\n")
    res = run("load", "--db", str(tmp_path / "new.duckdb"), str(tmp_path / "notes.txt"))
    assert res.returncode == 2 and "unknown-format" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_show_never_prints_line_none(tmp_path: Path) -> None:
    src = fixtures_dir() / "langfuse" / "koog-2025-08-26.trace.json"
    if not src.exists():
        pytest.skip("shared fixtures not found")
    db = tmp_path / "i.duckdb"
    assert run("load", "--db", str(db), str(src)).returncode == 0
    first = json.loads(run("search", "--db", str(db), "--json", "-n", "1").stdout)["requests"][0]
    out = run("show", "--db", str(db), first["span_id"]).stdout
    assert "None" not in out
    assert [line.split()[1:] for line in out.splitlines() if line.startswith("source ")] == [
        [str(src), "(langfuse-trace)"]]


def test_status_is_one_word_in_the_explorer_the_reader_and_show_json(otlp_incident: Path) -> None:
    from oncall.query.detail import request_detail
    from oncall.query.search import search
    from oncall.tui.results import format_row
    from oncall.tui.screens.reader import meta_text

    db = open_db(otlp_incident, read_only=True)
    try:
        row = search(db.cursor(), "").rows[0]
        detail = request_detail(db.cursor(), row["span_pk"])
    finally:
        db.close()
    assert row["status"] == "unset"  # what the export said: no status set
    assert " ok " in format_row(row, 200)
    reader = meta_text(detail).plain
    assert "status       ok\n" in reader and "unset" not in reader
    shown = json.loads(run("show", "--db", str(otlp_incident), "--json", row["request_id"] or row["span_id"]).stdout)
    assert (shown["status"], shown["status_code"]) == ("ok", "unset")
    found = json.loads(run("search", "--db", str(otlp_incident), "--json").stdout)["requests"]
    assert {(r["status"], r["status_code"]) for r in found} == {("ok", "unset")}
    assert json.loads(run("search", "--db", str(otlp_incident), "--json", "status=unset").stdout)["total"] == 5


def test_a_term_without_its_key_is_a_usage_error(otlp_incident: Path) -> None:
    for term in ("=acme", "!=acme", ">500"):
        res = run("search", "--db", str(otlp_incident), term)
        assert res.returncode == 2, (term, res.stdout)
        assert "no key before" in res.stderr and "quote it" in res.stderr
    res = run("search", "--db", str(otlp_incident), '"=acme"')  # quoted: the text, on purpose
    assert res.returncode == 0


def test_the_load_summary_counts_costs_of_llm_calls_only(tmp_path: Path) -> None:
    """Langfuse traces price an agent span too: the summary said 18 costs for 17 LLM calls."""
    folder = fixtures_dir() / "langfuse"
    if not folder.is_dir():
        pytest.skip("shared fixtures not found")
    res = run("load", "--db", str(tmp_path / "i.duckdb"), "--json", str(folder))
    summ = json.loads(res.stdout)["summary"]
    cost = summ["cost"]
    assert cost["exported"] + cost["estimated"] + cost["unknown"] == summ["llm_spans"]
    assert cost["other_spans_with_cost"] >= 1


def test_costs_keep_their_digits_in_search_and_the_explorer(otlp_incident: Path) -> None:
    from oncall.display import format_cost
    from oncall.query.search import search
    from oncall.tui.results import format_row

    db = open_db(otlp_incident, read_only=True)
    try:
        rows = search(db.cursor(), "").rows
    finally:
        db.close()
    text = run("search", "--db", str(otlp_incident)).stdout
    for r in rows:
        assert r["cost_source"] == "estimated" and r["cost"] < 0.0001
        full = format_cost(r["cost"])  # $0.0000138: three significant digits
        assert len(full.rstrip("0").split(".")[1]) >= 6
        assert f"~{full}" in text
        assert f"~{full[1:]}" in format_row(r, 200)
    assert "…" not in "".join(line.split("  ")[0] for line in text.splitlines())


def test_an_inspect_eval_set_is_named_with_its_article(otlp_incident: Path, tmp_path: Path) -> None:
    from oncall.postmortem.evalset import evalset_kind

    assert evalset_kind("inspect") == "an Inspect eval set" and evalset_kind("promptfoo") == "a promptfoo eval set"
    res = run("export", "evalset", "--db", str(otlp_incident), "--format", "inspect", "--out",
              str(tmp_path / "evals"), "kind=llm")
    assert res.returncode == 0, res.stderr
    assert "exported as an Inspect eval set" in res.stdout
