"""Langfuse prompt label: move `production` (or any label) to another version of a prompt.

    op=move prompt=support-bot version=12        # or version=previous: the highest below the holder

Reads who holds the label (`GET /api/public/v2/prompts/{name}?label=L`), moves it with
`PATCH /api/public/v2/prompts/{name}/versions/{N}` and `{"newLabels": [...]}` (the version's own
labels plus L; Langfuse keeps a label on one version at a time), Basic auth with the project's
public and secret keys from the environment (`auth = "none"` for a registry that takes no
credentials, such as the demo's). Verified when the server says the new version holds
the label; applications using the Langfuse SDK keep their cached prompt until its TTL passes
(`cache_ttl`, 60 s by default in the SDKs), so the record says when they will all have it.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any
from urllib.parse import quote

from oncall.actions.adapters.base import Adapter, Op, RunContext
from oncall.actions.errors import BadArguments, NotUndoable
from oncall.actions.http import json_body, request
from oncall.actions.model import Plan, Proposal, State, Verification
from oncall.actions.secrets import secret


class LangfuseLabel(Adapter):
    kind = "langfuse-label"
    description = "Langfuse prompt label: move `production` (or any label) to another version"
    verify_timeout = 10.0
    ops = {"move": Op("move a label to another version of a prompt",
                      {"prompt": "the prompt name", "version": "the version to label (a number, or `previous`)"},
                      {"label": "the label to move (default: the target's `label`, else production)"})}

    def check_config(self) -> None:
        self.base = str(self.target.require("base_url")).rstrip("/")
        if self.target.get("auth") == "none":  # a registry that takes no credentials (the demo's)
            return
        self.target.require("public_key_env")
        self.target.require("secret_key_env")

    def _auth(self) -> tuple[str, str] | None:
        t = self.target
        if t.get("auth") == "none":
            return None
        return (secret(t.get("public_key_env"), what=f"target {t.name} public key"),
                secret(t.get("secret_key_env"), what=f"target {t.name} secret key"))

    def _url(self, name: str, suffix: str = "") -> str:
        return f"{self.base}/api/public/v2/prompts/{quote(name, safe='')}{suffix}"

    def _label(self, args: dict[str, Any]) -> str:
        return str(args.get("label") or self.target.get("label") or "production")

    def _get(self, name: str, **params: Any) -> dict[str, Any] | None:
        resp = request("GET", self._url(name), what=f"{self.target.name} (Langfuse)", params=params,
                       auth=self._auth(), ok=(200, 404))
        return None if resp.status_code == 404 else json_body(resp, self.target.name)

    # -- read / propose --------------------------------------------------------------------------------
    def read(self, args: dict[str, Any]) -> State:
        name, label = str(args["prompt"]), self._label(args)
        holder = self._get(name, label=label)
        holder_version = holder.get("version") if holder else None
        version = self._version(name, args["version"], holder_version)
        target = holder if holder and holder_version == version else self._get(name, version=version)
        if target is None:
            raise BadArguments(f"{self.target.name}: prompt {name!r} has no version {version}")
        labels = sorted(str(x) for x in target.get("labels") or [])
        data = {"prompt": name, "label": label, "holder": holder_version, "version": version, "labels": labels}
        return State(_fingerprint(holder_version, version, labels, label), data)

    def _version(self, name: str, raw: Any, holder: int | None) -> int:
        if str(raw) != "previous":
            try:
                return int(raw)
            except ValueError:
                raise BadArguments(f"version must be a number or `previous`, not {raw!r}") from None
        if holder is None:
            raise BadArguments(f"{self.target.name}: no version of {name!r} holds the label, so there is no "
                               "previous one; name the version")
        resp = request("GET", f"{self.base}/api/public/v2/prompts", what=f"{self.target.name} (Langfuse)",
                       params={"name": name}, auth=self._auth())
        versions: list[int] = []
        for meta in json_body(resp, self.target.name).get("data") or []:
            if meta.get("name") == name:
                versions += [int(v) for v in meta.get("versions") or []]
        older = [v for v in versions if v < holder]
        if not older:
            raise BadArguments(f"{self.target.name}: {name!r} has no version before {holder}")
        return max(older)

    def propose(self, state: State, op: str, args: dict[str, Any]) -> Proposal:
        d = state.data
        new_labels = sorted({*[x for x in d["labels"] if x != "latest"], d["label"]})
        changes = d["holder"] != d["version"]
        before = {"prompt": d["prompt"], "label": d["label"], "version": d["holder"]}
        after = {"prompt": d["prompt"], "label": d["label"], "version": d["version"]}
        path = f"/api/public/v2/prompts/{quote(d['prompt'], safe='')}/versions/{d['version']}"
        diff = [f"- {d['label']}: {d['prompt']} v{d['holder']}" if d["holder"] else f"- {d['label']}: (no version)",
                f"+ {d['label']}: {d['prompt']} v{d['version']}"] if changes else []
        ttl = float(self.target.get("cache_ttl", 60))
        return Proposal(summary=f"{d['prompt']} {d['label']}: v{d['holder']} → v{d['version']}", before=before,
                        after=after, diff=diff,
                        payload={"method": "PATCH", "path": path, "body": {"newLabels": new_labels}},
                        expected=_fingerprint(d["version"], d["version"], sorted({*d["labels"], d["label"]}),
                                              d["label"]),
                        changes=changes, args={"prompt": d["prompt"], "version": d["version"], "label": d["label"]},
                        notes=[f"applications using the Langfuse SDK keep a cached prompt up to {ttl:g} s"])

    def restore(self, plan: Plan, state: State) -> Proposal:
        previous = plan.before["version"]
        if previous is None:
            raise NotUndoable(f"before action the label {plan.before['label']!r} was on no version; Langfuse "
                              "cannot take a label off without giving it to another version — move it instead")
        args = {"prompt": plan.before["prompt"], "version": previous, "label": plan.before["label"]}
        return self.propose(self.read(args), "move", args)

    # -- write / verify --------------------------------------------------------------------------------
    def apply(self, plan: Plan, state: State, ctx: RunContext) -> dict[str, Any]:
        p = plan.payload
        resp = request(p["method"], self.base + p["path"], what=f"{self.target.name} (Langfuse)", json=p["body"],
                       auth=self._auth())
        return {"status": resp.status_code, "written_at": time.time()}

    def verify(self, plan: Plan, ctx: RunContext, applied: dict[str, Any], deadline: float) -> Verification:
        a = plan.after
        ttl = float(self.target.get("cache_ttl", 60))
        while True:
            holder = self._get(a["prompt"], label=a["label"])
            got = holder.get("version") if holder else None
            if got == a["version"]:
                by = applied.get("written_at", time.time()) + ttl
                when = time.strftime("%H:%M:%S", time.gmtime(by))
                return Verification(True, f"Langfuse serves {a['prompt']} v{got} as {a['label']}; SDK caches "
                                          f"have it by {when} UTC (cache_ttl {ttl:g} s)",
                                    {"version": got, "sdk_cache_ttl_s": ttl, "sdk_caches_current_by": by})
            if time.monotonic() >= deadline:
                return Verification(False, f"Langfuse still serves v{got} as {a['label']}", {"version": got})
            time.sleep(0.25)


def _fingerprint(holder: int | None, version: int, labels: list[str], label: str) -> str:
    return hashlib.sha256(json.dumps([holder, version, labels, label]).encode()).hexdigest()
