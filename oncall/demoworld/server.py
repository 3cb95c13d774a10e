"""The demo world's loopback server: OpenAI chat completions from the demo's generator, a LiteLLM
gateway probe answered from gateway.yaml, Langfuse's prompt API over prompts.json, and flagd's OFREP
evaluation over flags.json.

    POST /v1/chat/completions                 the demo's models (oncall/demoworld/responder.py)
    POST /gateway/v1/chat/completions         as the LiteLLM proxy would with gateway.yaml (--reload):
                                              the alias resolved, x-litellm-model-* headers
    GET  /langfuse/api/public/v2/prompts[/NAME]   PATCH …/prompts/NAME/versions/N  {"newLabels": […]}
    POST /ofrep/v1/evaluate/flags/KEY         flagd's evaluation of flags.json
    GET  /health                              {"world": id}: which demo this server belongs to

Binds 127.0.0.1 on a free port. `DemoServer.announce()` writes serve.json beside the incident so
other processes find it (`oncall demo serve`, the console); a command that finds no live server
starts one in its own process for as long as it runs (`ensure_url`).
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx2

from oncall.demoworld import responder
from oncall.demoworld.world import REPLAY_TARGETS, World
from oncall.fileio import write_atomic

HOST = "127.0.0.1"


class DemoServer:
    """One world's server, on a thread: start(), stop(); announce() to be found by other processes."""

    def __init__(self, world: World, port: int = 0, latency_scale: float | None = None) -> None:
        self.world = world
        # Answers take as long as the generator's latency model says (times this; 0: at once).
        self.latency_scale = latency_from_env() if latency_scale is None else max(0.0, latency_scale)
        self._lock = threading.Lock()
        self._draws: dict[str, int] = {}
        self._httpd = ThreadingHTTPServer((HOST, port), _handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._announced = False

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._httpd.server_address[1]}"

    def start(self) -> DemoServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="oncall-demo-world", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (idempotent), and take serve.json away if this server wrote it."""
        if self._announced:
            self._announced = False
            try:
                if json.loads(self.world.serve_file.read_text(encoding="utf-8")).get("url") == self.url:
                    self.world.serve_file.unlink()
            except (OSError, ValueError):
                pass
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def announce(self) -> Path:
        """Write where this server listens beside the incident (serve.json)."""
        info = {"url": self.url, "pid": os.getpid(), "world": self.world.id,
                "targets": {n: self.url + "/v1" for n in REPLAY_TARGETS}, "started": time.time()}
        write_atomic(self.world.serve_file, json.dumps(info, indent=2) + "\n", "writing the demo server's address")
        self._announced = True
        return self.world.serve_file

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the model --------------------------------------------------------------------------------
    def next_draw(self, key: str) -> int:
        with self._lock:
            k = self._draws.get(key, 0)
            self._draws[key] = k + 1
            return k

    def chat(self, body: dict[str, Any], model: str | None = None) -> responder.Reply:
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise _Bad(400, "messages must be a list of message objects")
        asked = model or body.get("model")
        if not isinstance(asked, str) or not asked:
            raise _Bad(400, "model is required")
        cap = body.get("max_completion_tokens") or body.get("max_tokens")
        served = responder.served_model(asked)
        draw = self.next_draw(responder.input_key(served, messages))
        reply = responder.answer(self.world.seed, asked, messages, draw, int(cap) if isinstance(cap, int) else None)
        if self.latency_scale:
            time.sleep(min(reply.latency_s * self.latency_scale, 30.0))  # on this request's own thread
        return reply

    # -- the gateway ------------------------------------------------------------------------------
    def gateway_route(self, alias: str) -> tuple[str, dict[str, Any]]:
        """(model group, deployment) the proxy would send `alias` to, read from gateway.yaml now."""
        from oncall.actions.adapters import litellm_yaml as ly

        text = self.world.gateway.read_text(encoding="utf-8")
        doc, _ = ly.load(text, str(self.world.gateway))
        group = ly.resolve(doc, alias)
        deps = ly.deployments(doc, group)
        if not deps:
            raise _Bad(400, f"Invalid model name passed in model={alias}. Call `/v1/models` to view available "
                       f"models for your key (model names: {', '.join(ly.model_names(doc))})")
        return group, deps[self.next_draw("gateway:" + group) % len(deps)]

    # -- the prompt registry ----------------------------------------------------------------------
    @contextmanager
    def registry(self, write: bool = False) -> Iterator[dict[str, Any]]:
        """prompts.json, locked (the server is its only writer; a lock keeps two servers in step)."""
        lock_path = self.world.prompts.with_name(self.world.prompts.name + ".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
            doc = json.loads(self.world.prompts.read_text(encoding="utf-8"))
            yield doc
            if write:
                write_atomic(self.world.prompts, json.dumps(doc, indent=2) + "\n", "writing the demo's prompts")


def latency_from_env() -> float:
    """$ONCALL_DEMO_LATENCY: how much of the snapshots' latency the server imitates (default 1: all of
    it; 0: answer at once, for scripts and tests)."""
    raw = os.environ.get("ONCALL_DEMO_LATENCY", "1")
    try:
        return max(0.0, float(raw))
    except ValueError:
        return 1.0


class _Bad(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _completion(reply: responder.Reply) -> dict[str, Any]:
    return {"id": "chatcmpl-demo" + secrets.token_hex(10), "object": "chat.completion", "created": int(time.time()),
            "model": reply.model, "system_fingerprint": "fp_demo",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.content, "refusal": None},
                         "finish_reason": reply.finish_reason, "logprobs": None}],
            "usage": {"prompt_tokens": reply.input_tokens, "completion_tokens": reply.output_tokens,
                      "total_tokens": reply.input_tokens + reply.output_tokens}}


def _chunks(reply: responder.Reply, usage: bool) -> Iterator[dict[str, Any]]:
    base = {"id": "chatcmpl-demo" + secrets.token_hex(10), "object": "chat.completion.chunk",
            "created": int(time.time()), "model": reply.model, "system_fingerprint": "fp_demo"}
    yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    for i in range(0, len(reply.content), 64):
        yield {**base, "choices": [{"index": 0, "delta": {"content": reply.content[i:i + 64]}, "finish_reason": None}]}
    yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}]}
    if usage:
        yield {**base, "choices": [], "usage": _completion(reply)["usage"]}


def _prompt_view(name: str, v: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, **v}


def _handler(server: DemoServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet: the console owns the terminal
            pass

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any]:
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                raise _Bad(400, "the request body is not JSON") from None
            if not isinstance(body, dict):
                raise _Bad(400, "the request body must be a JSON object")
            return body

        def _dispatch(self, method: str) -> None:
            url = urlsplit(self.path)
            path, query = url.path.rstrip("/"), {k: v[-1] for k, v in parse_qs(url.query).items()}
            try:
                if method == "GET" and path == "/health":
                    self._send(200, {"service": "oncall demo world", "world": server.world.id})
                elif method == "GET" and path in ("/v1/models", "/models"):
                    self._send(200, {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "oncall-demo"}
                                                                for m, _ in REPLAY_TARGETS.values()]})
                elif method == "POST" and path in ("/v1/chat/completions", "/chat/completions"):
                    self._chat(self._body(), None)
                elif method == "POST" and path in ("/gateway/v1/chat/completions", "/gateway/chat/completions"):
                    self._gateway(self._body())
                elif path.startswith("/langfuse/api/public/v2/prompts"):
                    self._langfuse(method, path[len("/langfuse/api/public/v2/prompts"):], query)
                elif method == "POST" and path.startswith("/ofrep/v1/evaluate/flags/"):
                    self._flag(unquote(path.rsplit("/", 1)[1]))
                else:
                    raise _Bad(404, f"no route {method} {url.path} on the demo server")
            except _Bad as exc:
                self._send(exc.status, {"error": {"message": str(exc), "type": "invalid_request_error"}})
            except Exception as exc:  # the server must answer, not hang the client; say what broke
                self._send(500, {"error": {"message": f"demo server: {type(exc).__name__}: {exc}",
                                           "type": "server_error"}})

        def _chat(self, body: dict[str, Any], model: str | None, headers: dict[str, str] | None = None) -> None:
            reply = server.chat(body, model)
            if not body.get("stream"):
                self._send(200, _completion(reply), headers)
                return
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            data = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in _chunks(reply, usage))
            data += b"data: [DONE]\n\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _gateway(self, body: dict[str, Any]) -> None:
            alias = body.get("model")
            if not isinstance(alias, str) or not alias:
                raise _Bad(400, "model is required")
            group, dep = server.gateway_route(alias)
            headers = {"x-litellm-model-name": dep["model"], "x-litellm-model-group": group,
                       "x-litellm-model-id": f"demo-{group}"}
            if dep.get("api_base"):
                headers["x-litellm-model-api-base"] = str(dep["api_base"])
            self._chat(body, str(dep["model"]), headers)

        def _langfuse(self, method: str, rest: str, query: dict[str, str]) -> None:
            m = re.fullmatch(r"(?:/([^/]+))?(?:/versions/(\d+))?", rest)
            if not m:
                raise _Bad(404, f"no prompt route {rest}")
            name = unquote(m.group(1)) if m.group(1) else None
            if method == "GET" and name is None:
                with server.registry() as doc:
                    data = [{"name": n, "versions": [v["version"] for v in vs],
                             "labels": sorted({lb for v in vs for lb in v["labels"]}), "tags": []}
                            for n, vs in doc["prompts"].items() if query.get("name") in (None, n)]
                self._send(200, {"data": data, "meta": {"page": 1, "limit": 50, "totalItems": len(data),
                                                        "totalPages": 1}})
            elif method == "GET" and m.group(2) is None:
                with server.registry() as doc:
                    versions = doc["prompts"].get(name or "", [])
                    if "version" in query:
                        hit = [v for v in versions if str(v["version"]) == query["version"]]
                    else:
                        label = query.get("label", "production")
                        hit = [v for v in versions if label in v["labels"]]
                if not hit:
                    raise _Bad(404, f"prompt {name!r} not found with {query or 'label production'}")
                self._send(200, _prompt_view(name or "", hit[0]))
            elif method == "PATCH" and m.group(2) is not None:
                new_labels = self._body().get("newLabels")
                if not isinstance(new_labels, list) or not all(isinstance(x, str) for x in new_labels):
                    raise _Bad(400, "newLabels must be a list of strings")
                with server.registry(write=True) as doc:
                    versions = doc["prompts"].get(name or "", [])
                    hit = [v for v in versions if v["version"] == int(m.group(2))]
                    if not hit:
                        raise _Bad(404, f"prompt {name!r} has no version {m.group(2)}")
                    for v in versions:  # a label is on one version at a time, as in Langfuse
                        v["labels"] = [lb for lb in v["labels"] if lb not in new_labels]
                    hit[0]["labels"] = sorted({*hit[0]["labels"], *new_labels})
                    view = _prompt_view(name or "", hit[0])
                self._send(200, view)
            else:
                raise _Bad(405, f"{method} is not supported on the prompt API here")

        def _flag(self, key: str) -> None:
            doc = json.loads(server.world.flags.read_text(encoding="utf-8"))
            flag = (doc.get("flags") or {}).get(key)
            if not isinstance(flag, dict) or flag.get("state") == "DISABLED":
                self._send(404, {"key": key, "errorCode": "FLAG_NOT_FOUND", "errorDetails": f"no flag {key!r}"})
                return
            variant = flag.get("defaultVariant")
            self._send(200, {"key": key, "value": (flag.get("variants") or {}).get(variant), "variant": variant,
                             "reason": "STATIC", "metadata": {}})

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._dispatch("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._dispatch("POST")

        def do_PATCH(self) -> None:  # noqa: N802
            self._dispatch("PATCH")

    return Handler


# -- finding a server ---------------------------------------------------------------------------------
def live_url(world: World, timeout: float = 1.0) -> str | None:
    """The announced server of this world, if it answers as this world; None otherwise."""
    try:
        info = json.loads(world.serve_file.read_text(encoding="utf-8"))
        url = str(info["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not url.startswith(f"http://{HOST}:"):
        return None
    try:
        resp = httpx2.get(url + "/health", timeout=timeout)
        return url if resp.status_code == 200 and resp.json().get("world") == world.id else None
    except (httpx2.HTTPError, ValueError):
        return None


_OWN: dict[Path, DemoServer] = {}
_OWN_LOCK = threading.Lock()


def ensure_url(world: World) -> str:
    """A server for this world: the announced one when it is live, else one started in this process
    (stopped when the process exits)."""
    url = live_url(world)
    if url:
        return url
    with _OWN_LOCK:
        srv = _OWN.get(world.dir)
        if srv is None or srv.world.id != world.id:
            srv = _OWN[world.dir] = DemoServer(world).start()
        return srv.url


@atexit.register
def _stop_own() -> None:
    for srv in list(_OWN.values()):
        srv.stop()
    _OWN.clear()
