"""LiteLLM admin API, for proxies that keep their models in a database.

    op=update model=support-bot litellm_model=openai/gpt-4o-2024-08-06   # POST /model/update
    op=fallbacks model=support-bot fallbacks=support-bot-fallback         # POST /fallback

Reads `GET /v1/model/info` (or `GET /fallback/{model}`), writes with the master key from the
environment and `LiteLLM-Changed-By: <responder>` so the proxy's own audit names who. A proxy without
a database answers `No DB Connected` (or "Database storage not enabled"): its models come from
config.yaml, and the `litellm-config` adapter is the one that can change them. Fallbacks only fire
after errors; for a quality regression repoint the alias instead.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import quote

from oncall.actions.adapters.base import Adapter, Op, RunContext
from oncall.actions.errors import BadArguments, TargetError
from oncall.actions.http import json_body, request
from oncall.actions.model import Plan, Proposal, State, Verification
from oncall.actions.secrets import secret

NO_DB = ("No DB Connected", "Database storage not enabled")


class LiteLLMAdmin(Adapter):
    kind = "litellm-admin"
    description = "LiteLLM admin API (proxies with a database): update a deployment, set fallbacks"
    verify_timeout = 10.0
    ops = {
        "update": Op("set a deployment's litellm_params.model",
                     {"model": "model_name (with one deployment) or model_info.id",
                      "litellm_model": "the new litellm_params.model"}),
        "fallbacks": Op("set the fallbacks of a model group (they fire after errors only)",
                        {"model": "model_name", "fallbacks": "comma-separated model names, in order"}),
    }

    def check_config(self) -> None:
        self.base = str(self.target.require("proxy_url")).rstrip("/")
        self.target.require("master_key_env")

    def _headers(self, who: str | None = None) -> dict[str, str]:
        key = secret(self.target.get("master_key_env"), what=f"target {self.target.name} master key")
        h = {"Authorization": f"Bearer {key}"}
        if who:
            h["LiteLLM-Changed-By"] = who
        return h

    @property
    def what(self) -> str:
        return f"{self.target.name} (LiteLLM admin API at {self.base})"

    # -- read ------------------------------------------------------------------------------------------
    def read(self, args: dict[str, Any]) -> State:
        if "fallbacks" in args:
            model = str(args["model"])
            resp = request("GET", f"{self.base}/fallback/{quote(model, safe='')}", what=self.what,
                           headers=self._headers(), ok=(200, 404))
            current = json_body(resp, self.what).get("fallback_models") if resp.status_code == 200 else None
            return State(_fp({"fallbacks": current}), {"fallbacks": current})
        resp = request("GET", f"{self.base}/v1/model/info", what=self.what, headers=self._headers())
        deployments = json_body(resp, self.what).get("data") or []
        want = str(args["model"])
        found = [d for d in deployments if want in (d.get("model_name"), (d.get("model_info") or {}).get("id"))]
        if len(found) != 1:
            names = sorted({str(d.get("model_name")) for d in deployments})
            raise BadArguments(f"{self.what}: {len(found) or 'no'} deployments named {want!r}; name one by "
                               f"model_info.id (model names: {', '.join(names)})")
        d = found[0]
        state = {"model_name": d.get("model_name"), "id": (d.get("model_info") or {}).get("id"),
                 "litellm_model": (d.get("litellm_params") or {}).get("model"),
                 "db_model": (d.get("model_info") or {}).get("db_model")}
        return State(_fp({"id": state["id"], "model": state["litellm_model"]}), state)

    # -- propose -----------------------------------------------------------------------------------------
    def propose(self, state: State, op: str, args: dict[str, Any]) -> Proposal:
        if op == "fallbacks":
            return self._propose_fallbacks(state, str(args["model"]),
                                           [f.strip() for f in str(args["fallbacks"]).split(",") if f.strip()])
        d = state.data
        new = str(args["litellm_model"])
        notes = []
        if d["db_model"] is False:
            notes.append("the proxy says this deployment comes from its config file (db_model: false); "
                         "without a database it will answer No DB Connected — use the litellm-config adapter")
        body = {"model_name": d["model_name"], "litellm_params": {"model": new}, "model_info": {"id": d["id"]}}
        return Proposal(summary=f"{d['model_name']} ({str(d['id'])[:12]}): {d['litellm_model']} → {new}",
                        before={"model": d["model_name"], "id": d["id"], "litellm_model": d["litellm_model"]},
                        after={"model": d["model_name"], "id": d["id"], "litellm_model": new},
                        diff=[f"- litellm_params.model: {d['litellm_model']}", f"+ litellm_params.model: {new}"]
                        if new != d["litellm_model"] else [],
                        payload={"method": "POST", "path": "/model/update", "body": body},
                        expected=_fp({"id": d["id"], "model": new}), changes=new != d["litellm_model"],
                        notes=notes, args={"model": d["id"], "litellm_model": new})

    def _propose_fallbacks(self, state: State, model: str, fallbacks: list[str] | None) -> Proposal:
        current = state.data["fallbacks"]
        if fallbacks:
            payload = {"method": "POST", "path": "/fallback",
                       "body": {"model": model, "fallback_models": fallbacks, "fallback_type": "general"}}
        else:
            payload = {"method": "DELETE", "path": f"/fallback/{quote(model, safe='')}", "body": None}
        return Proposal(summary=f"fallbacks of {model}: {current or 'none'} → {fallbacks or 'none'}",
                        before={"model": model, "fallbacks": current}, after={"model": model, "fallbacks": fallbacks},
                        diff=[f"- fallbacks: {current}", f"+ fallbacks: {fallbacks}"] if current != fallbacks else [],
                        payload=payload, expected=_fp({"fallbacks": fallbacks}), changes=current != fallbacks,
                        notes=["LiteLLM fallbacks fire only after errors; a quality regression needs a repoint"],
                        args={"model": model, "fallbacks": ",".join(fallbacks or [])})

    def restore(self, plan: Plan, state: State) -> Proposal:
        b = plan.before
        if plan.op == "fallbacks":
            return self._propose_fallbacks(state, b["model"], b["fallbacks"])
        return self.propose(state, "update", {"model": b["id"], "litellm_model": b["litellm_model"]})

    # -- write / verify ----------------------------------------------------------------------------------
    def apply(self, plan: Plan, state: State, ctx: RunContext) -> dict[str, Any]:
        p = plan.payload
        kwargs: dict[str, Any] = {"headers": self._headers(ctx.who)}
        if p["body"] is not None:
            kwargs["json"] = p["body"]
        try:
            resp = request(p["method"], self.base + p["path"], what=self.what, **kwargs)
        except TargetError as exc:
            if any(marker in str(exc) for marker in NO_DB):
                raise TargetError(f"{self.what} has no database (it answered {_marker(str(exc))!r}): its models "
                                  "come from its config.yaml, which this API cannot change. Use a target with "
                                  "adapter = \"litellm-config\" for this proxy") from None
            raise
        return {"status": resp.status_code}

    def verify(self, plan: Plan, ctx: RunContext, applied: dict[str, Any], deadline: float) -> Verification:
        import time

        while True:
            state = self.read(plan.args)
            if state.fingerprint == plan.expected:
                return Verification(True, f"the proxy reports {plan.summary.split(': ', 1)[-1].split(' → ')[-1]}",
                                    {"state": state.data})
            if time.monotonic() >= deadline:
                return Verification(False, "the proxy does not report the change yet", {"state": state.data})
            time.sleep(0.25)


def _fp(d: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def _marker(text: str) -> str:
    return next(m for m in NO_DB if m in text)
