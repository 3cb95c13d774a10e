"""OTel span shapes the mapping reads, each built from the library's own attributes (source cited per case).

The real-library versions (Langfuse SDK, Strands, MLflow) are in tests/test_real_formats.py where the
library installs here; these cases pin the shapes that cannot be produced here (Genkit, Google ADK,
Semantic Kernel .NET, smolagents/Agno through OpenInference) and the rule for what counts as an LLM call.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from oncall.ingest.formats.otlp import build_row
from oncall.ingest.mapping import map_attributes

FIXTURES = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures"


def row(attrs: dict[str, Any], events: list[dict[str, Any]] | None = None, *, start_us: int = 1_000_000,
        end_us: int = 3_000_000, status: str = "unset") -> dict[str, Any]:
    """The canonical row of one span with these attributes, through the OTLP importers' path."""
    return build_row(trace_id="ab" * 16, span_id="cd" * 8, parent_id=None, name="span", span_kind="client",
                     start_us=start_us, end_us=end_us, attrs=attrs, resource={}, scope_name=None,
                     events=events or [], status=status, status_message=None, raw={})


# -- the LLM-call rule --------------------------------------------------------------------------------
@pytest.mark.parametrize(("op", "kind"), [
    ("chat", "llm"), ("generate", "llm"), ("text_completion", "llm"), ("generate_content", "llm"),
    ("invoke_agent", "agent"), ("create_agent", "agent"), ("execute_tool", "tool"), ("embeddings", "embedding"),
    # Semantic Kernel: dotted operation names (microsoft/semantic-kernel
    # dotnet/src/InternalUtilities/src/Diagnostics/ModelDiagnostics.cs, python model_diagnostics)
    ("chat.completions", "llm"), ("text.completions", "llm"), ("chat.streaming_completions", "llm"),
])
def test_operation_names_map_to_their_kind(op, kind):
    r = row({"gen_ai.operation.name": op, "gen_ai.request.model": "gpt-4o-mini",
             "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 2})
    assert r["kind"] == kind


@pytest.mark.parametrize(("attrs", "kind"), [
    # an agent run that rolls up its calls' usage and names its model (pydantic-ai, Strands, smolagents)
    ({"gen_ai.operation.name": "invoke_agent", "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 90,
      "gen_ai.usage.output_tokens": 30}, "agent"),
    # smolagents through OpenInference: the AGENT span carries the run's token totals
    # (Arize-ai/openinference python/instrumentation/openinference-instrumentation-smolagents _wrappers.py)
    ({"openinference.span.kind": "AGENT", "llm.token_count.prompt": 900, "llm.token_count.completion": 80,
      "llm.model_name": "gpt-4o-mini"}, "agent"),
    # a workflow whose output embeds the provider response (OpenLLMetry entity.output)
    ({"traceloop.span.kind": "workflow", "traceloop.entity.output": json.dumps(
        {"id": "chatcmpl-1", "model": "gpt-4o", "usage": {"prompt_tokens": 3, "completion_tokens": 1},
         "choices": [{"message": {"role": "assistant", "content": "x"}}]})}, "chain"),
    # a model named with no usage: configuration, not a call
    ({"gen_ai.request.model": "gpt-4o", "gen_ai.agent.name": "support"}, "span"),
    # usage with no model: a roll-up
    ({"gen_ai.usage.input_tokens": 40, "gen_ai.usage.output_tokens": 9}, "span"),
    # an embeddings call with model and usage is an embedding, not an LLM call
    ({"gen_ai.operation.name": "embeddings", "gen_ai.request.model": "text-embedding-3-small",
      "gen_ai.usage.input_tokens": 8}, "embedding"),
    # an invented operation name is no verdict; the span has no model: not a call
    ({"gen_ai.operation.name": "execute_event_loop_cycle", "gen_ai.usage.input_tokens": 8}, "span"),
    # Google ADK's tool span carries empty llm_request/llm_response attributes
    ({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "say_hello", "gcp.vertex.agent.llm_request": "{}",
      "gcp.vertex.agent.llm_response": "{}", "gen_ai.request.model": "gemini-2.0-flash"}, "tool"),
])
def test_spans_that_must_not_count_as_llm_calls(attrs, kind):
    assert row(attrs)["kind"] == kind


def test_a_model_and_token_usage_is_an_llm_call():
    assert row({"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 5})["kind"] == "llm"
    assert row({"llm.model_name": "gpt-4o", "llm.token_count.completion": 5})["kind"] == "llm"


# -- GenAI per-message events on the span ---------------------------------------------------------------
def test_genai_per_message_events():
    """semconv v1.28-1.36 events (open-telemetry/semantic-conventions docs/gen-ai/gen-ai-events.md), recorded
    as span events with the body's fields as attributes (Strands writes `content` as a JSON string)."""
    events = [
        {"name": "gen_ai.system.message", "attributes": {"content": "Be terse."}},
        {"name": "gen_ai.user.message", "attributes": {"content": json.dumps([{"text": "Weather in Paris?"}])}},
        {"name": "gen_ai.assistant.message", "attributes": {"tool_calls": json.dumps(
            [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}])}},
        {"name": "gen_ai.tool.message", "attributes": {"id": "call_1", "content": "{\"temp\": 18}"}},
        {"name": "gen_ai.choice", "attributes": {"index": 0, "finish_reason": "stop",
                                                 "message": json.dumps({"role": "assistant", "content": "18 C"})}},
    ]
    r = row({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"}, events)
    assert r["input_messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "content": "{\"temp\": 18}", "tool_call_id": "call_1"},
    ]
    assert r["output_messages"] == [{"role": "assistant", "content": "18 C"}]
    assert r["finish_reason"] == "stop"


def test_genai_choice_as_strands_content_blocks():
    """Strands (strands-agents src/strands/telemetry/tracer.py): the choice's `message` is the content
    block list, tool use in Bedrock Converse form."""
    events = [{"name": "gen_ai.choice", "attributes": {"finish_reason": "tool_use", "message": json.dumps(
        [{"text": "Let me check."}, {"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {"city": "Paris"}}}])}}]
    r = row({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"}, events)
    assert r["output_messages"] == [{"role": "assistant", "content": "Let me check.", "tool_calls": [
        {"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]}]
    assert r["finish_reason"] == "tool_calls"
    assert r["tool_calls"] == [{"id": "t1", "name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}]


# -- malformed message attributes ---------------------------------------------------------------------
@pytest.mark.parametrize("key", ["gen_ai.input.messages", "gen_ai.output.messages", "input.value", "output.value",
                                 "langfuse.observation.input", "langfuse.observation.output", "ai.prompt.messages"])
def test_malformed_json_message_attribute_is_kept_as_text(key):
    bad = '[{"role": "user", "parts": [{"type": "text", "content": "cut off'
    r = row({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", key: bad})
    side = "output" if "output" in key else "input"
    assert r[f"{side}_text"] == bad
    assert not r.get(f"{side}_messages")  # never one empty (or invented) message


# -- Langfuse SDK attributes ----------------------------------------------------------------------------
def test_langfuse_sdk_attributes():
    """langfuse python 5.0.4 `langfuse/_client/attributes.py`: usage/cost details and I/O are JSON strings,
    metadata values are JSON-encoded one by one, strings included (`"\\"acme\\""`)."""
    r = row({
        "langfuse.observation.type": "generation", "langfuse.observation.model.name": "gpt-4o-mini",
        "langfuse.observation.usage_details": json.dumps({"input": 21, "output": 7, "total": 28, "input_cache_read": 4}),
        "langfuse.observation.cost_details": json.dumps({"input": 0.0001, "output": 0.0002, "total": 0.0003}),
        "langfuse.observation.input": json.dumps([{"role": "user", "content": "hi"}]),
        "langfuse.observation.output": json.dumps({"role": "assistant", "content": "hello"}),
        "langfuse.observation.prompt.name": "support-bot", "langfuse.observation.prompt.version": 13,
        "langfuse.observation.completion_start_time": json.dumps("1970-01-01T00:00:01.250000Z"),
        "user.id": "user-7", "session.id": "sess-1", "langfuse.trace.tags": ["prod", "beta"],
        "langfuse.trace.metadata.tenant": json.dumps("acme"), "langfuse.trace.metadata.feature": json.dumps("chat"),
        "langfuse.environment": "production", "langfuse.release": "2.3.1",
    })
    assert (r["kind"], r["model"], r["input_tokens"], r["output_tokens"], r["total_tokens"], r["cached_tokens"]) == (
        "llm", "gpt-4o-mini", 21, 7, 28, 4)
    assert r["cost"] == pytest.approx(0.0003)
    assert r["input_messages"] == [{"role": "user", "content": "hi"}]
    assert r["output_messages"] == [{"role": "assistant", "content": "hello"}]
    assert (r["prompt_name"], r["prompt_version"]) == ("support-bot", "13")
    assert (r["user_id"], r["session_id"], r["tenant"], r["feature"], r["env"], r["release"]) == (
        "user-7", "sess-1", "acme", "chat", "production", "2.3.1")
    assert r["ttft_ms"] == pytest.approx(250.0)


def test_langfuse_level_error_fails_the_call():
    r = row({"langfuse.observation.type": "generation", "langfuse.observation.model.name": "gpt-4o",
             "langfuse.observation.level": "ERROR", "langfuse.observation.status_message": "Error code: 429 - rate limit"})
    assert (r["status"], r["error_type"], r["http_status"]) == ("error", "rate_limit", 429)
    warn = row({"langfuse.observation.type": "generation", "langfuse.observation.level": "WARNING"})
    assert warn["status"] == "unset" and warn.get("error_type") is None


# -- Google ADK ------------------------------------------------------------------------------------------
def _adk_attrs() -> list[dict[str, Any]]:
    """The ADK call_llm spans of a real export, with only ADK's own keys (OpenInference's removed):
    fixture langfuse/google-adk-2025-08-28.trace.json, google-adk 1.12.0."""
    doc = json.loads((FIXTURES / "langfuse" / "google-adk-2025-08-28.trace.json").read_text())
    out = []
    for ob in doc["observations"]:
        md = json.loads(ob["metadata"]) if isinstance(ob["metadata"], str) else ob["metadata"]
        a = md["attributes"]
        if "gcp.vertex.agent.llm_request" in a and a["gcp.vertex.agent.llm_request"] != "{}":
            out.append({k: v for k, v in a.items() if not k.startswith(("llm.", "input.", "output.", "openinference."))})
    return out


def test_google_adk_llm_request_and_response():
    calls = [row(a) for a in _adk_attrs()]
    assert [c["kind"] for c in calls] == ["llm", "llm"]
    by_out = {c["output_tokens"]: c for c in calls}
    final, first = by_out[6], by_out[3]
    assert final["model"] == "gemini-2.0-flash" and final["input_tokens"] == 39
    assert [m["role"] for m in final["input_messages"]] == ["system", "user", "assistant", "tool"]
    assert final["input_messages"][2]["tool_calls"][0]["function"]["name"] == "say_hello"
    assert json.loads(final["input_messages"][3]["content"]) == {"greeting": "Hello Langfuse 👋"}
    assert final["output_messages"] == [{"role": "assistant", "content": "Hello Langfuse 👋!\n"}]
    assert first["tool_calls"][0]["name"] == "say_hello" and first["finish_reason"] == "stop"
    assert (final["session_id"], final["user_id"]) == ("demo-session", "demo-user")


# -- Genkit ----------------------------------------------------------------------------------------------
def test_genkit_model_action():
    """firebase/genkit js/core/src/tracing/instrumentation.ts (genkit:type/name/input/output/state,
    genkit:metadata:subtype) and js/ai/src/model.ts (GenerateRequest/GenerateResponse, usage)."""
    attrs = {
        "genkit:type": "action", "genkit:metadata:subtype": "model", "genkit:name": "googleai/gemini-2.5-flash",
        "genkit:path": "/{supportFlow,t:flow}/{googleai/gemini-2.5-flash,t:action,s:model}",
        "genkit:input": json.dumps({"messages": [
            {"role": "system", "content": [{"text": "Be terse."}]},
            {"role": "user", "content": [{"text": "Weather in Paris?"}]},
            {"role": "model", "content": [{"toolRequest": {"name": "getWeather", "ref": "0", "input": {"city": "Paris"}}}]},
            {"role": "tool", "content": [{"toolResponse": {"name": "getWeather", "ref": "0", "output": {"temp": 18}}}]}],
            "config": {"temperature": 0.2}}),
        "genkit:output": json.dumps({"message": {"role": "model", "content": [{"text": "18 C and clear."}]},
                                     "finishReason": "stop", "usage": {"inputTokens": 42, "outputTokens": 6,
                                                                       "totalTokens": 48, "thoughtsTokens": 3}}),
        "genkit:state": "success", "genkit:sessionId": "sess-9",
    }
    r = row(attrs)
    assert (r["kind"], r["model"], r["provider"]) == ("llm", "gemini-2.5-flash", "googleai")
    assert (r["input_tokens"], r["output_tokens"], r["total_tokens"], r["reasoning_tokens"]) == (42, 6, 48, 3)
    assert [m["role"] for m in r["input_messages"]] == ["system", "user", "assistant", "tool"]
    assert r["input_messages"][3] == {"role": "tool", "content": "{\"temp\": 18}", "tool_call_id": "0"}
    assert r["output_messages"] == [{"role": "assistant", "content": "18 C and clear."}]
    assert (r["finish_reason"], r["session_id"]) == ("stop", "sess-9")
    flow = row({"genkit:type": "action", "genkit:metadata:subtype": "flow", "genkit:name": "supportFlow",
                "genkit:output": attrs["genkit:output"]})
    tool = row({"genkit:type": "action", "genkit:metadata:subtype": "tool.v2", "genkit:name": "getWeather"})
    assert (flow["kind"], tool["kind"]) == ("chain", "tool")
    failed = row({**attrs, "genkit:state": "error", "genkit:output": ""}, status="error")
    assert failed["status"] == "error" and failed["kind"] == "llm"


# -- MLflow span attributes ------------------------------------------------------------------------------
def test_mlflow_span_attributes():
    """mlflow/tracing/constant.py SpanAttributeKey: every attribute is JSON-encoded (mlflow Span.set_attribute)."""
    inputs = {"messages": [{"role": "user", "content": "hi"}], "model": "gpt-4o-mini", "temperature": 0}
    outputs = {"id": "chatcmpl-9", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 8, "completion_tokens": 2, "total_tokens": 10}}
    r = row({"mlflow.spanType": json.dumps("CHAT_MODEL"), "mlflow.spanInputs": json.dumps(inputs),
             "mlflow.spanOutputs": json.dumps(outputs), "mlflow.traceRequestId": json.dumps("tr-1"),
             "mlflow.chat.tokenUsage": json.dumps({"input_tokens": 8, "output_tokens": 2, "total_tokens": 10})})
    assert (r["kind"], r["model"], r["served_model"]) == ("llm", "gpt-4o-mini", "gpt-4o-mini-2024-07-18")
    assert (r["input_tokens"], r["output_tokens"], r["total_tokens"]) == (8, 2, 10)
    assert r["input_messages"] == [{"role": "user", "content": "hi"}]
    assert r["output_messages"] == [{"role": "assistant", "content": "hello"}]
    assert (r["response_id"], r["finish_reason"]) == ("chatcmpl-9", "stop")
    chain = row({"mlflow.spanType": json.dumps("CHAIN"), "mlflow.spanInputs": json.dumps({"question": "hi"}),
                 "mlflow.spanOutputs": json.dumps("hello")})
    assert chain["kind"] == "chain" and chain["input_text"] == "hi"


# -- Semantic Kernel agents (.NET 1.55+) -----------------------------------------------------------------
def test_semantic_kernel_agent_invocation_messages():
    """microsoft/semantic-kernel dotnet/src/Agents/Abstractions/AgentDiagnostics (ModelDiagnostics.StartAgentInvocationActivity):
    invoke_agent spans with gen_ai.agent.* and the messages as gen_ai.agent.invocation_input/_output JSON."""
    r = row({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "Support", "gen_ai.agent.id": "a1",
             "gen_ai.agent.invocation_input": json.dumps([{"role": "user", "content": "hi"}]),
             "gen_ai.agent.invocation_output": json.dumps([{"role": "assistant", "content": "hello"}])})
    assert r["kind"] == "agent"
    assert r["input_text"] == "hi" and r["output_text"] == "hello"


def test_map_attributes_never_counts_synthesised_keys_as_attributes():
    out = map_attributes({"genkit:type": "action", "genkit:metadata:subtype": "model", "genkit:name": "x/y"})
    assert "attributes" not in out and out["model"] == "y"


# -- spans sent twice, ids with prefixes -------------------------------------------------------------------
def _otlp_line(spans: list[dict[str, Any]]) -> str:
    return json.dumps({"resourceSpans": [{"resource": {"attributes": []},
                                          "scopeSpans": [{"scope": {"name": "s"}, "spans": spans}]}]})


def _kv(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}} for k, v in d.items()]


CHAT = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 9,
        "gen_ai.usage.output_tokens": 3}


def _load(tmp_path: Path, text: str) -> list[dict[str, Any]]:
    from exporter_checks import spans

    from oncall.ingest.loader import load_paths
    from oncall.store import open_db

    f = tmp_path / "t.jsonl"
    f.write_text(text)
    db = open_db(tmp_path / "i.duckdb")
    report = load_paths(db, [str(f)])
    assert [x.status for x in report.files] == ["loaded"], report.to_dict()
    rows = spans(db)
    db.close()
    return rows


def test_logfire_pending_twin_is_not_a_second_call(tmp_path):
    """logfire `PendingSpanProcessor`: each span gets a child twin at start (its own span id, start == end,
    `logfire.span_type = pending_span`, `logfire.pending_parent_id`), exported before the span itself."""
    real = {"traceId": "ab" * 16, "spanId": "01" * 8, "name": "chat gpt-4o-mini", "startTimeUnixNano": "1000000000",
            "endTimeUnixNano": "2000000000", "attributes": _kv({**CHAT, "logfire.span_type": "span"})}
    twin = {"traceId": "ab" * 16, "spanId": "02" * 8, "parentSpanId": "01" * 8, "name": "chat gpt-4o-mini",
            "startTimeUnixNano": "1000000000", "endTimeUnixNano": "1000000000",
            "attributes": _kv({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
                               "logfire.span_type": "pending_span", "logfire.pending_parent_id": "0000000000000000"})}
    rows = _load(tmp_path, _otlp_line([twin]) + "\n" + _otlp_line([real]) + "\n")
    assert [(r["span_id"], r["kind"], r["input_tokens"]) for r in rows] == [("01" * 8, "llm", 9)]


def test_span_sent_when_started_and_again_when_ended_keeps_the_complete_one(tmp_path):
    started = {"traceId": "ab" * 16, "spanId": "01" * 8, "name": "chat", "startTimeUnixNano": "1000000000",
               "endTimeUnixNano": "0", "attributes": _kv({"gen_ai.operation.name": "chat"})}
    ended = {**started, "endTimeUnixNano": "2500000000", "attributes": _kv(CHAT)}
    rows = _load(tmp_path, _otlp_line([started]) + "\n" + _otlp_line([ended]) + "\n")
    assert len(rows) == 1
    assert (rows[0]["latency_ms"], rows[0]["input_tokens"], rows[0]["model"]) == (1500.0, 9, "gpt-4o-mini")


def test_ids_in_base64_hex_and_prefixed_forms():
    from oncall.ingest.decode import normalize_id

    assert normalize_id("AQEBAQEBAQE=", hex_len=16) == "01" * 8 == normalize_id("0101010101010101")
    assert normalize_id("span_4f2a9c1e7b3d5a6f8e9d0c1b") == "span_4f2a9c1e7b3d5a6f8e9d0c1b"
    assert normalize_id("trace_0123456789abcdef0123456789abcdef") == "trace_0123456789abcdef0123456789abcdef"


def test_phoenix_otlp_form_with_every_oneof_field_written(tmp_path):
    """Phoenix's `/spans/otlpv1` (phoenix `server/api/routers/v1/spans.py` `OtlpAnyValue`) serialises
    every field of the AnyValue oneof, the unset ones as null, and flattens attribute keys."""
    def any_value(**kw: Any) -> dict[str, Any]:
        return {"array_value": None, "bool_value": None, "bytes_value": None, "double_value": None,
                "int_value": None, "kvlist_value": None, "string_value": None, **kw}

    span = {"trace_id": "ab" * 16, "span_id": "cd" * 8, "parent_span_id": None, "name": "ChatCompletion",
            "kind": None, "start_time_unix_nano": 1_700_000_000_000_000_000, "end_time_unix_nano": 1_700_000_001_000_000_000,
            "attributes": [{"key": "openinference.span.kind", "value": any_value(string_value="LLM")},
                           {"key": "llm.model_name", "value": any_value(string_value="gpt-4o-mini-2024-07-18")},
                           {"key": "llm.token_count.prompt", "value": any_value(int_value=18)}],
            "events": None, "status": {"code": 1, "message": ""}}
    f = tmp_path / "spans_otlp.json"
    f.write_text(json.dumps({"data": [span], "next_cursor": None}))
    (row,) = _load(tmp_path, f.read_text())
    assert (row["source_format"], row["kind"], row["input_tokens"], row["served_model"]) == (
        "phoenix", "llm", 18, "gpt-4o-mini-2024-07-18")
