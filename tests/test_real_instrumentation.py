"""Traces generated today by the real instrumentation libraries load with the values the server returned.

For each instrumentation (opentelemetry-instrumentation-openai-v2 with the latest GenAI conventions
and span_only content capture; openinference-instrumentation-openai) and each exporter (the official
OTLP JSON file exporter; the SDK's ConsoleSpanExporter), tests/instrumented_calls.py drives the
`openai` client in a subprocess against tests/openai_server.py on loopback. The test then loads the
file and checks every span against the exchange the server recorded: requested vs served model,
response id, tokens, messages and roles, the tool call round trip, the streamed call, the 429.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import instrumented_calls as calls
import pytest
from openai_server import OpenAIServer

from oncall.ingest import registry
from oncall.ingest.loader import load_paths
from oncall.store import open_db

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

EXPECTED_FORMATS = {"otlp-file": {"otlp-jsonl", "otlp-json"}, "console": {"otel-console"}}
COMBOS = [(lib, exp) for lib in ("otel-v2", "openinference") for exp in ("otlp-file", "console")]


@pytest.fixture(scope="module", params=COMBOS, ids=[f"{a}-{b}" for a, b in COMBOS])
def exported(request, tmp_path_factory) -> dict[str, Any]:
    """Run the instrumented client once per (library, exporter) against a fresh loopback server."""
    lib, exporter = request.param
    out = tmp_path_factory.mktemp(f"{lib}-{exporter}") / ("traces.jsonl" if exporter == "otlp-file" else "spans.txt")
    with OpenAIServer() as srv:
        proc = subprocess.run(
            [sys.executable, str(HERE / "instrumented_calls.py"), "--lib", lib, "--exporter", exporter,
             "--base-url", srv.base_url, "--out", str(out)],
            capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert proc.returncode == 0, f"instrumented client failed:\n{proc.stderr}"
        exchanges = list(srv.exchanges)
    assert out.stat().st_size > 0, f"{exporter} exporter wrote nothing to {out}"
    return {"lib": lib, "exporter": exporter, "file": out, "exchanges": exchanges}


@pytest.fixture(scope="module")
def generated(exported) -> dict[str, Any]:
    """The exported file loaded into a fresh incident database."""
    # Every importer that reads this exporter's files must exist (a renamed one fails here, never skips).
    assert EXPECTED_FORMATS[exported["exporter"]] <= set(registry.names()), registry.names()
    db = open_db(exported["file"].parent / "incident.duckdb")
    report = load_paths(db, [str(exported["file"])])
    yield {**exported, "db": db, "report": report}
    db.close()


def raw_spans(exported: dict[str, Any]) -> list[dict[str, Any]]:
    """The spans as the exporter wrote them, read without oncall: (name, attributes as a dict)."""
    text = exported["file"].read_text(encoding="utf-8")
    out = []
    if exported["exporter"] == "otlp-file":
        for line in text.splitlines():
            for rs in json.loads(line)["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    for sp in ss["spans"]:
                        attrs = {kv["key"]: next(iter(kv["value"].values()), None) for kv in sp.get("attributes", [])}
                        out.append({"name": sp["name"], "attributes": attrs})
        return out
    dec, pos = json.JSONDecoder(), 0
    while pos < len(text):
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        obj, pos = dec.raw_decode(text, pos)
        out.append({"name": obj["name"], "attributes": obj["attributes"]})
    return out


def test_instrumentation_exported_every_call(exported):
    """The generation side on its own: six spans, the served model and response ids as the server sent them."""
    got = raw_spans(exported)
    assert len(got) == 6, [s["name"] for s in got]
    answered = [e for e in exported["exchanges"] if e.status == 200]
    assert [e.status for e in exported["exchanges"]] == [200, 200, 200, 200, 429]
    ids_key = "gen_ai.response.id" if exported["lib"] == "otel-v2" else "output.value"
    blob = json.dumps([s["attributes"] for s in got])
    for ex in answered:
        assert ex.response["id"] in blob, f"{ex.response['id']} not exported under {ids_key}"
    assert "gpt-4o-mini-2024-07-18" in blob
    # content capture really is on: the user's question is in the exported attributes
    assert calls.QUESTION in blob and "temperature_c" in blob


def spans(db) -> list[dict[str, Any]]:
    cur = db.cursor()
    rel = cur.execute("SELECT * FROM spans ORDER BY start_time")
    cols = [d[0] for d in rel.description]
    rows = [dict(zip(cols, r, strict=True)) for r in rel.fetchall()]
    for r in rows:
        for c in ("input_messages", "output_messages", "tool_calls", "attributes"):
            if isinstance(r[c], str):
                r[c] = json.loads(r[c])
    return rows


def by_response_id(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["response_id"]: r for r in rows if r["response_id"]}


def roles(messages: list[dict[str, Any]] | None) -> list[str]:
    return [m["role"] for m in messages or []]


def test_file_loads_cleanly_in_its_format(generated):
    report = generated["report"]
    assert [f.status for f in report.files] == ["loaded"], report.to_dict()
    assert report.files[0].format in EXPECTED_FORMATS[generated["exporter"]]
    assert report.problems == []
    # five LLM calls (four answered, one 429) under the application's root span
    assert report.spans_added == 6


def test_every_answered_call_matches_the_server(generated):
    rows = spans(generated["db"])
    found = by_response_id(rows)
    answered = [e for e in generated["exchanges"] if e.status == 200]
    assert len(answered) == 4
    for ex in answered:
        resp = ex.response
        span = found.get(resp["id"])
        assert span is not None, f"no span with response id {resp['id']}; have {sorted(found)}"
        assert span["kind"] == "llm"
        assert span["provider"] == "openai"
        assert span["model"] == ex.request["model"] == "gpt-4o-mini"
        assert span["served_model"] == resp["model"] == "gpt-4o-mini-2024-07-18"
        usage = resp["usage"]
        assert span["input_tokens"] == usage["prompt_tokens"]
        assert span["output_tokens"] == usage["completion_tokens"]
        assert span["total_tokens"] == usage["total_tokens"]
        assert span["status"] in ("ok", "unset")
        assert roles(span["input_messages"]) == [m["role"] for m in ex.request["messages"]]
        assert roles(span["output_messages"]) == ["assistant"]
        content = resp["choices"][0]["message"]["content"]
        if content is not None:
            assert span["output_messages"][0]["content"] == content
            assert content in span["output_text"]


def test_plain_call_messages_and_finish_reason(generated):
    span = by_response_id(spans(generated["db"]))["chatcmpl-oncalltest000001"]
    assert span["input_messages"] == [{"role": "system", "content": calls.SYSTEM},
                                      {"role": "user", "content": calls.QUESTION}]
    assert span["finish_reason"] == "stop"
    assert calls.QUESTION in span["input_text"]


def test_tool_call_round_trip(generated):
    rows = by_response_id(spans(generated["db"]))
    server_call = generated["exchanges"][1].response["choices"][0]["message"]["tool_calls"][0]
    asked = rows["chatcmpl-oncalltest000002"]
    assert asked["finish_reason"] == "tool_calls"
    assert len(asked["tool_calls"]) == 1
    tc = asked["tool_calls"][0]
    assert tc["id"] == server_call["id"]
    assert tc["name"] == "get_weather"
    assert json.loads(tc["arguments"]) == json.loads(server_call["function"]["arguments"]) == {"city": "Paris"}
    out_tc = asked["output_messages"][0]["tool_calls"][0]
    assert out_tc["function"]["name"] == "get_weather"
    assert json.loads(out_tc["function"]["arguments"]) == {"city": "Paris"}

    answered = rows["chatcmpl-oncalltest000003"]
    msgs = answered["input_messages"]
    assert roles(msgs) == ["user", "assistant", "tool"]
    assert msgs[1]["tool_calls"][0]["id"] == server_call["id"]
    assert msgs[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert msgs[2]["tool_call_id"] == server_call["id"]
    assert json.loads(msgs[2]["content"]) == json.loads(calls.TOOL_RESULT)


def test_streaming_call(generated):
    ex = generated["exchanges"][3]
    assert ex.request["stream"] is True and ex.stream_chunks, "the fourth call must have been streamed"
    streamed_text = "".join(c["choices"][0]["delta"].get("content") or "" for c in ex.stream_chunks if c["choices"])
    span = by_response_id(spans(generated["db"]))[ex.response["id"]]
    assert span["output_messages"][0]["content"] == streamed_text
    assert span["input_tokens"] == ex.stream_chunks[-1]["usage"]["prompt_tokens"]
    assert span["output_tokens"] == ex.stream_chunks[-1]["usage"]["completion_tokens"]


def test_rate_limited_call_is_an_error(generated):
    rows = spans(generated["db"])
    errors = [r for r in rows if r["status"] == "error"]
    assert len(errors) == 1, [(r["name"], r["status"]) for r in rows]
    err = errors[0]
    assert err["kind"] == "llm"
    assert err["error_type"] == "rate_limit"
    assert "429" in (err["error"] or "") or err["http_status"] == 429
    assert err["input_messages"] == [{"role": "user", "content": calls.ERROR_QUESTION}]
    assert err["response_id"] is None


def test_one_trace_with_cohort_keys_inherited_from_the_root(generated):
    rows = spans(generated["db"])
    assert len({r["trace_id"] for r in rows}) == 1
    roots = [r for r in rows if r["parent_id"] is None]
    assert [r["name"] for r in roots] == ["support_ticket"]
    root = roots[0]
    assert root["session_id"] == calls.SESSION_ID and root["user_id"] == calls.USER_ID
    assert root["service"] == "support-bot"
    for r in rows:
        if r is root:
            continue
        assert r["parent_id"] == root["span_id"]
        assert r["session_id"] == calls.SESSION_ID
        assert r["user_id"] == calls.USER_ID
        assert r["start_time"] is not None and r["end_time"] is not None and r["end_time"] >= r["start_time"]


def test_loading_again_adds_nothing(generated):
    db = generated["db"]
    before = db.cursor().execute("SELECT count(*) FROM spans").fetchone()[0]
    report = load_paths(db, [str(generated["file"])])
    assert [f.status for f in report.files] == ["already-loaded"]
    assert db.cursor().execute("SELECT count(*) FROM spans").fetchone()[0] == before


# -- the test server itself (no instrumentation): it must behave like the API the tests rely on --

def test_server_retry_after_is_honoured_by_the_client():
    import openai

    with OpenAIServer() as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=1)
        srv.fail_next(429, retry_after=0.3)
        resp = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert [e.status for e in srv.exchanges] == [429, 200]
        assert srv.exchanges[0].headers["Retry-After"] == "0.3"
        assert resp.model == "gpt-4o-mini-2024-07-18"
        assert resp.id == srv.exchanges[1].response["id"]


@pytest.mark.parametrize("status,error,code", [(429, "RateLimitError", "insufficient_quota"),
                                               (500, "InternalServerError", None)])
def test_server_errors_in_openai_format(status, error, code):
    import openai
    from openai_server import quota_body

    with OpenAIServer() as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=0)
        srv.fail_next(status, body=quota_body() if code == "insufficient_quota" else None)
        with pytest.raises(getattr(openai, error)) as info:
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert info.value.status_code == status
        assert info.value.code == code
        assert srv.exchanges[0].response["error"]["message"] in str(info.value)


def test_server_streams_tool_calls_and_usage_with_latency():
    import openai

    with OpenAIServer(latency=0.2) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=0)
        stream = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": calls.TOOL_QUESTION}],
            tools=[calls.WEATHER_TOOL], stream=True, stream_options={"include_usage": True})
        args, usage, finish = "", None, None
        for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                for tc in choice.delta.tool_calls or []:
                    args += tc.function.arguments or ""
        assert json.loads(args) == {"city": "Paris"}
        assert finish == "tool_calls"
        ex = srv.exchanges[0]
        assert ex.response["model"] == "gpt-4o-2024-08-06"
        assert usage.total_tokens == ex.response["usage"]["total_tokens"]
