"""What the LiteLLM SDK's logging writes loads exactly, and what it does not write is said so.

tests/gen_litellm.py runs in LiteLLM's own environment (.envs/litellm, made by
.ci/setup-exporters.sh: litellm pins its own openai/httpx) against tests/openai_server.py, with two
callbacks on the same calls: a CustomLogger writing `standard_logging_object` (StandardLoggingPayload)
as JSON Lines, and LiteLLM's `otel` callback with the OTLP JSON file exporter. It runs twice: without
an application span (LiteLLM makes a `litellm_request` span per call) and inside the application's
root span, where LiteLLM writes every call onto that one span.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import instrumented_calls as calls
import pytest
from exporter_checks import Truth, check_calls, check_search, env_python, run_generator, spans
from openai_server import OpenAIServer

from oncall.ingest.decode import to_epoch_us
from oncall.ingest.loader import load_paths
from oncall.store import open_db

PYTHON = env_python("litellm")
pytestmark = pytest.mark.skipif(PYTHON is None, reason=".envs/litellm is missing: run .ci/setup-exporters.sh "
                                "(the registry may have been down)")


def load(path: Path) -> tuple[Any, Any]:
    db = open_db(path.parent / f"{path.stem}-{uuid.uuid4().hex[:8]}.duckdb")  # a fresh incident per load
    return db, load_paths(db, [str(path)])


@pytest.fixture(scope="module", params=["no-root", "root"])
def generated(request, tmp_path_factory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp(f"litellm-{request.param}")
    with OpenAIServer(chunk_delay=0.01) as srv:
        run_generator(PYTHON, "gen_litellm.py", "--base-url", srv.base_url, "--slp", str(d / "payloads.jsonl"),
                      "--otel", str(d / "traces.jsonl"), *(["--no-root"] if request.param == "no-root" else []))
        exchanges = list(srv.exchanges)
    out = {"root": request.param == "root", "dir": d, "exchanges": exchanges, "dbs": []}
    yield out
    for db in out["dbs"]:
        db.close()


def _load(generated: dict[str, Any], name: str) -> tuple[Any, Any]:
    db, report = load(generated["dir"] / name)
    generated["dbs"].append(db)
    assert [f.status for f in report.files] == ["loaded"] and report.problems == [], report.to_dict()
    return db, report


def test_standard_logging_payload_loads_exactly(generated):
    db, report = _load(generated, "payloads.jsonl")
    assert report.files[0].format == "litellm"
    records = [json.loads(line) for line in (generated["dir"] / "payloads.jsonl").read_text().splitlines()]
    assert len(records) == 5
    truth = {}
    for rec in records:
        key = rec["id"] if rec["status"] == "success" else "429"
        truth[key] = Truth(rec["trace_id"], rec["id"], None, to_epoch_us(rec["startTime"], "s"),
                           to_epoch_us(rec["endTime"], "s"))
    rows = spans(db)
    check_calls(rows, generated["exchanges"], truth, cohort=calls.COHORT)
    check_search(db, calls.COHORT)
    for rec in records:
        row = next(r for r in rows if r["span_id"] == rec["id"])
        assert row["cost"] == pytest.approx(rec["response_cost"])
    streamed = next(r for r in records if r["stream"])
    # LiteLLM logs the alias as the streamed response's model; the deployment is the model-map key
    assert streamed["response"]["model"] == "gpt-4o-mini"
    assert streamed["model_map_information"]["model_map_key"] == "gpt-4o-mini-2024-07-18"
    row = next(r for r in rows if r["response_id"] == streamed["id"])
    assert row["ttft_ms"] == pytest.approx((streamed["completionStartTime"] - streamed["startTime"]) * 1000, abs=0.002)
    failed = next(r for r in rows if r["status"] == "error")
    assert failed["span_id"] == next(r["id"] for r in records if r["status"] == "failure")


def _otel_raw(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines():
        for rs in json.loads(line)["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for sp in ss["spans"]:
                    sp["attrs"] = {kv["key"]: next(iter(kv["value"].values()), None) for kv in sp.get("attributes", [])}
                    out.append(sp)
    return out


def test_otel_callback_span_per_call(generated):
    if generated["root"]:
        pytest.skip("inside an application span LiteLLM makes no span per call (next test)")
    db, _ = _load(generated, "traces.jsonl")
    raw = _otel_raw(generated["dir"] / "traces.jsonl")
    truth = {}
    for sp in raw:
        if sp["name"] != "litellm_request":
            continue
        a = sp["attrs"]
        key = a["gen_ai.response.id"] if a["gen_ai.response.id"] != a["litellm.call_id"] else "429"
        truth[key] = Truth(sp["traceId"], sp["spanId"], sp.get("parentSpanId") or None,
                           int(sp["startTimeUnixNano"]) // 1000, int(sp["endTimeUnixNano"]) // 1000)
    # What LiteLLM's otel callback does not write (README coverage table): no time to first token,
    # and the alias as the streamed call's response model. The tool call of a tool-call answer is
    # only in the Python-repr llm.openai.choices of the raw_gen_ai_request child: read from there.
    rows = spans(db)
    check_calls(rows, generated["exchanges"], truth, cohort=calls.COHORT, ttft=False, served_stream="gpt-4o-mini")
    check_search(db, calls.COHORT)
    for r in rows:
        if r["name"] == "litellm_request" and r["status"] == "ok":
            sp = next(s for s in raw if s["spanId"] == r["span_id"])
            assert r["cost"] == pytest.approx(sp["attrs"]["gen_ai.cost.total_cost"]) and r["cost"] > 0
    asked = next(r for r in rows if r["response_id"] == generated["exchanges"][1].response["id"])
    child = next(r for r in rows if r["parent_id"] == asked["span_id"])
    assert asked["attributes"]["oncall.tool_calls_from"] == child["span_id"] and child["kind"] == "span"


def test_otel_callback_inside_the_application_span(generated):
    """LiteLLM writes each call's attributes onto the caller's span, so every call overwrites the one
    before, and keeps each non-streamed success only as Python-repr llm.openai.* on a raw_gen_ai_request
    child: those children are the calls (the requested model is not exported there); the caller's
    span is the last call (the 429); the streamed call, logged from another thread, has its own span."""
    if not generated["root"]:
        pytest.skip("only inside an application span")
    db, report = _load(generated, "traces.jsonl")
    assert "wrote 3 calls onto 1 caller span" in report.files[0].note
    rows = spans(db)
    raw = _otel_raw(generated["dir"] / "traces.jsonl")
    exchanges = generated["exchanges"]
    llm = [r for r in rows if r["kind"] == "llm"]
    assert len(llm) == 5
    root = next(r for r in rows if r["name"] == "support_ticket")
    by_rid = {r["response_id"]: r for r in llm if r["response_id"]}
    assert set(by_rid) == {e.response["id"] for e in exchanges if e.status == 200}
    for i, ex in enumerate(exchanges[:3]):
        row = by_rid[ex.response["id"]]
        sp = next(s for s in raw if s["spanId"] == row["span_id"])
        assert (sp["name"], row["parent_id"], row["trace_id"]) == ("raw_gen_ai_request", root["span_id"], root["trace_id"])
        assert (row["start_us"], row["end_us"]) == (int(sp["startTimeUnixNano"]) // 1000, int(sp["endTimeUnixNano"]) // 1000)
        assert (row["model"], row["served_model"], row["provider"]) == (None, ex.response["model"], "openai")
        u = ex.response["usage"]
        assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (
            u["prompt_tokens"], u["completion_tokens"], u["total_tokens"])
        assert [m["role"] for m in row["input_messages"]] == [m["role"] for m in ex.request["messages"]]
        choice = ex.response["choices"][0]
        assert row["finish_reason"] == choice["finish_reason"]
        assert row["output_messages"][0]["content"] == choice["message"]["content"]
        for k, v in calls.COHORT.items():
            assert row[k] == v, (i, k)
    tc = by_rid[exchanges[1].response["id"]]["tool_calls"]
    assert [(t["id"], t["name"], json.loads(t["arguments"])) for t in tc] == [
        (exchanges[1].response["choices"][0]["message"]["tool_calls"][0]["id"], "get_weather", {"city": "Paris"})]
    streamed = by_rid[exchanges[3].response["id"]]
    assert (streamed["name"], streamed["served_model"], streamed["ttft_ms"]) == ("litellm_request", "gpt-4o-mini", None)
    # the caller's span: the 429, and nothing left over from the calls it held before
    assert (root["status"], root["error_type"], root["http_status"]) == ("error", "rate_limit", 429)
    assert root["input_messages"] == [{"role": "user", "content": calls.ERROR_QUESTION}]
    assert (root["response_id"], root["output_messages"], root["input_tokens"], root["served_model"]) == (
        None, None, None, None)
    for k, v in calls.COHORT.items():
        assert root[k] == v
    from oncall.query.search import count

    assert count(db.cursor(), ["tenant=acme", "prompt_version=v12", "session=" + calls.SESSION_ID]) == 5


def _llm_view(db: Any) -> list[tuple[Any, ...]]:
    cols = "span_id, kind, status, response_id, served_model, tool_calls, input_tokens, tenant, session_id"
    return sorted(db.cursor().execute(f"SELECT {cols} FROM spans").fetchall(), key=str)


def test_otel_export_read_the_same_in_any_line_order(generated, tmp_path):
    """OTLP JSON Lines promise no order: the caller's span before its children, the raw children
    before LiteLLM's own span, read the same."""
    db, _ = _load(generated, "traces.jsonl")
    expected = _llm_view(db)
    lines = (generated["dir"] / "traces.jsonl").read_text().splitlines()
    path = tmp_path / "reversed.jsonl"
    path.write_text("\n".join(reversed(lines)) + "\n")
    db2, report = load(path)
    generated["dbs"].append(db2)
    assert report.problems == []
    assert _llm_view(db2) == expected


def test_otel_one_call_per_caller_span_is_counted_once(tmp_path):
    """One call inside the caller's span (as behind LiteLLM's proxy, a span per request): the
    caller's span is that call, and its raw_gen_ai_request child is not a second one."""
    with OpenAIServer() as srv:
        run_generator(PYTHON, "gen_litellm.py", "--base-url", srv.base_url, "--slp", str(tmp_path / "p.jsonl"),
                      "--otel", str(tmp_path / "traces.jsonl"), "--one-call")
        ex = srv.exchanges[0]
    db, report = load(tmp_path / "traces.jsonl")
    try:
        assert report.problems == [] and report.files[0].note is None
        rows = spans(db)
        llm = [r for r in rows if r["kind"] == "llm"]
        assert [(r["name"], r["response_id"], r["served_model"], r["input_tokens"]) for r in llm] == [
            ("support_ticket", ex.response["id"], ex.response["model"], ex.response["usage"]["prompt_tokens"])]
        assert [r["kind"] for r in rows if r["name"] == "raw_gen_ai_request"] == ["span"]
        assert llm[0]["output_messages"][0]["content"] == ex.response["choices"][0]["message"]["content"]
    finally:
        db.close()

    # When the caller's span has ended before LiteLLM's logging thread writes onto it, the attributes
    # are dropped ("Setting attribute on ended span"): the root keeps only the application's keys and
    # the raw child is the only record of the call. Same export, the root as that race leaves it:
    docs = [json.loads(line) for line in (tmp_path / "traces.jsonl").read_text().splitlines()]
    for doc in docs:
        for rs in doc["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for sp in ss["spans"]:
                    if sp["name"] == "support_ticket":
                        sp["attributes"] = [kv for kv in sp["attributes"] if kv["key"] in (
                            "session.id", "user.id", "tenant", "feature", "prompt_version")]
    raced = tmp_path / "raced.jsonl"
    raced.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    db, report = load(raced)
    try:
        llm = [r for r in spans(db) if r["kind"] == "llm"]
        assert [(r["name"], r["response_id"], r["served_model"], r["tenant"]) for r in llm] == [
            ("raw_gen_ai_request", ex.response["id"], ex.response["model"], "acme")]
    finally:
        db.close()
