"""The Vercel AI SDK's spans, exported by the real OpenTelemetry JS SDK, load with what the server returned.

tests/node/vercel_calls.mjs (ai + @ai-sdk/openai under @opentelemetry/sdk-trace-node, installed by
.ci/setup-jscost.sh) calls tests/openai_server.py on loopback inside one application root span:
a plain generateText, a generateText tool round trip, a streamText, and a generateText that gets a
429. The same spans leave the process three ways, and each must load with the same values:
- the ConsoleSpanExporter on stdout (Node util.inspect literals, not JSON),
- OTLPTraceExporter (OTLP/HTTP JSON) to a capture server this test runs on 127.0.0.1,
- a JSON dump of every ReadableSpan (spanContext, HrTime times).
Every LLM call is checked against the exchange the server recorded: ids, parent, times, requested
and served model, tokens, messages and roles, tool calls, finish reason, status and error class,
TTFT for the stream, and the cohort keys the calls carried as telemetry metadata.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from openai_server import OpenAIServer

from oncall.ingest.loader import load_paths
from oncall.query.search import search
from oncall.store import open_db

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NODE_DIR = HERE / "node"
INSTALL_LOG = ROOT / ".envs" / "node-install.log"

# What vercel_calls.mjs sends (kept in step with its constants).
SYSTEM = "You are a terse support assistant."
QUESTION = "What is the capital of France?"
TOOL_QUESTION = "What's the weather in Paris?"
STREAM_QUESTION = "Name three French cheeses, with the region each one comes from.\nOne per line, please."
ERROR_QUESTION = "This call is rate limited."
METADATA = {"tenant": "acme", "user_id": "user-7", "session_id": "sess-oncall-42", "feature": "support-bot",
            "prompt_version": "v13"}
EXPORTS = {"console": "otel-console", "otlp": "otlp-jsonl", "dump": "otel-js-spans"}


def _node_skip_reason() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (the Vercel AI SDK tests need Node 20)"
    if not (NODE_DIR / "node_modules" / "ai").is_dir():
        why = INSTALL_LOG.read_text(errors="replace").strip()[-400:] if INSTALL_LOG.exists() else "not run"
        return f"tests/node is not installed (bash .ci/setup-jscost.sh; npm: {why})"
    return None


class _Capture(BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver on loopback: keeps every POSTed body and its content type."""

    bodies: list[tuple[str, bytes]]

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":  # the JS exporter streams chunked
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        out = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while self.rfile.readline().strip():  # trailers, then the blank line
                    pass
                return out
            out += self.rfile.read(size)
            self.rfile.readline()

    def do_POST(self) -> None:
        body = self._body()
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        self.bodies.append((self.headers.get("Content-Type") or "", body))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Any]:
    reason = _node_skip_reason()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("vercel")
    bodies: list[tuple[str, bytes]] = []
    handler = type("Capture", (_Capture,), {"bodies": bodies})
    capture = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=capture.serve_forever, daemon=True).start()
    try:
        with OpenAIServer() as srv:
            proc = subprocess.run(
                ["node", str(NODE_DIR / "vercel_calls.mjs"), "--base-url", srv.base_url,
                 "--otlp-url", f"http://127.0.0.1:{capture.server_address[1]}/v1/traces",
                 "--dump", str(out / "spans.json")],
                capture_output=True, text=True, timeout=120, cwd=NODE_DIR)
            exchanges = list(srv.exchanges)
    finally:
        capture.shutdown()
        capture.server_close()
    assert proc.returncode == 0, f"vercel_calls.mjs failed:\n{proc.stderr[-3000:]}"
    (out / "console.txt").write_text(proc.stdout, encoding="utf-8")
    # What a capture proxy logs: each OTLP/HTTP body on its own line, as sent.
    with open(out / "otlp.jsonl", "wb") as fh:
        for _, body in bodies:
            fh.write(body.strip() + b"\n")
    return {"dir": out, "exchanges": exchanges, "bodies": bodies, "stdout": proc.stdout}


@pytest.fixture(scope="module")
def loaded(exported) -> dict[str, Any]:
    """Each export in its own incident database: {export: (report, rows)}."""
    files = {"console": "console.txt", "otlp": "otlp.jsonl", "dump": "spans.json"}
    out = {}
    for name, fname in files.items():
        db = open_db(exported["dir"] / f"{name}.duckdb")
        report = load_paths(db, [str(exported["dir"] / fname)])
        out[name] = {"report": report, "rows": _rows(db), "db": db}
    yield out
    for v in out.values():
        v["db"].close()


def _rows(db) -> list[dict[str, Any]]:
    rel = db.cursor().execute("SELECT * FROM spans ORDER BY start_time, span_id")
    cols = [d[0] for d in rel.description]
    rows = [dict(zip(cols, r, strict=True)) for r in rel.fetchall()]
    for r in rows:
        for c in ("input_messages", "output_messages", "tool_calls", "attributes"):
            if isinstance(r[c], str):
                r[c] = json.loads(r[c])
    return rows


def _llm(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["kind"] == "llm"]


def _roles(msgs: list[dict[str, Any]] | None) -> list[str]:
    return [m["role"] for m in msgs or []]


# -- what the SDK wrote, read without oncall ----------------------------------------------------

def test_the_sdk_exported_every_span_three_ways(exported):
    assert [e.status for e in exported["exchanges"]] == [200, 200, 200, 200, 429]
    assert exported["exchanges"][3].request["stream"] is True
    # OTLP/HTTP with the JSON protocol: one ExportTraceServiceRequest per span (SimpleSpanProcessor).
    assert exported["bodies"] and all(ct.startswith("application/json") for ct, _ in exported["bodies"])
    otlp_spans = [sp for _, b in exported["bodies"] for rs in json.loads(b)["resourceSpans"]
                  for ss in rs["scopeSpans"] for sp in ss["spans"]]
    dump = json.loads((exported["dir"] / "spans.json").read_text())
    assert len(otlp_spans) == len(dump) == 11
    # The console output is Node's inspect syntax, not JSON, with the string forms the parser must read.
    text = exported["stdout"]
    assert text.startswith("{\n  resource: {") and "parentSpanContext: {" in text
    with pytest.raises(ValueError):
        json.loads(text[: text.index("\n}\n") + 2])
    assert "'ai.response.text': 'Answer to: Name three French cheeses, with the region each one comes from.\\n' +" in text
    assert '`[{"role":"user","content":[{"type":"text","text":"What\'s the weather in Paris?"}]}]`' in text


# -- each export loads cleanly --------------------------------------------------------------------

@pytest.mark.parametrize("export", list(EXPORTS))
def test_export_loads_in_its_format_without_problems(loaded, export):
    report = loaded[export]["report"]
    assert [f.status for f in report.files] == ["loaded"], report.to_dict()
    assert report.files[0].format == EXPORTS[export]
    assert report.problems == []
    assert report.spans_added == 11


@pytest.mark.parametrize("forced", ["otel-console", "otel-js-spans"])
def test_console_output_loads_when_either_js_format_is_forced(exported, tmp_path, forced):
    db = open_db(tmp_path / "forced.duckdb")
    try:
        report = load_paths(db, [str(exported["dir"] / "console.txt")], fmt=forced)
        assert [f.status for f in report.files] == ["loaded"] and report.problems == []
        assert report.spans_added == 11
    finally:
        db.close()


# -- per call, against what the server answered ----------------------------------------------------

@pytest.mark.parametrize("export", list(EXPORTS))
def test_answered_calls_match_the_server(loaded, exported, export):
    rows = loaded[export]["rows"]
    by_rid = {r["response_id"]: r for r in _llm(rows) if r["response_id"]}
    answered = [e for e in exported["exchanges"] if e.status == 200]
    assert len(by_rid) == len(answered) == 4
    for ex in answered:
        resp, span = ex.response, by_rid[ex.response["id"]]
        assert span["name"] == ("ai.streamText.doStream" if ex.request.get("stream") else "ai.generateText.doGenerate")
        assert span["provider"] == "openai"
        assert span["model"] == ex.request["model"] == "gpt-4o-mini"
        assert span["served_model"] == resp["model"] == "gpt-4o-mini-2024-07-18"
        usage = resp.get("usage") or ex.stream_chunks[-1]["usage"]
        assert (span["input_tokens"], span["output_tokens"], span["total_tokens"]) == (
            usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"])
        assert span["cached_tokens"] == usage["prompt_tokens_details"]["cached_tokens"] == 0
        assert span["status"] == "unset" and span["error_type"] is None
        assert _roles(span["input_messages"]) == [m["role"] for m in ex.request["messages"]]
        assert _roles(span["output_messages"]) == ["assistant"]
        assert span["finish_reason"] == resp["choices"][0]["finish_reason"]
        content = resp["choices"][0]["message"]["content"]
        if content is not None:
            assert span["output_messages"][0]["content"] == content
        for key, want in METADATA.items():
            assert span[key] == want, (key, span["name"])


@pytest.mark.parametrize("export", list(EXPORTS))
def test_plain_call_and_stream(loaded, exported, export):
    by_rid = {r["response_id"]: r for r in _llm(loaded[export]["rows"]) if r["response_id"]}
    plain = by_rid[exported["exchanges"][0].response["id"]]
    assert plain["input_messages"] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
    assert plain["ttft_ms"] is None  # not streamed

    ex = exported["exchanges"][3]
    streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in ex.stream_chunks if c["choices"])
    stream = by_rid[ex.response["id"]]
    assert stream["input_messages"] == [{"role": "user", "content": STREAM_QUESTION}]
    assert stream["output_messages"][0]["content"] == streamed == f"Answer to: {STREAM_QUESTION}"
    want_ttft = stream["attributes"]["ai.response.msToFirstChunk"]
    assert isinstance(want_ttft, float) and stream["ttft_ms"] == want_ttft
    assert 0 < stream["ttft_ms"] <= stream["latency_ms"]


@pytest.mark.parametrize("export", list(EXPORTS))
def test_tool_call_round_trip(loaded, exported, export):
    rows = loaded[export]["rows"]
    by_rid = {r["response_id"]: r for r in _llm(rows) if r["response_id"]}
    server_call = exported["exchanges"][1].response["choices"][0]["message"]["tool_calls"][0]
    asked = by_rid[exported["exchanges"][1].response["id"]]
    assert asked["input_messages"] == [{"role": "user", "content": TOOL_QUESTION}]
    assert asked["finish_reason"] == "tool_calls"
    [tc] = asked["tool_calls"]
    assert (tc["id"], tc["name"]) == (server_call["id"], "get_weather")
    assert json.loads(tc["arguments"]) == json.loads(server_call["function"]["arguments"]) == {"city": "Paris"}

    answered = by_rid[exported["exchanges"][2].response["id"]]
    msgs = answered["input_messages"]
    assert _roles(msgs) == ["user", "assistant", "tool"]
    assert msgs[1]["tool_calls"][0]["id"] == server_call["id"]
    assert msgs[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert msgs[2]["tool_call_id"] == server_call["id"]
    result = {"city": "Paris", "temperature_c": 18, "sky": "clear"}
    assert result == json.loads(exported["exchanges"][2].request["messages"][2]["content"])
    assert json.loads(msgs[2]["content"]) == result

    [tool_span] = [r for r in rows if r["kind"] == "tool"]
    assert tool_span["name"] == "ai.toolCall" and tool_span["parent_id"] == asked["parent_id"]
    assert tool_span["attributes"]["ai.toolCall.id"] == server_call["id"]


@pytest.mark.parametrize("export", list(EXPORTS))
def test_rate_limited_call(loaded, exported, export):
    errors = [r for r in _llm(loaded[export]["rows"]) if r["status"] == "error"]
    [err] = errors
    body = exported["exchanges"][4].response["error"]
    assert err["name"] == "ai.generateText.doGenerate"
    assert err["error_type"] == "rate_limit"
    assert err["error"] == body["message"]
    assert err["input_messages"] == [{"role": "user", "content": ERROR_QUESTION}]
    assert err["response_id"] is None and err["served_model"] is None and err["output_tokens"] is None
    # The AI SDK records the exception, not the HTTP status.
    assert err["http_status"] is None
    assert err["tenant"] == "acme" and err["prompt_version"] == "v13"


@pytest.mark.parametrize("export", list(EXPORTS))
def test_ids_parents_and_times(loaded, export):
    rows = loaded[export]["rows"]
    assert len({r["trace_id"] for r in rows}) == 1
    by_id = {r["span_id"]: r for r in rows}
    [root] = [r for r in rows if r["parent_id"] is None]
    assert root["name"] == "support_ticket" and root["service"] == "support-bot" and root["release"] == "2.4.1"
    for r in rows:
        assert r["start_time"] is not None and r["end_time"] >= r["start_time"]
        if r is root:
            continue
        parent = by_id[r["parent_id"]]
        # The JS SDK starts spans at Date.now() (whole ms) and ends them start + a performance.now()
        # duration, so a child may seem to end up to 1 ms after its parent.
        assert parent["start_time"] <= r["start_time"]
        assert (r["end_time"] - parent["end_time"]).total_seconds() < 1e-3
        if r["kind"] in ("llm", "tool"):
            assert parent["name"] in ("ai.generateText", "ai.streamText") and parent["parent_id"] == root["span_id"]
    # Cohort keys reach the application's root-level wrappers too; `tenant=acme` finds the 5 calls.
    hits = search(loaded[export]["db"].cursor(), "tenant=acme prompt_version=v13", limit=50).rows
    assert len(hits) == 5


def _key(r: dict[str, Any]) -> tuple:
    cols = ("trace_id", "span_id", "parent_id", "name", "kind", "span_kind", "model", "served_model", "provider",
            "response_id", "input_tokens", "output_tokens", "total_tokens", "finish_reason", "status", "error_type",
            "error", "ttft_ms", "tenant", "user_id", "session_id", "feature", "prompt_version", "service")
    return tuple(r[c] for c in cols) + (json.dumps(r["input_messages"]), json.dumps(r["output_messages"]),
                                        json.dumps(r["tool_calls"]))


def test_the_three_exports_load_to_the_same_rows(loaded):
    """OTLP and the ReadableSpan dump agree exactly; the console agrees too, its times to the
    microsecond it prints (µs floats, so at most 1 µs off)."""
    keyed = {name: {r["span_id"]: r for r in v["rows"]} for name, v in loaded.items()}
    assert keyed["otlp"].keys() == keyed["dump"].keys() == keyed["console"].keys()
    for sid, o in keyed["otlp"].items():
        d, c = keyed["dump"][sid], keyed["console"][sid]
        assert _key(o) == _key(d) == _key(c), o["name"]
        assert (o["start_time"], o["end_time"]) == (d["start_time"], d["end_time"])
        for col in ("start_time", "end_time"):
            assert abs((c[col] - o[col]).total_seconds()) <= 1e-6, (o["name"], col)
    kinds = sorted(r["kind"] for r in keyed["otlp"].values())
    assert kinds == ["chain"] * 4 + ["llm"] * 5 + ["span", "tool"]
    # The JS SpanKind enum: the AI SDK's spans are INTERNAL (0), not OTLP's "unspecified".
    assert {r["span_kind"] for r in keyed["dump"].values()} == {"internal"}
    assert {r["span_kind"] for r in keyed["console"].values()} == {"internal"}


def test_console_strings_node_cut_are_reported_not_invented(tmp_path):
    """A prompt longer than util.inspect's 10,000 characters: the console prints its start and
    `... N more characters`; the span loads with what was printed and a `truncated` problem, while
    the OTLP export of the same call has it all."""
    reason = _node_skip_reason()
    if reason:
        pytest.skip(reason)
    with OpenAIServer() as srv:
        proc = subprocess.run(["node", str(NODE_DIR / "vercel_calls.mjs"), "--base-url", srv.base_url,
                               "--calls", "long"], capture_output=True, text=True, timeout=120, cwd=NODE_DIR)
        [ex] = srv.exchanges
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "more characters" in proc.stdout
    path = tmp_path / "console.txt"
    path.write_text(proc.stdout, encoding="utf-8")
    db = open_db(tmp_path / "i.duckdb")
    try:
        report = load_paths(db, [str(path)])
        assert [f.status for f in report.files] == ["loaded"] and report.spans_added == 3
        cut = [p for p in report.problems if p.kind == "truncated"]
        assert len(cut) == 2 and all("attributes.ai.prompt" in p.message for p in cut), report.to_dict()
        [llm] = _llm(_rows(db))
        assert llm["response_id"] == ex.response["id"] and llm["output_tokens"] == ex.response["usage"]["completion_tokens"]
        # the cut JSON could not be read as messages; what was printed is kept in the attributes
        assert llm["input_messages"] is None
        assert len(llm["attributes"]["ai.prompt.messages"]) == 10_000
        assert ex.request["messages"][0]["content"].startswith("Summarise this log: lorem ipsum")
    finally:
        db.close()
