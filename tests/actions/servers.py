"""Loopback servers that implement the documented endpoints of control planes that cannot run here
(Langfuse needs ClickHouse; the LiteLLM admin API needs a Prisma database), plus a webhook receiver.
Every request is kept in `requests` exactly as received, so tests assert what the adapter sent.
"""

from __future__ import annotations

import base64
import json
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class Reply:
    status: int
    body: Any = None


class LoopbackServer:
    """Base: a ThreadingHTTPServer on 127.0.0.1:0; subclasses implement handle()."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._fail: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    def start(self) -> LoopbackServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                return

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                url = urlsplit(self.path)
                req = Received(self.command, unquote(url.path), {k: v[0] for k, v in parse_qs(url.query).items()},
                               {k.lower(): v for k, v in self.headers.items()}, body)
                with owner._lock:
                    owner.requests.append(req)
                    forced = owner._fail.popleft() if owner._fail else None
                reply = forced or owner.handle(req)
                data = json.dumps(reply.body).encode() if reply.body is not None else b""
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":  # a HEAD answer has headers only
                    self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = do_HEAD = _serve

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is not None:
            self._url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        return self._url

    def fail_next(self, status: int, body: Any = None, times: int = 1) -> None:
        with self._lock:
            for _ in range(times):
                self._fail.append(Reply(status, body if body is not None else {"error": "injected failure"}))

    def writes(self) -> list[Received]:
        return [r for r in self.requests if r.method not in ("GET", "HEAD")]

    def handle(self, req: Received) -> Reply:
        raise NotImplementedError


class LangfuseServer(LoopbackServer):
    """Langfuse's public prompt API (v2): get by label or version, list, and PATCH a version's labels.
    Labels are unique across versions, as in Langfuse: a label given to one version leaves the others."""

    def __init__(self, public_key: str, secret_key: str) -> None:
        super().__init__()
        self.auth = "Basic " + base64.b64encode(f"{public_key}:{secret_key}".encode()).decode()
        self.prompts: dict[str, dict[int, list[str]]] = {}

    def add_prompt(self, name: str, versions: dict[int, list[str]]) -> None:
        latest = max(versions)
        self.prompts[name] = {v: sorted({*labels, *(["latest"] if v == latest else [])})
                              for v, labels in versions.items()}

    def holder(self, name: str, label: str) -> int | None:
        return next((v for v, labels in self.prompts[name].items() if label in labels), None)

    def _prompt(self, name: str, version: int) -> dict[str, Any]:
        return {"name": name, "version": version, "type": "text", "prompt": f"You are {name} v{version}.",
                "config": {}, "labels": self.prompts[name][version], "tags": [], "commitMessage": None}

    def handle(self, req: Received) -> Reply:
        if req.headers.get("authorization") != self.auth:
            return Reply(401, {"message": "Invalid credentials"})
        parts = req.path.strip("/").split("/")
        if parts[:4] != ["api", "public", "v2", "prompts"]:
            return Reply(404, {"message": "not found"})
        if len(parts) == 4 and req.method == "GET":
            name = req.query.get("name")
            data = [{"name": n, "versions": sorted(vs), "labels": sorted({lb for ls in vs.values() for lb in ls}),
                     "tags": [], "type": "text", "lastConfig": {}}
                    for n, vs in self.prompts.items() if name in (None, n)]
            return Reply(200, {"data": data, "meta": {"page": 1, "limit": 50, "totalItems": len(data),
                                                      "totalPages": 1}})
        name = parts[4]
        if name not in self.prompts:
            return Reply(404, {"message": f"Prompt not found: '{name}'"})
        if len(parts) == 5 and req.method == "GET":
            if "version" in req.query:
                v = int(req.query["version"])
                return Reply(200, self._prompt(name, v)) if v in self.prompts[name] else \
                    Reply(404, {"message": "Prompt not found"})
            v = self.holder(name, req.query.get("label", "production"))
            return Reply(200, self._prompt(name, v)) if v is not None else Reply(404, {"message": "Prompt not found"})
        if len(parts) == 7 and parts[5] == "versions" and req.method == "PATCH":
            v = int(parts[6])
            new = [lb for lb in (req.body or {}).get("newLabels", []) if lb != "latest"]
            for other, labels in self.prompts[name].items():
                if other != v:
                    self.prompts[name][other] = [lb for lb in labels if lb not in new]
            self.prompts[name][v] = sorted({*self.prompts[name][v], *new})
            return Reply(200, self._prompt(name, v))
        return Reply(405, {"message": "method not allowed"})


class LiteLLMAdminServer(LoopbackServer):
    """The LiteLLM proxy's model and fallback management endpoints, in database mode."""

    def __init__(self, master_key: str, deployments: list[dict[str, Any]]) -> None:
        super().__init__()
        self.master_key = master_key
        self.deployments = deployments
        self.fallbacks: dict[str, list[str]] = {}
        self.no_db = False  # answer writes like a proxy without a database

    def handle(self, req: Received) -> Reply:
        if req.headers.get("authorization") != f"Bearer {self.master_key}":
            return Reply(401, {"error": {"message": "Authentication Error, invalid key", "code": "401"}})
        if self.no_db and req.method != "GET":
            return Reply(500, {"error": {"message": "{'error': \"No DB Connected. Here's how to do it - "
                                                    "https://docs.litellm.ai/docs/proxy/virtual_keys\"}",
                                         "type": "auth_error", "param": "None", "code": "500"}})
        if req.method == "GET" and req.path == "/v1/model/info":
            return Reply(200, {"data": [{"model_name": d["model_name"], "litellm_params": {"model": d["model"]},
                                         "model_info": {"id": d["id"], "db_model": True}} for d in self.deployments]})
        if req.method == "POST" and req.path == "/model/update":
            d = next((d for d in self.deployments if d["id"] == req.body["model_info"]["id"]), None)
            if d is None:
                return Reply(400, {"error": {"message": "model not found"}})
            d["model"] = req.body["litellm_params"]["model"]
            return Reply(200, {"model_id": d["id"], "model_name": d["model_name"]})
        if req.path.startswith("/fallback"):
            model = req.path.split("/", 2)[2] if req.path.count("/") > 1 else None
            if req.method == "GET":
                if model not in self.fallbacks:
                    return Reply(404, {"detail": {"error": f"No fallbacks configured for model '{model}'"}})
                return Reply(200, {"model": model, "fallback_models": self.fallbacks[model],
                                   "fallback_type": "general"})
            if req.method == "POST":
                self.fallbacks[req.body["model"]] = req.body["fallback_models"]
                return Reply(200, {"model": req.body["model"], "fallback_models": req.body["fallback_models"],
                                   "fallback_type": "general", "message": "Fallback configuration created"})
            if req.method == "DELETE":
                self.fallbacks.pop(model, None)
                return Reply(200, {"model": model, "fallback_type": "general", "message": "deleted"})
        return Reply(404, {"detail": "Not Found"})


class WebhookReceiver(LoopbackServer):
    def __init__(self, status: int = 200) -> None:
        super().__init__()
        self.status = status

    def handle(self, req: Received) -> Reply:
        return Reply(self.status, {"ok": self.status < 300})


class SearchAliasServer(LoopbackServer):
    """Elasticsearch/OpenSearch index aliases, as documented: `GET /_alias/{name}` (200
    `{index: {"aliases": {name: {}}}}`, 404 when no index has it), `HEAD /{index}` (200 or 404), and
    `POST /_aliases` with `remove`/`add` actions applied atomically (all checked first: a missing index
    or alias fails the whole request with 404 and changes nothing), answering `{"acknowledged": true}`.
    Requests need `Authorization: ApiKey <api_key>` when api_key is set."""

    def __init__(self, indexes: list[str], aliases: dict[str, set[str]], api_key: str | None = None) -> None:
        super().__init__()
        self.indexes = set(indexes)
        self.aliases = {k: set(v) for k, v in aliases.items()}  # alias -> indexes
        self.api_key = api_key

    def handle(self, req: Received) -> Reply:
        if self.api_key and req.headers.get("authorization") != f"ApiKey {self.api_key}":
            return Reply(401, {"error": {"type": "security_exception", "reason": "missing authentication"},
                               "status": 401})
        parts = [p for p in req.path.split("/") if p]
        if req.method == "GET" and len(parts) == 2 and parts[0] == "_alias":
            on = sorted(self.aliases.get(parts[1], set()))
            if not on:
                return Reply(404, {"error": f"alias [{parts[1]}] missing", "status": 404})
            return Reply(200, {i: {"aliases": {parts[1]: {}}} for i in on})
        if req.method == "HEAD" and len(parts) == 1:
            return Reply(200 if parts[0] in self.indexes else 404)
        if req.method == "POST" and parts == ["_aliases"]:
            actions = (req.body or {}).get("actions") if isinstance(req.body, dict) else None
            if not isinstance(actions, list) or not actions:
                return Reply(400, {"error": {"type": "action_request_validation_exception",
                                             "reason": "Validation Failed: 1: no actions;"}, "status": 400})
            new = {k: set(v) for k, v in self.aliases.items()}
            for a in actions:
                (verb, spec), = a.items()
                index, alias = spec.get("index"), spec.get("alias")
                if index not in self.indexes:
                    return Reply(404, {"error": {"type": "index_not_found_exception",
                                                 "reason": f"no such index [{index}]"}, "status": 404})
                if verb == "remove":
                    if index not in new.get(alias, set()):
                        return Reply(404, {"error": {"type": "aliases_not_found_exception",
                                                     "reason": f"aliases [{alias}] missing"}, "status": 404})
                    new[alias].discard(index)
                elif verb == "add":
                    new.setdefault(alias, set()).add(index)
                else:
                    return Reply(400, {"error": {"type": "parsing_exception", "reason": f"unknown action [{verb}]"},
                                       "status": 400})
            with self._lock:
                self.aliases = {k: v for k, v in new.items() if v}
            return Reply(200, {"acknowledged": True})
        return Reply(404, {"error": "no handler", "status": 404})
