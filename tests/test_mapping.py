"""map_attributes / normalize_messages over every OTel-family dialect (trace-formats.md §2–§4)."""

from __future__ import annotations

import json

import pytest

from oncall.ingest.mapping import apply_status, flatten_attributes, map_attributes
from oncall.ingest.messages import messages_text, normalize_messages


def call(id_: str, name: str, args: str) -> dict:
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": args}}


# -- messages -------------------------------------------------------------------------------------
def test_plain_string_and_openai_messages() -> None:
    assert normalize_messages("hi") == [{"role": "user", "content": "hi"}]
    assert normalize_messages(None) == []
    msgs = normalize_messages(json.dumps([
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": None, "tool_calls": [call("c1", "f", '{"x": 1}')]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ]))
    assert msgs == [
        {"role": "user", "content": "a\nb"},
        {"role": "assistant", "content": None, "tool_calls": [call("c1", "f", '{"x": 1}')]},
        {"role": "tool", "content": "ok", "tool_call_id": "c1"},
    ]
    assert messages_text(msgs) == 'a\nb\nf({"x": 1})\nok'


def test_semconv_parts_with_object_arguments_and_tool_responses() -> None:
    msgs = normalize_messages([
        {"role": "assistant", "parts": [{"type": "text", "content": "let me look"},
                                        {"type": "tool_call", "id": "t1", "name": "lookup", "arguments": {"q": "A"}}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "t1", "response": "found"},
                                   {"type": "tool_call_response", "id": "t2", "result": {"n": 2}}]},
    ])
    assert msgs == [
        {"role": "assistant", "content": "let me look", "tool_calls": [call("t1", "lookup", '{"q": "A"}')]},
        {"role": "tool", "content": "found", "tool_call_id": "t1"},
        {"role": "tool", "content": '{"n": 2}', "tool_call_id": "t2"},
    ]


def test_vercel_and_anthropic_content_parts() -> None:
    msgs = normalize_messages([
        {"role": "assistant", "content": [{"type": "tool-call", "toolCallId": "v1", "toolName": "weather",
                                           "args": {"city": "Oslo"}}]},
        {"role": "tool", "content": [{"type": "tool-result", "toolCallId": "v1", "toolName": "weather",
                                      "result": "rain"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "a1", "name": "calc", "input": {"e": "1+1"}}]},
        {"type": "human", "content": "langchain says hi"},
    ])
    assert msgs == [
        {"role": "assistant", "content": None, "tool_calls": [call("v1", "weather", '{"city": "Oslo"}')]},
        {"role": "tool", "content": "rain", "tool_call_id": "v1"},
        {"role": "assistant", "content": None, "tool_calls": [call("a1", "calc", '{"e": "1+1"}')]},
        {"role": "user", "content": "langchain says hi"},
    ]


# -- GenAI generations ----------------------------------------------------------------------------
def test_g3_input_output_messages_and_system_instructions() -> None:
    attrs = {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "az.ai.openai",
        "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-11-20",
        "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "Be brief."}]),
        "gen_ai.input.messages": [{"role": "user", "parts": [{"type": "text", "content": "hello"}]}],
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "hi"}],
                                               "finish_reason": "length"}]),
        "gen_ai.usage.input_tokens": "7", "gen_ai.usage.output_tokens": 2,
        "gen_ai.conversation.id": "conv-1", "gen_ai.response.time_to_first_chunk": 0.25,
    }
    r = map_attributes(attrs)
    assert r["input_messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]
    assert r["output_messages"] == [{"role": "assistant", "content": "hi"}]
    assert (r["model"], r["served_model"], r["provider"]) == ("gpt-4o", "gpt-4o-2024-11-20", "azure.ai.openai")
    assert (r["input_tokens"], r["output_tokens"], r["total_tokens"]) == (7, 2, 9)
    assert r["finish_reason"] == "length"
    assert r["session_id"] == "conv-1"
    assert r["ttft_ms"] == 250.0
    assert r["kind"] == "llm"
    assert r["output_text"] == "hi"


def test_g3_operation_details_event_carries_the_content() -> None:
    ev = {"name": "gen_ai.client.inference.operation.details", "attributes": {
        "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": "q"}]}]),
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "a"}],
                                               "finish_reason": "stop"}])}}
    r = map_attributes({"gen_ai.request.model": "m"}, events=[ev])
    assert r["input_messages"] == [{"role": "user", "content": "q"}]
    assert r["output_messages"] == [{"role": "assistant", "content": "a"}]
    assert r["finish_reason"] == "stop"


def test_g1_content_events() -> None:
    events = [
        {"name": "gen_ai.content.prompt", "attributes": {"gen_ai.prompt": json.dumps([{"role": "user", "content": "2+2"}])}},
        {"name": "gen_ai.content.completion",
         "attributes": {"gen_ai.completion": json.dumps([{"role": "assistant", "content": "4"}])}},
    ]
    r = map_attributes({"gen_ai.system": "openai", "gen_ai.request.model": "gpt-4",
                        "gen_ai.usage.prompt_tokens": 5, "gen_ai.usage.completion_tokens": 1}, events=events)
    assert r["input_messages"] == [{"role": "user", "content": "2+2"}]
    assert r["output_messages"] == [{"role": "assistant", "content": "4"}]
    assert (r["input_tokens"], r["output_tokens"], r["total_tokens"]) == (5, 1, 6)


def test_g1_prime_flattened_numeric_order_gaps_and_tool_calls() -> None:
    attrs = {f"gen_ai.prompt.{i}.role": "user" for i in (0, 2, 9, 10)}
    attrs.update({f"gen_ai.prompt.{i}.content": f"m{i}" for i in (0, 2, 9, 10)})
    attrs.update({
        "gen_ai.completion.0.role": "assistant",
        "gen_ai.completion.0.finish_reason": "tool_call",
        "gen_ai.completion.0.tool_calls.0.id": "c9", "gen_ai.completion.0.tool_calls.0.name": "search",
        "gen_ai.completion.0.tool_calls.0.arguments": '{"q": "x"}',
        "llm.usage.total_tokens": 44, "llm.request.type": "chat", "gen_ai.request.model": "gpt-3.5-turbo",
        "traceloop.association.properties.session_id": "sess-7",
        "traceloop.association.properties.user_id": "u-7",
        "traceloop.association.properties.tenant_id": "globex",
        "traceloop.prompt.key": "triage", "traceloop.prompt.version": 3,
    })
    r = map_attributes(attrs)
    assert [m["content"] for m in r["input_messages"]] == ["m0", "m2", "m9", "m10"]
    assert r["output_messages"] == [{"role": "assistant", "content": None, "tool_calls": [call("c9", "search", '{"q": "x"}')]}]
    assert r["tool_calls"] == [{"id": "c9", "name": "search", "arguments": '{"q": "x"}'}]
    assert r["finish_reason"] == "tool_calls"
    assert r["total_tokens"] == 44
    assert (r["session_id"], r["user_id"], r["tenant"]) == ("sess-7", "u-7", "globex")
    assert (r["prompt_name"], r["prompt_version"]) == ("triage", "3")
    assert r["kind"] == "llm"


def test_koog_tool_role_holding_the_assistant_tool_calls() -> None:
    attrs = {
        "gen_ai.prompt.0.role": "system", "gen_ai.prompt.0.content": "You are nice.",
        "gen_ai.prompt.1.role": "user", "gen_ai.prompt.1.content": "Greet Bob",
        "gen_ai.prompt.2.role": "tool",
        "gen_ai.prompt.2.content": '[{"function":{"name":"HelloTool","arguments":"{\\"name\\": \\"Bob\\"}"},"id":"call_n2"}]',
        "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": "Hello Bob!",
    }
    r = map_attributes(attrs)
    assert r["input_messages"][2] == {"role": "assistant", "content": None,
                                      "tool_calls": [call("call_n2", "HelloTool", '{"name": "Bob"}')]}
    assert r["output_messages"] == [{"role": "assistant", "content": "Hello Bob!"}]


def test_g2_packed_events_attribute_from_pydantic_ai() -> None:
    events = [
        {"content": "You are helpful.", "role": "system", "event.name": "gen_ai.system.message"},
        {"content": "What is Langfuse?", "role": "user", "event.name": "gen_ai.user.message"},
        {"index": 0, "message": {"role": "assistant", "content": "An LLM tool."}, "event.name": "gen_ai.choice",
         "finish_reason": "stop"},
    ]
    r = map_attributes({"gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o", "events": json.dumps(events),
                        "operation.cost": 0.0021})
    assert r["input_messages"] == [{"role": "system", "content": "You are helpful."},
                                   {"role": "user", "content": "What is Langfuse?"}]
    assert r["output_messages"] == [{"role": "assistant", "content": "An LLM tool."}]
    assert r["finish_reason"] == "stop"
    assert r["cost"] == 0.0021


def test_deprecated_prompt_completion_strings() -> None:
    r = map_attributes({"gen_ai.prompt": "just a question", "gen_ai.completion": "just an answer"})
    assert r["input_messages"] == [{"role": "user", "content": "just a question"}]
    assert r["output_messages"] == [{"role": "assistant", "content": "just an answer"}]


# -- OpenLLMetry, OpenInference, Vercel, Langfuse, LangSmith --------------------------------------
def test_traceloop_workflow_entity_output_double_encoded() -> None:
    completion = {"id": "chatcmpl-1", "choices": [{"finish_reason": "stop", "message": {"role": "assistant",
                                                                                       "content": "done"}}]}
    attrs = {"traceloop.span.kind": "workflow", "traceloop.workflow.name": "support_triage",
             "traceloop.entity.input": json.dumps({"args": [], "kwargs": {"q": "hi"}}),
             "traceloop.entity.output": json.dumps(json.dumps(completion, indent=2))}
    r = map_attributes(attrs)
    assert r["kind"] == "chain"
    assert r["feature"] == "support_triage"
    assert r["output_messages"] == [{"role": "assistant", "content": "done"}]
    assert "response_id" not in r  # the id belongs to the LLM span, not the workflow
    assert r["input_text"] == json.dumps({"args": [], "kwargs": {"q": "hi"}})


def test_openinference_contents_tool_calls_cost_and_invocation_model() -> None:
    attrs = {
        "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-2024-08-06",
        "llm.invocation_parameters": '{"model": "gpt-4o", "temperature": 0}', "llm.provider": "openai",
        "llm.input_messages.0.message.role": "user",
        "llm.input_messages.0.message.contents.1.message_content.type": "text",
        "llm.input_messages.0.message.contents.1.message_content.text": "second",
        "llm.input_messages.0.message.contents.0.message_content.type": "text",
        "llm.input_messages.0.message.contents.0.message_content.text": "first",
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.tool_calls.0.tool_call.id": "x1",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "f",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": "{}",
        "llm.cost.total": "0.0125", "session.id": "s", "user.id": "u", "metadata": '{"tenant": "acme"}',
        "llm.prompt_template.version": "v12",
    }
    r = map_attributes(attrs)
    assert r["input_messages"] == [{"role": "user", "content": "first\nsecond"}]
    assert r["tool_calls"] == [{"id": "x1", "name": "f", "arguments": "{}"}]
    assert (r["model"], r["served_model"]) == ("gpt-4o", "gpt-4o-2024-08-06")
    assert r["cost"] == 0.0125
    assert (r["session_id"], r["user_id"], r["tenant"], r["prompt_version"]) == ("s", "u", "acme", "v12")


def test_openinference_nested_list_form_is_flattened() -> None:
    nested = {"llm.input_messages": [{"message.role": "user", "message.content": "hi"}],
              "llm.token_count.prompt": 3}
    flat = flatten_attributes(nested)
    assert flat == {"llm.input_messages.0.message.role": "user", "llm.input_messages.0.message.content": "hi",
                    "llm.token_count.prompt": 3}
    assert map_attributes(flat)["input_messages"] == [{"role": "user", "content": "hi"}]


def test_input_value_fallback_chat_completion_response() -> None:
    req = {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]}
    resp = {"id": "chatcmpl-9", "model": "gpt-4o-mini-2024-07-18", "choices": [
        {"finish_reason": "tool_calls", "message": {"role": "assistant", "content": None,
                                                    "tool_calls": [call("t", "g", '{"a":1}')]}}]}
    r = map_attributes({"input.value": json.dumps(req), "output.value": json.dumps(resp),
                        "openinference.span.kind": "LLM"})
    assert [m["role"] for m in r["input_messages"]] == ["system", "user"]
    assert r["tool_calls"] == [{"id": "t", "name": "g", "arguments": '{"a":1}'}]
    assert r["finish_reason"] == "tool_calls"
    assert r["response_id"] == "chatcmpl-9"


def test_vercel_usage_not_double_counted_tool_calls_and_metadata() -> None:
    attrs = {
        "ai.operationId": "ai.generateText.doGenerate", "ai.model.id": "gpt-4o-mini",
        "ai.model.provider": "openai.chat", "ai.response.model": "gpt-4o-mini-2024-07-18",
        "ai.prompt.messages": json.dumps([{"role": "user", "content": [{"type": "text", "text": "weather?"}]}]),
        "ai.response.toolCalls": json.dumps([{"toolCallType": "function", "toolCallId": "call_1",
                                              "toolName": "weather", "args": '{"city":"Oslo"}'}]),
        "ai.response.finishReason": "tool-calls",
        "ai.usage.promptTokens": 14, "ai.usage.completionTokens": 20,
        "ai.usage.inputTokens": 14, "ai.usage.outputTokens": 20, "ai.usage.totalTokens": 34,
        "gen_ai.usage.input_tokens": 14, "gen_ai.usage.output_tokens": 20,
        "ai.telemetry.functionId": "weather-bot", "ai.telemetry.metadata.userId": "u1",
        "ai.telemetry.metadata.sessionId": "s1", "ai.telemetry.metadata.tenantId": "initech",
        "ai.response.msToFirstChunk": 120.5,
    }
    r = map_attributes(attrs)
    assert (r["input_tokens"], r["output_tokens"], r["total_tokens"]) == (14, 20, 34)
    assert r["tool_calls"] == [{"id": "call_1", "name": "weather", "arguments": '{"city":"Oslo"}'}]
    assert r["finish_reason"] == "tool_calls"
    assert (r["feature"], r["user_id"], r["session_id"], r["tenant"]) == ("weather-bot", "u1", "s1", "initech")
    assert r["provider"] == "openai"
    assert r["kind"] == "llm"
    assert r["ttft_ms"] == 120.5


def test_langfuse_and_langsmith_keys() -> None:
    r = map_attributes({"langfuse.session.id": "ls1", "langfuse.user.id": "lu1", "langfuse.release": "2.3.1",
                        "langfuse.environment": "staging", "langfuse.observation.prompt.name": "qa",
                        "langfuse.observation.prompt.version": 4, "langfuse.observation.type": "generation",
                        "langfuse.observation.model.name": "claude-3-5-sonnet",
                        "langfuse.observation.input": '[{"role":"user","content":"x"}]',
                        "langfuse.observation.output": '"y"', "langfuse.trace.metadata.org_id": "org-9"})
    assert (r["session_id"], r["user_id"], r["release"], r["env"]) == ("ls1", "lu1", "2.3.1", "staging")
    assert (r["prompt_name"], r["prompt_version"], r["kind"], r["model"]) == ("qa", "4", "llm", "claude-3-5-sonnet")
    assert r["tenant"] == "org-9"
    assert r["input_messages"] == [{"role": "user", "content": "x"}]
    assert r["output_messages"] == [{"role": "assistant", "content": "y"}]
    s = map_attributes({"langsmith.span.kind": "llm", "langsmith.trace.session_id": "project-not-a-session",
                        "langsmith.metadata.thread_id": "thr-1", "langsmith.metadata.ls_provider": "anthropic",
                        "langsmith.metadata.ls_model_name": "claude-sonnet-4-5"})
    assert (s["session_id"], s["provider"], s["model"], s["kind"]) == ("thr-1", "anthropic", "claude-sonnet-4-5", "llm")


@pytest.mark.parametrize("key", ["tenant", "tenant.id", "tenant_id", "app.tenant", "customer.id", "org.id",
                                 "organization.id", "traceloop.association.properties.tenant",
                                 "ai.telemetry.metadata.tenant_id", "langfuse.trace.metadata.customer.id",
                                 "metadata.org.id"])
def test_tenant_keys(key: str) -> None:
    assert map_attributes({key: "acme"})["tenant"] == "acme"


def test_release_env_request_ids_from_resource_and_attributes() -> None:
    r = map_attributes({"app.request_id": "req-1", "gen_ai.response.id": "chatcmpl-2", "app.feature": "summarize",
                        "app.prompt_version": "7"},
                       resource={"service.name": "bot", "service.version": "1.4.2",
                                 "deployment.environment.name": "prod"})
    assert (r["request_id"], r["response_id"], r["feature"], r["prompt_version"]) == ("req-1", "chatcmpl-2",
                                                                                       "summarize", "7")
    assert (r["service"], r["release"], r["env"]) == ("bot", "1.4.2", "prod")


# -- errors ---------------------------------------------------------------------------------------
def test_errors_from_attributes_and_exception_events() -> None:
    r = map_attributes({"error.type": "RateLimitError"}, events=[
        {"name": "exception", "attributes": {"exception.type": "openai.RateLimitError",
                                             "exception.message": "Error code: 429 - rate limit reached"}}])
    assert (r["error_type"], r["http_status"], r["error"]) == ("rate_limit", 429,
                                                                "Error code: 429 - rate limit reached")
    t = map_attributes({"error.type": "timeout"})
    assert t["error_type"] == "timeout"
    s = map_attributes({"http.response.status_code": 503})
    assert (s["error_type"], s["http_status"]) == ("server", 503)
    assert "error_type" not in map_attributes({"http.response.status_code": 200})


def test_apply_status_gives_every_failed_span_an_error_type() -> None:
    row: dict = {}
    apply_status(row, "error", "insufficient_quota: you exceeded your current quota")
    assert (row["status"], row["error_type"]) == ("error", "quota")
    row = {}
    apply_status(row, "error", None)
    assert row["error_type"] == "other"
    row = {}
    apply_status(row, "ok", "")
    assert row == {"status": "ok"}


def test_gemini_model_role_and_koog_tool_spans() -> None:
    r = map_attributes({"llm.input_messages.0.message.role": "user", "llm.input_messages.0.message.content": "hi",
                        "llm.output_messages.0.message.role": "model",
                        "llm.output_messages.0.message.content": "hello"})
    assert r["output_messages"] == [{"role": "assistant", "content": "hello"}]
    t = map_attributes({"input.value": '{"name":"Bob"}', "output.value": "Bye my dear Bob!",
                        "gen_ai.tool.name": "ByeTool", "gen_ai.tool.call.id": "call_d"})
    assert t["kind"] == "tool"
    assert (t["input_text"], t["output_text"]) == ('{"name":"Bob"}', "Bye my dear Bob!")
    assert "output_messages" not in t


# -- robustness: any value under any known key maps without raising -------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from oncall.ingest import mapping as _m  # noqa: E402

_KEYS = sorted(_m._INDEX) + [
    "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions", "gen_ai.prompt",
    "gen_ai.completion", "events", "ai.prompt.messages", "ai.prompt", "ai.response.text", "ai.response.toolCalls",
    "ai.response.object", "input.value", "output.value", "traceloop.entity.input", "traceloop.entity.output",
    "llm.invocation_parameters", "metadata", "gen_ai.prompt.0.role", "gen_ai.prompt.0.content",
    "gen_ai.completion.1.tool_calls.0.name", "llm.input_messages.0.message.role",
    "llm.input_messages.0.message.contents.0.message_content.text", "llm.output_messages.3.message.tool_calls.0.tool_call.id",
    "llm.cost.prompt", "llm.cost.completion", "ai.usage.tokens", "gen_ai.response.time_to_first_chunk",
    "ai.response.msToFirstChunk", "error.type", "http.response.status_code", "gen_ai.tool.name",
]
_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(
        st.sampled_from(["role", "content", "parts", "type", "text", "tool_calls", "function", "name", "arguments",
                         "id", "message", "choices", "messages", "event.name", "finish_reason", "total", "model"]),
        c, max_size=4),
    max_leaves=10)
_VALUES = _JSONISH | _JSONISH.map(lambda v: json.dumps(v, default=str))


@settings(max_examples=int(__import__("os").environ.get("ONCALL_HYPOTHESIS_EXAMPLES", "300")), deadline=None)
@given(st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=8),
       st.lists(st.fixed_dictionaries({"name": st.sampled_from(["exception", "gen_ai.content.prompt",
                                                                 "gen_ai.client.inference.operation.details"]),
                                       "attributes": st.dictionaries(st.sampled_from(_KEYS + [
                                           "exception.type", "exception.message"]), _VALUES, max_size=3)}),
                max_size=2))
def test_map_attributes_never_raises(attrs, events) -> None:
    r = map_attributes(attrs, events=events)
    json.dumps(r, default=str)
    for k in ("input_messages", "output_messages"):
        for m in r.get(k, []):
            assert m["role"] in ("system", "user", "assistant", "tool")
            assert m["content"] is None or isinstance(m["content"], str)


def test_message_keys_list_every_key_the_message_dialects_read() -> None:
    """_messages skips its dialect chain when a span has none of _MESSAGE_KEYS: a key read there
    and missing from the list would lose that dialect's messages on spans with no events."""
    import ast
    import inspect

    from oncall.ingest import mapping

    source = inspect.getsource(mapping._messages)
    read = {node.value for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and "." in node.value
            and " " not in node.value}
    assert read, "the check found no keys: _messages changed shape"
    assert read - mapping._MESSAGE_KEYS == set()
    # and the skip gives what the chain gives on a span with none of them
    attrs = {"http.route": "/chat", "db.system.name": "postgresql", "tenant": "acme"}
    assert mapping._messages(attrs, None, {}) == {"_finish": None, "_response_id": None}
    assert map_attributes({**attrs, "input.value": "hello"})["input_text"] == "hello"
