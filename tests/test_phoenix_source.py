"""`oncall load phoenix://HOST:PORT/PROJECT` against a real `phoenix serve` (arize-phoenix 20.26.1, SQLite).

The server and what was sent to it are the session fixtures of tests/store_servers.py: the scenario
(tests/instrumented_calls.py) run by the real `openai` client under the real OpenInference
instrumentation, exported to Phoenix's OTLP endpoint (tests/gen_phoenix.py), with the session, user
and metadata (tenant, feature, prompt version) on the application's root span only. The pull is
compared with what the instrumentation sent (ids, times, the OpenAI server's exchanges: models,
tokens, messages, tool calls, the 429) and with the same spans loaded from the span JSON Phoenix's
own client exported: one mapping, the same rows.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import instrumented_calls as calls
import pytest
from click.testing import CliRunner
from exporter_checks import spans
from test_real_formats import check_scenario

from oncall.cli import cli
from oncall.ingest.loader import load_paths
from oncall.store import open_db

pytestmark = [pytest.mark.phoenix, pytest.mark.timeout(900)]

COLUMNS = ("trace_id", "span_id", "parent_id", "name", "kind", "model", "served_model", "provider", "status",
           "error_type", "input_tokens", "output_tokens", "total_tokens", "ttft_ms", "latency_ms", "finish_reason",
           "input_messages", "output_messages", "tool_calls", "tenant", "user_id", "session_id", "feature",
           "prompt_version", "response_id", "start_us", "end_us")


def oncall(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def window(export: dict[str, Any]) -> tuple[str, str]:
    starts = [t["start_ns"] for t in export["truth"]]
    since = dt.datetime.fromtimestamp(min(starts) / 1e9, dt.UTC) - dt.timedelta(seconds=5)
    until = dt.datetime.fromtimestamp(max(starts) / 1e9, dt.UTC) + dt.timedelta(seconds=5)
    return since.isoformat(), until.isoformat()


def url(export: dict[str, Any], project: str = "support-bot") -> str:
    return export["server"].replace("http://", "phoenix://") + f"/{project}"


def pull(export: dict[str, Any], db: Path, *terms: str, project: str = "support-bot") -> Any:
    since, until = window(export)
    return oncall("load", url(export, project), "--db", str(db), "--since", since, "--until", until, "--json",
                  *terms)


def _rows(path: Path) -> list[dict[str, Any]]:
    db = open_db(path, read_only=True)
    try:
        return spans(db)
    finally:
        db.close()


def test_pull_gives_every_llm_call_with_the_root_spans_keys(phoenix_export, tmp_path):
    res = pull(phoenix_export, tmp_path / "i.duckdb")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["pull"]["source"] == url(phoenix_export) and out["spans_added"] == 5
    rows = _rows(tmp_path / "i.duckdb")
    truth = {t["span_id"]: t for t in phoenix_export["truth"]}
    for r in rows:  # the instrumentation's own ids and times
        t = truth[r["span_id"]]
        assert (r["trace_id"], r["parent_id"]) == (t["trace_id"], t["parent_id"])
        assert abs(r["start_us"] - t["start_ns"] / 1000) < 2 and abs(r["end_us"] - t["end_ns"] / 1000) < 2
    check_scenario(rows, phoenix_export["exchanges"], cohort=calls.COHORT)
    root = next(t for t in phoenix_export["truth"] if t["parent_id"] is None)
    # the LLM spans carry no session/user/tenant: they come from the root span, fetched by id
    assert all(r["inherited"]["tenant"] == {"value": calls.TENANT, "from_span": root["span_id"]} for r in rows)


def test_api_rows_are_the_exported_span_json_rows(phoenix_export, tmp_path):
    assert pull(phoenix_export, tmp_path / "api.duckdb", "kind!=none").exit_code == 0
    db = open_db(tmp_path / "file.duckdb")
    load_paths(db, [str(phoenix_export["dir"] / "spans.json")])
    db.close()
    api = {r["span_id"]: {c: r[c] for c in COLUMNS} for r in _rows(tmp_path / "api.duckdb")}
    file = {r["span_id"]: {c: r[c] for c in COLUMNS} for r in _rows(tmp_path / "file.duckdb")}
    assert len(api) == len(phoenix_export["truth"]) == 6 and api == file


def test_filters_and_a_repull(phoenix_export, tmp_path):
    res = pull(phoenix_export, tmp_path / "i.duckdb", "status=error")
    assert res.exit_code == 0, res.output
    rows = _rows(tmp_path / "i.duckdb")
    assert [(r["status"], r["error_type"], r["tenant"]) for r in rows] == [("error", "rate_limit", calls.TENANT)]
    again = pull(phoenix_export, tmp_path / "i.duckdb", "tenant=acme")
    assert again.exit_code == 0 and json.loads(again.output)["spans_added"] == 4  # the error call is there already


@pytest.mark.parametrize("case", ["unknown-project", "unreachable"])
def test_errors_name_the_source_and_leave_the_incident_untouched(phoenix_export, tmp_path, case):
    db_path = tmp_path / "i.duckdb"
    db = open_db(db_path)
    load_paths(db, [str(phoenix_export["dir"] / "spans.json")])
    db.close()
    since, until = window(phoenix_export)
    ref = url(phoenix_export, "no-such-project") if case == "unknown-project" else "phoenix://127.0.0.1:9/support-bot"
    res = oncall("load", ref, "--db", str(db_path), "--since", since, "--until", until)
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == {"unknown-project": 2, "unreachable": 1}[case], res.output
    assert len(lines) == 1 and ref in lines[0], res.output
    assert {"unknown-project": "no project 'no-such-project'", "unreachable": "cannot reach"}[case] in lines[0]
    assert len(_rows(db_path)) == 6
