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

pytestmark = pytest.mark.formats


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
                   served: bool = True, ttft: bool = True, finish: bool = True) -> list[dict[str, Any]]:
    """The five LLM calls of the scenario, in order, against the server's exchanges."""
    llm = sorted((r for r in rows if r["kind"] == "llm"), key=lambda r: r["start_us"])
    assert len(llm) == 5, [(r["name"], r["kind"]) for r in rows]
    assert [e.status for e in exchanges] == [200, 200, 200, 200, 429]
    for ex, row in zip(exchanges, llm, strict=True):
        where = f"call {row['name']} {ex.request['messages'][-1]['content']!r}"
        assert roles(row["input_messages"]) == [m["role"] for m in ex.request["messages"]], where
        for k, v in cohort.items():
            assert row[k] == v, f"{where}: {k} is {row[k]!r}, expected {v!r}"
        if ex.status != 200:
            assert (row["status"], row["error_type"]) == ("error", "rate_limit"), where
            assert row["model"] == "gpt-4o-mini" and not row["output_messages"], where
            continue
        usage = ex.response["usage"]
        assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (
            usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]), where
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
    assert answered[1]["tool_calls"][0]["id"] == call["id"] and answered[2]["tool_call_id"] == call["id"]
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


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
