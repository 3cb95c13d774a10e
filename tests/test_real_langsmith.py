"""What the real `langsmith` SDK (wrap_openai + @traceable) sends loads as one row per run, exactly.

tests/gen_langsmith.py drives the `openai` client under the SDK in a subprocess, against
tests/openai_server.py, with the SDK's endpoint pointed at tests/langsmith_server.py, which captures
every create and update in each transport the SDK uses: JSON `/runs/batch`, `/runs/multipart`
(plain and zstd-compressed), and single `POST /runs` + `PATCH /runs/{id}`. The captured bodies are
saved as the export file (one `{post, patch}` payload per line) and loaded; every call is checked
against the server's exchanges and the SDK's own run ids and times.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import sys
from pathlib import Path
from typing import Any

import gen_langsmith as gen
import pytest
from exporter_checks import Truth, check_calls, check_search, cli_search_json, run_generator, spans
from langsmith_server import LangSmithServer
from openai_server import OpenAIServer

from oncall.ingest.loader import load_paths
from oncall.store import open_db

pytest.importorskip("langsmith", reason="langsmith is in the test extra: pip install -e '.[test]'")

TRANSPORTS = ["batch", "multipart", "multipart-zstd", "runs"]
COHORT = gen.COHORT


def _us(iso: str) -> int:
    t = dt.datetime.fromisoformat(iso)
    return int(t.timestamp()) * 1_000_000 + t.microsecond


@pytest.fixture(scope="module", params=TRANSPORTS)
def captured(request, tmp_path_factory) -> dict[str, Any]:
    transport = request.param
    out = tmp_path_factory.mktemp(f"langsmith-{transport}") / "langsmith-runs.jsonl"
    # The server's latency lets the SDK's batch thread send a run's create before its update, as in
    # production, so the batched transports carry separate creates and updates too.
    with OpenAIServer(latency=0.3) as srv, LangSmithServer("batch" if transport == "runs" else transport) as ls:
        run_generator(sys.executable, "gen_langsmith.py", "--endpoint", ls.url, "--base-url", srv.base_url,
                      *(["--no-batch"] if transport == "runs" else []))
        exchanges = list(srv.exchanges)
        ls.write_jsonl(out)
        requests, runs = list(ls.requests), ls.runs()
    return {"transport": transport, "file": out, "exchanges": exchanges, "requests": requests, "runs": runs}


def truth_of(runs: list[tuple[str, dict[str, Any]]]) -> tuple[dict[str, Truth], dict[str, dict[str, Any]]]:
    """Per call, the run id, trace, parent and times the SDK sent (creates and updates folded by hand)."""
    merged: dict[str, dict[str, Any]] = {}
    for _, r in runs:
        merged.setdefault(r["id"], {}).update({k: v for k, v in r.items() if v not in (None, {}, [])})
    truth = {}
    for r in merged.values():
        if r["run_type"] != "llm":
            continue
        key = r["outputs"]["id"] if r.get("outputs", {}).get("id") else "429"
        truth[key] = Truth(r["trace_id"], r["id"], r["parent_run_id"], _us(r["start_time"]), _us(r["end_time"]))
    return truth, merged


def load(path: Path, tmp: Path) -> tuple[Any, Any]:
    db = open_db(tmp / "incident.duckdb")
    return db, load_paths(db, [str(path)])


def test_the_sdk_used_the_transport(captured):
    paths = {p for _, p in captured["requests"]}
    ops = [op for op, _ in captured["runs"]]
    expected = {"batch": {"/runs/batch"}, "multipart": {"/runs/multipart"}, "multipart-zstd": {"/runs/multipart"},
                "runs": {"/runs"} | {p for p in paths if p.startswith("/runs/0")}}[captured["transport"]]
    assert paths == expected
    # creates and updates really arrive apart: the bug was in merging them
    assert ops.count("patch") >= 5, ops
    # the SDK never sends the API key as run data
    assert "lsv2-test-not-a-real-key" not in captured["file"].read_text()


@pytest.mark.parametrize("order", ["as-sent", "reversed", "shuffled", "bare-bodies", "list-runs"])
def test_every_call_loads_exactly(captured, order, tmp_path):
    lines = captured["file"].read_text().splitlines()
    if order == "reversed":
        lines.reverse()
    elif order == "shuffled":
        random.Random(7).shuffle(lines)
    elif order == "bare-bodies":
        # each create and update body on its own line, as a proxy or a hand-made capture keeps them,
        # updates first: nothing says which is which but the records themselves
        bodies = [(op, r) for op, r in captured["runs"]]
        lines = [json.dumps(r) for op, r in bodies if op == "patch"] + [json.dumps(r) for op, r in bodies
                                                                          if op == "post"]
    elif order == "list-runs":
        # each run once, complete, as `client.list_runs()` hands it back: the SDK's own Run model
        # (with the status the API adds), dumped to JSON Lines
        from langsmith.schemas import Run

        _, merged = truth_of(captured["runs"])
        lines = [Run(**{**r, "status": "error" if r.get("error") else "success" if r.get("end_time")
                        else "pending"}).model_dump_json() for r in merged.values()]
    path = tmp_path / "runs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    db, report = load(path, tmp_path)
    try:
        assert [(f.status, f.format) for f in report.files] == [("loaded", "langsmith")], report.to_dict()
        assert report.problems == [] and report.files[0].duplicates == 0
        rows = spans(db)
        truth, merged = truth_of(captured["runs"])
        assert len(rows) == len(merged) == 7  # root, five LLM calls, the unfinished run
        check_calls(rows, captured["exchanges"], truth, cohort=COHORT)
        check_search(db, COHORT)
        root = next(r for r in rows if r["name"] == "support_ticket")
        assert (root["parent_id"], root["status"], root["kind"]) == (None, "ok", "chain")
        assert {r["trace_id"] for r in rows if r["name"] != gen.UNFINISHED_RUN} == {root["span_id"]}
    finally:
        db.close()


def test_a_run_that_never_got_its_update_is_kept_unfinished(captured, tmp_path):
    db, _ = load(captured["file"], tmp_path)
    try:
        rows = spans(db)
        orphan = next(r for r in rows if r["name"] == gen.UNFINISHED_RUN)
        assert (orphan["status"], orphan["end_time"], orphan["kind"]) == ("unset", None, "tool")
        assert orphan["attributes"]["unfinished"] is True
        assert orphan["input_text"] == '{"order": "A-1187"}'
        assert orphan["tenant"] == COHORT["tenant"]
        assert [r["name"] for r in rows if r["attributes"].get("unfinished")] == [gen.UNFINISHED_RUN]
        from oncall.query.search import count

        assert count(db.cursor(), ["kind=tool", "meta.unfinished=true"]) == 1
    finally:
        db.close()


def test_cli_search_finds_the_tenant(captured, tmp_path):
    db, _ = load(captured["file"], tmp_path)
    db.close()
    got = cli_search_json(tmp_path / "incident.duckdb", "tenant=acme", "prompt_version=v12")
    assert got["total"] == 5
    assert {r["status"] for r in got["requests"]} == {"ok", "error"}


def test_bulk_export_parquet_loads_exactly(captured, tmp_path):
    """LangSmith's bulk export: Parquet in the team's bucket with "equivalent fields as the Run data
    format" (docs.langchain.com/langsmith/data-export, /langsmith/run-data-format): one row per run,
    nested objects as JSON text, times as timestamps. The runs are the SDK's (its Run model); the file
    is written here the way the export lays them out, since LangSmith's exporter runs on its servers."""
    if captured["transport"] != "batch":
        pytest.skip("one transport is enough: the file holds each run once")
    import duckdb
    from langsmith.schemas import Run

    _, merged = truth_of(captured["runs"])
    rows = []
    for r in merged.values():
        run = json.loads(Run(**{**r, "status": "error" if r.get("error") else "success" if r.get("end_time")
                                else "pending"}).model_dump_json())
        for k in ("inputs", "outputs", "extra", "events", "serialized"):
            run[k] = None if run.get(k) is None else json.dumps(run[k])
        rows.append(run)
    src = tmp_path / "runs.json"
    src.write_text(json.dumps(rows))
    out = tmp_path / "runs.parquet"
    con = duckdb.connect()
    con.execute(f"""COPY (SELECT id, name, run_type, CAST(start_time AS TIMESTAMP) AS start_time,
                            CAST(end_time AS TIMESTAMP) AS end_time, status, error, inputs, outputs, extra, events,
                            tags, trace_id, dotted_order, parent_run_id, session_id
                     FROM read_json('{src}', format='array', columns={{id: 'VARCHAR', name: 'VARCHAR',
                        run_type: 'VARCHAR', start_time: 'VARCHAR', end_time: 'VARCHAR', status: 'VARCHAR',
                        error: 'VARCHAR', inputs: 'VARCHAR', outputs: 'VARCHAR', extra: 'VARCHAR', events: 'VARCHAR',
                        tags: 'VARCHAR[]', trace_id: 'VARCHAR', dotted_order: 'VARCHAR', parent_run_id: 'VARCHAR',
                        session_id: 'VARCHAR'}}))
                    TO '{out}' (FORMAT parquet)""")
    con.close()
    db, report = load(out, tmp_path)
    try:
        assert [(f.status, f.format) for f in report.files] == [("loaded", "langsmith")], report.to_dict()
        rows = spans(db)
        truth, merged = truth_of(captured["runs"])
        assert len(rows) == len(merged) == 7
        check_calls(rows, captured["exchanges"], truth, cohort=COHORT)
    finally:
        db.close()
