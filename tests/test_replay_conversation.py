"""Faithful conversations: what each import format recorded comes back as the request to send, and what
cannot be rebuilt faithfully is refused with the reason (real exports from ../shared/fixtures, loaded
through the real importers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from replay_helpers import build_incident, record

from oncall.ingest.loader import load_paths
from oncall.replay.conversation import Conversation, Unreplayable, rebuild
from oncall.replay.runner import fetch_rows
from oncall.replay.suite import PromptVariant
from oncall.store import open_db


def _rebuilt(tmp: Path, path: Path | str) -> list[Conversation | Unreplayable]:
    with open_db(tmp / f"{Path(path).stem}.duckdb") as db:
        report = load_paths(db, [str(path)])
        assert not report.failed
        pks = [r[0] for r in db.con.execute("SELECT span_pk FROM spans WHERE kind = 'llm' ORDER BY start_time, "
                                            "span_pk").fetchall()]
        return [rebuild(row) for row in fetch_rows(db.con, pks)]


def test_otlp_keeps_parameters_and_tool_definitions(tmp_path: Path, fixtures: Path) -> None:
    [c] = _rebuilt(tmp_path, fixtures / "otel-genai" / "interlingua-openllmetry-openai.otlp.json")
    assert isinstance(c, Conversation), c
    assert c.prefix[0]["role"] == "system" and c.prefix[-1] == {"role": "user", "content": "Where is order A-1187?"}
    assert [t["function"]["name"] for t in c.params["tools"]] == ["lookup_order"]
    assert c.params["tools"][0]["function"]["parameters"]["type"] == "object"
    assert {"temperature", "max_tokens"} <= c.params.keys()
    assert c.original.tool_calls and c.original.tool_calls[0]["name"] == "lookup_order"


def test_langfuse_gemini_declarations_and_agent_steps(tmp_path: Path, fixtures: Path) -> None:
    first, second = _rebuilt(tmp_path, fixtures / "langfuse" / "google-adk-2025-08-28.trace.json")
    for c in (first, second):
        assert isinstance(c, Conversation), c
        assert [t["function"]["name"] for t in c.params["tools"]] == ["say_hello"]
    steps = [c for c in (first, second) if c.steps]
    assert len(steps) == 1  # the call after the tool ran: one recorded step, answered with its recorded result
    step = steps[0].steps[0]
    assert step.calls[0]["function"]["name"] == "say_hello" and step.results[0]["tool_call_id"] == step.calls[0]["id"]


def test_vercel_tools_from_a_json_list_of_json_strings(tmp_path: Path, fixtures: Path) -> None:
    convs = _rebuilt(tmp_path, fixtures / "langfuse" / "vercel-aisdk-2025-11-17.trace.json")
    ok = [c for c in convs if isinstance(c, Conversation)]
    assert ok and ok[0].params["tools"][0]["function"]["name"] == "getWeather"
    assert ok[0].params["tools"][0]["function"]["parameters"]["required"] == ["location"]  # inputSchema
    refused = [c for c in convs if isinstance(c, Unreplayable)]
    assert all("no tool definitions" in c.reason for c in refused)


def test_missing_content_and_cut_history_are_refused_with_the_reason(tmp_path: Path, fixtures: Path) -> None:
    claude = _rebuilt(tmp_path, fixtures / "langfuse" / "claude-agent-2025-12-22.trace.json")
    assert any(isinstance(c, Unreplayable) and "no input messages were recorded" in c.reason for c in claude)
    ms = _rebuilt(tmp_path, fixtures / "langfuse" / "microsoft-agent-2025-12-17.trace.json")
    assert isinstance(ms[0], Conversation)
    assert isinstance(ms[1], Unreplayable) and "tool result that answers no recorded tool call" in ms[1].reason
    [v2] = _rebuilt(tmp_path, fixtures / "otel-genai" / "interlingua-raw-openai-v2.otlp.json")
    assert isinstance(v2, Unreplayable) and "lookup_order" in v2.reason and "no tool definitions" in v2.reason


def test_litellm_and_langsmith_round_trip(tmp_path: Path, fixtures: Path) -> None:
    [lite] = _rebuilt(tmp_path, fixtures / "openai-logs" / "litellm-standard_logging_payload.json")
    assert isinstance(lite, Conversation) and lite.prefix == [{"role": "user", "content": "Hello, world!"}]
    [ls] = _rebuilt(tmp_path, fixtures / "langsmith" / "langsmith_py_wrap_openai_.json")
    assert isinstance(ls, Conversation) and ls.prefix == [{"role": "user", "content": "howdy"}]
    assert "stream" not in ls.params  # how the original was read is the target's business


def _attrs_file(tmp: Path, attrs: dict[str, Any], name: str) -> Path:
    p = tmp / f"{name}.attrs.json"
    p.write_text(json.dumps(attrs))
    return p


def test_truncated_attribute_and_image_parts(tmp_path: Path) -> None:
    msgs = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "Summarize this long document " * 40}]}])
    base = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 10,
            "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "ok"}]}])}
    [cut] = _rebuilt(tmp_path, _attrs_file(tmp_path, {**base, "gen_ai.input.messages": msgs[:300]}, "cut"))
    assert isinstance(cut, Unreplayable) and "gen_ai.input.messages is cut short (300 characters" in cut.reason
    img = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "What is in this picture?"},
                                                 {"type": "uri", "uri": "https://example.com/cat.png"}]}])
    [pic] = _rebuilt(tmp_path, _attrs_file(tmp_path, {**base, "gen_ai.input.messages": img}, "img"))
    assert isinstance(pic, Unreplayable) and "message 1 has a uri part" in pic.reason


def test_records_params_tool_results_and_prompt_variants(tmp_path: Path) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    agent = [{"role": "system", "content": "Use tools."}, {"role": "user", "content": "Weather in Paris?"},
             {"role": "assistant", "content": None, "tool_calls": [call]},
             {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"}]
    no_result = agent[:3]
    image = [{"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                          {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}}]}]
    recs = [
        record(0, "Q0", "A0", extra_request={"seed": 7, "response_format": {"type": "json_object"}, "top_p": 0.5},
               prompt_name="extract"),
        record(1, "", "It is 18C and sunny.", messages=agent, extra_request={"tools": tools, "tool_choice": "auto"}),
        record(2, "", "x", messages=no_result, extra_request={"tools": tools}),
        record(3, "", "A cat.", messages=image),
        record(4, "", "It is sunny.", messages=agent),  # tool calls, but the log kept no tool definitions
    ]
    path = build_incident(tmp_path, recs)
    with open_db(path, read_only=True) as db:
        pks = [r[0] for r in db.con.execute("SELECT span_pk FROM spans ORDER BY request_id").fetchall()]
        rows = list(fetch_rows(db.con, pks))
    c0, c1, c2, c3, c4 = (rebuild(r) for r in rows)
    assert isinstance(c0, Conversation)
    assert c0.params == {"temperature": 0.2, "max_tokens": 300, "seed": 7, "response_format": {"type": "json_object"},
                         "top_p": 0.5}
    assert c0.request_params({"temperature": 0}, {"seed": 1}) == {**c0.params, "temperature": 0, "seed": 1}
    assert isinstance(c1, Conversation) and len(c1.steps) == 1 and c1.params["tool_choice"] == "auto"
    assert c1.steps[0].results[0]["content"] == "18C, sunny" and c1.prefix[-1]["content"] == "Weather in Paris?"
    assert isinstance(c2, Unreplayable) and 'calls get_weather({"city": "Paris"})' in c2.reason \
        and "no recorded result" in c2.reason
    assert isinstance(c3, Unreplayable) and "image_url part" in c3.reason
    assert isinstance(c4, Unreplayable) and "no tool definitions" in c4.reason

    variant = PromptVariant("strict", "v5", "extract", "NEW SYSTEM PROMPT", "strict.md")
    v0 = rebuild(rows[0], variant)
    assert isinstance(v0, Conversation) and v0.prefix[0] == {"role": "system", "content": "NEW SYSTEM PROMPT"}
    wrong = rebuild(rows[1], variant)
    assert isinstance(wrong, Unreplayable) and "replaces the extract prompt; this request used support" in wrong.reason
