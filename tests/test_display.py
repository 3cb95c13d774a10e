"""Values read the same everywhere (issue 8, item 9): the load summary's failed LLM calls, a
request's status in `show` and `search`, and costs with significant digits in every CLI output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from oncall.cli import cli
from oncall.display import format_cost, status_text
from oncall.ingest.loader import load_paths, summary
from oncall.store import open_db
from tests.conftest import ROOT


@pytest.mark.parametrize("value, text", [
    (0.000373, "$0.000373"), (0.0013241, "$0.00132"), (0.00047, "$0.00047"), (0.05, "$0.05"), (0.5, "$0.50"),
    (0.123456, "$0.123"), (4e-7, "$0.0000004"), (1.0, "$1.00"), (12.4, "$12.40"), (1234.5, "$1,234.50"),
    (0.0, "$0"), (-0.000373, "-$0.000373"), (None, ""),
])
def test_cost_keeps_three_significant_digits(value, text: str) -> None:
    assert format_cost(value) == text


def test_status_reads_ok_unless_the_request_failed() -> None:
    assert status_text("unset", None) == status_text("ok", None) == status_text(None, None) == "ok"
    assert status_text("error", "rate_limit") == "error (rate_limit)"
    assert status_text("error", "rate_limit", short=True) == "rate_limit"
    assert status_text("error", None, short=True) == "error"


# -- the load summary --------------------------------------------------------------------------------
def test_load_summary_counts_failed_llm_calls_not_every_failed_span(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["--db", str(tmp_path / "d.duckdb"), "demo", "--no-tui", "--hours", "2",
                                   "--seed", "5"])
    assert res.exit_code == 0, res.output
    store = open_db(tmp_path / "d.duckdb", read_only=True)
    try:
        llm_failed, all_failed, llm = store.con.execute(
            "SELECT count(*) FILTER (WHERE kind = 'llm' AND status = 'error'), count(*) FILTER (WHERE status = 'error'), "
            "count(*) FILTER (WHERE kind = 'llm') FROM spans").fetchone()
        summ = summary(store)
    finally:
        store.close()
    assert 0 < llm_failed < all_failed  # the demo's 429s fail the LLM span and the request span above it
    assert summ["llm_errors"] == llm_failed and summ["errors"] == all_failed  # --json: both, named apart
    assert f"({llm:,} LLM calls, {llm_failed:,} failed)" in res.output
    assert f"{all_failed:,}" not in res.output.split("LLM calls")[1].splitlines()[0]


# -- status: show and search agree ---------------------------------------------------------------------
def test_show_and_search_describe_status_the_same_way(demo_db: Path) -> None:
    store = open_db(demo_db, read_only=True)
    try:
        unset_id, = store.con.execute("SELECT request_id FROM spans WHERE kind = 'llm' AND status = 'unset' "
                                      "ORDER BY span_pk LIMIT 1").fetchone()
        failed_id, cls = store.con.execute("SELECT request_id, error_type FROM spans WHERE kind = 'llm' AND "
                                           "status = 'error' ORDER BY span_pk LIMIT 1").fetchone()
    finally:
        store.close()
    for rid, word in ((unset_id, "ok"), (failed_id, f"error ({cls})")):
        shown = CliRunner().invoke(cli, ["--db", str(demo_db), "show", rid])
        assert shown.exit_code == 0
        status_line = next(x for x in shown.output.splitlines() if x.startswith("status"))
        assert status_line.split(None, 1)[1].strip() == word
        assert "unset" not in status_line
        found = CliRunner().invoke(cli, ["--db", str(demo_db), "search", f"request={rid}"])
        assert found.exit_code == 0
        row = next(x for x in found.output.splitlines() if rid[:10] in x)
        assert (cls if word != "ok" else "ok") in row.split()


# -- cost: significant digits in every CLI output ----------------------------------------------------
@pytest.fixture
def cheap(db, tmp_path: Path) -> Path:
    p = tmp_path / "cheap.jsonl"
    rows = [{"request_id": f"r-{i:03d}", "timestamp": 1772359200 + i * 60, "tenant": "acme" if i < 40 else "hooli",
             "model": "gpt-4o", "input": "q", "output": "a", "cost": 0.000373 if i < 40 else 4e-7} for i in range(80)]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert load_paths(db, [str(p)]).problems == []
    db.close()
    return db.path


def _oncall(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "oncall", *args], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_costs_show_significant_digits_in_show_search_and_compare(cheap: Path) -> None:
    db = ["--db", str(cheap)]
    assert "$0.0000004" in _oncall(*db, "show", "r-050")
    assert "$0.000373" in _oncall(*db, "show", "r-001")
    table = _oncall(*db, "search", "tenant=acme", "--limit", "3")
    assert table.count("$0.000373") == 3
    compared = _oncall(*db, "compare", "tenant=hooli", "--baseline", "tenant=acme")
    cost_row = next(x for x in compared.splitlines() if x.startswith("cost_per_request"))
    assert "$0.0000004" in cost_row and "$0.000373" in cost_row
