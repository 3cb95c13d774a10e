"""Plans and action records: what an action will do, and what it did.

Both are plain data (JSON-able, secret-free) so a plan can be shown, stored in the audit, handed
from a runbook step to the executor, and read back for an undo.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

# Final statuses of an action. `started` is written before the write, so an action that dies
# midway is still in the audit.
STARTED = "started"
VERIFIED = "verified"          # written, and the target was seen serving the new state
UNVERIFIED = "unverified"      # written, but the target was not seen serving it before the deadline
UNCHANGED = "unchanged"        # the target was already in the planned state: nothing written
ABORTED = "aborted"            # the target moved between plan and write: nothing written
FAILED = "failed"              # the write (or the target's pick-up) failed: see `error`
OK_STATUSES = (VERIFIED, UNCHANGED)
WRITTEN_STATUSES = (VERIFIED, UNVERIFIED)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class State:
    """What an adapter read from its target: a fingerprint of everything the change depends on
    (content hash, version held, …) and the data it was computed from (kept in memory only)."""

    fingerprint: str
    data: Any = None


@dataclass
class Proposal:
    """An adapter's answer to "what would these arguments change?" (the core wraps it in a Plan)."""

    summary: str
    before: dict[str, Any]
    after: dict[str, Any]
    diff: list[str]
    payload: dict[str, Any]
    expected: str  # the fingerprint the target will have once the change is made
    changes: bool = True
    checks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    args: dict[str, Any] | None = None  # an undo's arguments (what the target is read with), if not the plan's


@dataclass
class Plan:
    target: str
    adapter: str
    op: str
    args: dict[str, Any]
    production: bool
    summary: str
    before: dict[str, Any]
    after: dict[str, Any]
    diff: list[str]
    changes: bool
    fingerprint: str
    expected: str
    payload: dict[str, Any]
    checks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    undo_of: int | None = None
    plan_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    planned_at: str = field(default_factory=now_iso)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class Verification:
    ok: bool
    message: str
    detail: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ActionRecord:
    action_id: int
    status: str
    plan: Plan
    who: str
    why: str | None
    runbook: str | None = None
    step: str | None = None
    gate: dict[str, Any] | None = None
    result: str = ""
    error: str | None = None
    verification: dict[str, Any] | None = None
    started_at: str = field(default_factory=now_iso)
    finished_at: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in OK_STATUSES

    @property
    def before(self) -> dict[str, Any]:
        return self.plan.before

    @property
    def after(self) -> dict[str, Any]:
        return self.plan.after

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["plan"] = self.plan.to_dict()
        d["before"], d["after"] = self.plan.before, self.plan.after
        return d
