"""A real OpenAI-compatible HTTP server for tests: stdlib http.server in a thread on 127.0.0.1.

`POST /v1/chat/completions` answers like the OpenAI API does, as JSON or as SSE when the request
says `stream: true` (with a final usage chunk when `stream_options.include_usage` is set):
- a request for a model in SERVED_MODELS is answered with the dated snapshot name
  (`gpt-4o-mini` -> `gpt-4o-mini-2024-07-18`), as the real API does;
- a request that offers `tools` and whose last message is not a tool result gets a tool call;
- errors are injected with `fail_next(...)` or by the client's `X-Test-Fail: 429|quota|500` header
  (429 with Retry-After, quota, 500), using OpenAI's error body format;
- `latency` delays every answer, `chunk_delay` every SSE chunk;
- `name` makes a server tell itself apart (two upstreams behind one gateway): its answers start
  with `[name] ` and carry an `x-upstream: name` header.

Every exchange is kept in `server.exchanges` (request body, status, response body or the
assembled stream), so tests assert imported traces against what the server really returned.

    with OpenAIServer(latency=0.01) as srv:
        client = OpenAI(base_url=srv.base_url, api_key="test")
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SERVED_MODELS = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
}
CREATED = 1_767_225_600  # fixed so runs are comparable


def rate_limit_body(model: str) -> dict[str, Any]:
    return {"error": {
        "message": f"Rate limit reached for {model} in organization org-test on requests per min (RPM): "
                   "Limit 3, Used 3, Requested 1. Please try again in 20s.",
        "type": "requests", "param": None, "code": "rate_limit_exceeded"}}


def quota_body() -> dict[str, Any]:
    return {"error": {
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}}


def server_error_body() -> dict[str, Any]:
    return {"error": {
        "message": "The server had an error while processing your request. Sorry about that!",
        "type": "server_error", "param": None, "code": None}}


@dataclass
class Failure:
    """One injected error response."""

    status: int
    body: dict[str, Any] | None = None  # None: the standard body for the status
    retry_after: float | None = None


@dataclass
class Exchange:
    """One request the server answered, and exactly what it answered."""

    path: str
    request: dict[str, Any]
    status: int
    response: dict[str, Any] | None = None  # JSON body, or the stream assembled into one completion
    stream_chunks: list[dict[str, Any]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)


def count_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: whitespace-separated words."""
    return len(text.split())


def _message_text(msg: dict[str, Any]) -> str:
    content = msg.get("content")
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


class OpenAIServer:
    """An OpenAI-compatible chat completions server on 127.0.0.1:<free port>."""

    def __init__(self, *, latency: float = 0.0, chunk_delay: float = 0.0,
                 served_models: dict[str, str] | None = None, name: str | None = None) -> None:
        self.name = name
        self.latency = latency
        self.chunk_delay = chunk_delay
        self.served_models = dict(SERVED_MODELS if served_models is None else served_models)
        self.exchanges: list[Exchange] = []
        self._failures: deque[Failure] = deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control -------------------------------------------------------------------------------
    def start(self) -> OpenAIServer:
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="openai-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def fail_next(self, status: int, *, times: int = 1, body: dict[str, Any] | None = None,
                  retry_after: float | None = None) -> None:
        """The next `times` requests get this error instead of an answer."""
        with self._lock:
            for _ in range(times):
                self._failures.append(Failure(status, body, retry_after))

    def completions(self) -> list[Exchange]:
        """Successful chat completion exchanges, in the order they were answered."""
        return [e for e in self.exchanges if e.status == 200]

    # -- answering -----------------------------------------------------------------------------
    def _take_failure(self) -> Failure | None:
        with self._lock:
            return self._failures.popleft() if self._failures else None

    def _record(self, ex: Exchange) -> None:
        with self._lock:
            self.exchanges.append(ex)

    def next_id(self) -> str:
        with self._lock:
            n = next(self._ids)
        return f"chatcmpl-oncalltest{n:06d}"

    def answer(self, req: dict[str, Any]) -> dict[str, Any]:
        """The non-streaming completion for a request (what the real API would say, deterministically)."""
        requested = req.get("model") or "gpt-4o-mini"
        served = self.served_models.get(requested, requested)
        messages = req.get("messages") or []
        prompt_tokens = sum(count_tokens(_message_text(m)) + 3 for m in messages if isinstance(m, dict))
        last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
        tools = req.get("tools") or []
        if tools and last.get("role") != "tool":
            fn = tools[0].get("function", {})
            required = (fn.get("parameters") or {}).get("required") or []
            args = json.dumps({p: "Paris" for p in required})
            message: dict[str, Any] = {
                "role": "assistant", "content": None, "refusal": None,
                "tool_calls": [{"id": "call_oncall_" + served.replace("-", "")[-8:], "type": "function",
                                "function": {"name": fn.get("name", "tool"), "arguments": args}}],
            }
            finish = "tool_calls"
            completion_tokens = count_tokens(args) + 5
        else:
            if last.get("role") == "tool":
                text = f"The tool said: {_message_text(last)}"
            else:
                user = next((_message_text(m) for m in reversed(messages) if m.get("role") == "user"), "")
                text = f"Answer to: {user}"
            if self.name:
                text = f"[{self.name}] {text}"
            message = {"role": "assistant", "content": text, "refusal": None}
            finish = "stop"
            completion_tokens = count_tokens(text)
        return {
            "id": self.next_id(), "object": "chat.completion", "created": CREATED, "model": served,
            "system_fingerprint": "fp_oncalltest",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens,
                      "prompt_tokens_details": {"cached_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 0}},
        }

    def stream_chunks(self, full: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
        """Split a completion into the chat.completion.chunk events the real API streams."""
        base = {"id": full["id"], "object": "chat.completion.chunk", "created": full["created"],
                "model": full["model"], "system_fingerprint": full["system_fingerprint"]}
        choice = full["choices"][0]
        msg = choice["message"]
        chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                        "logprobs": None, "finish_reason": None}]}]
        if msg.get("tool_calls"):
            for i, tc in enumerate(msg["tool_calls"]):
                args = tc["function"]["arguments"]
                head = {"index": i, "id": tc["id"], "type": "function",
                        "function": {"name": tc["function"]["name"], "arguments": ""}}
                chunks.append({**base, "choices": [{"index": 0, "delta": {"tool_calls": [head]},
                                                    "logprobs": None, "finish_reason": None}]})
                for piece in (args[: len(args) // 2], args[len(args) // 2:]):
                    delta = {"tool_calls": [{"index": i, "function": {"arguments": piece}}]}
                    chunks.append({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                        "finish_reason": None}]})
        else:
            words = msg["content"].split(" ")
            for i, w in enumerate(words):
                piece = w if i == 0 else " " + w
                chunks.append({**base, "choices": [{"index": 0, "delta": {"content": piece}, "logprobs": None,
                                                    "finish_reason": None}]})
        chunks.append({**base, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                            "finish_reason": choice["finish_reason"]}]})
        if include_usage:
            for c in chunks:
                c["usage"] = None
            chunks.append({**base, "choices": [], "usage": full["usage"]})
        return chunks


def _header_failure(headers: Any) -> Failure | None:
    """A client may ask for an error itself (`X-Test-Fail: 429|quota|500`, `X-Test-Retry-After: s`),
    so a subprocess driving the server decides which of its calls fail, deterministically."""
    want = (headers.get("X-Test-Fail") or "").strip().lower()
    if not want:
        return None
    retry = headers.get("X-Test-Retry-After")
    retry_after = float(retry) if retry else None
    if want == "quota":
        return Failure(429, quota_body(), retry_after)
    return Failure(int(want), None, retry_after)


class _Handler(BaseHTTPRequestHandler):
    owner: OpenAIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        return

    def _send_json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", f"req_oncalltest_{status}")
        if self.owner.name:
            self.send_header("x-upstream", self.owner.name)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            models = [{"id": m, "object": "model", "created": CREATED, "owned_by": "oncall-test"}
                      for m in self.owner.served_models]
            self._send_json(200, {"object": "list", "data": models})
        else:
            self._send_json(404, {"error": {"message": f"Unknown path {self.path}", "type": "invalid_request_error",
                                            "param": None, "code": "unknown_url"}})

    def do_POST(self) -> None:
        owner = self.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.rstrip("/") != "/v1/chat/completions":
            body = {"error": {"message": f"Unknown path {self.path}", "type": "invalid_request_error",
                              "param": None, "code": "unknown_url"}}
            owner._record(Exchange(self.path, {}, 404, body))
            self._send_json(404, body)
            return
        try:
            req = json.loads(raw)
            if not isinstance(req, dict):
                raise ValueError("body is not a JSON object")
        except ValueError as exc:
            body = {"error": {"message": f"We could not parse the JSON body of your request: {exc}",
                              "type": "invalid_request_error", "param": None, "code": None}}
            owner._record(Exchange(self.path, {}, 400, body))
            self._send_json(400, body)
            return
        if owner.latency:
            time.sleep(owner.latency)
        failure = owner._take_failure() or _header_failure(self.headers)
        if failure is not None:
            self._fail(req, failure)
            return
        full = owner.answer(req)
        if not req.get("stream"):
            owner._record(Exchange(self.path, req, 200, full))
            self._send_json(200, full)
            return
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        chunks = owner.stream_chunks(full, include_usage)
        if not include_usage:
            full = {k: v for k, v in full.items() if k != "usage"}
        owner._record(Exchange(self.path, req, 200, full, stream_chunks=chunks))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")  # no Content-Length: the end of the body is the close
        self.end_headers()
        self.close_connection = True
        for c in chunks:
            self.wfile.write(b"data: " + json.dumps(c).encode() + b"\n\n")
            self.wfile.flush()
            if owner.chunk_delay:
                time.sleep(owner.chunk_delay)
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _fail(self, req: dict[str, Any], failure: Failure) -> None:
        model = req.get("model") or "gpt-4o-mini"
        body = failure.body
        if body is None:
            body = rate_limit_body(model) if failure.status == 429 else server_error_body()
        headers = {}
        if failure.retry_after is not None:
            headers["Retry-After"] = f"{failure.retry_after:g}"
            headers["retry-after-ms"] = str(int(failure.retry_after * 1000))
        self.owner._record(Exchange(self.path, req, failure.status, body, headers=headers))
        self._send_json(failure.status, body, headers)
