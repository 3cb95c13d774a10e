"""`oncall load langfuse://HOST`: Langfuse's public API, paged, rate limits honoured.

Langfuse cannot run here (Postgres, ClickHouse, Redis, web and worker). tests/langfuse_server.py
implements the public API's read endpoints (Langfuse API reference as langfuse-python 5.0.4's
generated client calls it: `/api/public/v2/observations` cursor-paged with field groups, the
page-numbered `/api/public/observations` and `/api/public/traces`, by id) over real Langfuse Cloud
traces (../shared/fixtures/langfuse, exported from Langfuse by various frameworks). What the pull
loads is compared with the same traces loaded from their files: one mapping, the same rows.
Where the real SDK's fmt-langfuse environment exists (.ci/setup-formats.sh), the SDK's own client
reads the loopback server, so its answers are the shapes the SDK parses.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import fixtures_dir
from exporter_checks import env_python, spans
from langfuse_server import LangfuseServer

from oncall.cli import cli
from oncall.ingest.loader import load_paths
from oncall.sources.base import Window
from oncall.sources.langfuse import RAG_TYPES
from oncall.sources.pull import plan_slices
from oncall.store import open_db

pytestmark = pytest.mark.store_api

PUBLIC, SECRET = "pk-lf-test-public", "sk-lf-test-secret-0123456789"
SINCE, UNTIL = "2025-01-01T00:00:00Z", "2026-06-01T00:00:00Z"  # the fixtures' traces are from 2025
COLUMNS = ("trace_id", "span_id", "parent_id", "name", "kind", "model", "served_model", "provider", "status",
           "error_type", "input_tokens", "output_tokens", "total_tokens", "cached_tokens", "ttft_ms", "latency_ms",
           "finish_reason", "input_messages", "output_messages", "tool_calls", "tenant", "user_id", "session_id",
           "feature", "prompt_name", "prompt_version", "release", "env", "start_us", "end_us", "cost",
           "input_text", "output_text")


def _trace_files() -> list[Path]:
    d = fixtures_dir() / "langfuse"
    if not d.is_dir():
        pytest.skip(f"shared fixtures not found at {d} (set ONCALL_FIXTURES)")
    return sorted(d.glob("*.trace.json"))


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in _trace_files()]


@pytest.fixture(scope="module")
def file_rows(tmp_path_factory) -> dict[str, dict[str, Any]]:
    path = tmp_path_factory.mktemp("langfuse-files") / "i.duckdb"
    db = open_db(path)
    report = load_paths(db, [str(p) for p in _trace_files()])
    assert not report.failed
    rows = {r["span_id"]: {c: r[c] for c in COLUMNS} for r in spans(db)}
    db.close()
    return rows


@pytest.fixture(params=["v2", "v1"])
def server(request, docs):
    with LangfuseServer(docs, public_key=PUBLIC, secret_key=SECRET, v2=request.param == "v2") as srv:
        yield srv


@pytest.fixture
def v2server(docs):
    with LangfuseServer(docs, public_key=PUBLIC, secret_key=SECRET) as srv:
        yield srv


def oncall(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def pull(srv: LangfuseServer, db: Path, *terms: str, secret: str = SECRET, url: str | None = None) -> Any:
    env = {"LANGFUSE_PUBLIC_KEY": PUBLIC, "LANGFUSE_SECRET_KEY": secret}
    return oncall("load", url or f"langfuse://{srv.host}", "--db", str(db), "--since", SINCE, "--until", UNTIL,
                  "--json", *terms, env=env)


def _rows(path: Path) -> dict[str, dict[str, Any]]:
    db = open_db(path, read_only=True)
    try:
        return {r["span_id"]: {c: r[c] for c in COLUMNS} for r in spans(db)}
    finally:
        db.close()


def test_every_observation_and_trace_is_the_file_row(server, file_rows, tmp_path):
    res = pull(server, tmp_path / "i.duckdb", "kind!=none")
    assert res.exit_code == 0, res.output
    got = _rows(tmp_path / "i.duckdb")
    assert set(got) == set(file_rows)
    for sid, row in file_rows.items():
        assert got[sid] == row, sid
    paths = [p for p, _ in server.requests]
    if server.v2:
        assert "/api/public/observations" not in paths
    else:  # the page-numbered endpoint, once the v2 one answered 404
        assert paths.count("/api/public/v2/observations") == 1 and "/api/public/observations" in paths


def _no_secret_on_disk(where: Path, *secrets: str) -> None:
    """Neither key lands in the incident: its base file, parts, journal."""
    for f in where.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert not any(s.encode() in data for s in secrets), f


def test_llm_calls_by_default_with_the_trace_keys_inherited(server, file_rows, tmp_path):
    res = pull(server, tmp_path / "i.duckdb")
    assert res.exit_code == 0, res.output
    _no_secret_on_disk(tmp_path, SECRET)
    got = _rows(tmp_path / "i.duckdb")
    want = {sid: r for sid, r in file_rows.items() if r["kind"] == "llm"}
    assert got == want and len(got) >= 10
    assert any(r["user_id"] and r["session_id"] for r in got.values())
    # only generations, and the retrievals and embeddings that may have fed them, travelled: a pass
    # per observation type, each pushed down
    obs_queries = [q for p, q in server.requests if p.endswith("/observations")]
    assert obs_queries and {tuple(q.get("type") or ()) for q in obs_queries} == {
        ("GENERATION",), ("RETRIEVER",), ("EMBEDDING",)}


def _with_a_retrieval(doc: dict[str, Any]) -> dict[str, Any]:
    """A real trace with a retriever observation written before its generation (the app searched an
    index, then asked the model): the documents as LangChain's Langfuse handler records them."""
    doc = json.loads(json.dumps(doc))
    gen = next(o for o in doc["observations"] if o["type"] == "GENERATION")
    gen["startTime"] = "2025-06-06T14:40:28.900Z"
    ret = {**{k: None for k in gen}, "id": "9e7f0c1d2b3a4f50", "traceId": gen["traceId"], "type": "RETRIEVER",
           "name": "kb-search", "parentObservationId": gen["parentObservationId"], "projectId": gen.get("projectId"),
           "startTime": "2025-06-06T14:40:28.600Z", "endTime": "2025-06-06T14:40:28.850Z", "level": "DEFAULT",
           "input": {"query": "where is my invoice?"}, "metadata": {"index": "kb-v42"},
           "output": [{"page_content": "Invoices are under Billing > History.",
                       "metadata": {"id": "kb-006", "source": "help/invoices.md", "score": 0.81}, "type": "Document"}]}
    ret.pop("observations", None)
    doc["observations"].insert(0, ret)
    return doc


def test_a_call_pulled_by_default_carries_the_retrieval_that_fed_it(docs, tmp_path):
    """The default pull brings the retriever observation with the generation, so the call has its
    retrieval columns, as when the same trace is loaded from its file."""
    base = next(d for d in docs if d["trace"]["id"] and any(o["type"] == "GENERATION" for o in d["observations"])
                and d["observations"][0]["startTime"].startswith("2025-06-06T14:40"))
    doc = _with_a_retrieval(base)
    (tmp_path / "t.trace.json").write_text(json.dumps(doc))
    cols = "span_id, retrieved, top_score, retrieval_index, retrieval_query, retrieved_docs"
    db = open_db(tmp_path / "file.duckdb")
    try:
        assert not load_paths(db, [str(tmp_path / "t.trace.json")]).failed
        want = db.cursor().execute(f"SELECT {cols} FROM spans WHERE kind = 'llm' AND retrieval_span IS NOT NULL"
                                   ).fetchall()
    finally:
        db.close()
    assert len(want) == 1 and want[0][1:4] == (1, 0.81, "kb-v42")
    for name, extra in (("api", ()), ("capped", ("--limit", "1"))):  # a capped pull ends on the calls' pass
        with LangfuseServer([doc], public_key=PUBLIC, secret_key=SECRET) as srv:
            res = pull(srv, tmp_path / f"{name}.duckdb", *extra)
        assert res.exit_code == 0, res.output
        db = open_db(tmp_path / f"{name}.duckdb", read_only=True)
        try:
            got = db.cursor().execute(f"SELECT {cols} FROM spans WHERE kind = 'llm' AND retrieval_span IS NOT NULL"
                                      ).fetchall()
        finally:
            db.close()
        assert got == want, name


def test_rate_limits_are_waited_out_and_a_repull_adds_nothing(v2server, tmp_path):
    server = v2server
    server.throttle(3, retry_after="0.2")
    res = pull(server, tmp_path / "i.duckdb")
    assert res.exit_code == 0, res.output
    assert server.throttled == 3
    added = json.loads(res.output)["spans_added"]
    again = pull(server, tmp_path / "i.duckdb")
    assert again.exit_code == 0 and json.loads(again.output)["spans_added"] == 0 and added > 0


def test_a_rate_limit_longer_than_a_responder_can_wait_fails_in_one_line(v2server, tmp_path):
    server = v2server
    server.throttle(1, retry_after="3600")
    res = pull(server, tmp_path / "i.duckdb")
    assert res.exit_code == 1
    assert res.output.strip().startswith(f"oncall: langfuse://{server.host}") or f"langfuse://{server.host}" in \
        res.output.splitlines()[0]
    assert "rate limited" in res.output and len(res.output.strip().splitlines()) == 1


def test_an_interrupted_pull_keeps_its_finished_slices_and_resumes(v2server, file_rows, tmp_path):
    """The window is pulled in aligned time slices, newest first, each its own import: a server that
    dies mid-pull leaves the finished slices loaded, and the same command again pulls only the rest."""
    server = v2server
    want = {sid: r for sid, r in file_rows.items() if r["kind"] == "llm"}
    slices = plan_slices(Window(dt.datetime.fromisoformat(SINCE), dt.datetime.fromisoformat(UNTIL)))
    holding = [i for i, w in enumerate(slices)
               if any(w.since.timestamp() * 1e6 <= r["start_us"] < w.until.timestamp() * 1e6 for r in want.values())]
    assert len(holding) >= 2
    per_slice = len(RAG_TYPES)  # a listing per observation type a default pull asks for
    server.fail_after = holding[1] * per_slice  # the second slice with calls in it fails
    first = pull(server, tmp_path / "i.duckdb")
    lines = [ln for ln in first.output.splitlines() if ln.strip()]
    assert first.exit_code == 1 and len(lines) == 1, first.output
    assert "500" in lines[0] and "time slices are loaded" in lines[0] and "run the same command again" in lines[0]
    partial = _rows(tmp_path / "i.duckdb")
    assert 0 < len(partial) < len(want) and all(want[sid] == r for sid, r in partial.items())
    server.fail_after, server.listings = None, 0
    again = pull(server, tmp_path / "i.duckdb")
    assert again.exit_code == 0, again.output
    out = json.loads(again.output)
    skipped = [f for f in out["files"] if f["status"] == "already-loaded"]
    assert skipped and all("pulled before" in f["note"] for f in skipped)
    assert out["spans_added"] == len(want) - len(partial)
    assert _rows(tmp_path / "i.duckdb") == want
    # the slices pulled before were not asked for again: the listings of the slices still to pull
    assert server.listings == (len(out["files"]) - len(skipped)) * per_slice


@pytest.mark.parametrize("case", ["bad-secret", "no-public-key", "unreachable"])
def test_errors_name_the_source_and_leave_the_incident_untouched(docs, tmp_path, case):
    db_path = tmp_path / "i.duckdb"
    db = open_db(db_path)
    load_paths(db, [str(_trace_files()[0])])
    before = db.cursor().execute("SELECT count(*) FROM spans").fetchone()[0]
    db.close()
    with LangfuseServer(docs, public_key=PUBLIC, secret_key=SECRET) as srv:
        host = "127.0.0.1:9" if case == "unreachable" else srv.host
        env = {"LANGFUSE_PUBLIC_KEY": "" if case == "no-public-key" else PUBLIC,
               "LANGFUSE_SECRET_KEY": "sk-lf-wrong-secret-999" if case == "bad-secret" else SECRET}
        res = oncall("load", f"langfuse://{host}", "--db", str(db_path), "--since", SINCE, env=env)
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == {"bad-secret": 1, "no-public-key": 2, "unreachable": 1}[case], res.output
    assert len(lines) == 1 and f"langfuse://{host}" in lines[0], res.output
    assert "sk-lf-" not in res.output
    expected = {"bad-secret": "LANGFUSE_SECRET_KEY", "no-public-key": "LANGFUSE_PUBLIC_KEY",
                "unreachable": "cannot reach"}[case]
    assert expected in lines[0], lines[0]
    db = open_db(db_path, read_only=True)
    try:
        assert db.cursor().execute("SELECT count(*) FROM spans").fetchone()[0] == before
    finally:
        db.close()


SDK_READ = """
import sys
from langfuse.api.client import LangfuseAPI
api = LangfuseAPI(base_url=sys.argv[1], username=sys.argv[2], password=sys.argv[3])
page = api.observations.get_many(fields="core,basic,time,io,metadata,model,usage,prompt,metrics", limit=5,
                                 type="GENERATION")
n = len(page.data)
while page.meta.cursor:
    page = api.observations.get_many(fields="core,basic,usage", limit=5, type="GENERATION", cursor=page.meta.cursor)
    n += len(page.data)
print(n)
"""


def test_the_real_sdk_reads_the_loopback_server(docs, file_rows):
    python = env_python("fmt-langfuse")
    if python is None:
        pytest.skip("the langfuse SDK's environment .envs/fmt-langfuse is not there (.ci/setup-formats.sh)")
    with LangfuseServer(docs, public_key=PUBLIC, secret_key=SECRET) as srv:
        proc = subprocess.run([str(python), "-c", SDK_READ, f"http://{srv.host}", PUBLIC, SECRET],
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.strip()) == sum(1 for r in file_rows.values() if r["kind"] == "llm")
