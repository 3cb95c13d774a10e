"""`oncall receive`: live OTLP/HTTP traces from real exporters, the OTLP/HTTP protocol, and crash safety.

Real clients: the OpenTelemetry Python SDK's OTLPSpanExporter over HTTP/protobuf and its JSON
sibling (opentelemetry-exporter-otlp-json-http), driving the `openai` client under
opentelemetry-instrumentation-openai-v2 against tests/openai_server.py (tests/instrumented_calls.py,
in a subprocess); and the Node SDK's @opentelemetry/exporter-trace-otlp-http under the Vercel AI SDK
(tests/node/vercel_calls.mjs). The same spans written to an OTLP JSON file and loaded with
`oncall load` must give the same rows: one mapping.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import instrumented_calls as calls
import orjson
import pytest
from openai_server import OpenAIServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from oncall.ingest.loader import load_paths
from oncall.live.service import ReceiveService, is_loopback
from oncall.store import open_db
from oncall.store.db import wait_for

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NODE_DIR = HERE / "node"
PROVENANCE = {"span_pk", "import_id", "source_file", "source_format", "source_line", "raw"}


@pytest.fixture
def service(tmp_path):
    svc = ReceiveService(tmp_path / "live.duckdb", port=0, flush_every=0.2)
    svc.start()
    yield svc
    svc.stop()


def _spans(db_path: Path, where: str = "true") -> list[dict[str, Any]]:
    with open_db(db_path, read_only=True) as db:
        cur = db.cursor()
        rel = cur.execute(f"SELECT * FROM spans WHERE {where} ORDER BY trace_id, span_id")
        cols = [d[0] for d in rel.description]
        return [dict(zip(cols, r, strict=True)) for r in rel.fetchall()]


def _post(port: int, body: bytes, *, ctype: str = "application/x-protobuf", headers: dict[str, str] | None = None,
          path: str = "/v1/traces") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": ctype, **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _json_request(spans: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
        "scopeSpans": [{"scope": {"name": "t"}, "spans": spans}]}]})


def _span(i: int, **extra: Any) -> dict[str, Any]:
    now = time.time_ns()
    return {"traceId": f"{i:032x}", "spanId": f"{i:016x}", "name": f"chat {i}", "kind": 3,
            "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 5_000_000),
            "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                           {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
                           {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "12"}}], **extra}


# -- real exporters --------------------------------------------------------------------------------------

@pytest.mark.parametrize("exporter", ["otlp-http-proto", "otlp-http-json"])
def test_python_sdk_exporter_spans_land_as_load_would_map_them(service, tmp_path, exporter):
    """Instrumented openai calls exported live: every span lands with its GenAI columns, exactly as
    the same spans written to an OTLP file and loaded with `oncall load`."""
    copy = tmp_path / "copy.jsonl"
    with OpenAIServer() as srv:
        proc = subprocess.run(
            [sys.executable, str(HERE / "instrumented_calls.py"), "--lib", "otel-v2", "--exporter", exporter,
             "--base-url", srv.base_url, "--out", service.server.url, "--copy", str(copy)],
            capture_output=True, text=True, timeout=120, cwd=ROOT)
        exchanges = list(srv.exchanges)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert wait_for(lambda: service.receiver.stats.spans_accepted >= 6, 10)
    live = _spans(service.receiver.db_path)
    loaded_db = tmp_path / "loaded.duckdb"
    with open_db(loaded_db) as db:
        report = load_paths(db, [str(copy)])
    assert report.spans_added == len(live) >= 6
    loaded = {(r["trace_id"], r["span_id"]): r for r in _spans(loaded_db)}
    for row in live:
        twin = loaded[(row["trace_id"], row["span_id"])]
        diff = {k: (row[k], twin[k]) for k in row if k not in PROVENANCE and row[k] != twin[k]}
        assert not diff, f"span {row['name']!r} differs between receive and load: {diff}"
        assert row["source_format"] == "otlp-http"
        assert row["source_file"].startswith("otlp-http://127.0.0.1:")
    llm = [r for r in live if r["kind"] == "llm"]
    served = {ex.response["model"] for ex in exchanges if ex.response and "model" in ex.response}
    assert len(llm) == 5 and {r["served_model"] for r in llm if r["status"] == "ok"} <= served
    assert {r["tenant"] for r in llm} == {calls.TENANT}  # inherited from the app's root span
    assert all(r["input_tokens"] for r in llm if r["status"] == "ok")
    assert [r["status"] for r in llm].count("error") == 1  # the 429


def test_node_sdk_exporter(service):
    """The Node SDK's OTLPTraceExporter (http/json, chunked) under the Vercel AI SDK."""
    if shutil.which("node") is None or not (NODE_DIR / "node_modules" / "ai").is_dir():
        pytest.skip("tests/node is not installed (bash .ci/setup-jscost.sh)")
    with OpenAIServer() as srv:
        proc = subprocess.run(
            ["node", str(NODE_DIR / "vercel_calls.mjs"), "--base-url", srv.base_url,
             "--otlp-url", service.server.url, "--dump", os.devnull],
            capture_output=True, text=True, timeout=120, cwd=NODE_DIR)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert wait_for(lambda: service.receiver.stats.spans_accepted > 0, 10)
    rows = _spans(service.receiver.db_path, "kind = 'llm'")
    assert rows and {r["tenant"] for r in rows} == {"acme"}
    assert any(r["status"] == "error" for r in rows) and any(r["output_text"] for r in rows)
    assert service.receiver.stats.rejected_spans == 0


# -- the OTLP/HTTP protocol ------------------------------------------------------------------------------

def test_protobuf_gzip_and_partial_success(service):
    doc = json.loads(_json_request([_span(1), _span(2), {**_span(3), "traceId": ""}]))
    from google.protobuf.json_format import ParseDict

    req = ParseDict({"resourceSpans": [{"resource": {}, "scopeSpans": [{"spans": [
        {"traceId": "AAAAAAAAAAAAAAAAAAAAAQ==", "spanId": "AAAAAAAAAAE=", "name": "a", "startTimeUnixNano": "1"},
        {"traceId": "", "spanId": "AAAAAAAAAAI=", "name": "no trace id", "startTimeUnixNano": "1"}]}]}]},
        ExportTraceServiceRequest())
    status, headers, body = _post(service.port, gzip.compress(req.SerializeToString()),
                                  headers={"Content-Encoding": "gzip"})
    assert status == 200 and headers["content-type"] == "application/x-protobuf"
    resp = ExportTraceServiceResponse.FromString(body)
    assert resp.partial_success.rejected_spans == 1 and "traceId" in resp.partial_success.error_message
    # OTLP/JSON: the same answer as JSON; the rejected span is recorded as a problem of the import.
    status, headers, body = _post(service.port, orjson.dumps(doc), ctype="application/json")
    assert status == 200 and headers["content-type"] == "application/json"
    assert orjson.loads(body)["partialSuccess"]["rejectedSpans"] == "1"
    assert {r["span_id"] for r in _spans(service.receiver.db_path)} == {f"{1:016x}", f"{2:016x}"}
    with open_db(service.receiver.db_path, read_only=True) as db:
        kinds = [r[0] for r in db.cursor().execute("SELECT kind FROM problems").fetchall()]
    assert kinds == ["missing-id", "missing-id"]


def test_full_success_is_an_empty_response(service):
    status, _, body = _post(service.port, _json_request([_span(7)]), ctype="application/json")
    assert status == 200 and orjson.loads(body) == {}


@pytest.mark.parametrize("body,ctype,headers,expected", [
    (b"\x0a\xff\xff\xff", "application/x-protobuf", {}, 400),
    (b"{not json", "application/json", {}, 400),
    (b'{"some": "thing"}', "application/json", {}, 400),
    (b"not gzip at all", "application/x-protobuf", {"Content-Encoding": "gzip"}, 400),
    (b"hello", "text/plain", {}, 415),
    (b"x", "application/x-protobuf", {"Content-Encoding": "br"}, 415),
])
def test_bad_bodies(service, body, ctype, headers, expected):
    status, resp_headers, resp = _post(service.port, body, ctype=ctype, headers=headers)
    assert status == expected
    if ctype == "application/json":
        assert orjson.loads(resp)["message"]
    assert service.receiver.stats.spans_accepted == 0


def test_body_limits(tmp_path):
    svc = ReceiveService(tmp_path / "i.duckdb", port=0, max_body=64 * 1024)
    svc.start()
    try:
        status, headers, _ = _post(svc.port, b"\0" * (65 * 1024))
        assert status == 413 and headers.get("connection") == "close"
        bomb = gzip.compress(_json_request([_span(i) for i in range(2000)]))  # small compressed, big inflated
        assert len(bomb) < 64 * 1024
        status, _, _ = _post(svc.port, bomb, ctype="application/json", headers={"Content-Encoding": "gzip"})
        assert status == 413
    finally:
        svc.stop()


def test_wrong_path_and_method(service):
    assert _post(service.port, b"", path="/v1/metrics")[0] == 404
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
    conn.request("GET", "/v1/traces")
    assert conn.getresponse().status == 405


def test_token_required_off_loopback_and_checked(tmp_path, monkeypatch):
    from oncall.errors import InputError

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0")
    with pytest.raises(InputError, match="token"):
        ReceiveService(tmp_path / "i.duckdb", host="0.0.0.0", port=0)
    svc = ReceiveService(tmp_path / "i.duckdb", port=0, token="s3cret-token")
    svc.start()
    try:
        assert _post(svc.port, _json_request([_span(1)]), ctype="application/json")[0] == 401
        assert _post(svc.port, _json_request([_span(1)]), ctype="application/json",
                     headers={"Authorization": "Bearer wrong"})[0] == 401
        assert _post(svc.port, _json_request([_span(1)]), ctype="application/json",
                     headers={"Authorization": "Bearer s3cret-token"})[0] == 200
    finally:
        svc.stop()


def test_backpressure_429_with_retry_after_and_bounded_backlog(tmp_path, monkeypatch):
    """While a part is being written, a full backlog answers 429 + Retry-After; nothing is lost."""
    import oncall.live.receiver as receiver_mod

    gate = threading.Event()
    real = receiver_mod.write_part

    def slow_write(*args: Any, **kwargs: Any) -> Any:
        gate.wait(20)
        return real(*args, **kwargs)

    monkeypatch.setattr(receiver_mod, "write_part", slow_write)
    svc = ReceiveService(tmp_path / "i.duckdb", port=0, flush_every=0.05, max_backlog_spans=10)
    svc.start()
    results: list[int] = []
    try:
        first = threading.Thread(target=lambda: results.append(
            _post(svc.port, _json_request([_span(i) for i in range(1, 9)]), ctype="application/json")[0]))
        first.start()
        assert wait_for(lambda: svc.receiver._writing_spans == 8, 5)
        status, headers, _ = _post(svc.port, _json_request([_span(i) for i in range(20, 25)]), ctype="application/json")
        assert status == 429 and int(headers["retry-after"]) >= 1
        gate.set()
        first.join(20)
        assert results == [200]
        assert _post(svc.port, _json_request([_span(i) for i in range(20, 25)]), ctype="application/json")[0] == 200
    finally:
        gate.set()
        svc.stop()
    assert len(_spans(tmp_path / "i.duckdb")) == 13


def test_write_failure_answers_503_and_keeps_going(tmp_path, monkeypatch):
    import oncall.live.receiver as receiver_mod

    real = receiver_mod.write_part
    calls_made = []

    def failing_once(*args: Any, **kwargs: Any) -> Any:
        calls_made.append(1)
        if len(calls_made) == 1:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(receiver_mod, "write_part", failing_once)
    svc = ReceiveService(tmp_path / "i.duckdb", port=0, flush_every=0.05)
    svc.start()
    try:
        status, headers, _ = _post(svc.port, _json_request([_span(1)]), ctype="application/json")
        assert status == 503 and "retry-after" in headers
        assert _post(svc.port, _json_request([_span(1)]), ctype="application/json")[0] == 200  # the retry
    finally:
        svc.stop()
    assert len(_spans(tmp_path / "i.duckdb")) == 1


def test_a_lone_request_is_written_once_the_traffic_is_quiet(tmp_path):
    """flush_every is the longest a span waits: a sender waiting for its answer, with nothing else
    arriving, is answered after the linger (0.1 s), not after flush_every; requests sent together
    still share one part."""
    svc = ReceiveService(tmp_path / "i.duckdb", port=0, flush_every=30)
    svc.start()
    try:
        started = time.monotonic()
        assert _post(svc.port, _json_request([_span(1)]), ctype="application/json")[0] == 200
        assert time.monotonic() - started < 10
        results: list[int] = []
        senders = [threading.Thread(target=lambda i=i: results.append(
            _post(svc.port, _json_request([_span(i)]), ctype="application/json")[0])) for i in range(2, 6)]
        for t in senders:
            t.start()
        for t in senders:
            t.join(20)
        assert results == [200] * 4
        assert svc.receiver.stats.parts <= 3  # one for the first request; the four together in one or two
    finally:
        svc.stop()
    assert len(_spans(tmp_path / "i.duckdb")) == 5


def test_retried_spans_are_not_doubled(service):
    body = _json_request([_span(i) for i in range(1, 4)])
    for _ in range(3):
        assert _post(service.port, body, ctype="application/json")[0] == 200
    assert len(_spans(service.receiver.db_path)) == 3
    assert service.receiver.stats.duplicates == 6


def test_stop_drains_what_was_accepted(tmp_path):
    svc = ReceiveService(tmp_path / "i.duckdb", port=0, flush_every=30, linger=None)  # nothing flushes on its own
    svc.start()
    results: list[int] = []
    t = threading.Thread(target=lambda: results.append(
        _post(svc.port, _json_request([_span(5)]), ctype="application/json")[0]))
    t.start()
    assert wait_for(lambda: svc.receiver._queued_spans == 1, 5)
    svc.stop()
    t.join(10)
    assert results == [200]
    assert len(_spans(tmp_path / "i.duckdb")) == 1


# -- the command: Ctrl-C, kill -9 ---------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_cli(db: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "oncall", "--db", str(db), "receive", "--port", str(port),
                             "--flush-every", "0.2", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert wait_for(lambda: _listening(port) or proc.poll() is not None, 30)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    return proc


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def test_cli_ctrl_c_drains_and_reports(tmp_path):
    port = _free_port()
    proc = _start_cli(tmp_path / "i.duckdb", port, "--json")
    assert _post(port, _json_request([_span(i) for i in range(1, 11)]), ctype="application/json")[0] == 200
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["spans_accepted"] == 10 and summary["spans_written"] == 10 and summary["parts"] == 1
    assert len(_spans(tmp_path / "i.duckdb")) == 10


def test_cli_refuses_public_bind_without_token(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "oncall", "--db", str(tmp_path / "i.duckdb"), "receive",
                           "--host", "0.0.0.0", "--port", "0"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2 and "--token-env" in proc.stderr


def test_kill_9_loses_only_unacknowledged_spans(tmp_path):
    """Senders keep posting unique spans; the receiver is killed with SIGKILL mid-stream and restarted.
    Every span answered 200 before the kill is in the incident; the senders' retries of the rest land
    once each."""
    db = tmp_path / "i.duckdb"
    port = _free_port()
    proc = _start_cli(db, port)
    acked: set[int] = set()
    unacked: list[int] = []
    stop = threading.Event()
    lock = threading.Lock()

    def sender(base: int) -> None:
        i = base
        while not stop.is_set():
            ids = list(range(i, i + 50))
            i += 50
            try:
                ok = _post(port, _json_request([_span(k) for k in ids]), ctype="application/json")[0] == 200
            except OSError:
                ok = False
            with lock:
                (acked.update if ok else unacked.extend)(ids)
            if not ok:
                time.sleep(0.05)

    threads = [threading.Thread(target=sender, args=(1 + n * 10_000_000,)) for n in range(3)]
    for t in threads:
        t.start()
    assert wait_for(lambda: len(acked) >= 600, 60)
    proc.kill()  # SIGKILL: no drain
    proc.wait(10)
    stop.set()
    for t in threads:
        t.join(30)
    before = len(acked)
    proc = _start_cli(db, port)
    try:
        # the exporters' retries of everything not acknowledged, plus a repeat of some acknowledged ones
        retry = unacked + sorted(acked)[:100]
        for k in range(0, len(retry), 200):
            assert _post(port, _json_request([_span(x) for x in retry[k:k + 200]]), ctype="application/json")[0] == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    ids = [int(r["span_id"], 16) for r in _spans(db)]
    assert len(ids) == len(set(ids)), "a span was written twice"
    assert acked <= set(ids) and before >= 600
    assert set(ids) == acked | set(unacked)
