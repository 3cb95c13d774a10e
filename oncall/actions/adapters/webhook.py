"""HTTP webhook: a configured request, for everything oncall has no adapter for (a deploy pipeline,
a status page, a chat-ops bot).

    [actions.targets.statuspage]
    adapter = "webhook"
    method = "POST"
    url = "https://status.example.com/api/incidents"
    headers_env = { Authorization = "STATUSPAGE_TOKEN" }   # header value from the environment
    body = '{"status": "${status}", "message": "${message}"}'
    undo = { body = '{"status": "resolved", "message": "${message}"}' }   # optional: the way back

`${name}` placeholders in url and body are the action's arguments (JSON-escaped in a JSON body).
The request carries an `Idempotency-Key` derived from the rendered request, so a receiver that
honours it does nothing the second time; a webhook has no state oncall can read, so the plan shows
the request rather than a before → after. Verified by a 2xx answer, and `verify_url` (GET, 2xx) if set.
"""

from __future__ import annotations

import hashlib
import json
import string
from typing import Any
from urllib.parse import quote

from oncall.actions.adapters.base import Adapter, Op, RunContext
from oncall.actions.errors import BadArguments, ConfigError, NotUndoable
from oncall.actions.http import request
from oncall.actions.model import Plan, Proposal, State, Verification
from oncall.actions.secrets import secret
from oncall.redact import REDACTED

STATELESS = "no-readable-state"


class Webhook(Adapter):
    kind = "webhook"
    description = "HTTP webhook: a configured request, for a deploy pipeline, a status page, anything else"
    verify_timeout = 10.0

    def check_config(self) -> None:
        t = self.target
        t.require("url")
        self.method = str(t.get("method", "POST")).upper()
        self.content_type = str(t.get("content_type", "application/json"))
        fields = _fields(str(t.get("url"))) + _fields(str(t.get("body", "")))
        self.ops = {"send": Op(f"send the configured {self.method} request",
                               {f: "substituted into the request" for f in dict.fromkeys(fields)},
                               {"why": "ignored by the request (the action's --why is recorded)"})}
        undo = t.get("undo")
        if undo is not None and not isinstance(undo, dict):
            raise ConfigError(f"{t.where}: target {t.name}: undo must be a table (method, url, body)")

    def _render(self, spec: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
        json_body = "json" in self.content_type
        try:
            url = string.Template(str(spec.get("url", self.target.get("url")))).substitute(
                {k: quote(str(v), safe="") for k, v in args.items()})
            body_t = spec.get("body", self.target.get("body"))
            body = None if body_t is None else string.Template(str(body_t)).substitute(
                {k: (json.dumps(str(v))[1:-1] if json_body else str(v)) for k, v in args.items()})
        except KeyError as exc:
            raise BadArguments(f"{self.target.name}: the request needs argument {exc.args[0]}") from None
        if body is not None and json_body:
            try:
                json.loads(body)
            except ValueError as exc:
                raise BadArguments(f"{self.target.name}: the rendered body is not JSON: {exc}") from None
        method = str(spec.get("method", self.method)).upper()
        key = hashlib.sha256(json.dumps([self.target.name, method, url, body]).encode()).hexdigest()[:32]
        return {"method": method, "url": url, "body": body, "idempotency_key": key}

    def read(self, args: dict[str, Any]) -> State:
        return State(STATELESS)

    def propose(self, state: State, op: str, args: dict[str, Any]) -> Proposal:
        req = self._render({}, args)
        return self._proposal(req, f"{req['method']} {req['url']}", args)

    def _proposal(self, req: dict[str, Any], summary: str, args: dict[str, Any]) -> Proposal:
        headers = [f"{k}: {v}" for k, v in (self.target.get("headers") or {}).items()]
        headers += [f"{k}: {REDACTED} (from ${env})" for k, env in (self.target.get("headers_env") or {}).items()]
        diff = [f"> {req['method']} {req['url']}", *[f"> {h}" for h in headers],
                f"> Idempotency-Key: {req['idempotency_key']}"] + ([f"> {req['body']}"] if req["body"] else [])
        return Proposal(summary=summary, before={}, after={"request": f"{req['method']} {req['url']}"}, diff=diff,
                        payload={"request": req, "args": args}, expected=STATELESS,
                        notes=["a webhook has no state oncall can read: the plan is the request it will send"])

    def apply(self, plan: Plan, state: State, ctx: RunContext) -> dict[str, Any]:
        req = plan.payload["request"]
        headers = {str(k): str(v) for k, v in (self.target.get("headers") or {}).items()}
        for name, env in (self.target.get("headers_env") or {}).items():
            headers[str(name)] = secret(str(env), what=f"target {self.target.name} header {name}")
        headers["Idempotency-Key"] = req["idempotency_key"]
        headers.setdefault("Content-Type", self.content_type)
        ok = tuple(int(s) for s in self.target.get("ok_status", range(200, 300)))
        resp = request(req["method"], req["url"], what=self.target.name, headers=headers,
                       content=req["body"].encode("utf-8") if req["body"] is not None else None, ok=ok,
                       timeout=float(self.target.get("timeout", 10)))
        return {"status": resp.status_code}

    def verify(self, plan: Plan, ctx: RunContext, applied: dict[str, Any], deadline: float) -> Verification:
        url = self.target.get("verify_url")
        if not url:
            return Verification(True, f"the webhook answered {applied.get('status')}", {"status": applied.get("status")})
        resp = request("GET", str(url), what=f"{self.target.name} verify_url", ok=tuple(range(200, 300)))
        return Verification(True, f"the webhook answered {applied.get('status')}; verify_url answered "
                                  f"{resp.status_code}", {"status": applied.get("status")})

    def restore(self, plan: Plan, state: State) -> Proposal:
        undo = self.target.get("undo")
        if not undo:
            raise NotUndoable(f"target {self.target.name} has no `undo` request configured")
        req = self._render(undo, plan.payload["args"])
        return self._proposal(req, f"{req['method']} {req['url']}", plan.payload["args"])


def _fields(template: str) -> list[str]:
    return [m.group("named") or m.group("braced") for m in string.Template.pattern.finditer(template)
            if m.group("named") or m.group("braced")]
