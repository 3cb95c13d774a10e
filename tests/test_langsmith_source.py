"""`oncall load langsmith://PROJECT`: the runs query API, against what the real `langsmith` SDK sent.

The real SDK (tests/gen_langsmith.py: wrap_openai + @traceable over tests/openai_server.py) traces
into tests/langsmith_server.py, a loopback server implementing LangSmith's ingest endpoints and the
read side `langsmith.Client.list_runs` calls (SDK 0.15.1; the API reference's `GET /sessions` and
`POST /runs/query`, cursor-paged). LangSmith itself cannot run here. Then `oncall load
langsmith://support-bot` pulls the window and every LLM call is checked against the OpenAI server's
exchanges and the SDK's own run ids and times, and against the same runs loaded from the captured
ingest file (one mapping: the API's rows and the file's rows are the same rows).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import gen_langsmith as gen
import pytest
from click.testing import CliRunner
from exporter_checks import check_calls, check_search, run_generator, spans
from langsmith_server import LangSmithServer
from openai_server import OpenAIServer
from test_real_langsmith import truth_of

from oncall.cli import cli
from oncall.ingest.loader import load_paths
from oncall.store import open_db

pytest.importorskip("langsmith", reason="langsmith is in the test extra: pip install -e '.[test]'")

pytestmark = pytest.mark.store_api

KEY = "lsv2-test-not-a-real-key"  # what gen_langsmith.py's client sends; the server requires it
COLUMNS = ("trace_id", "span_id", "parent_id", "name", "kind", "model", "served_model", "provider", "status",
           "error_type", "input_tokens", "output_tokens", "total_tokens", "ttft_ms", "latency_ms", "finish_reason",
           "input_messages", "output_messages", "tool_calls", "tenant", "user_id", "session_id", "feature",
           "prompt_version", "response_id", "start_us", "end_us", "cost")


@pytest.fixture(scope="module")
def langsmith(tmp_path_factory) -> Any:
    out = tmp_path_factory.mktemp("langsmith-api")
    with OpenAIServer(latency=0.05) as srv, LangSmithServer("batch", api_key=KEY) as ls:
        started = dt.datetime.now(dt.UTC)
        run_generator(sys.executable, "gen_langsmith.py", "--endpoint", ls.url, "--base-url", srv.base_url)
        ls.write_jsonl(out / "captured.jsonl")
        yield {"server": ls, "exchanges": list(srv.exchanges), "since": started - dt.timedelta(minutes=1),
               "until": dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1), "file": out / "captured.jsonl"}


def oncall(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def pull(ls: dict[str, Any], db: Path, *extra: str, key: str = KEY, url: str = "langsmith://support-bot") -> Any:
    env = {"LANGSMITH_ENDPOINT": ls["server"].url, "LANGSMITH_API_KEY": key}
    return oncall("load", url, "--db", str(db), "--since", ls["since"].isoformat(), "--until",
                  ls["until"].isoformat(), "--json", *extra, env=env)


def _rows(db_path: Path) -> list[dict[str, Any]]:
    db = open_db(db_path, read_only=True)
    try:
        return spans(db)
    finally:
        db.close()


def test_pull_gives_every_llm_call_exactly(langsmith, tmp_path):
    res = pull(langsmith, tmp_path / "i.duckdb")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["pull"]["source"] == "langsmith://support-bot"
    rows = _rows(tmp_path / "i.duckdb")
    truth, merged = truth_of(langsmith["server"].runs())
    # LLM calls only (the default filter), each with the root run's tenant, user, session… inherited
    check_calls(rows, langsmith["exchanges"], truth, cohort=gen.COHORT)
    assert len(rows) == 5 and {r["kind"] for r in rows} == {"llm"}
    # the window and the run types went to the server (the calls and the retriever and embedding runs
    # that may have fed them); the parent runs (for the keys a call lacks) were asked for by id, since
    # the root run is not an LLM call
    queries = langsmith["server"].queries
    window = [q for q in queries if q.get("start_time")]
    assert window and all(q["filter"].startswith("and(lt(start_time,") and "run_type" not in q for q in window)
    assert all('or(eq(run_type, "llm"), eq(run_type, "retriever"), eq(run_type, "embedding"))' in q["filter"]
               for q in window)
    assert [q for q in queries if q.get("id")], "parent runs were not fetched by id"
    for f in tmp_path.rglob("*"):  # the key never lands in the incident (base file, parts, journal)
        assert not f.is_file() or KEY.encode() not in f.read_bytes(), f
    db = open_db(tmp_path / "i.duckdb", read_only=True)
    try:
        check_search(db, gen.COHORT)
        fmt, path = db.cursor().execute("SELECT format, path FROM imports").fetchone()
        assert (fmt, path) == ("langsmith-api", "langsmith://support-bot")
    finally:
        db.close()


def test_api_rows_are_the_file_rows(langsmith, tmp_path):
    """One mapping: the runs pulled from the API and the same runs loaded from the SDK's captured
    ingest traffic give the same canonical rows."""
    assert pull(langsmith, tmp_path / "api.duckdb", "kind!=none").exit_code == 0
    db = open_db(tmp_path / "file.duckdb")
    load_paths(db, [str(langsmith["file"])])
    db.close()
    api = {r["span_id"]: {c: r[c] for c in COLUMNS} for r in _rows(tmp_path / "api.duckdb")}
    file = {r["span_id"]: {c: r[c] for c in COLUMNS} for r in _rows(tmp_path / "file.duckdb")}
    assert len(api) == len(file) == 7  # root, five calls, the run that never ended
    assert api == file


def test_rate_limits_are_waited_out_and_a_repull_adds_nothing(langsmith, tmp_path):
    langsmith["server"].throttle(2, retry_after="0.2")
    res = pull(langsmith, tmp_path / "i.duckdb", "tenant=acme")
    assert res.exit_code == 0, res.output
    assert langsmith["server"].throttled >= 2
    assert json.loads(res.output)["spans_added"] == 5
    again = pull(langsmith, tmp_path / "i.duckdb", "tenant=acme")
    assert again.exit_code == 0 and json.loads(again.output)["spans_added"] == 0


def test_filters_narrow_the_pull(langsmith, tmp_path):
    res = pull(langsmith, tmp_path / "i.duckdb", "status=error")
    assert res.exit_code == 0, res.output
    rows = _rows(tmp_path / "i.duckdb")
    assert [(r["status"], r["error_type"]) for r in rows] == [("error", "rate_limit")]
    assert langsmith["server"].queries[-1].get("error") is True or any(
        q.get("error") is True for q in langsmith["server"].queries)


def test_the_sdk_reads_the_loopback_server_as_it_reads_langsmith(langsmith):
    """The loopback read API answers in the shapes the real SDK parses (its Run model)."""
    from langsmith import Client

    client = Client(api_url=langsmith["server"].url, api_key=KEY, auto_batch_tracing=False)
    runs = list(client.list_runs(project_name="support-bot", run_type="llm"))
    assert len(runs) == 5 and all(r.run_type == "llm" for r in runs)


@pytest.mark.parametrize("case", ["bad-key", "unknown-project", "unreachable", "no-key"])
def test_errors_name_the_source_and_leave_the_incident_untouched(langsmith, tmp_path, case):
    db_path = tmp_path / "i.duckdb"
    db = open_db(db_path)
    load_paths(db, [str(langsmith["file"])])
    before = db.cursor().execute("SELECT count(*) FROM spans").fetchone()[0]
    db.close()
    url, key, env_url = "langsmith://support-bot", KEY, langsmith["server"].url
    if case == "bad-key":
        key = "lsv2-wrong-key-0123456789"
    elif case == "unknown-project":
        url = "langsmith://Support-Bot"
    elif case == "unreachable":
        env_url = "http://127.0.0.1:9"
    env = {"LANGSMITH_ENDPOINT": env_url, "LANGSMITH_API_KEY": "" if case == "no-key" else key,
           "LANGCHAIN_API_KEY": ""}
    res = oncall("load", url, "--db", str(db_path), "--since", langsmith["since"].isoformat(), env=env)
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == {"bad-key": 1, "unknown-project": 2, "unreachable": 1, "no-key": 2}[case], res.output
    assert len(lines) == 1 and url in lines[0], res.output
    assert key not in res.output
    expected = {"bad-key": "LANGSMITH_API_KEY", "unknown-project": "no tracing project named 'Support-Bot'",
                "unreachable": "cannot reach", "no-key": "set LANGSMITH_API_KEY"}[case]
    assert expected in lines[0], lines[0]
    db = open_db(db_path, read_only=True)
    try:
        assert db.cursor().execute("SELECT count(*) FROM spans").fetchone()[0] == before
    finally:
        db.close()
