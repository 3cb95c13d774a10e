"""`oncall load mlflow://HOST:PORT/EXPERIMENT` against a real `mlflow server` (mlflow 3.17.2, SQLite).

The server and what was sent to it are session fixtures (tests/store_servers.py): the scenario
(tests/instrumented_calls.py) run by the real `openai` client under MLflow's own tracing
(`mlflow.openai.autolog()`, each call a trace whose root carries the user and session as MLflow's
trace metadata and tenant/feature/prompt version as tags; tests/gen_mlflow.py) against the loopback
OpenAI server, logged to the server over HTTP. The pull is checked against the OpenAI server's
exchanges (models, tokens, messages, tool calls, the 429) and against the same traces as
`Trace.to_json()` wrote them: one mapping, the same rows.
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

pytestmark = [pytest.mark.mlflow, pytest.mark.timeout(900)]

COLUMNS = ("trace_id", "span_id", "parent_id", "name", "kind", "model", "served_model", "provider", "status",
           "error_type", "input_tokens", "output_tokens", "total_tokens", "ttft_ms", "latency_ms", "finish_reason",
           "input_messages", "output_messages", "tool_calls", "tenant", "user_id", "session_id", "feature",
           "prompt_version", "response_id", "start_us", "end_us", "cost", "request_id")


def oncall(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def window(export: dict[str, Any]) -> tuple[str, str]:
    times = []
    for f in export["files"]:
        for span in json.loads(f.read_text())["data"]["spans"]:
            times.append(int(span["start_time_unix_nano"]))
    since = dt.datetime.fromtimestamp(min(times) / 1e9, dt.UTC) - dt.timedelta(seconds=5)
    until = dt.datetime.fromtimestamp(max(times) / 1e9, dt.UTC) + dt.timedelta(seconds=5)
    return since.isoformat(), until.isoformat()


def url(export: dict[str, Any], experiment: str = "support-bot") -> str:
    return export["server"].replace("http://", "mlflow://") + f"/{experiment}"


def pull(export: dict[str, Any], db: Path, *terms: str, experiment: str = "support-bot") -> Any:
    since, until = window(export)
    return oncall("load", url(export, experiment), "--db", str(db), "--since", since, "--until", until, "--json",
                  *terms)


def _rows(path: Path) -> list[dict[str, Any]]:
    db = open_db(path, read_only=True)
    try:
        return spans(db)
    finally:
        db.close()


def test_pull_gives_every_llm_call_exactly(mlflow_export, tmp_path):
    res = pull(mlflow_export, tmp_path / "i.duckdb")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["spans_added"] == 5
    rows = _rows(tmp_path / "i.duckdb")
    llm = check_scenario(rows, mlflow_export["exchanges"], cohort=calls.COHORT)
    assert all(r["response_id"] == e.response["id"] for r, e in zip(llm[:4], mlflow_export["exchanges"], strict=False))


def test_api_rows_are_the_trace_json_rows(mlflow_export, tmp_path):
    assert pull(mlflow_export, tmp_path / "api.duckdb", "kind!=none").exit_code == 0
    db = open_db(tmp_path / "file.duckdb")
    load_paths(db, [str(f) for f in mlflow_export["files"]])
    db.close()
    api = {r["span_id"]: {c: r[c] for c in COLUMNS} for r in _rows(tmp_path / "api.duckdb")}
    file = {r["span_id"]: {c: r[c] for c in COLUMNS} for r in _rows(tmp_path / "file.duckdb")}
    assert len(api) == 10 and api == file  # five traces: a root and its call each


def test_the_experiment_by_id_and_a_repull(mlflow_export, tmp_path):
    first = pull(mlflow_export, tmp_path / "i.duckdb", "status=error")
    assert first.exit_code == 0, first.output
    assert [(r["status"], r["error_type"]) for r in _rows(tmp_path / "i.duckdb")] == [("error", "rate_limit")]
    exp_id = json.loads(mlflow_export["files"][0].read_text())["info"]["trace_location"]["mlflow_experiment"][
        "experiment_id"]
    again = pull(mlflow_export, tmp_path / "i.duckdb", experiment=exp_id)
    assert again.exit_code == 0 and json.loads(again.output)["spans_added"] == 4


@pytest.mark.parametrize("case", ["unknown-experiment", "unreachable"])
def test_errors_name_the_source_and_leave_the_incident_untouched(mlflow_export, tmp_path, case):
    db_path = tmp_path / "i.duckdb"
    db = open_db(db_path)
    load_paths(db, [str(mlflow_export["files"][0])])
    before = len(spans(db))
    db.close()
    since, until = window(mlflow_export)
    ref = url(mlflow_export, "no-such-experiment") if case == "unknown-experiment" else "mlflow://127.0.0.1:9/x"
    res = oncall("load", ref, "--db", str(db_path), "--since", since, "--until", until)
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == {"unknown-experiment": 2, "unreachable": 1}[case], res.output
    assert len(lines) == 1 and ref in lines[0], res.output
    assert {"unknown-experiment": "no experiment 'no-such-experiment'", "unreachable": "cannot reach"}[case] in lines[0]
    assert len(_rows(db_path)) == before
