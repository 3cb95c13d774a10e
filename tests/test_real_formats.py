"""Files written by the real libraries load exactly: the scenario of tests/instrumented_calls.py (a plain
call, a tool-call round trip, a streamed call, a 429) against the loopback OpenAI server, each call
checked against what the server answered.

Each library runs in its own environment (.ci/setup-formats.sh); a missing environment skips its
tests with the reason. Captured SDK traffic (OTLP protobuf bodies, REST payloads) comes from
tests/capture_server.py standing in for the vendor's endpoint.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from typing import Any

import instrumented_calls as calls
import pytest
from capture_server import CaptureServer
from exporter_checks import env_python, roles, run_generator, spans
from openai_server import OpenAIServer

from oncall.ingest.loader import load_paths
from oncall.store import open_db

pytestmark = [pytest.mark.formats, pytest.mark.timeout(900)]  # real servers start slowly on a busy machine


def _env_or_skip(name: str) -> Path:
    python = env_python(name)
    if python is None:
        pytest.skip(f".envs/{name} is missing: run .ci/setup-formats.sh (the registry may have been down)")
    return python


def _load(db_path: Path, *paths: Path) -> tuple[Any, Any]:
    db = open_db(db_path)
    report = load_paths(db, [str(p) for p in paths])
    return db, report


def check_scenario(rows: list[dict[str, Any]], exchanges: list[Any], *, cohort: dict[str, str],
                   served: bool = True, ttft: bool = True, finish: bool = True,
                   unknown_usage: set[int] = frozenset(), failure_recorded: bool = True) -> list[dict[str, Any]]:
    """The five LLM calls of the scenario, in order, against the server's exchanges."""
    llm = sorted((r for r in rows if r["kind"] == "llm"), key=lambda r: r["start_us"])
    assert len(llm) == 5, [(r["name"], r["kind"]) for r in rows]
    assert [e.status for e in exchanges] == [200, 200, 200, 200, 429]
    for i, (ex, row) in enumerate(zip(exchanges, llm, strict=True)):
        where = f"call {row['name']} {ex.request['messages'][-1]['content']!r}"
        assert roles(row["input_messages"]) == [m["role"] for m in ex.request["messages"]], where
        for k, v in cohort.items():
            assert row[k] == v, f"{where}: {k} is {row[k]!r}, expected {v!r}"
        if ex.status != 200 and not failure_recorded:  # the library logs the call, not its failure
            assert row["status"] == "unset" and not row["output_messages"] and row["input_tokens"] is None, where
            continue
        if ex.status != 200:
            assert (row["status"], row["error_type"]) == ("error", "rate_limit"), where
            assert row["model"] == "gpt-4o-mini" and not row["output_messages"], where
            continue
        usage = ex.response["usage"] if i not in unknown_usage else {}
        assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (
            usage.get("prompt_tokens"), usage.get("completion_tokens"), usage.get("total_tokens")), where
        assert row["status"] in ("ok", "unset") and row["error_type"] is None, where
        if served:
            assert row["served_model"] == "gpt-4o-mini-2024-07-18", where
        msg = ex.response["choices"][0]["message"]
        if msg["content"] is not None:
            assert row["output_messages"][0]["content"] == msg["content"], where
        if finish:
            assert row["finish_reason"] == ex.response["choices"][0]["finish_reason"], where
        if ex.request.get("stream") and ttft:
            assert row["ttft_ms"] is not None and 0 < row["ttft_ms"] <= row["latency_ms"], where
    asked = llm[1]
    call = exchanges[1].response["choices"][0]["message"]["tool_calls"][0]
    assert [(tc["id"], tc["name"], json.loads(tc["arguments"])) for tc in asked["tool_calls"]] == [
        (call["id"], "get_weather", {"city": "Paris"})]
    answered = llm[2]["input_messages"]
    turn = next(m for m in answered if m.get("tool_calls"))
    result = next(m for m in answered if m["role"] == "tool")
    assert turn["tool_calls"][0]["id"] == call["id"] and result["tool_call_id"] == call["id"]
    return llm


# -- Langfuse SDK: OTLP/HTTP protobuf bodies and the Collector's proto framing ----------------------------
@pytest.fixture(scope="module")
def langfuse_export(tmp_path_factory) -> dict[str, Any]:
    python = _env_or_skip("fmt-langfuse")
    out = tmp_path_factory.mktemp("langfuse")
    with OpenAIServer(chunk_delay=0.01) as srv, CaptureServer() as cap:
        run_generator(python, "gen_langfuse.py", "--base-url", srv.base_url, "--langfuse-host", cap.url)
        exchanges = list(srv.exchanges)
        bodies = cap.bodies("/api/public/otel/v1/traces")
    assert bodies, "the Langfuse SDK exported nothing"
    for i, b in enumerate(bodies):  # as sent: the SDK gzips its bodies
        (out / f"request-{i}.pb").write_bytes(b.body)
    # The Collector file exporter (`format: proto`): each ExportTraceServiceRequest behind its length.
    framed = b"".join(struct.pack(">I", len(b.decoded())) + b.decoded() for b in bodies)
    (out / "collector.binpb").write_bytes(framed)
    return {"dir": out, "exchanges": exchanges, "bodies": bodies}


def test_langfuse_sdk_request_bodies_load_exactly(langfuse_export, tmp_path):
    files = sorted(langfuse_export["dir"].glob("request-*.pb"))
    db, report = _load(tmp_path / "i.duckdb", *files)
    try:
        assert {f.format for f in report.files} == {"otlp-protobuf"} and report.problems == [], report.to_dict()
        rows = spans(db)
        llm = check_scenario(rows, langfuse_export["exchanges"], cohort=calls.COHORT, finish=False)
        # the SDK's own attributes: usage_details JSON, metadata values JSON-encoded one by one
        attrs = llm[0]["attributes"]
        assert attrs["langfuse.trace.metadata.tenant"] == json.dumps(calls.TENANT)
        assert "langfuse.observation.usage_details" in attrs
        assert (llm[0]["env"], llm[0]["release"]) == ("prod", "2.3.1")
        assert llm[4]["error"] and "429" in llm[4]["error"]
    finally:
        db.close()


def test_collector_proto_framing_gives_the_same_rows(langfuse_export, tmp_path):
    db, report = _load(tmp_path / "a.duckdb", *sorted(langfuse_export["dir"].glob("request-*.pb")))
    framed_db, framed = _load(tmp_path / "b.duckdb", langfuse_export["dir"] / "collector.binpb")
    try:
        assert [f.format for f in framed.files] == ["otlp-protobuf"] and framed.problems == []
        keep = ("trace_id", "span_id", "parent_id", "kind", "model", "served_model", "input_tokens", "output_tokens",
                "status", "error_type", "tenant", "user_id", "session_id", "input_messages", "output_messages")
        a = sorted(tuple(json.dumps(r[k], sort_keys=True) for k in keep) for r in spans(db))
        b = sorted(tuple(json.dumps(r[k], sort_keys=True) for k in keep) for r in spans(framed_db))
        assert a == b and len(a) == 6
    finally:
        db.close()
        framed_db.close()


def test_a_truncated_frame_is_reported_and_the_frames_before_it_load(langfuse_export, tmp_path):
    whole = (langfuse_export["dir"] / "collector.binpb").read_bytes()
    body = langfuse_export["bodies"][0].decoded()
    cut = tmp_path / "cut.binpb"
    cut.write_bytes(whole + struct.pack(">I", len(body)) + body[: len(body) // 2])
    db, report = _load(tmp_path / "c.duckdb", cut)
    try:
        assert report.files[0].status == "loaded" and report.files[0].spans == 6
        assert [p.kind for p in report.problems] == ["bad-frame"] and "truncated" in report.problems[0].message
    finally:
        db.close()


def test_python_sdk_otlp_exporter_body(tmp_path):
    """The OpenTelemetry SDK's own protobuf encoder (opentelemetry-exporter-otlp-proto-common), as
    the OTLP/HTTP exporter sends it."""
    pytest.importorskip("opentelemetry.exporter.otlp.proto.common")
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    mem = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    provider.add_span_processor(SimpleSpanProcessor(mem))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("chat gpt-4o-mini") as sp:
        sp.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
                           "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 4,
                           "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [
                               {"type": "text", "content": "hi"}]}])})
        sp.add_event("gen_ai.choice", {"message": json.dumps({"role": "assistant", "content": "hello"}),
                                       "finish_reason": "stop"})
    (tmp_path / "body.pb").write_bytes(encode_spans(mem.get_finished_spans()).SerializeToString())
    db, report = _load(tmp_path / "i.duckdb", tmp_path / "body.pb")
    try:
        assert report.files[0].format == "otlp-protobuf" and report.problems == []
        (row,) = spans(db)
        span = mem.get_finished_spans()[0]
        assert (row["trace_id"], row["span_id"]) == (format(span.context.trace_id, "032x"),
                                                     format(span.context.span_id, "016x"))
        assert (row["kind"], row["input_tokens"], row["service"]) == ("llm", 12, "svc")
        assert row["output_messages"] == [{"role": "assistant", "content": "hello"}]
    finally:
        db.close()


# -- OpenAI Agents SDK: its own trace export ------------------------------------------------------------
@pytest.fixture(scope="module")
def agents_export(tmp_path_factory) -> dict[str, Any]:
    python = _env_or_skip("fmt-agents")
    out = tmp_path_factory.mktemp("agents")
    with OpenAIServer(chunk_delay=0.01) as srv, CaptureServer() as cap:
        run_generator(python, "gen_agents.py", "--base-url", srv.base_url, "--ingest", f"{cap.url}/v1/traces/ingest")
        exchanges = list(srv.exchanges)
        bodies = cap.bodies("/v1/traces/ingest")
    assert bodies, "the Agents SDK exported nothing"
    for i, b in enumerate(bodies):  # the request bodies as posted: {"data": [items]}
        (out / f"ingest-{i}.json").write_bytes(b.decoded())
    items = [it for b in bodies for it in b.json()["data"]]
    (out / "items.jsonl").write_text("".join(json.dumps(it) + "\n" for it in items))
    return {"dir": out, "exchanges": exchanges, "items": items}


@pytest.mark.parametrize("form", ["bodies", "jsonl"])
def test_agents_sdk_export_loads_exactly(agents_export, form, tmp_path):
    files = sorted(agents_export["dir"].glob("ingest-*.json")) if form == "bodies" else [
        agents_export["dir"] / "items.jsonl"]
    db, report = _load(tmp_path / "i.duckdb", *files)
    try:
        assert {f.format for f in report.files} == {"openai-agents"} and report.problems == [], report.to_dict()
        rows = spans(db)
        assert len(rows) == len(agents_export["items"])  # every trace and span, no invented rows
        # the streamed call: the SDK asked for no usage (all zeros: unknown) and kept a Responses-API object
        llm = check_scenario(rows, agents_export["exchanges"], cohort=calls.COHORT, served=False, ttft=False,
                             finish=False, unknown_usage={3})
        assert llm[3]["response_id"] == agents_export["exchanges"][3].response["id"]
        # ids as the SDK writes them, parents in the same form
        assert all(r["span_id"].startswith(("span_", "trace_")) for r in rows)
        trace = next(r for r in rows if r["kind"] == "trace")
        assert trace["session_id"] == calls.SESSION_ID and trace["start_time"] is not None
        assert {r["kind"] for r in rows if r["name"] in ("task", "turn")} <= {"chain", "span"}
    finally:
        db.close()


# -- MLflow: Trace.to_json() and the `mlflow traces search` CLI ----------------------------------------
@pytest.fixture(scope="module")
def mlflow_export(tmp_path_factory) -> dict[str, Any]:
    import os
    import subprocess

    from exporter_checks import _env

    python = _env_or_skip("fmt-mlflow")
    out = tmp_path_factory.mktemp("mlflow")
    with OpenAIServer(chunk_delay=0.01) as srv:
        # cwd: MLflow writes trace artifacts under ./mlruns
        proc = subprocess.run([str(python), str(Path(__file__).parent / "gen_mlflow.py"), "--base-url", srv.base_url,
                               "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=out, env=_env())
        assert proc.returncode == 0, proc.stderr[-4000:]
        exchanges = list(srv.exchanges)
    experiment = proc.stdout.strip().splitlines()[-1]
    cli = subprocess.run([str(python.parent / "mlflow"), "traces", "search", "--experiment-id", experiment,
                          "--output", "json"], capture_output=True, text=True, timeout=300,
                         env={**_env(), "MLFLOW_TRACKING_URI": f"sqlite:///{out}/mlflow.db"}, cwd=out)
    assert cli.returncode == 0, cli.stderr[-3000:]
    (out / "search.json").write_text(cli.stdout)
    assert os.path.getsize(out / "search.json") > 0
    return {"dir": out, "exchanges": exchanges}


@pytest.mark.parametrize("form", ["to_json", "cli"])
def test_mlflow_traces_load_exactly(mlflow_export, form, tmp_path):
    files = sorted(mlflow_export["dir"].glob("trace-*.json")) if form == "to_json" else [
        mlflow_export["dir"] / "search.json"]
    db, report = _load(tmp_path / "i.duckdb", *files)
    try:
        assert {f.format for f in report.files} == {"mlflow-traces"} and report.problems == [], report.to_dict()
        rows = spans(db)
        assert len(rows) == 10  # five traces of two spans: the spans are read, not the traces
        llm = check_scenario(rows, mlflow_export["exchanges"], cohort=calls.COHORT)
        # base64 span ids decoded to the hex the OTel ids are; the LLM span's parent is the trace's root
        assert all(len(r["span_id"]) == 16 and int(r["span_id"], 16) >= 0 for r in rows)
        roots = {r["span_id"] for r in rows if r["parent_id"] is None}
        assert all(r["parent_id"] in roots for r in llm)
        assert all(r["response_id"] == e.response["id"] for r, e in zip(llm[:4], mlflow_export["exchanges"], strict=False))
        assert llm[0]["cost"] is not None  # MLflow's own mlflow.llm.cost
    finally:
        db.close()


# -- Opik: the SDK's REST payloads (each span sent when started and when ended) and `opik export` files --
@pytest.fixture(scope="module")
def opik_export(tmp_path_factory) -> dict[str, Any]:
    python = _env_or_skip("fmt-opik")
    out = tmp_path_factory.mktemp("opik")
    with OpenAIServer(chunk_delay=0.01) as srv, CaptureServer() as cap:
        run_generator(python, "gen_opik.py", "--base-url", srv.base_url, "--opik", f"{cap.url}/api")
        exchanges = list(srv.exchanges)
        bodies = [b.json() for b in cap.requests if b.path.endswith(("/spans/batch", "/traces/batch"))]
    (out / "payloads.jsonl").write_text("".join(json.dumps(b) + "\n" for b in bodies))
    # `opik export … traces` (opik/cli/exports/project.py): one file per trace, the spans inside, each
    # record as the backend keeps it (its last write)
    last: dict[str, dict[str, Any]] = {}
    for b in bodies:
        for rec in b.get("spans", b.get("traces", [])):
            last[rec["id"]] = {**last.get(rec["id"], {}), **rec}
    traces = [r for b in bodies for r in b.get("traces", [])]
    for tid in {t["id"] for t in traces}:
        (out / f"trace_{tid}.json").write_text(json.dumps({
            "trace": last[tid], "spans": [r for r in last.values() if r.get("trace_id") == tid],
            "attachments": [], "downloaded_at": "2026-12-07T03:00:00", "project_name": "support-bot"}, indent=2))
    return {"dir": out, "exchanges": exchanges, "bodies": bodies}


@pytest.mark.parametrize("form", ["payloads", "export"])
def test_opik_loads_exactly(opik_export, form, tmp_path):
    files = [opik_export["dir"] / "payloads.jsonl"] if form == "payloads" else sorted(
        opik_export["dir"].glob("trace_*.json"))
    db, report = _load(tmp_path / "i.duckdb", *files)
    try:
        assert {f.format for f in report.files} == {"opik"} and report.problems == [], report.to_dict()
        rows = spans(db)
        check_scenario(rows, opik_export["exchanges"], cohort=calls.COHORT, ttft=False)
        if form == "payloads":  # the SDK really sent spans twice; each is one row, the completed one
            sent = [s["id"] for b in opik_export["bodies"] for s in b.get("spans", [])]
            assert len(sent) > len(set(sent)) and len(rows) == len(set(sent)) + 1  # + the trace row
    finally:
        db.close()


# -- Braintrust: the SDK's /logs3 rows (created, then merged) and the fetch API's merged events ---------
@pytest.fixture(scope="module")
def braintrust_export(tmp_path_factory) -> dict[str, Any]:
    python = _env_or_skip("fmt-braintrust")
    out = tmp_path_factory.mktemp("braintrust")
    org = {"org_info": [{"id": "org-1", "name": "acme-org", "api_url": None, "proxy_url": None, "git_metadata": None}]}
    project = {"id": "proj-1", "name": "support-bot", "org_id": "org-1"}
    with OpenAIServer(chunk_delay=0.01) as srv, CaptureServer({"/api/apikey/login": org, "/v1/project": project,
                                                               "/version": {}, "/logs3": {}}) as cap:
        org["org_info"][0]["api_url"] = org["org_info"][0]["proxy_url"] = cap.url
        run_generator(python, "gen_braintrust.py", "--base-url", srv.base_url, "--api", cap.url)
        exchanges = list(srv.exchanges)
        bodies = [b.json() for b in cap.bodies("/logs3")]
    (out / "logs3.jsonl").write_text("".join(json.dumps(b) + "\n" for b in bodies))
    # what /v1/project_logs/{id}/fetch answers: each row merged, `_is_merge` gone
    merged: dict[str, dict[str, Any]] = {}
    for b in bodies:
        for r in b["rows"]:
            old = merged.setdefault(r["id"], {})
            for k, v in r.items():
                old[k] = {**old[k], **v} if isinstance(v, dict) and isinstance(old.get(k), dict) else v
    events = [{k: v for k, v in r.items() if k != "_is_merge"} for r in merged.values()]
    (out / "fetch.json").write_text(json.dumps({"events": events, "cursor": None}))
    return {"dir": out, "exchanges": exchanges, "bodies": bodies}


@pytest.mark.parametrize("name", ["logs3.jsonl", "fetch.json"])
def test_braintrust_loads_exactly(braintrust_export, name, tmp_path):
    db, report = _load(tmp_path / "i.duckdb", braintrust_export["dir"] / name)
    try:
        assert [f.format for f in report.files] == ["braintrust"] and report.problems == [], report.to_dict()
        rows = spans(db)
        assert len(rows) == 6
        check_scenario(rows, braintrust_export["exchanges"], cohort=calls.COHORT, served=False,
                       failure_recorded=False)
    finally:
        db.close()


# -- Strands: GenAI per-message span events, written by the OTel SDK's console exporter -----------------
def test_strands_agent_calls_from_per_message_events(tmp_path):
    python = _env_or_skip("fmt-strands")
    out = tmp_path / "spans.txt"
    with OpenAIServer(chunk_delay=0.01) as srv:
        run_generator(python, "gen_strands.py", "--base-url", srv.base_url, "--out", str(out))
        exchanges = list(srv.exchanges)
    db, report = _load(tmp_path / "i.duckdb", out)
    try:
        assert report.problems == [] and report.files[0].status == "loaded", report.to_dict()
        rows = spans(db)
        names = {r["name"]: r["kind"] for r in rows}
        # the agent's usage roll-up and the loop cycles are not calls; the two `chat` spans are
        assert names["invoke_agent Strands Agents"] == "agent" and names["execute_event_loop_cycle"] == "span"
        llm = sorted((r for r in rows if r["kind"] == "llm"), key=lambda r: r["start_us"])
        assert len(llm) == len(exchanges) == 2
        for row, ex in zip(llm, exchanges, strict=True):
            assert roles(row["input_messages"]) == [m["role"] for m in ex.request["messages"]]
            assert (row["input_tokens"], row["output_tokens"]) == (
                ex.response["usage"]["prompt_tokens"], ex.response["usage"]["completion_tokens"])
            assert (row["model"], row["tenant"], row["session_id"]) == ("gpt-4o-mini", calls.TENANT, calls.SESSION_ID)
            assert row["ttft_ms"] is not None  # gen_ai.server.time_to_first_token
        call = exchanges[0].response["choices"][0]["message"]["tool_calls"][0]
        assert [(t["id"], t["name"]) for t in llm[0]["tool_calls"]] == [(call["id"], "get_weather")]
        assert llm[1]["input_messages"][-1] == {"role": "tool", "content": calls.TOOL_RESULT, "tool_call_id": call["id"]}
        assert llm[1]["output_messages"][0]["content"] == exchanges[1].response["choices"][0]["message"]["content"]
    finally:
        db.close()


# -- Logfire: a streamed call written as a request span plus a log ---------------------------------------
def test_logfire_openai_streamed_call_is_one_call(tmp_path):
    python = _env_or_skip("fmt-logfire")
    out = tmp_path / "spans.jsonl"
    with OpenAIServer(chunk_delay=0.01) as srv:
        run_generator(python, "gen_logfire.py", "--base-url", srv.base_url, "--out", str(out))
        exchanges = list(srv.exchanges)
    db, report = _load(tmp_path / "i.duckdb", out)
    try:
        assert report.problems == [] and report.files[0].status == "loaded", report.to_dict()
        rows = spans(db)
        # Logfire's default scrubber replaces a value whose key says "session": never loaded as a session
        cohort = {k: v for k, v in calls.COHORT.items() if k != "session_id"}
        llm = check_scenario(rows, exchanges, cohort=cohort, ttft=False)
        assert all(r["session_id"] is None for r in rows)
        log = next(r for r in rows if r["name"].startswith("streaming response"))
        assert log["kind"] == "event" and log["attributes"]["oncall.merged_into"] == llm[3]["span_id"]
        assert llm[3]["end_us"] >= log["start_us"] and llm[3]["response_id"] == exchanges[3].response["id"]
    finally:
        db.close()


# -- Phoenix: a real server fed by OpenInference; its span JSON and its spans dataframe as Parquet ---------
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def phoenix_server(tmp_path_factory):
    """`phoenix serve` on SQLite in a temporary working directory (ELv2; run, never shipped)."""
    import os
    import subprocess
    import time
    import urllib.request

    python = _env_or_skip("fmt-phoenix")
    port = _free_port()
    work = tmp_path_factory.mktemp("phoenix")
    env = {**os.environ, "PHOENIX_WORKING_DIR": str(work), "PHOENIX_PORT": str(port), "PHOENIX_HOST": "127.0.0.1",
           "PHOENIX_GRPC_PORT": str(_free_port()), "PHOENIX_TELEMETRY_ENABLED": "false"}
    log = open(work / "server.log", "w")  # noqa: SIM115 - closed after the server stops
    proc = subprocess.Popen([str(python.parent / "phoenix"), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 420  # first start runs its migrations; slow on a loaded machine
        while True:
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"phoenix serve did not start:\n{(work / 'server.log').read_text()[-3000:]}") from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def phoenix_export(phoenix_server, tmp_path_factory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("phoenix-export")
    with OpenAIServer(chunk_delay=0.01) as srv:
        run_generator(_env_or_skip("fmt-phoenix"), "gen_phoenix.py", "--base-url", srv.base_url,
                      "--phoenix", phoenix_server, "--out", str(out), timeout=300)
        exchanges = list(srv.exchanges)
    return {"dir": out, "exchanges": exchanges, "truth": json.loads((out / "truth.json").read_text())}


@pytest.mark.parametrize("name", ["spans.parquet", "spans.json", "spans_otlp.json"])
def test_phoenix_exports_load_exactly(phoenix_export, name, tmp_path):
    db, report = _load(tmp_path / "i.duckdb", phoenix_export["dir"] / name)
    try:
        assert [(f.format, f.status) for f in report.files] == [("phoenix", "loaded")] and report.problems == []
        rows = spans(db)
        truth = {t["span_id"]: t for t in phoenix_export["truth"]}
        # the ids are the spans' own (the dataframe's context.span_id), never invented
        assert {r["span_id"] for r in rows} == set(truth)
        for r in rows:
            t = truth[r["span_id"]]
            assert (r["trace_id"], r["parent_id"]) == (t["trace_id"], t["parent_id"])
            # Phoenix keeps microseconds (its OTLP form gives them back as whole-µs nanoseconds)
            assert abs(r["start_us"] - t["start_ns"] / 1000) < 2 and abs(r["end_us"] - t["end_ns"] / 1000) < 2
        check_scenario(rows, phoenix_export["exchanges"], cohort=calls.COHORT)
    finally:
        db.close()


def test_phoenix_dataframe_and_span_json_are_the_same_spans(phoenix_export, tmp_path):
    db, report = _load(tmp_path / "i.duckdb", phoenix_export["dir"] / "spans.parquet",
                       phoenix_export["dir"] / "spans.json")
    try:
        assert [(f.spans, f.duplicates) for f in report.files] == [(6, 0), (0, 6)]
    finally:
        db.close()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
