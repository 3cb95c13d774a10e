"""Conformance of the OpenTelemetry-family importers against the real fixture files, plus the
envelope quirks (trace-formats.md §1, §8) on files made by the real OpenTelemetry SDK exporters."""

from __future__ import annotations

import base64
import gzip
import io
import json
from pathlib import Path
from typing import Any

import pytest

from oncall.ingest.loader import load_paths

COLS = ("trace_id", "span_id", "parent_id", "name", "kind", "span_kind", "status", "error_type", "start_us", "end_us",
        "model", "served_model", "provider", "input_tokens", "output_tokens", "total_tokens", "cached_tokens",
        "reasoning_tokens", "cost", "session_id", "user_id", "tenant", "feature", "finish_reason", "response_id",
        "service", "source_format", "input_messages", "output_messages", "tool_calls", "inherited", "attributes",
        "ttft_ms", "cost_source")


def load(db, path: Path | str) -> Any:
    report = load_paths(db, [str(path)])
    return report


def rows(db) -> dict[str, dict[str, Any]]:
    sql = f"""SELECT {', '.join(c if not c.endswith('_us') else f'epoch_us({c[:-3]}_time)' for c in COLS)}
              FROM spans ORDER BY span_pk"""
    out = {}
    for r in db.con.execute(sql).fetchall():
        d = dict(zip(COLS, r, strict=True))
        for k in ("input_messages", "output_messages", "tool_calls", "inherited", "attributes"):
            d[k] = json.loads(d[k]) if d[k] is not None else None
        out[d["span_id"]] = d
    return out


def roles(msgs: list[dict] | None) -> list[str]:
    return [m["role"] for m in msgs or []]


def estimated_cost(r: dict[str, Any]) -> float:
    """What genai-prices charges for the row's tokens (OTel exports carry no cost: it is estimated)."""
    import genai_prices
    from genai_prices.types import Usage

    usage = Usage(input_tokens=r["input_tokens"] or 0, cache_read_tokens=r["cached_tokens"] or 0,
                  output_tokens=r["output_tokens"] or 0)
    return float(genai_prices.calc_price(usage, r["served_model"] or r["model"], provider_id=r["provider"]).total_price)


def assert_clean(report, n_spans: int, fmt: str) -> None:
    assert report.problems == []
    assert [f.status for f in report.files] == ["loaded"]
    assert report.files[0].format == fmt
    assert report.spans_added == n_spans


# -- otel-genai/ ----------------------------------------------------------------------------------
def test_otlp_proto_example(db, fixtures) -> None:
    assert_clean(load(db, fixtures / "otel-genai/otlp-proto-example-trace.json"), 1, "otlp-json")
    r = rows(db)["eee19b7ec3c1b174"]
    assert (r["trace_id"], r["parent_id"], r["name"]) == ("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b173",
                                                          "I'm a server span")
    assert (r["start_us"], r["end_us"]) == (1544712660000000, 1544712661000000)
    assert (r["kind"], r["span_kind"], r["status"], r["service"]) == ("span", "server", "unset", "my.service")
    assert r["attributes"] == {"my.span.attr": "some value", "resource.service.name": "my.service",
                               "scope.name": "my.library"}
    assert r["model"] is None and r["input_messages"] is None


def test_interlingua_openai_v2_g3(db, fixtures) -> None:
    assert_clean(load(db, fixtures / "otel-genai/interlingua-raw-openai-v2.otlp.json"), 1, "otlp-json")
    r = rows(db)["03491beea3cb073d"]
    assert (r["trace_id"], r["parent_id"], r["name"]) == ("053074667b1113278073667614bb3e19", None, "chat gpt-4o-mini")
    assert (r["start_us"], r["end_us"]) == (1788792074027616, 1788792074047335)
    assert (r["kind"], r["span_kind"], r["status"]) == ("llm", "client", "unset")
    assert (r["model"], r["served_model"], r["provider"]) == ("gpt-4o-mini", "gpt-4o-mini-2024-07-18", "openai")
    assert (r["input_tokens"], r["output_tokens"], r["total_tokens"]) == (412, 27, 439)
    assert r["cached_tokens"] is None
    assert r["cost_source"] == "estimated" and r["cost"] == pytest.approx(estimated_cost(r), rel=1e-9)
    assert r["response_id"] == "chatcmpl-CD8yqQ2y3kZs1o0Wm7bT"
    assert r["finish_reason"] == "tool_calls"
    assert r["input_messages"] == [
        {"role": "system", "content": "You are a support agent. Use the tools you are given."},
        {"role": "user", "content": "Where is order A-1187?"}]
    assert roles(r["output_messages"]) == ["assistant"]
    assert r["tool_calls"] == [{"id": "call_9RtYbK2mXqLp", "name": "lookup_order",
                                "arguments": '{"order_id": "A-1187"}'}]
    assert (r["session_id"], r["user_id"]) == (None, None)
    assert r["attributes"]["gen_ai.request.max_tokens"] == 1024
    assert r["attributes"]["gen_ai.response.finish_reasons"] == ["tool_calls"]


def test_interlingua_openllmetry(db, fixtures) -> None:
    assert_clean(load(db, fixtures / "otel-genai/interlingua-openllmetry-openai.otlp.json"), 2, "otlp-json")
    rs = rows(db)
    llm, wf = rs["76a26812b532f640"], rs["aaa24d5a6cca68bf"]
    assert llm["trace_id"] == wf["trace_id"] == "77d66be22a4ffc8149309684b3a319f7"
    assert (llm["parent_id"], wf["parent_id"]) == ("aaa24d5a6cca68bf", None)
    assert (llm["start_us"], llm["end_us"]) == (1788789263812545, 1788789263838423)
    assert (wf["start_us"], wf["end_us"]) == (1788789263812452, 1788789263843412)
    assert (llm["kind"], wf["kind"], llm["span_kind"], wf["span_kind"]) == ("llm", "chain", "client", "internal")
    assert (llm["model"], llm["served_model"], llm["provider"]) == ("gpt-4o-mini", "gpt-4o-mini-2024-07-18", "openai")
    assert (llm["input_tokens"], llm["output_tokens"], llm["total_tokens"]) == (412, 27, 439)
    assert (llm["cached_tokens"], llm["reasoning_tokens"]) == (256, 8)
    assert llm["finish_reason"] == "tool_calls"  # OpenLLMetry's "tool_call", normalised
    assert roles(llm["input_messages"]) == ["system", "user"]
    assert llm["tool_calls"] == [{"id": "call_9RtYbK2mXqLp", "name": "lookup_order",
                                  "arguments": '{"order_id": "A-1187"}'}]
    assert llm["feature"] == wf["feature"] == "support_triage"
    # The workflow's double-JSON entity.output is the provider response: decoded, but its id stays on the LLM span.
    assert wf["output_messages"][0]["tool_calls"][0]["function"]["name"] == "lookup_order"
    assert (wf["response_id"], llm["response_id"]) == (None, "chatcmpl-CD8yqQ2y3kZs1o0Wm7bT")
    assert wf["model"] is None and wf["input_tokens"] is None


@pytest.mark.parametrize("name", ["arize-otel_genai_client_span_tool_calls.attrs.json",
                                  "arize-otel_genai_deprecated_client_span_tool_calls.attrs.json"])
def test_arize_genai_attribute_maps(db, fixtures, name) -> None:
    assert_clean(load(db, fixtures / "otel-genai" / name), 1, "span-attributes")
    (r,) = rows(db).values()
    assert len(r["trace_id"]) == 32 and len(r["span_id"]) == 16 and r["parent_id"] is None
    assert (r["start_us"], r["end_us"]) == (None, None)
    assert (r["kind"], r["status"]) == ("llm", "unset")
    assert (r["model"], r["served_model"], r["provider"]) == ("gpt-4", "gpt-4-0613", "openai")
    assert (r["input_tokens"], r["output_tokens"], r["total_tokens"]) == (97, 52, 149)
    assert r["response_id"] == "chatcmpl-CQF10eCkoFphJZJQkzzN6EkTD0AVF"
    assert r["finish_reason"] == "stop"
    assert r["input_messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Absolutely! Let me check the weather for you.",
         "tool_calls": [{"id": "1234", "type": "function",
                         "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'}}]},
        {"role": "tool", "content": "rainy, 57°F", "tool_call_id": "1234"}]
    assert r["output_messages"] == [{"role": "assistant", "content":
                                     "The weather in Paris is currently rainy with a temperature of 57°F."}]
    assert r["tool_calls"] is None


def test_attribute_map_ids_are_deterministic(db, fixtures, tmp_path) -> None:
    src = fixtures / "otel-genai/arize-otel_genai_client_span_tool_calls.attrs.json"
    load(db, src)
    first = set(rows(db))
    # The same map in another file (different bytes, same content) lands on the same ids: deduped.
    copy = tmp_path / "copy.json"
    copy.write_text(json.dumps(json.loads(src.read_text()), indent=1))
    report = load(db, copy)
    assert report.files[0].duplicates == 1 and report.spans_added == 0
    assert set(rows(db)) == first


# -- openinference/ -------------------------------------------------------------------------------
def test_interlingua_openinference(db, fixtures) -> None:
    assert_clean(load(db, fixtures / "openinference/interlingua-openinference-openai.otlp.json"), 1, "otlp-json")
    r = rows(db)["e9856d6fe698c4f2"]
    assert (r["trace_id"], r["parent_id"], r["name"]) == ("9ed94f9bdc36b397e11c51f77d49e01a", None, "ChatCompletion")
    assert (r["start_us"], r["end_us"]) == (1788787518970589, 1788787518993675)
    assert (r["kind"], r["span_kind"], r["status"]) == ("llm", "internal", "ok")
    # llm.model_name is the served model; the requested one comes from llm.invocation_parameters.
    assert (r["model"], r["served_model"], r["provider"]) == ("gpt-4o-mini", "gpt-4o-mini-2024-07-18", "openai")
    assert (r["input_tokens"], r["output_tokens"], r["total_tokens"]) == (412, 27, 439)
    assert (r["cached_tokens"], r["reasoning_tokens"]) == (256, 8)
    assert r["finish_reason"] == "tool_calls"
    assert r["response_id"] == "chatcmpl-CD8yqQ2y3kZs1o0Wm7bT"  # from output.value
    assert roles(r["input_messages"]) == ["system", "user"]
    assert r["tool_calls"] == [{"id": "call_9RtYbK2mXqLp", "name": "lookup_order",
                                "arguments": '{"order_id": "A-1187"}'}]


@pytest.mark.parametrize("name", ["arize-openinference_client_span_tool_calls.attrs.json",
                                  "arize-openinference_client_span_input_output_only.attrs.json"])
def test_arize_openinference_attribute_maps(db, fixtures, name) -> None:
    assert_clean(load(db, fixtures / "openinference" / name), 1, "span-attributes")
    (r,) = rows(db).values()
    assert (r["kind"], r["status"]) == ("llm", "unset")
    assert (r["model"], r["served_model"], r["provider"]) == ("gpt-4", "gpt-4-0613", "openai")
    assert (r["input_tokens"], r["output_tokens"], r["total_tokens"]) == (97, 52, 149)
    assert roles(r["input_messages"]) == ["user", "assistant", "tool"]
    assert r["input_messages"][1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert json.loads(r["input_messages"][1]["tool_calls"][0]["function"]["arguments"]) == {"location": "Paris"}
    assert r["input_messages"][2] == {"role": "tool", "content": "rainy, 57°F", "tool_call_id": "1234"}
    assert r["output_messages"] == [{"role": "assistant", "content":
                                     "The weather in Paris is currently rainy with a temperature of 57°F."}]
    assert r["finish_reason"] == "stop"


PHX_BASE_ROLES = ["system", "user", "assistant", "tool", "assistant", "tool", "assistant", "tool", "assistant", "user"]
# span: (name, kind, parent, status, start s, end s) relative to 2026-07-09T00:00:00Z
PHX_SPANS = {
    "s01": ("pxi.turn", "agent", None, "ok", 0, 35), "s02": ("claude-fable-5", "llm", "s01", "ok", 1, 2),
    "s03": ("list_datasets", "tool", "s01", "ok", 3, 4), "s04": ("claude-fable-5", "llm", "s01", "ok", 5, 6),
    "s05": ("list_datasets", "tool", "s01", "ok", 7, 8), "s06": ("claude-fable-5", "llm", "s01", "ok", 9, 10),
    "s07": ("ask_user", "tool", "s01", "ok", 11, 12), "s08": ("claude-fable-5", "llm", "s01", "ok", 13, 14),
    "s09": ("create_dataset", "tool", "s01", "ok", 15, 16), "s10": ("claude-fable-5", "llm", "s01", "ok", 17, 18),
    "s11": ("add_spans_to_dataset", "tool", "s01", "error", 19, 20),
    "s12": ("claude-fable-5", "llm", "s01", "ok", 21, 22), "s13": ("bash", "tool", "s01", "ok", 23, 24),
    "s14": ("claude-fable-5", "llm", "s01", "ok", 25, 26),
    "s15": ("add_spans_to_dataset", "tool", "s01", "ok", 27, 28),
    "s16": ("claude-fable-5", "llm", "s01", "ok", 29, 30), "s17": ("get_route_info", "tool", "s01", "ok", 31, 32),
    "s18": ("claude-fable-5", "llm", "s01", "ok", 33, 34),
}
# LLM span: (prompt, completion, total, cache_read, input message count, output tool call (id, name, args) or None)
PHX_LLM = {
    "s02": (32321, 119, 32440, 31559, 10, ("call-04", "list_datasets", "")),
    "s04": (33286, 168, 33454, 32319, 12, ("call-05", "list_datasets", '{"after": "fixture-cursor"}')),
    "s06": (33789, 402, 34191, 33284, 14, ("call-06", "ask_user", None)),
    "s08": (34248, 212, 34460, 33787, 16, ("call-07", "create_dataset",
                                           '{"name": "golden_examples", "description": "[synthetic dataset description]"}')),
    "s10": (34504, 102, 34606, 34246, 18, ("call-08", "add_spans_to_dataset",
                                           '{"datasetName": "golden_examples", "spanIds": ["fx-otel-span-1"]}')),
    "s12": (34743, 406, 35149, 34502, 20, ("call-09", "bash", None)),
    "s14": (35446, 104, 35550, 34741, 22, ("call-10", "add_spans_to_dataset",
                                           '{"datasetName": "golden_examples", "spanIds": ["fixture-node-1"]}')),
    "s16": (35602, 196, 35798, 35444, 24, ("call-11", "get_route_info", '{"query": "dataset page"}')),
    "s18": (36283, 186, 36469, 35600, 26, None),
}
T0 = 1783555200000000  # 2026-07-09T00:00:00Z in µs


def test_phoenix_span_json(db, fixtures) -> None:
    assert_clean(load(db, fixtures / "openinference/phoenix-elv2/pxi_turn_trace.phoenix-spans.json"), 18, "phoenix")
    rs = rows(db)
    assert set(rs) == set(PHX_SPANS)
    for sid, (name, kind, parent, status, start, end) in PHX_SPANS.items():
        r = rs[sid]
        assert (r["trace_id"], r["name"], r["kind"], r["parent_id"], r["status"]) == (
            "fixture-trace-1", name, kind, parent, status), sid
        assert (r["start_us"], r["end_us"]) == (T0 + start * 1_000_000, T0 + end * 1_000_000), sid
        assert r["session_id"] == "fixture-session", sid
        assert r["user_id"] == "user@example.com", sid  # tool spans inherit it from s01
    for sid, (pt, ct, tt, cache, n_in, call) in PHX_LLM.items():
        r = rs[sid]
        assert (r["model"], r["served_model"], r["provider"]) == ("claude-fable-5", "claude-fable-5", "anthropic")
        assert (r["input_tokens"], r["output_tokens"], r["total_tokens"], r["cached_tokens"]) == (pt, ct, tt, cache)
        assert len(r["input_messages"]) == n_in
        assert roles(r["input_messages"]) == PHX_BASE_ROLES + ["assistant", "tool"] * ((n_in - 10) // 2)
        assert r["cost_source"] == "estimated" and r["cost"] == pytest.approx(estimated_cost(r), rel=1e-9)
        if call is None:
            assert r["tool_calls"] is None
        else:
            (tc,) = r["tool_calls"]
            assert (tc["id"], tc["name"]) == call[:2]
            if call[2] is not None:
                assert tc["arguments"] == call[2]
    assert json.loads(rs["s06"]["tool_calls"][0]["arguments"])["questions"][0]["id"] == "q-dataset"
    assert json.loads(rs["s12"]["tool_calls"][0]["arguments"])["summary"] == "Looking up the span's node ID"
    assert rs["s02"]["input_messages"][2]["tool_calls"][0]["function"] == {
        "name": "load_skill", "arguments": '{"skill_name": "example-skill"}'}
    assert rs["s11"]["error_type"] == "other"
    assert rs["s01"]["inherited"] is None and rs["s02"]["inherited"] is None
    # Only what was actually inherited is recorded: no null entries.
    assert rs["s03"]["inherited"] == {"user_id": {"value": "user@example.com", "from_span": "s01"}}
    assert rs["s03"]["input_messages"] is None  # a tool span's I/O is arguments/results, not a chat


# -- vercel-ai-sdk/ -------------------------------------------------------------------------------
# span: (trace, name, kind, start µs, end µs, model, served, in, out, total, input roles, feature, response id)
VERCEL = {
    "39d6e9b3ddec9996": ("b3e700af9eab81e19f72f964d62a35af", "ai.generateText.doGenerate", "llm",
                         1770131992242000, 1770131994021415, "gpt-4o-mini", "gpt-4o-mini-2024-07-18", 14, 20, 34,
                         ["user"], "test-generate-text", "resp_0269f3aed1fd415900698212189ed88190b8bb13919d420b02"),
    "648be1dfd8e521b6": ("700d5f98fe2420adcf6ab0822f7a323c", "ai.generateText", "chain",
                         1770131992241000, 1770131994022541, "gpt-4o-mini", None, 14, 20, 34,
                         ["user"], "test-generate-text", None),
    "6c0201026326855d": ("edff2fc5854be6170e8cccccec0c82cf", "ai.generateText.doGenerate", "llm",
                         1770131994023000, 1770131997057285, "gpt-4o-mini", "gpt-4o-mini-2024-07-18", 50, 9, 59,
                         ["system", "user", "assistant", "user"], "test-generate-text-messages",
                         "resp_0056c25ba5cb2bd9006982121a510c81a1a31c11ddcf1abc73"),
    "d3661934fbcf93fd": ("673a889f59126f8b4c90dce5a1f99368", "ai.generateText", "chain",
                         1770131994023000, 1770131997057733, "gpt-4o-mini", None, 50, 9, 59,
                         ["system", "user", "assistant", "user"], "test-generate-text-messages", None),
    "bf098ec12458e605": ("8f60802815d6e97da2dbc4708a8e5c7b", "ai.generateObject.doGenerate", "llm",
                         1770131997066000, 1770132000585812, "gpt-4o-mini", "gpt-4o-mini-2024-07-18", 63, 156, 219,
                         ["user"], "test-generate-object", "resp_03f2d825c7fc910c006982121d24948190b48cdbf3f4373dfe"),
    "25ec6d8e42789717": ("f99cc53c9bb8fe40462f7a48999e7088", "ai.generateObject", "chain",
                         1770131997065000, 1770132000588601, "gpt-4o-mini", None, 63, 156, 219,
                         ["user"], "test-generate-object", None),
    "5a81ef3ffb5d8603": ("478d4dcc697ecfabc5e7a3d6e4216291", "ai.streamText.doStream", "llm",
                         1770132000598000, 1770132005984307, "gpt-4o-mini", "gpt-4o-mini-2024-07-18", 15, 112, 127,
                         ["user"], "test-stream-text", "resp_07aff6ffa00269d50069821220f35c819dbbabe49b6cc82791"),
    "c8be0dc143acbe03": ("8185b815e471184c6525a601a042be42", "ai.streamText", "chain",
                         1770132000594000, 1770132005986741, "gpt-4o-mini", None, 15, 112, 127,
                         ["user"], "test-stream-text", None),
    "53e12604843b0399": ("045d21a7f69972edf509fe0ff911f3f5", "ai.embed.doEmbed", "embedding",
                         1770132006016000, 1770132006269719, "text-embedding-3-small", None, 10, None, 10,
                         [], "test-embed", None),
    "06a62ec64ae5b0a2": ("91621bbaaf1920e94ae594e91b3a99fd", "ai.embed", "chain",
                         1770132006015000, 1770132006269932, "text-embedding-3-small", None, 10, None, 10,
                         [], "test-embed", None),
}


def test_vercel_js_span_dump(db, fixtures) -> None:
    assert_clean(load(db, fixtures / "vercel-ai-sdk/arize-vercel-v6-all-spans.json"), 10, "otel-js-spans")
    rs = rows(db)
    assert set(rs) == set(VERCEL)
    for sid, (trace, name, kind, start, end, model, served, tin, tout, ttot, in_roles, feature, rid) in VERCEL.items():
        r = rs[sid]
        assert (r["trace_id"], r["name"], r["kind"], r["parent_id"], r["status"]) == (trace, name, kind, None,
                                                                                      "unset"), sid
        assert (r["start_us"], r["end_us"]) == (start, end), sid
        assert (r["model"], r["served_model"], r["provider"]) == (model, served, "openai"), sid
        assert (r["input_tokens"], r["output_tokens"], r["total_tokens"]) == (tin, tout, ttot), sid
        assert roles(r["input_messages"]) == in_roles, sid
        assert (r["feature"], r["response_id"]) == (feature, rid), sid
        assert (r["session_id"], r["user_id"], r["tool_calls"]) == (None, None, None), sid
        if r["kind"] in ("llm", "embedding"):
            assert r["cost_source"] == "estimated" and r["cost"] == pytest.approx(estimated_cost(r), rel=1e-9), sid
        else:
            assert (r["cost"], r["cost_source"]) == (None, None), sid
    gen = rs["39d6e9b3ddec9996"]
    assert gen["input_messages"] == [{"role": "user", "content": "Write a haiku about programming."}]
    assert gen["output_messages"] == [{"role": "assistant", "content":
                                       "Lines of code align,  \nLogic dances through the night\u2014  \nDreams in data flow."}]
    assert gen["finish_reason"] == "stop"
    assert rs["5a81ef3ffb5d8603"]["ttft_ms"] == 426.8535000000011
    obj = rs["bf098ec12458e605"]["output_messages"][0]["content"]
    assert json.loads(obj)["name"] == "Scrambled Eggs"
    assert gen["attributes"]["ai.telemetry.metadata.customField"] == "custom-value"


# -- envelope quirks on files made by the real SDK exporters --------------------------------------
def _sdk_spans(exporter_factory):
    """Run a tiny app under the real SDK: root span with tenant/user, an LLM child, a failing child."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import SpanKind, Status, StatusCode

    buf = io.StringIO()
    tp = TracerProvider(resource=Resource.create({"service.name": "support-bot", "service.version": "2.1.0",
                                                  "deployment.environment.name": "prod"}))
    tp.add_span_processor(SimpleSpanProcessor(exporter_factory(buf)))
    t = tp.get_tracer("app")
    with t.start_as_current_span("handle_ticket", attributes={"tenant.id": "acme", "user.id": "u-42",
                                                              "session.id": "sess-1", "app.request_id": "req-9"}):
        with t.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT, attributes={
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
                "gen_ai.usage.input_tokens": 11, "gen_ai.usage.output_tokens": 3,
                "gen_ai.response.finish_reasons": ("stop",),
                "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]),
                "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [{"type": "text",
                                                                                        "content": "hello"}]}])}):
            pass
        with t.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT,
                                     attributes={"gen_ai.request.model": "gpt-4o"}) as failing:
            failing.record_exception(RuntimeError("Error code: 429 - Rate limit reached for gpt-4o"))
            failing.set_attribute("error.type", "RateLimitError")
            failing.set_status(Status(StatusCode.ERROR, "Rate limit reached"))
    tp.shutdown()
    return buf.getvalue()


def _check_sdk_rows(db) -> None:
    rs = rows(db)
    assert len(rs) == 3
    root = next(r for r in rs.values() if r["parent_id"] is None)
    ok, failed = sorted((r for r in rs.values() if r["parent_id"]), key=lambda r: r["status"] == "error")
    assert root["tenant"] == "acme" and root["inherited"] is None
    assert (ok["kind"], ok["span_kind"], ok["model"], ok["served_model"]) == ("llm", "client", "gpt-4o",
                                                                               "gpt-4o-2024-08-06")
    assert (ok["input_tokens"], ok["output_tokens"], ok["total_tokens"]) == (11, 3, 14)
    assert ok["output_messages"] == [{"role": "assistant", "content": "hello"}]
    assert (ok["service"], ok["attributes"]["resource.service.version"]) == ("support-bot", "2.1.0")
    # Cohort keys set on the root reach the LLM child, with provenance of exactly those keys.
    assert (ok["tenant"], ok["user_id"], ok["session_id"]) == ("acme", "u-42", "sess-1")
    assert ok["inherited"] == {
        "tenant": {"value": "acme", "from_span": root["span_id"]},
        "user_id": {"value": "u-42", "from_span": root["span_id"]},
        "session_id": {"value": "sess-1", "from_span": root["span_id"]},
        "request_id": {"value": "req-9", "from_span": root["span_id"]},
    }
    assert (failed["status"], failed["error_type"]) == ("error", "rate_limit")


def test_console_dump_with_several_objects(db, tmp_path) -> None:
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    text = _sdk_spans(lambda buf: ConsoleSpanExporter(out=buf))
    assert text.count('\n{\n    "name"') == 2  # three indented objects, concatenated
    p = tmp_path / "console.txt"
    p.write_text(text)
    report = load(db, p)
    assert_clean(report, 3, "otel-console")
    _check_sdk_rows(db)
    lines = sorted(r[0] for r in db.con.execute("SELECT source_line FROM spans").fetchall())
    starts = [i + 1 for i, line in enumerate(text.splitlines()) if line == "{"]
    assert lines == starts  # each row points at the line its object starts on


def test_otlp_jsonl_from_the_file_exporter_with_duplicate_and_bad_lines(db, tmp_path) -> None:
    from opentelemetry.exporter.otlp.json.file import FileSpanExporter

    text = _sdk_spans(lambda buf: FileSpanExporter(stream=buf))
    lines = text.splitlines()
    assert len(lines) == 3
    # A retry wrote the first span again; a crash left a truncated line; a byte got mangled.
    bad = lines[:1] + [lines[0], lines[1][:40], "\xff\xfe not utf8"] + lines[1:]
    p = tmp_path / "traces.jsonl"
    p.write_bytes("\n".join(bad[:3]).encode() + b"\n\xff\xfe{}\n" + "\n".join(bad[4:]).encode() + b"\n")
    report = load(db, p)
    f = report.files[0]
    assert (f.format, f.status, f.spans, f.duplicates) == ("otlp-jsonl", "loaded", 3, 1)
    assert [(pr.line, pr.kind) for pr in f.problems] == [(3, "invalid-json"), (4, "invalid-json")]
    assert str(f.problems[0]).startswith(f"{p}:3: invalid-json: ")
    assert "UTF-8" in f.problems[1].message
    _check_sdk_rows(db)


def test_otlp_jsonl_gzip_and_all_bad_lines(db, tmp_path) -> None:
    from opentelemetry.exporter.otlp.json.file import FileSpanExporter

    text = _sdk_spans(lambda buf: FileSpanExporter(stream=buf))
    gz = tmp_path / "traces.jsonl.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    assert_clean(load(db, gz), 3, "otlp-jsonl")
    junk = tmp_path / "junk.jsonl"
    junk.write_text('{"resourceSpans": []}\n{"nope": 1}\n')
    f = load_paths(db, [str(junk)], fmt="otlp-jsonl").files[0]
    assert f.problems and f.problems[0].line == 2 and f.problems[0].kind == "not-otlp"


def _otlp_doc(snake: bool, trace_id: str, span_id: str, parent: str = "") -> dict:
    def k(camel: str, sn: str) -> str:
        return sn if snake else camel

    span = {k("traceId", "trace_id"): trace_id, k("spanId", "span_id"): span_id,
            k("parentSpanId", "parent_span_id"): parent, "name": "chat gpt-4o-mini", "kind": "SPAN_KIND_CLIENT",
            k("startTimeUnixNano", "start_time_unix_nano"): "1747675155185223936",
            k("endTimeUnixNano", "end_time_unix_nano"): 1747675156185223936,
            "status": {"code": 2, "message": "Error code: 429"},
            "attributes": [
                {"key": "gen_ai.request.model", "value": {k("stringValue", "string_value"): "gpt-4o-mini"}},
                {"key": "gen_ai.usage.input_tokens", "value": {k("intValue", "int_value"): "412"}},
                {"key": "gen_ai.request.temperature", "value": {k("doubleValue", "double_value"): 0.5}},
                {"key": "gen_ai.is_streaming", "value": {k("boolValue", "bool_value"): True}},
                {"key": "gen_ai.response.finish_reasons",
                 "value": {k("arrayValue", "array_value"): {"values": [{k("stringValue", "string_value"): "stop"}]}}},
                {"key": "app.kv", "value": {k("kvlistValue", "kvlist_value"): {"values": [
                    {"key": "a", "value": {k("intValue", "int_value"): 1}}]}}},
                {"key": "app.bytes", "value": {k("bytesValue", "bytes_value"): base64.b64encode(b"\x01\x02").decode()}},
            ]}
    return {k("resourceSpans", "resource_spans"): [{"resource": {"attributes": [
        {"key": "service.name", "value": {k("stringValue", "string_value"): "svc"}}]},
        k("scopeSpans", "scope_spans"): [{"scope": {"name": "s"}, "spans": [span]}]}]}


@pytest.mark.parametrize("snake", [False, True])
def test_otlp_snake_case_base64_ids_and_anyvalues(db, tmp_path, snake) -> None:
    trace = bytes(range(16))
    span = bytes(range(100, 108))
    doc = _otlp_doc(snake, base64.b64encode(trace).decode(), base64.b64encode(span).decode())
    p = tmp_path / "doc.json"
    p.write_text(json.dumps(doc, indent=2))
    assert_clean(load(db, p), 1, "otlp-json")
    (r,) = rows(db).values()
    assert (r["trace_id"], r["span_id"], r["parent_id"]) == (trace.hex(), span.hex(), None)
    assert (r["start_us"], r["end_us"]) == (1747675155185223, 1747675156185223)
    assert (r["status"], r["error_type"], r["span_kind"]) == ("error", "rate_limit", "client")
    a = r["attributes"]
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.request.temperature"], a["gen_ai.is_streaming"]) == (412, 0.5, True)
    assert (a["app.kv"], a["app.bytes"], a["resource.service.name"]) == ({"a": 1}, "0102", "svc")
    assert r["finish_reason"] == "stop"


def test_otlp_legacy_instrumentation_library_spans_and_one_resource_per_span(db, tmp_path) -> None:
    doc = _otlp_doc(False, "5B8EFFF798038103D269B633813FC60C", "EEE19B7EC3C1B174")
    doc2 = _otlp_doc(False, "5B8EFFF798038103D269B633813FC60C", "EEE19B7EC3C1B175", parent="EEE19B7EC3C1B174")
    rs = doc["resourceSpans"] + doc2["resourceSpans"]
    rs[1]["instrumentationLibrarySpans"] = rs[1].pop("scopeSpans")
    rs[1]["instrumentationLibrarySpans"][0]["instrumentationLibrary"] = rs[1]["instrumentationLibrarySpans"][0].pop("scope")
    p = tmp_path / "legacy.json"
    p.write_text(json.dumps({"resourceSpans": rs}))
    assert_clean(load(db, p), 2, "otlp-json")
    r = rows(db)
    assert r["eee19b7ec3c1b175"]["parent_id"] == "eee19b7ec3c1b174"
    assert r["eee19b7ec3c1b175"]["attributes"]["scope.name"] == "s"


def test_otlp_protobufjs_long_times_and_buffer_ids(db, tmp_path) -> None:
    ns = 1747675155185223936
    low = ns & 0xFFFFFFFF
    low = low - 2**32 if low >= 2**31 else low
    span = {"traceId": {"type": "Buffer", "data": list(range(16))}, "spanId": {"type": "Buffer", "data": list(range(8))},
            "name": "x", "kind": 1, "startTimeUnixNano": {"low": low, "high": ns >> 32, "unsigned": True},
            "endTimeUnixNano": {"low": low, "high": ns >> 32, "unsigned": True}, "status": {"code": "STATUS_CODE_OK"},
            "attributes": []}
    p = tmp_path / "long.json"
    p.write_text(json.dumps({"resourceSpans": [{"resource": {}, "scopeSpans": [{"spans": [span]}]}]}))
    assert_clean(load(db, p), 1, "otlp-json")
    (r,) = rows(db).values()
    assert (r["trace_id"], r["span_id"], r["start_us"], r["status"]) == (bytes(range(16)).hex(), bytes(range(8)).hex(),
                                                                         ns // 1000, "ok")


def test_js_spans_with_parent_span_context(db, tmp_path) -> None:
    spans = [
        {"name": "root", "spanContext": {"traceId": "a" * 32, "spanId": "1" * 16}, "kind": 1, "status": {"code": 0},
         "startTime": [1770131992, 0], "endTime": [1770131993, 500000000],
         "attributes": {"ai.telemetry.metadata.tenant": "umbrella"}, "events": []},
        {"name": "ai.generateText.doGenerate", "spanContext": {"traceId": "a" * 32, "spanId": "2" * 16},
         "parentSpanContext": {"traceId": "a" * 32, "spanId": "1" * 16}, "kind": 2, "status": {"code": 2,
                                                                                                 "message": "timeout"},
         "startTime": [1770131992, 1000], "endTime": [1770131993, 0],
         "attributes": {"ai.operationId": "ai.generateText.doGenerate", "ai.model.id": "gpt-4o"}, "events": []},
    ]
    p = tmp_path / "spans.jsonl"
    p.write_text("\n".join(json.dumps(s) for s in spans) + "\n")
    assert_clean(load(db, p), 2, "otel-js-spans")
    r = rows(db)["2" * 16]
    # kind 2 is CLIENT in the JS SDK's SpanKind enum (INTERNAL = 0), not OTLP's SERVER.
    assert (r["parent_id"], r["tenant"], r["status"], r["error_type"], r["span_kind"]) == (
        "1" * 16, "umbrella", "error", "timeout", "client")
    assert (r["start_us"], r["end_us"]) == (1770131992000001, 1770131993000000)
    assert r["inherited"] == {"tenant": {"value": "umbrella", "from_span": "1" * 16}}


def test_phoenix_jsonl_and_rest_envelope(db, tmp_path) -> None:
    span = {"name": "llm", "context": {"trace_id": "t1", "span_id": "a"}, "span_kind": "LLM", "parent_id": None,
            "start_time": "2026-07-08T18:00:00-06:00", "end_time": "2026-07-08T18:00:01.5-06:00", "status_code": "ERROR",
            "status_message": "Error code: 503 - overloaded",
            "attributes": {"llm.input_messages": [{"message.role": "user", "message.content": "hi"}],
                           "llm.model_name": "m1", "llm.cost.total": 0.25}}
    p = tmp_path / "spans.jsonl"
    p.write_text(json.dumps(span) + "\nnot json\n")
    report = load(db, p)
    f = report.files[0]
    assert (f.format, f.spans, [(x.line, x.kind) for x in f.problems]) == ("phoenix", 1, [(2, "invalid-json")])
    (r,) = rows(db).values()
    assert (r["start_us"], r["end_us"]) == (T0, T0 + 1_500_000)
    assert (r["status"], r["error_type"], r["cost"], r["kind"]) == ("error", "server", 0.25, "llm")
    assert r["input_messages"] == [{"role": "user", "content": "hi"}]
    q = tmp_path / "rest.json"
    span2 = dict(span, context={"trace_id": "t1", "span_id": "b"})
    q.write_text(json.dumps({"data": [span2], "next_cursor": None}))
    assert_clean(load(db, q), 1, "phoenix")


def test_otlp_jsonl_with_lines_longer_than_the_detection_head(db, tmp_path) -> None:
    # A Collector fileexporter batch can put megabytes on one line: still JSON Lines, not a document.
    spans = [_otlp_doc(False, f"{i:032x}", f"{i + 1:016x}")["resourceSpans"][0] for i in range(1500)]
    line = json.dumps({"resourceSpans": spans}, separators=(",", ":"))
    assert len(line) > 300_000
    p = tmp_path / "big-batches.jsonl"
    p.write_text(line + "\n" + line.replace('"name":"chat gpt-4o-mini"', '"name":"again"') + "\n")
    report = load(db, p)
    f = report.files[0]
    assert (f.format, f.status, f.spans, f.duplicates, f.problems) == ("otlp-jsonl", "loaded", 1500, 1500, [])
    pretty = tmp_path / "pretty.json"
    pretty.write_text(json.dumps({"resourceSpans": spans}, indent=2))
    assert load(db, pretty).files[0].format == "otlp-json"


def test_error_type_attribute_marks_an_unset_span_failed(db, tmp_path) -> None:
    doc = _otlp_doc(False, "ab" * 16, "cd" * 8)
    span = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["status"] = {}
    span["attributes"].append({"key": "error.type", "value": {"stringValue": "timeout"}})
    p = tmp_path / "err.json"
    p.write_text(json.dumps(doc))
    load(db, p)
    (r,) = rows(db).values()
    assert (r["status"], r["error_type"]) == ("error", "timeout")


_WEIRD = [None, "", "x", 7, -1, 1.5, [], {}, [1, 2], {"low": "a"}, {"values": 3}, "SPAN_KIND_NOPE", True]


@pytest.mark.parametrize("field", ["traceId", "spanId", "parentSpanId", "kind", "status", "startTimeUnixNano",
                                   "attributes", "events", "name"])
def test_otlp_malformed_span_fields_never_crash_the_load(db, tmp_path, field) -> None:
    spans = []
    for i, weird in enumerate(_WEIRD):
        doc = _otlp_doc(False, f"{i + 1:032x}", f"{i + 1:016x}")
        span = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
        span[field] = weird
        spans.append(doc["resourceSpans"][0])
    p = tmp_path / "weird.jsonl"
    p.write_text("\n".join(json.dumps({"resourceSpans": [rs]}) for rs in spans) + "\n")
    f = load(db, p).files[0]
    assert f.status == "loaded"
    # every line either loaded or was reported with its line number
    assert f.spans + f.duplicates + len(f.problems) == len(_WEIRD)
    assert all(pr.line is not None for pr in f.problems)
