"""The interface every action adapter implements, and the context the core hands it.

An adapter is bound to one configured target. The core (oncall/actions/engine.py) drives it:
read() the live state → propose() a change from it (no writes) → at execution read() again and
compare fingerprints → apply() → verify() until a deadline → and for an undo, restore() proposes
the way back from a recorded action.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from oncall.actions.config import Target
from oncall.actions.errors import BadArguments, NotUndoable
from oncall.actions.model import Plan, Proposal, State, Verification


@dataclass
class Op:
    """One operation an adapter offers: its arguments (name -> what it is) and which are required."""

    help: str
    required: dict[str, str]
    optional: dict[str, str] = field(default_factory=dict)


@dataclass
class RunContext:
    who: str
    why: str | None = None


class Adapter:
    kind: ClassVar[str] = ""
    description: ClassVar[str] = ""
    ops: ClassVar[dict[str, Op]] = {}

    def __init__(self, target: Target) -> None:
        self.target = target
        self.check_config()

    def check_config(self) -> None:
        """Raise ConfigError for a target that cannot work (called on construction)."""

    # -- the steps --------------------------------------------------------------------------
    def read(self, args: dict[str, Any]) -> State:
        """The live state the change depends on (args: the operation's arguments)."""
        raise NotImplementedError

    def propose(self, state: State, op: str, args: dict[str, Any]) -> Proposal:
        raise NotImplementedError

    def apply(self, plan: Plan, state: State, ctx: RunContext) -> dict[str, Any]:
        """Make the change; return what was done (JSON-able, for the audit). Raise on failure,
        leaving the target as it was."""
        raise NotImplementedError

    def verify(self, plan: Plan, ctx: RunContext, applied: dict[str, Any], deadline: float) -> Verification:
        raise NotImplementedError

    def restore(self, plan: Plan, state: State) -> Proposal:
        """The change that puts back `plan`'s before-state (the target is in its after-state)."""
        raise NotUndoable(f"{self.kind} actions cannot be undone")

    # -- argument checking, shared ----------------------------------------------------------
    def resolve_op(self, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        args = dict(args)
        op = args.pop("op", None)
        if op is None:
            if len(self.ops) != 1:
                raise BadArguments(f"{self.kind}: say which operation with op=… ({', '.join(self.ops)})")
            op = next(iter(self.ops))
        if op not in self.ops:
            raise BadArguments(f"{self.kind}: unknown operation {op!r} (operations: {', '.join(self.ops)})")
        spec = self.ops[op]
        missing = [k for k in spec.required if args.get(k) in (None, "")]
        if missing:
            raise BadArguments(f"{self.kind} {op}: missing argument(s) {', '.join(missing)} "
                               f"({'; '.join(f'{k}: {spec.required[k]}' for k in missing)})")
        unknown = [k for k in args if k not in spec.required and k not in spec.optional]
        if unknown:
            known = ", ".join([*spec.required, *spec.optional])
            raise BadArguments(f"{self.kind} {op}: unknown argument(s) {', '.join(unknown)} (takes: {known})")
        return op, args
