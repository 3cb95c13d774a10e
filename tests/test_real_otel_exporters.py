"""OTLP written by OpenLLMetry (current and legacy) and pydantic-ai loads exactly, TTFT included.

- OpenLLMetry: `opentelemetry-instrumentation-openai` 0.62.4 (G3 `gen_ai.input.messages`, chunk
  events `gen_ai.content.completion.chunk`) and 0.54.0, the last line that writes the legacy
  `gen_ai.prompt.N.*` / `gen_ai.completion.N.*` attributes (chunk events `llm.content.completion.chunk`).
  Each lives in its own environment (.ci/setup-exporters.sh) and runs tests/instrumented_calls.py
  with `--lib openllmetry`.
- pydantic-ai 2.68 (test extra), instrumentation format version 6: tests/gen_pydantic_ai.py.

Both write with the official OTLP JSON file exporter against tests/openai_server.py. Each call is
checked against the server's exchanges and the ids and times the library itself exported.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import instrumented_calls as calls
import pytest
from exporter_checks import Truth, check_calls, check_search, env_python, run_generator, spans
from openai_server import OpenAIServer

from oncall.ingest.loader import load_paths
from oncall.store import open_db

LIBS = ["openllmetry-0.62", "openllmetry-0.54", "pydantic-ai"]


def raw_spans(path: Path) -> list[dict[str, Any]]:
    """The spans as the exporter wrote them, read without oncall."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        for rs in json.loads(line)["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for sp in ss["spans"]:
                    attrs = {kv["key"]: next(iter(kv["value"].values()), None) for kv in sp.get("attributes", [])}
                    out.append({**sp, "scope": ss["scope"]["name"], "attrs": attrs})
    return out


def truth_of(raw: list[dict[str, Any]]) -> dict[str, Truth]:
    truth = {}
    for sp in raw:
        a = sp["attrs"]
        if a.get("gen_ai.operation.name", a.get("llm.request.type")) != "chat":
            continue
        key = a.get("gen_ai.response.id") or "429"
        assert key not in truth, f"two chat spans for {key}"
        truth[key] = Truth(sp["traceId"].lower(), sp["spanId"].lower(), (sp.get("parentSpanId") or "").lower() or None,
                           int(sp["startTimeUnixNano"]) // 1000, int(sp["endTimeUnixNano"]) // 1000)
    return truth


@pytest.fixture(scope="module", params=LIBS)
def exported(request, tmp_path_factory) -> dict[str, Any]:
    lib = request.param
    out = tmp_path_factory.mktemp(lib) / "traces.jsonl"
    # chunk_delay: a stream's first chunk comes measurably before its end, as with a real model
    with OpenAIServer(chunk_delay=0.01) as srv:
        if lib == "pydantic-ai":
            pytest.importorskip("pydantic_ai", reason="pydantic-ai-slim[openai] is in the test extra")
            run_generator(sys.executable, "gen_pydantic_ai.py", "--base-url", srv.base_url, "--out", str(out))
        else:
            python = env_python(lib)
            if python is None:
                pytest.skip(f".envs/{lib} is missing: run .ci/setup-exporters.sh (the registry may have been down)")
            run_generator(python, "instrumented_calls.py", "--lib", "openllmetry", "--exporter", "otlp-file",
                          "--base-url", srv.base_url, "--out", str(out))
        exchanges = list(srv.exchanges)
    db = open_db(out.parent / "incident.duckdb")
    report = load_paths(db, [str(out)])
    yield {"lib": lib, "file": out, "exchanges": exchanges, "db": db, "report": report, "raw": raw_spans(out)}
    db.close()


def test_the_library_wrote_its_own_dialect(exported):
    attrs = [sp["attrs"] for sp in exported["raw"]]
    keys = {k for a in attrs for k in a}
    names = {e["name"] for sp in exported["raw"] for e in sp.get("events", [])}
    if exported["lib"] == "openllmetry-0.54":
        assert "gen_ai.prompt.0.content" in keys and "gen_ai.input.messages" not in keys
        assert "llm.content.completion.chunk" in names
    elif exported["lib"] == "openllmetry-0.62":
        assert "gen_ai.input.messages" in keys and not any(k.startswith("gen_ai.prompt.") for k in keys)
        assert "gen_ai.content.completion.chunk" in names
    else:
        assert "gen_ai.client.operation.time_to_first_chunk" in keys
        convs = {a["gen_ai.conversation.id"] for a in attrs if "gen_ai.conversation.id" in a}
        assert len(convs) == 4  # one per agent run
        # the failed streamed call really is left UNSET, with no error of its own
        failed = [sp for sp in exported["raw"] if sp["name"].startswith("chat") and
                  "gen_ai.response.id" not in sp["attrs"]]
        assert [sp.get("status", {}).get("code", 0) for sp in failed] == [0] and not failed[0].get("events")


def test_every_call_loads_exactly(exported):
    report = exported["report"]
    assert [f.status for f in report.files] == ["loaded"] and report.problems == [], report.to_dict()
    rows = spans(exported["db"])
    assert len(rows) == len(exported["raw"])
    check_calls(rows, exported["exchanges"], truth_of(exported["raw"]), cohort=calls.COHORT)
    check_search(exported["db"], calls.COHORT)
    if exported["lib"] == "pydantic-ai":  # pydantic-ai prices each call itself (operation.cost)
        for sp in exported["raw"]:
            if "operation.cost" in sp["attrs"]:
                row = next(r for r in rows if r["span_id"] == sp["spanId"])
                assert row["cost"] == pytest.approx(sp["attrs"]["operation.cost"])


def test_time_to_first_token_of_the_stream(exported):
    rows = spans(exported["db"])
    streamed = next(r for r in rows if r["response_id"] == exported["exchanges"][3].response["id"])
    raw = next(sp for sp in exported["raw"] if sp["attrs"].get("gen_ai.response.id") == streamed["response_id"])
    start_ns = int(raw["startTimeUnixNano"])
    if exported["lib"] == "pydantic-ai":
        expected = raw["attrs"]["gen_ai.client.operation.time_to_first_chunk"] * 1000.0
    else:
        expected = (min(int(e["timeUnixNano"]) for e in raw["events"]) - start_ns) / 1e6
    # the chunks were 10 ms apart: the first one is well before the end
    assert streamed["ttft_ms"] == pytest.approx(expected, abs=0.001)
    assert streamed["ttft_ms"] < streamed["latency_ms"] - 10


def test_the_failed_call(exported):
    rows = spans(exported["db"])
    failed = next(r for r in rows if r["kind"] == "llm" and r["status"] == "error")
    assert (failed["error_type"], failed["http_status"]) == ("rate_limit", 429)
    assert "Rate limit reached" in failed["error"]
    if exported["lib"] == "pydantic-ai":
        # the error is the parent agent run's, and the row says so
        parent = next(r for r in rows if r["span_id"] == failed["parent_id"])
        assert parent["name"] == "invoke_agent support_agent" and parent["status"] == "error"
        assert failed["attributes"]["oncall.error_from"] == parent["span_id"]
        assert failed["served_model"] is None
    else:
        assert "oncall.error_from" not in failed["attributes"]


def test_pydantic_ai_conversation_is_kept_beside_the_session(exported):
    if exported["lib"] != "pydantic-ai":
        pytest.skip("pydantic-ai only")
    from oncall.query.search import count

    rows = spans(exported["db"])
    llm = [r for r in rows if r["kind"] == "llm"]
    assert {r["session_id"] for r in rows} == {calls.SESSION_ID}
    convs = [r["attributes"]["gen_ai.conversation.id"] for r in llm]
    assert len(set(convs)) == 4  # the tool round trip is one run: two calls, one conversation
    assert convs[1] == convs[2]
    assert count(exported["db"].cursor(), [f"meta.gen_ai.conversation.id={convs[1]}"]) == 2
    assert count(exported["db"].cursor(), [f"session={calls.SESSION_ID}"]) == 5
