"""Search-index alias: point the alias an application searches at another index (roll a rebuilt
index back to the last good one).

Apps rarely search an index by its physical name: they search an alias (`help-articles`) that a
rebuild moves to the new index (`help-articles-v42`). Rolling back is moving the alias back. Two
kinds of target, chosen by the target's settings:

    [actions.targets.search]             # the application's own alias file (JSON)
    adapter = "index-alias"
    path = "search/aliases.json"         # {"aliases": {"help-articles": "help-articles-v42"}, "indexes": [...]}

    [actions.targets.search]             # Elasticsearch / OpenSearch aliases API
    adapter = "index-alias"
    url = "http://127.0.0.1:9200"
    api_key_env = "ES_API_KEY"           # optional: `Authorization: ApiKey …` from the environment
    # or basic_auth_env = "ES_BASIC"     # optional: `user:password` from the environment

    op=point alias=help-articles index=help-articles-v41

The file: the alias is the key under `"aliases"` (or at the top level when there is no `"aliases"`
object) and its value the index name; when the file lists its `"indexes"`, the new index must be
one of them. The value is replaced in place (the rest of the file byte for byte), the file replaced
atomically, and the change verified by reading it back. The API: `GET /_alias/{alias}` reads which
indexes the alias points at, `HEAD /{index}` checks the new index exists, one `POST /_aliases` with
`remove` and `add` actions moves it atomically (documented by Elasticsearch and OpenSearch), and
the change is verified by reading the alias again. Both undo by pointing the alias back.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

from oncall.actions import files, jsonspan
from oncall.actions.adapters.base import Adapter, Op, RunContext
from oncall.actions.errors import BadArguments, ConfigError, InvalidChange, TargetError
from oncall.actions.http import json_body, request
from oncall.actions.model import Plan, Proposal, State, Verification
from oncall.actions.secrets import secret


def alias_table(doc: Any) -> dict[str, str]:
    """An alias file's aliases (alias -> index): the `"aliases"` object, else the top level."""
    if not isinstance(doc, dict):
        raise ValueError("not an alias file (a JSON object of alias: index)")
    aliases = doc["aliases"] if isinstance(doc.get("aliases"), dict) else doc
    return {str(k): v for k, v in aliases.items() if isinstance(v, str)}


class IndexAlias(Adapter):
    kind = "index-alias"
    description = "search-index alias (a JSON alias file, or Elasticsearch/OpenSearch): point it at another index"
    verify_timeout = 10.0
    ops = {"point": Op("point the alias at an index (only that index)",
                       {"alias": "the alias the application searches", "index": "the index to point it at"})}

    def check_config(self) -> None:
        t = self.target
        has_path, has_url = t.get("path") not in (None, ""), t.get("url") not in (None, "")
        if has_path == has_url:
            raise ConfigError(f"{t.where}: target {t.name!r} (index-alias) needs exactly one of `path` (a JSON alias "
                              "file) or `url` (an Elasticsearch/OpenSearch endpoint)")
        self.path = t.path("path") if has_path else None
        self.url = str(t.get("url")).rstrip("/") if has_url else None

    @property
    def what(self) -> str:
        return f"{self.target.name} ({self.path or self.url})"

    # -- reading -----------------------------------------------------------------------------------
    def read(self, args: dict[str, Any]) -> State:
        if self.path is not None:
            data = files.read_bytes(self.path, self.what)
            return State(files.sha256(data), data)
        alias = str(args.get("alias") or "")
        current = self._api_alias(alias)
        return State(_fingerprint(current), {"indexes": current})

    def _doc(self, text: str) -> tuple[dict[str, Any], tuple[str, ...]]:
        """The file's document and the path of its aliases object."""
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise TargetError(f"{self.what} is not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise TargetError(f"{self.what}: not an alias file (a JSON object of alias: index)")
        return doc, (("aliases",) if isinstance(doc.get("aliases"), dict) else ())

    def _headers(self) -> dict[str, str]:
        t = self.target
        headers = {"Content-Type": "application/json"}
        if t.get("api_key_env"):
            headers["Authorization"] = "ApiKey " + secret(str(t.get("api_key_env")), what=f"target {t.name} api key")
        elif t.get("basic_auth_env"):
            import base64

            pair = secret(str(t.get("basic_auth_env")), what=f"target {t.name} basic auth")
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        return headers

    def _api_alias(self, alias: str) -> list[str]:
        """The indexes the alias points at ([] when there is no such alias)."""
        resp = request("GET", f"{self.url}/_alias/{quote(alias, safe='')}", what=self.what, ok=(200, 404),
                       headers=self._headers())
        if resp.status_code == 404:
            return []
        body = json_body(resp, self.what)
        if not isinstance(body, dict):
            raise TargetError(f"{self.what}: GET /_alias/{alias} answered {type(body).__name__}, not an object")
        return sorted(k for k, v in body.items() if isinstance(v, dict) and alias in (v.get("aliases") or {}))

    # -- planning ----------------------------------------------------------------------------------
    def propose(self, state: State, op: str, args: dict[str, Any]) -> Proposal:
        alias, index = str(args["alias"]), str(args["index"])
        if self.path is not None:
            return self._file_proposal(state.data.decode("utf-8"), alias, index)
        current = list(state.data["indexes"])
        exists = request("HEAD", f"{self.url}/{quote(index, safe='')}", what=self.what, ok=(200, 404),
                         headers=self._headers()).status_code == 200
        if not exists:
            raise BadArguments(f"{self.what}: there is no index {index!r} to point {alias!r} at")
        return self._api_proposal(alias, current, [index])

    def _file_proposal(self, text: str, alias: str, index: str) -> Proposal:
        doc, base = self._doc(text)
        aliases = doc["aliases"] if base else doc
        current = aliases.get(alias)
        if not isinstance(current, str):
            known = ", ".join(k for k, v in aliases.items() if isinstance(v, str)) or "none"
            raise BadArguments(f"{self.what}: no alias {alias!r} (aliases: {known})")
        listed = doc.get("indexes")
        if isinstance(listed, (list, dict)) and index not in listed:
            raise BadArguments(f"{self.what}: index {index!r} is not in the file's indexes ({', '.join(listed)})")
        new_text = jsonspan.replace(text, (*base, alias), index) if current != index else text
        checks = self._checks(new_text, alias, index) if new_text != text else []
        return Proposal(summary=f"alias {alias}: {current} → {index}", before={"alias": alias, "index": current},
                        after={"alias": alias, "index": index}, diff=files.display_diff(text, new_text, self.path.name),
                        payload={"patch": files.patch_for_audit(files.make_patch(text, new_text)),
                                 "path": [*base, alias], "index": index},
                        expected=files.sha256(new_text.encode("utf-8")), changes=new_text != text, checks=checks)

    def _checks(self, new_text: str, alias: str, index: str) -> list[str]:
        doc, base = self._doc(new_text)
        got = (doc["aliases"] if base else doc).get(alias)
        if got != index:
            raise InvalidChange(f"{self.what}: the new file points {alias} at {got!r}, not {index!r}")
        return ["JSON parses", f"alias {alias} names {index}"]

    def _api_proposal(self, alias: str, current: list[str], target: list[str]) -> Proposal:
        remove = [i for i in current if i not in target]
        add = [i for i in target if i not in current]
        actions = [{"remove": {"index": i, "alias": alias}} for i in remove] + [
            {"add": {"index": i, "alias": alias}} for i in add]
        shown = ", ".join(current) or "(no index)"
        return Proposal(summary=f"alias {alias}: {shown} → {', '.join(target) or '(no index: alias removed)'}",
                        before={"alias": alias, "index": ", ".join(current) or None, "indexes": current},
                        after={"alias": alias, "index": ", ".join(target), "indexes": target},
                        diff=[f"> POST {self.url}/_aliases", f"> {json.dumps({'actions': actions})}"],
                        payload={"alias": alias, "actions": actions, "indexes": target},
                        expected=_fingerprint(target), changes=bool(actions),
                        checks=[f"index {', '.join(target)} exists"],
                        notes=["one POST /_aliases: the remove and the add happen atomically"])

    # -- writing and verifying ---------------------------------------------------------------------
    def apply(self, plan: Plan, state: State, ctx: RunContext) -> dict[str, Any]:
        if self.path is not None:
            new_text = files.apply_patch(state.data.decode("utf-8"), plan.payload["patch"], what=self.what)
            if files.sha256(new_text.encode("utf-8")) != plan.expected:
                raise TargetError(f"{self.what}: the patched file is not the planned one; nothing written")
            self._checks(new_text, plan.after["alias"], plan.payload["index"])
            files.atomic_write(self.path, new_text.encode("utf-8"))
            return {"file": str(self.path), "sha256": plan.expected}
        resp = request("POST", f"{self.url}/_aliases", what=self.what, headers=self._headers(),
                       content=json.dumps({"actions": plan.payload["actions"]}).encode("utf-8"))
        body = json_body(resp, self.what)
        if not (isinstance(body, dict) and body.get("acknowledged") is True):
            raise TargetError(f"{self.what}: POST /_aliases was not acknowledged: {json.dumps(body)[:300]}")
        return {"acknowledged": True, "actions": plan.payload["actions"]}

    def verify(self, plan: Plan, ctx: RunContext, applied: dict[str, Any], deadline: float) -> Verification:
        alias = plan.after["alias"]
        want = plan.payload["indexes"] if self.path is None else [plan.payload["index"]]
        while True:
            got = self._current(alias)
            if got == sorted(want):
                return Verification(True, f"alias {alias} now points at {', '.join(got)}", {"indexes": got})
            if time.monotonic() >= deadline:
                return Verification(False, f"alias {alias} still points at {', '.join(got) or 'no index'}",
                                    {"indexes": got})
            time.sleep(0.1)

    def _current(self, alias: str) -> list[str]:
        if self.path is None:
            return self._api_alias(alias)
        doc, base = self._doc(files.read_bytes(self.path, self.what).decode("utf-8"))
        got = (doc["aliases"] if base else doc).get(alias)
        return [got] if isinstance(got, str) else []

    def restore(self, plan: Plan, state: State) -> Proposal:
        alias = plan.before["alias"]
        if self.path is not None:
            index = plan.before["index"]
            return files.undo_proposal(plan, state, what=self.what, name=self.path.name,
                                       summary=f"alias {alias} back to {index}", payload={"index": index},
                                       checks=lambda text: self._checks(text, alias, index))
        # (the engine has checked the alias is where the action left it: plan_undo compares fingerprints)
        return self._api_proposal(alias, list(state.data["indexes"]), list(plan.before["indexes"]))


def _fingerprint(indexes: list[str]) -> str:
    return "indexes:" + ",".join(sorted(indexes))
