"""Conformance of the record-shaped importers (Langfuse, LangSmith, LiteLLM, OpenAI Batch) against the
real fixture files, plus synthetic files for the quirks the fixtures do not show (trace-formats §4-§8)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from test_formats_otel import assert_clean, load, roles, rows

from oncall.ingest.loader import load_paths

LF = "langfuse"


def llm(db) -> dict[str, dict]:
    return {k: v for k, v in rows(db).items() if v["kind"] == "llm"}


def names(calls) -> list[str]:
    return [c["name"] for c in calls or []]


# -- Langfuse trace downloads -----------------------------------------------------------------------
def test_langfuse_autogen(db, fixtures) -> None:
    assert_clean(load(db, fixtures / LF / "autogen-2025-06-06.trace.json"), 3, "langfuse-trace")
    r = rows(db)
    t = r["1b72c51fabed12ae7df83bfd4a09f545"]
    assert (t["kind"], t["parent_id"], t["session_id"], t["user_id"]) == ("trace", None, "session_abc", "user_123")
    assert (t["start_us"], t["end_us"]) == (1749209493965000, 1749209494610000)  # latency 0.645 s
    g = r["83517f9062f5ada4"]
    assert (g["trace_id"], g["parent_id"], g["name"]) == ("1b72c51fabed12ae7df83bfd4a09f545", "95f4f51edeb603d9",
                                                          "chat gpt-4o")
    assert (g["start_us"], g["end_us"]) == (1749209493978000, 1749209494606000)
    assert (g["model"], g["served_model"]) == ("gpt-4o", None)  # Langfuse holds one ambiguous model value
    assert (g["input_tokens"], g["output_tokens"], g["total_tokens"], g["cost"]) == (41, 3, 44, 2.5e-05)
    # "system: …\nuser: …" transcript split into messages; session/user inherited from the trace row
    assert roles(g["input_messages"]) == ["system", "user"]
    assert g["input_messages"][1]["content"] == "Say 'Hello World!'"
    assert roles(g["output_messages"]) == ["assistant"]
    assert (g["session_id"], g["user_id"]) == ("session_abc", "user_123")
    assert g["inherited"]["session_id"]["from_span"] == "1b72c51fabed12ae7df83bfd4a09f545"
    # span rows carry no fake zero usage
    assert r["95f4f51edeb603d9"]["cost"] is None and r["95f4f51edeb603d9"]["input_tokens"] is None


def test_langfuse_pydantic_ai_tools(db, fixtures) -> None:
    assert_clean(load(db, fixtures / LF / "pydantic-ai-tools-2025-12-04.trace.json"), 13, "langfuse-trace")
    g = llm(db)
    assert len(g) == 4
    first = g["be64c23f44dd98be"]
    assert (first["parent_id"], first["model"], first["served_model"], first["provider"]) == (
        "5b5c52d029f28206", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", "openai")
    assert (first["input_tokens"], first["output_tokens"], first["total_tokens"]) == (265, 73, 338)
    assert first["cost"] == pytest.approx(8.355e-05)
    assert names(first["tool_calls"]) == ["get_pun_suggestion", "get_dad_joke_suggestion", "get_one_liner_suggestion"]
    assert (first["finish_reason"], first["response_id"]) == ("tool_calls", "chatcmpl-Cj4xu0Nus6lKWVVmxlb7TZTsMizLD")
    later = g["8976b072313c51f2"]
    assert roles(later["input_messages"]) == ["system", "user", "assistant", "tool", "tool", "tool", "assistant",
                                              "user"]
    assert (later["start_us"], later["end_us"]) == (1764859886133000, 1764859887416000)
    tools = [v for v in rows(db).values() if v["kind"] == "tool"]
    assert sorted(v["name"] for v in tools) == ["running tool: get_dad_joke_suggestion",
                                                "running tool: get_one_liner_suggestion",
                                                "running tool: get_pun_suggestion"]


def test_langfuse_google_adk(db, fixtures) -> None:
    assert_clean(load(db, fixtures / LF / "google-adk-2025-08-28.trace.json"), 6, "langfuse-trace")
    g = llm(db)
    a, b = g["f6e4c65297e40c96"], g["bded677884f031ce"]
    assert (a["model"], a["served_model"], a["input_tokens"], a["output_tokens"], a["cost"]) == (
        "gemini-2.0-flash", "gemini-2.0-flash", 28, 3, 4e-06)
    assert names(a["tool_calls"]) == ["say_hello"]
    assert roles(b["input_messages"]) == ["system", "user", "assistant", "tool"]
    assert (a["session_id"], a["user_id"]) == ("demo-session", "demo-user")
    assert rows(db)["6d8beb2e6a36b133"]["kind"] == "agent"


def test_langfuse_koog(db, fixtures) -> None:
    assert_clean(load(db, fixtures / LF / "koog-2025-08-26.trace.json"), 12, "langfuse-trace")
    g = llm(db)["042f9350c3729147"]
    assert (g["model"], g["provider"], g["input_tokens"], g["output_tokens"], g["cost"]) == (
        "gpt-4o", "openai", 47, 106, 0.0011775)
    assert names(g["tool_calls"]) == ["HelloTool", "ByeTool"]
    assert g["session_id"] == "6f8d2449-33ed-4c7c-82e7-5410e34ee4e6"


def test_langfuse_microsoft_agent(db, fixtures) -> None:
    assert_clean(load(db, fixtures / LF / "microsoft-agent-2025-12-17.trace.json"), 5, "langfuse-trace")
    g = llm(db)
    a = g["2406e8343fd49c0e"]
    assert (a["model"], a["served_model"], a["input_tokens"], a["output_tokens"]) == (
        "gpt-5-mini", "gpt-5-mini-2025-08-07", 77, 86)
    assert a["response_id"] == "resp_0e32bda5b6259ecd00694279e271348194a818447145cd1763"
    assert names(a["tool_calls"]) == ["get_weather"]
    assert roles(g["b0913e7cd82d72b8"]["input_messages"]) == ["tool"]


def test_langfuse_claude_agent_and_vercel(db, fixtures) -> None:
    assert_clean(load(db, fixtures / LF / "claude-agent-2025-12-22.trace.json"), 8, "langfuse-trace")
    g = llm(db)
    assert len(g) == 4
    assert {v["model"] for v in g.values()} == {"claude-sonnet-4-5-20250929"}
    assert g["e9aac170e5d48125"]["input_tokens"] == 19 and g["e9aac170e5d48125"]["cost"] == 0.000492
    assert names(g["2cc13e77781787fd"]["tool_calls"]) == ["mcp__weather__get_weather"]


def test_langfuse_vercel_tool_call_output(db, fixtures) -> None:
    assert_clean(load(db, fixtures / LF / "vercel-aisdk-2025-11-17.trace.json"), 4, "langfuse-trace")
    d = llm(db)["91a17a2274bfd23f"]
    assert (d["model"], d["served_model"], d["input_tokens"], d["output_tokens"]) == ("gpt-5", "gpt-5-2025-08-07", 62, 85)
    assert d["tool_calls"] == [{"id": "call_DgKARp7a7IhJPDczfifMp6Ra", "name": "getWeather",
                                "arguments": '{"location":"San Francisco"}'}]


def test_langfuse_pydantic_ai(db, fixtures) -> None:
    assert_clean(load(db, fixtures / LF / "pydantic-ai-2025-06-06.trace.json"), 4, "langfuse-trace")
    g = llm(db)["5cb389a3bdd21a6e"]
    assert (g["model"], g["served_model"], g["total_tokens"], g["cost"]) == ("gpt-4o", "gpt-4o-2024-08-06", 127,
                                                                            0.0010375)
    assert (g["session_id"], g["user_id"]) == ("session_abc", "user_123")


# -- LangSmith --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, run_id, start, end, model, served, tokens, ttft", [
    ("langsmith_js_wrap_openai_default.json", "dc34609e-3eeb-459d-bc2a-6fedb01d2e6e", 1728803137170000,
     1728803138285000, "gpt-4o-mini", "gpt-4o-mini-2024-07-18", (9, 9, 18), None),
    ("langsmith_js_wrap_openai_reasoning.json", "e954b8e3-c337-4a05-bf0a-ca2baac3ba48", 1728803138291000,
     1728803148730000, "o1-mini", "o1-mini-2024-09-12", (43, 1901, 1944), None),
    ("langsmith_py_wrap_openai_.json", "d0d84d31-923d-4cb5-94a8-40a0a0087578", 1728680303298773,
     1728680304417106, "gpt-4o-mini", "gpt-4o-mini-2024-07-18", (9, 9, 18), None),
    ("langsmith_py_wrap_openai_stream.json", "fe8ffecb-72ce-4cd2-bdb7-01f34654c391", 1728680300695375,
     1728680302023816, "gpt-4o-mini", "gpt-4o-mini-2024-07-18", (9, 9, 18), 1238.419),
])
def test_langsmith_post_patch_merged(db, fixtures, name, run_id, start, end, model, served, tokens, ttft) -> None:
    assert_clean(load(db, fixtures / "langsmith" / name), 1, "langsmith")
    r = rows(db)[run_id]
    assert (r["trace_id"], r["parent_id"], r["kind"], r["status"]) == (run_id, None, "llm", "ok")
    assert (r["start_us"], r["end_us"]) == (start, end)  # JS: epoch ms ints; Python: ISO with offset
    assert (r["model"], r["served_model"], r["provider"]) == (model, served, "openai")
    assert (r["input_tokens"], r["output_tokens"], r["total_tokens"]) == tokens
    assert r["response_id"].startswith("chatcmpl-")
    assert roles(r["input_messages"]) == ["user"] and roles(r["output_messages"]) == ["assistant"]
    assert r["finish_reason"] == "stop"
    assert r["ttft_ms"] == (pytest.approx(ttft) if ttft else None)


def test_langsmith_reasoning_tokens(db, fixtures) -> None:
    load(db, fixtures / "langsmith" / "langsmith_js_wrap_openai_reasoning.json")
    assert rows(db)["e954b8e3-c337-4a05-bf0a-ca2baac3ba48"]["reasoning_tokens"] == 960


def test_langsmith_jsonl_tree_threads_and_errors(db, tmp_path: Path) -> None:
    root, child = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
    lines = [
        {"id": root, "trace_id": root, "name": "agent", "run_type": "chain", "start_time": 1700000000000,
         "dotted_order": f"20231114T221320000000Z{root}",
         "extra": {"metadata": {"thread_id": "th-1", "user_id": "u-9", "tenant": "acme"}}, "inputs": {"q": "hi"}},
        {"id": child, "trace_id": root, "name": "ChatOpenAI", "run_type": "llm", "start_time": "1700000000100",
         "dotted_order": f"20231114T221320000000Z{root}.20231114T221320100000Z{child}",
         "extra": {"metadata": {"ls_model_name": "gpt-4o", "ls_provider": "openai"}},
         "inputs": {"messages": [{"role": "user", "content": "hi"}]}, "total_cost": "0.0125"},
        {"id": child, "trace_id": root, "end_time": 1700000001100, "error": "RateLimitError: 429 Too Many Requests"},
        "{not json",
    ]
    p = tmp_path / "runs.jsonl"
    p.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    rep = load(db, p)
    assert [(pr.line, pr.kind) for pr in rep.problems] == [(4, "invalid-json")]
    r = rows(db)[child]
    assert r["parent_id"] == root  # from dotted_order
    assert (r["status"], r["error_type"], r["cost"]) == ("error", "rate_limit", 0.0125)  # cost as a string
    assert (r["session_id"], r["tenant"]) == ("th-1", "acme")  # inherited from the root's metadata
    assert r["end_us"] - r["start_us"] == 1_000_000


# -- LiteLLM / request-response logs / OpenAI Batch -----------------------------------------------------
def test_litellm_standard_logging_payload(db, fixtures) -> None:
    assert_clean(load(db, fixtures / "openai-logs" / "litellm-standard_logging_payload.json"), 1, "litellm")
    r = rows(db)["chatcmpl-2299b6a2-82a3-465a-b47c-04e685a2227f"]
    assert (r["trace_id"], r["parent_id"]) == ("chatcmpl-2299b6a2-82a3-465a-b47c-04e685a2227f", None)  # trace_id null
    assert (r["start_us"], r["end_us"]) == (1737710446847371, 1737710446851954)  # naive strings read as UTC
    assert (r["model"], r["served_model"], r["provider"]) == ("gpt-4o", "gpt-4o", "openai")
    assert (r["input_tokens"], r["output_tokens"], r["total_tokens"]) == (10, 20, 30)
    assert r["cost"] == pytest.approx(0.000225)
    assert roles(r["input_messages"]) == ["user"] and r["output_messages"][0]["content"] == "hi"
    assert (r["status"], r["finish_reason"], r["ttft_ms"]) == ("ok", "stop", pytest.approx(4.583))


def test_litellm_failure_and_request_response_logs(db, tmp_path: Path) -> None:
    fail = {"id": "x1", "call_type": "completion", "status": "failure", "custom_llm_provider": "anthropic",
            "startTime": 1737710446.5, "endTime": 1737710447.0, "model": "claude-3-5-sonnet",
            "response_cost": 0, "messages": [{"role": "user", "content": "q"}], "response": None,
            "error_str": "litellm.RateLimitError: AnthropicException - rate_limit_error",
            "error_information": {"error_code": "429", "error_class": "RateLimitError"},
            "metadata": {"user_api_key_team_alias": "acme", "spend_logs_metadata": {"feature": "search"}}}
    rr = {"request_id": "req-7", "timestamp": "2026-03-01T10:00:00Z", "latency_ms": 812,
          "metadata": {"tenant": "globex", "prompt_version": "v3"},
          "request": {"model": "gpt-4o", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]},
          "response": {"id": "chatcmpl-9", "object": "chat.completion", "created": 1772359200, "model": "gpt-4o-2024-11-20",
                       "choices": [{"message": {"role": "assistant", "content": "{\"a\": 1}"}, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": "12", "completion_tokens": 5, "total_tokens": 17}}}
    p = tmp_path / "calls.jsonl"
    p.write_text(json.dumps(fail) + "\n" + json.dumps(rr) + "\n")
    rep = load(db, p)
    assert rep.problems == [] and rep.files[0].format == "litellm"
    r = rows(db)
    f = r["x1"]
    assert (f["status"], f["error_type"], f["provider"], f["tenant"], f["feature"]) == (
        "error", "rate_limit", "anthropic", "acme", "search")
    assert (f["start_us"], f["end_us"]) == (1737710446500000, 1737710447000000)  # epoch seconds floats
    g = r["req-7"]
    assert (g["model"], g["served_model"], g["response_id"], g["input_tokens"]) == (
        "gpt-4o", "gpt-4o-2024-11-20", "chatcmpl-9", 12)
    assert (g["tenant"], g["start_us"], g["end_us"] - g["start_us"]) == ("globex", 1772359200000000, 812000)


def test_openai_batch_output_with_input_file(db, tmp_path: Path) -> None:
    d = tmp_path / "batch"
    d.mkdir()
    (d / "input.jsonl").write_text("\n".join(json.dumps(x) for x in [
        {"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "one"}]}},
        {"custom_id": "r2", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "two"}]}},
    ]) + "\n")
    (d / "output.jsonl").write_text("\n".join(json.dumps(x) for x in [
        {"id": "batch_req_2", "custom_id": "r2", "response": None,
         "error": {"code": "rate_limit_exceeded", "message": "Rate limit reached"}},
        {"id": "batch_req_1", "custom_id": "r1", "response": {"status_code": 200, "request_id": "abc", "body": {
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1711652795, "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "uno"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10,
                      "prompt_tokens_details": {"cached_tokens": 0}}}}, "error": None},
    ]) + "\n")
    rep = load_paths(db, [str(d)])
    by = {f.path.split("/")[-1]: f for f in rep.files}
    assert by["input.jsonl"].status == "skipped"  # requests only: read by the output file's importer
    assert by["output.jsonl"].format == "openai-batch" and by["output.jsonl"].problems == []
    r = rows(db)
    ok, bad = r["batch_req_1"], r["batch_req_2"]
    assert (ok["model"], ok["served_model"], ok["response_id"], ok["start_us"]) == (
        "gpt-4o-mini", "gpt-4o-mini-2024-07-18", "chatcmpl-1", 1711652795000000)
    assert ok["input_messages"] == [{"role": "user", "content": "one"}]
    assert (ok["input_tokens"], ok["output_tokens"], ok["cached_tokens"]) == (9, 1, 0)
    assert (bad["status"], bad["error_type"]) == ("error", "rate_limit")
    assert db.con.execute("SELECT request_id FROM spans WHERE span_id='batch_req_2'").fetchone() == ("r2",)


# -- Langfuse batch exports -------------------------------------------------------------------------
OBS = {"id": "obs-1", "traceId": "tr-1", "type": "GENERATION", "name": "chat", "startTime": "2025-06-06T11:31:33.978Z",
       "endTime": "2025-06-06T11:31:34.606Z", "model": "gpt-4o", "input": "[{\"role\": \"user\", \"content\": \"hi\"}]",
       "output": "{\"role\": \"assistant\", \"content\": \"hello\"}", "level": "ERROR",
       "statusMessage": "Error code: 429 - rate limited", "parentObservationId": None, "promptName": "support",
       "promptVersion": 7, "usageDetails": {"input": "41", "output": 3, "total": 44}, "costDetails": {"total": 0.0005},
       "userId": "user_123", "traceName": "t"}
TRACE = {"id": "tr-1", "timestamp": "2025-06-06T11:31:33.965Z", "name": "t", "userId": "user_123",
         "sessionId": "sess-1", "release": "2025.06.1", "version": None, "environment": "production",
         "tags": ["a"], "bookmarked": False, "public": False, "input": None, "output": None, "metadata": None}


def test_langfuse_export_jsonl_observations_and_traces(db, tmp_path: Path) -> None:
    (tmp_path / "traces.jsonl").write_text(json.dumps(TRACE) + "\n")
    (tmp_path / "observations.jsonl").write_text(json.dumps(OBS) + "\n")
    rep = load_paths(db, [str(tmp_path)])
    assert rep.problems == [] and {f.format for f in rep.files if f.status == "loaded"} == {"langfuse-export"}
    assert {f.note for f in rep.files if f.status == "skipped"} == {"the incident database itself"}  # and its WAL
    r = rows(db)["obs-1"]
    assert (r["trace_id"], r["model"], r["input_tokens"], r["cost"]) == ("tr-1", "gpt-4o", 41, 0.0005)
    assert (r["status"], r["error_type"]) == ("error", "rate_limit")
    assert db.con.execute("SELECT http_status FROM spans WHERE span_id='obs-1'").fetchone() == (429,)
    assert (r["user_id"], r["start_us"]) == ("user_123", 1749209493978000)
    # the observation hangs under its trace's row: the trace's release and session reach it by inheritance
    assert db.con.execute("SELECT prompt_name, prompt_version, release, session_id FROM spans "
                          "WHERE span_id='obs-1'").fetchone() == ("support", "7", "2025.06.1", "sess-1")
    assert rows(db)["tr-1"]["session_id"] == "sess-1"


def test_langfuse_export_csv(db, tmp_path: Path) -> None:
    p = tmp_path / "observations.csv"
    with p.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(OBS))
        w.writeheader()
        w.writerow({k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in OBS.items()})
        w.writerow({**{k: "" for k in OBS}, "id": "obs-2", "traceId": "tr-1", "type": "SPAN",
                    "startTime": "2025-06-06T11:31:33.970Z", "name": "multi\nline"})
    rep = load(db, p)
    assert rep.problems == [] and rep.files[0].format == "langfuse-export"
    r = rows(db)
    assert r["obs-1"]["input_messages"] == [{"role": "user", "content": "hi"}]
    assert r["obs-1"]["output_messages"][0]["content"] == "hello"
    assert (r["obs-2"]["kind"], r["obs-2"]["name"]) == ("span", "multi\nline")


def test_every_fixture_loads_with_only_specs_skipped(db, fixtures) -> None:
    rep = load_paths(db, [str(fixtures)])
    assert rep.problems == []
    skipped = sorted(Path(f.path).name for f in rep.files if f.status == "skipped")
    assert skipped == ["LICENSE-ELv2.txt", "PROVENANCE.md", "gen-ai-input-messages.json",
                       "gen-ai-output-messages.json", "gen-ai-system-instructions.json",
                       "google-adk-2025-08-28.chatml.json", "microsoft-agent-2025-12-17.chatml.json"]
    assert all(f.status in ("loaded", "skipped") for f in rep.files)
