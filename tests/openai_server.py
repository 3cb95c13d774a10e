"""A real OpenAI-compatible HTTP server for tests: stdlib http.server in a thread on 127.0.0.1.

`POST /v1/chat/completions` answers like the OpenAI API does, as JSON or as SSE when the request
says `stream: true` (with a final usage chunk when `stream_options.include_usage` is set):
- a request for a model in SERVED_MODELS is answered with the dated snapshot name
  (`gpt-4o-mini` -> `gpt-4o-mini-2024-07-18`), as the real API does;
- a request that offers `tools` and whose last message is not a tool result gets a tool call;
- errors are injected with `fail_next(...)` or by the client's `X-Test-Fail: 429|quota|500|503|401|404`
  header (429 with Retry-After, quota, 5xx, 401 invalid key, 404 model not found), using OpenAI's error
  body format; `drop_next()` cuts the connection (mid-stream after some chunks, or before any answer);
  `slow_next(seconds)` delays chosen answers, `hold_after(n)` holds the requests after the next n
  until `release()`, `pass_next()` lets requests through so faults can be
  scripted for later requests (each request takes the next entry of one queue when it arrives); `known_models_only` answers 404 model_not_found for models
  not in `served_models`, as the real API does;
- `latency` delays every answer, `chunk_delay` every SSE chunk;
- answers are deterministic (`mode="fixed"`: the same input always gets the same output) or vary
  (`mode="varying"`: the same input gets one of several phrasings, like sampling noise); `answerer`
  (a function of the request body returning text, an assistant message dict, or None for the default)
  makes the server answer like a particular model would.
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
# mode="varying": how one input may come back (sampling noise at temperature 0 looks like this).
VARIANTS = ["", " Hope that helps.", " Let me know if you need more.", " (Answered briefly.)"]


def rate_limit_body(model: str) -> dict[str, Any]:
    return {"error": {
        "message": f"Rate limit reached for {model} in organization org-test on requests per min (RPM): "
                   "Limit 3, Used 3, Requested 1. Please try again in 20s.",
        "type": "requests", "param": None, "code": "rate_limit_exceeded"}}


def quota_body() -> dict[str, Any]:
    return {"error": {
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}}


def auth_body() -> dict[str, Any]:
    return {"error": {
        "message": "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
        "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}


def model_not_found_body(model: str) -> dict[str, Any]:
    return {"error": {
        "message": f"The model `{model}` does not exist or you do not have access to it.",
        "type": "invalid_request_error", "param": None, "code": "model_not_found"}}


def overloaded_body() -> dict[str, Any]:
    return {"error": {"message": "The engine is currently overloaded, please try again later.",
                      "type": "server_error", "param": None, "code": None}}


def server_error_body() -> dict[str, Any]:
    return {"error": {
        "message": "The server had an error while processing your request. Sorry about that!",
        "type": "server_error", "param": None, "code": None}}


@dataclass
class Failure:
    """One injected error response."""

    status: int  # 0: drop the connection instead of answering; 200: answer normally (a scripted pass)
    body: dict[str, Any] | None = None  # None: the standard body for the status
    retry_after: float | None = None
    drop_after_chunks: int = 0  # status 0 on a stream: chunks sent before the cut
    delay: float = 0.0  # seconds added to this answer (slow_next)
    raw: bytes | None = None  # status 200 with this body as it is (answer_raw_next): not a completion
    content_type: str = "application/json"


@dataclass
class Exchange:
    """One request the server answered, and exactly what it answered."""

    path: str
    request: dict[str, Any]
    status: int
    response: dict[str, Any] | None = None  # JSON body, or the stream assembled into one completion
    stream_chunks: list[dict[str, Any]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    dropped: bool = False  # the connection was cut before the answer was complete
    at: float = field(default_factory=time.monotonic)  # when the request arrived (time.monotonic)
    authorization: str | None = None  # the Authorization header the client sent


EMBEDDING_DIMS = 64


def embed(model: str, text: str) -> list[float]:
    """A deterministic stand-in for an embedding model: hashed bag of words, unit length. Two models
    hash words differently (as two real models' spaces differ), so a query embedded by one model
    and documents embedded by another score near zero, as an index rebuilt with another model does."""
    import hashlib
    import math
    import re

    v = [0.0] * EMBEDDING_DIMS
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        h = hashlib.sha256(f"{model}:{word}".encode()).digest()
        v[h[0] % EMBEDDING_DIMS] += 1.0 if h[1] % 2 else -1.0
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]


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
                 served_models: dict[str, str] | None = None, mode: str = "fixed",
                 answerer: Any = None, known_models_only: bool = False, keep_exchanges: bool = True,
                 echo_key_on_401: bool = False, name: str | None = None) -> None:
        self.name = name
        if mode not in ("fixed", "varying"):
            raise ValueError("mode is 'fixed' or 'varying'")
        self.latency = latency
        self.chunk_delay = chunk_delay
        self.served_models = dict(SERVED_MODELS if served_models is None else served_models)
        self.mode = mode
        self.answerer = answerer
        self.known_models_only = known_models_only
        self.keep_exchanges = keep_exchanges  # benchmarks: count, do not keep
        self.echo_key_on_401 = echo_key_on_401  # a careless gateway that puts the key in its error message
        self.exchanges: list[Exchange] = []
        self.requests_received = 0
        self._failures: deque[Failure] = deque()
        self._answers = itertools.count()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._hold_from: int | None = None  # requests numbered from here wait for release()
        self._released = threading.Event()
        self.held = 0  # requests waiting now

    # -- control -------------------------------------------------------------------------------
    def start(self) -> OpenAIServer:
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
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

    def drop_next(self, *, times: int = 1, after_chunks: int = 2) -> None:
        """The next `times` requests lose their connection: a stream after `after_chunks` chunks, a
        plain request before any response byte."""
        with self._lock:
            for _ in range(times):
                self._failures.append(Failure(0, drop_after_chunks=after_chunks))

    def slow_next(self, seconds: float, *, times: int = 1) -> None:
        """The next `times` requests are answered `seconds` late (a read timeout, a slow model)."""
        with self._lock:
            for _ in range(times):
                self._failures.append(Failure(200, delay=seconds))

    def answer_raw_next(self, body: bytes, *, content_type: str = "application/json", times: int = 1) -> None:
        """The next `times` requests get 200 with `body` as it is: an HTML error page from a proxy, JSON
        that is not a chat completion, a body cut short."""
        with self._lock:
            for _ in range(times):
                self._failures.append(Failure(200, raw=body, content_type=content_type))

    def pass_next(self, *, times: int = 1) -> None:
        """The next `times` requests are answered normally (to place faults later in a script)."""
        with self._lock:
            for _ in range(times):
                self._failures.append(Failure(200))

    def hold_after(self, n: int) -> None:
        """Answer the next `n` requests; hold every later one (no response byte) until release(), so a
        test can act on a client at a known point: exactly these answered, exactly `held` in flight."""
        with self._lock:
            self._hold_from = self.requests_received + n + 1
            self._released.clear()

    def release(self) -> None:
        """Answer the held requests (and every later one) normally."""
        with self._lock:
            self._hold_from = None
            self._released.set()

    def completions(self) -> list[Exchange]:
        """Successful chat completion exchanges, in the order they were answered."""
        return [e for e in self.exchanges if e.status == 200 and not e.path.rstrip("/").endswith("/embeddings")]

    # -- answering -----------------------------------------------------------------------------
    def _take_failure(self) -> Failure | None:
        with self._lock:
            return self._failures.popleft() if self._failures else None

    def _record(self, ex: Exchange, handler: Any = None) -> None:
        if handler is not None:
            ex.at = getattr(handler, "_arrived", ex.at)
            ex.authorization = handler.headers.get("Authorization")
        with self._lock:
            if self.keep_exchanges:
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
        custom = self.answerer(req) if self.answerer is not None else None
        if custom is not None:
            message = ({"role": "assistant", "content": custom, "refusal": None} if isinstance(custom, str)
                       else {"role": "assistant", "content": None, "refusal": None, **custom})
            finish = "tool_calls" if message.get("tool_calls") else "stop"
            completion_tokens = count_tokens(message.get("content") or "") + (
                sum(count_tokens(c["function"]["arguments"]) + 5 for c in message.get("tool_calls") or []))
        elif tools and last.get("role") != "tool":
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
            if self.mode == "varying":
                n = next(self._answers)
                text += VARIANTS[n % len(VARIANTS)]
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


class _QuietServer(ThreadingHTTPServer):
    """A client that goes away (killed, timed out, cancelled) is normal here, not a traceback.
    The listen backlog fits a replay's burst of new connections (socketserver's default is 5)."""

    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


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
    if want == "drop":
        return Failure(0, drop_after_chunks=2)
    return Failure(int(want), None, retry_after)


class _Handler(BaseHTTPRequestHandler):
    owner: OpenAIServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, the body waits for the client's
    # delayed ACK (~40 ms on Linux) on every keep-alive answer, which a real server does not add.
    disable_nagle_algorithm = True

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
        if self.path.rstrip("/") == "/v1/embeddings":
            self._embeddings(raw)
            return
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
        with owner._lock:
            owner.requests_received += 1
            hold = owner._hold_from is not None and owner.requests_received >= owner._hold_from
            owner.held += hold
        if hold:
            owner._released.wait()
            with owner._lock:
                owner.held -= 1
        self._arrived = time.monotonic()
        # A request's fate is decided when it arrives, so a slow answer cannot take a later request's fault.
        failure = owner._take_failure() or _header_failure(self.headers)
        delay = owner.latency + (failure.delay if failure is not None else 0.0)
        if failure is not None and failure.raw is not None:
            if delay:
                time.sleep(delay)
            owner._record(Exchange(self.path, req, 200, None), self)
            self.send_response(200)
            self.send_header("Content-Type", failure.content_type)
            self.send_header("Content-Length", str(len(failure.raw)))
            self.end_headers()
            self.wfile.write(failure.raw)
            return
        if failure is not None and failure.status == 200:
            failure = None
        if delay:
            time.sleep(delay)
        model = req.get("model") or ""
        if failure is None and owner.known_models_only and model not in owner.served_models:
            failure = Failure(404, model_not_found_body(model))
        if failure is not None and failure.status == 0 and not req.get("stream"):
            owner._record(Exchange(self.path, req, 0, None, dropped=True), self)
            self.close_connection = True
            self.connection.shutdown(2)  # no response byte: the client sees the connection drop
            return
        if failure is not None and failure.status != 0:
            self._fail(req, failure)
            return
        full = owner.answer(req)
        if not req.get("stream"):
            owner._record(Exchange(self.path, req, 200, full), self)
            self._send_json(200, full)
            return
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        chunks = owner.stream_chunks(full, include_usage)
        if not include_usage:
            full = {k: v for k, v in full.items() if k != "usage"}
        if failure is not None:  # drop mid-stream: some chunks, then the connection is cut
            chunks = chunks[:failure.drop_after_chunks]
        owner._record(Exchange(self.path, req, 200, full, stream_chunks=chunks, dropped=failure is not None), self)
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
        if failure is not None:
            self.connection.shutdown(2)
            return
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _embeddings(self, raw: bytes) -> None:
        """POST /v1/embeddings: `input` a string or a list of strings (token arrays are not used here)."""
        req = json.loads(raw)
        model = req.get("model") or "text-embedding-3-small"
        texts = req.get("input")
        texts = [texts] if isinstance(texts, str) else list(texts or [])
        data = [{"object": "embedding", "index": i, "embedding": embed(model, str(t))} for i, t in enumerate(texts)]
        tokens = sum(count_tokens(str(t)) for t in texts)
        body = {"object": "list", "data": data, "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        self.owner._record(Exchange(self.path, req, 200, body), self)
        self._send_json(200, body)

    def _fail(self, req: dict[str, Any], failure: Failure) -> None:
        model = req.get("model") or "gpt-4o-mini"
        body = failure.body
        if body is None:
            body = {429: rate_limit_body(model), 401: auth_body(), 404: model_not_found_body(model),
                    503: overloaded_body()}.get(failure.status) or server_error_body()
        if failure.status == 401 and self.owner.echo_key_on_401:
            key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            body = {"error": {**body["error"], "message": f"Incorrect API key provided: {key}."}}
        headers = {}
        if failure.retry_after is not None:
            headers["Retry-After"] = f"{failure.retry_after:g}"
            headers["retry-after-ms"] = str(int(failure.retry_after * 1000))
        self.owner._record(Exchange(self.path, req, failure.status, body, headers=headers), self)
        self._send_json(failure.status, body, headers)
