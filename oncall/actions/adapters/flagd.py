"""OpenFeature flagd flag file (JSON): switch a flag's defaultVariant, or the variant a targeting
rule returns.

    op=set flag=support-bot-model variant=fallback                 # defaultVariant
    op=set flag=support-bot-model variant=off rule=if.1            # targeting["if"][1]

The value is replaced in place (the rest of the file is left byte for byte), the file is replaced
atomically with a later mtime (the flagd provider in file mode polls mtime, ~0.5 s by default), and
the result is verified by reading the file back and evaluating the flag's static resolution: the
planned variant and its value.
"""

from __future__ import annotations

import json
import time
from typing import Any

from oncall.actions import files, jsonspan
from oncall.actions.adapters.base import Adapter, Op, RunContext
from oncall.actions.errors import BadArguments, InvalidChange, TargetError
from oncall.actions.model import Plan, Proposal, State, Verification


class FlagdFile(Adapter):
    kind = "flagd-file"
    description = "OpenFeature flagd JSON flag file: switch a flag's default or a targeting rule's variant"
    verify_timeout = 5.0
    ops = {"set": Op("switch a flag's variant",
                     {"flag": "the flag key", "variant": "the variant to serve (a key of the flag's variants)"},
                     {"rule": "dot path into the flag's targeting to a variant name (e.g. if.1); "
                              "default: the flag's defaultVariant"})}

    def check_config(self) -> None:
        self.path = self.target.path("path")

    @property
    def what(self) -> str:
        return f"{self.target.name} ({self.path})"

    def read(self, args: dict[str, Any]) -> State:
        data = files.read_bytes(self.path, self.what)
        return State(files.sha256(data), data)

    def _doc(self, text: str) -> dict[str, Any]:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise TargetError(f"{self.what} is not valid JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("flags"), dict):
            raise TargetError(f"{self.what}: not a flagd flag file (no \"flags\" object)")
        return doc

    def propose(self, state: State, op: str, args: dict[str, Any]) -> Proposal:
        text = state.data.decode("utf-8")
        doc = self._doc(text)
        flag_key, variant = str(args["flag"]), str(args["variant"])
        flag = doc["flags"].get(flag_key)
        if not isinstance(flag, dict):
            raise BadArguments(f"{self.what}: no flag {flag_key!r} (flags: {', '.join(doc['flags'])})")
        variants = flag.get("variants") or {}
        if variant not in variants:
            raise BadArguments(f"{self.what}: flag {flag_key!r} has no variant {variant!r} "
                               f"(variants: {', '.join(variants)})")
        path = self._path(flag_key, flag, args.get("rule"))
        current = _get(doc, path)
        if not isinstance(current, str):
            raise BadArguments(f"{self.what}: {'.'.join(map(str, path))} is not a variant name")
        new_text = jsonspan.replace(text, path, variant) if current != variant else text
        where = "defaultVariant" if args.get("rule") is None else f"targeting {args['rule']}"
        before = {"flag": flag_key, "at": where, "variant": current, "value": variants.get(current)}
        after = {"flag": flag_key, "at": where, "variant": variant, "value": variants[variant]}
        checks = self._checks(new_text) if new_text != text else []
        return Proposal(summary=f"flag {flag_key} ({where}): {current} → {variant}", before=before, after=after,
                        diff=files.display_diff(text, new_text, self.path.name),
                        payload={"patch": files.patch_for_audit(files.make_patch(text, new_text)),
                                 "path": list(path), "variant": variant},
                        expected=files.sha256(new_text.encode("utf-8")), changes=new_text != text, checks=checks)

    def _path(self, flag_key: str, flag: dict[str, Any], rule: Any) -> tuple[str | int, ...]:
        if rule is None:
            if "defaultVariant" not in flag:
                raise BadArguments(f"{self.what}: flag {flag_key!r} has no defaultVariant")
            return ("flags", flag_key, "defaultVariant")
        path: tuple[str | int, ...] = ("flags", flag_key, "targeting")
        for part in str(rule).split("."):
            path += (int(part),) if part.isdigit() else (part,)
        try:
            _get({"flags": {flag_key: flag}}, path)
        except (KeyError, IndexError, TypeError):
            raise BadArguments(f"{self.what}: flag {flag_key!r} has no targeting rule at {rule!r}") from None
        return path

    def _checks(self, new_text: str) -> list[str]:
        doc = self._doc(new_text)
        for key, flag in doc["flags"].items():
            if isinstance(flag, dict) and flag.get("defaultVariant") not in (None, *(flag.get("variants") or {})):
                raise InvalidChange(f"{self.what}: flag {key}: defaultVariant {flag['defaultVariant']!r} "
                                    "is not one of its variants")
        return ["JSON parses", f"{len(doc['flags'])} flags: every defaultVariant names a variant"]

    def apply(self, plan: Plan, state: State, ctx: RunContext) -> dict[str, Any]:
        new_text = files.apply_patch(state.data.decode("utf-8"), plan.payload["patch"], what=self.what)
        if files.sha256(new_text.encode("utf-8")) != plan.expected:
            raise TargetError(f"{self.what}: the patched file is not the planned one; nothing written")
        self._checks(new_text)
        files.atomic_write(self.path, new_text.encode("utf-8"))
        return {"file": str(self.path), "sha256": plan.expected, "mtime_ns": self.path.stat().st_mtime_ns}

    def verify(self, plan: Plan, ctx: RunContext, applied: dict[str, Any], deadline: float) -> Verification:
        while True:
            data = self.path.read_bytes()
            doc = self._doc(data.decode("utf-8"))
            got = _get(doc, tuple(plan.payload["path"]))
            if got == plan.payload["variant"]:
                flag = doc["flags"][plan.after["flag"]]
                return Verification(True, f"flag {plan.after['flag']} now resolves {got} = "
                                          f"{json.dumps(flag['variants'][got])}",
                                    {"variant": got, "value": flag["variants"][got],
                                     "mtime_ns": self.path.stat().st_mtime_ns})
            if time.monotonic() >= deadline:
                return Verification(False, f"flag {plan.after['flag']} still resolves {got}")
            time.sleep(0.1)

    def restore(self, plan: Plan, state: State) -> Proposal:
        return files.undo_proposal(plan, state, what=self.what, name=self.path.name,
                                   summary=f"flag {plan.before['flag']} back to {plan.before['variant']}",
                                   payload={"variant": plan.before["variant"]}, checks=self._checks)


def _get(doc: Any, path: tuple[str | int, ...]) -> Any:
    for p in path:
        doc = doc[p]
    return doc
