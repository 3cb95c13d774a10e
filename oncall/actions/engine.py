"""plan → confirm → write → verify → record, the same for every adapter and every caller (the CLI,
runbook steps, the console).

    adapter = get_adapter("gateway")                 # a target from oncall.toml
    p = plan(adapter, {"op": "repoint", "alias": "support-bot", "to": "support-bot-fallback"})
    show(p.diff)                                     # nothing has been written
    rec = execute(p, db=db, confirm=typed_text, why="provider outage")
    rec.status                                       # verified / unverified / unchanged / aborted / failed
    undo(rec.action_id, db=db, confirm=True)         # itself planned, confirmed and audited

execute() re-reads the target just before writing and aborts if it moved since the plan; it writes
a `started` audit row before the write and a final row after, so an action that dies midway is still
on record. Verification polls until the adapter sees the target serve the new state or the target's
`verify_timeout` passes.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from oncall.actions import audit
from oncall.actions.adapters.base import Adapter, RunContext
from oncall.actions.config import ActionsConfig, load_config
from oncall.actions.errors import ActionError, NotUndoable, Refused, StateMoved
from oncall.actions.model import (
    ABORTED,
    FAILED,
    STARTED,
    UNCHANGED,
    UNVERIFIED,
    VERIFIED,
    WRITTEN_STATUSES,
    ActionRecord,
    Plan,
    Verification,
    now_iso,
)
from oncall.actions.registry import adapter_class
from oncall.actions.secrets import scrub

if TYPE_CHECKING:
    from oncall.store.contracts import Store

DEFAULT_VERIFY_TIMEOUT = 30.0


def get_adapter(target: str, config: ActionsConfig | None = None, *, incident: Any = None) -> Adapter:
    """The adapter bound to a configured target (`incident`: the database, whose demo world's
    targets count when it is a demo)."""
    cfg = config if config is not None else load_config(incident=incident)
    t = cfg.target(target)
    return adapter_class(t.adapter)(t)


def plan(adapter: Adapter, args: dict[str, Any], *, undo_of: int | None = None) -> Plan:
    """Read the target's live state and say what `args` would change. Writes nothing."""
    op, args = adapter.resolve_op(args)
    state = adapter.read(args)
    prop = adapter.propose(state, op, args)
    # An adapter may resolve arguments (version=previous -> 11): the plan keeps the resolved ones,
    # so re-reading at execution (and for an undo) looks at the same thing.
    return _make_plan(adapter, op, prop.args if prop.args is not None else args, state.fingerprint, prop, undo_of)


def _make_plan(adapter: Adapter, op: str, args: dict[str, Any], fingerprint: str, prop: Any,
               undo_of: int | None) -> Plan:
    p = Plan(target=adapter.target.name, adapter=adapter.kind, op=op, args=scrub(args),
             production=adapter.target.production, summary=scrub(prop.summary), before=scrub(prop.before),
             after=scrub(prop.after), diff=scrub(prop.diff), changes=prop.changes, fingerprint=fingerprint,
             expected=prop.expected, payload=prop.payload, checks=scrub(prop.checks), notes=scrub(prop.notes),
             undo_of=undo_of)
    p._adapter = adapter  # type: ignore[attr-defined]  # not a field: never serialised
    return p


def confirmation_ok(p: Plan, confirm: bool | str | None) -> bool:
    """True (a script's --yes) always confirms; typed text must be the target's name for a
    production target, and yes/y (or the name) otherwise."""
    if confirm is True:
        return True
    if not isinstance(confirm, str):
        return False
    typed = confirm.strip()
    if p.production:
        return typed == p.target
    return typed.lower() in ("y", "yes") or typed == p.target


def execute(p: Plan, *, db: Store, confirm: bool | str | None, who: str | None = None, why: str | None = None,
            runbook: str | None = None, step: str | None = None, gate: dict[str, Any] | None = None,
            adapter: Adapter | None = None, config: ActionsConfig | None = None) -> ActionRecord:
    """Carry out a plan: confirm, re-read, write, make the target pick it up, verify, record."""
    from oncall.store.db import current_user

    if getattr(db, "read_only", False):
        raise Refused("the incident is open read-only (--read-only): actions are disabled; "
                      "nothing was read or written")
    if not confirmation_ok(p, confirm):
        need = f"type the target name {p.target!r}" if p.production else "answer yes"
        raise Refused(f"not confirmed ({need}, or pass --yes); nothing was written")
    adapter = adapter or getattr(p, "_adapter", None) or get_adapter(p.target, config,
                                                                    incident=getattr(db, "path", None))
    ctx = RunContext(who=who or current_user(), why=why)
    rec = ActionRecord(action_id=0, status=STARTED, plan=p, who=ctx.who, why=why, runbook=runbook, step=step,
                       gate=gate)
    t0 = time.monotonic()
    rec.action_id = _record(db, rec)

    try:
        state = adapter.read(p.args)
    except ActionError as exc:
        return _finish(db, rec, FAILED, "the target could not be read; nothing was written", error=str(exc))
    if state.fingerprint != p.fingerprint:
        if state.fingerprint == p.expected:
            rec.verification = _verify(adapter, p, ctx, {}).to_dict()
            return _finish(db, rec, UNCHANGED, "the target was already in the planned state; nothing written")
        return _finish(db, rec, ABORTED, "the target changed since the plan; nothing was written — plan again",
                       error=f"{p.target}: state moved since the plan (fingerprint {p.fingerprint[:12]} → "
                             f"{state.fingerprint[:12]})")
    if not p.changes:
        rec.verification = _verify(adapter, p, ctx, {}).to_dict()
        return _finish(db, rec, UNCHANGED, "already in the planned state; nothing written")
    try:
        applied = adapter.apply(p, state, ctx)
    except StateMoved as exc:
        return _finish(db, rec, ABORTED, "the target changed while writing; nothing was written", error=str(exc))
    except ActionError as exc:
        return _finish(db, rec, FAILED, "the change was not made", error=str(exc))
    except OSError as exc:  # disk full, permission denied: atomic_write left the old file in place
        return _finish(db, rec, FAILED, "the change was not made", error=f"{p.target}: cannot write: {exc}")
    except Exception as exc:  # a bug: on record before it surfaces
        _finish(db, rec, FAILED, "the action stopped on an internal error", error=f"{type(exc).__name__}: {exc}")
        raise
    rec.timings["write_s"] = round(time.monotonic() - t0, 3)
    ver = _verify(adapter, p, ctx, applied)
    rec.verification = ver.to_dict()
    rec.timings["verified_s"] = round(time.monotonic() - t0, 3)
    if ver.ok:
        return _finish(db, rec, VERIFIED, ver.message, applied=applied)
    return _finish(db, rec, UNVERIFIED, f"written, but not verified: {ver.message}", applied=applied)


def _verify(adapter: Adapter, p: Plan, ctx: RunContext, applied: dict[str, Any]) -> Verification:
    timeout = float(adapter.target.get("verify_timeout", getattr(adapter, "verify_timeout", DEFAULT_VERIFY_TIMEOUT)))
    start = time.monotonic()
    try:
        ver = adapter.verify(p, ctx, applied, start + timeout)
    except ActionError as exc:
        ver = Verification(False, str(exc))
    ver.elapsed_s = round(time.monotonic() - start, 3)
    return ver


def _row(rec: ActionRecord, applied: dict[str, Any] | None = None) -> dict[str, Any]:
    from oncall.store.db import now_utc

    p = rec.plan
    return {"action_id": rec.action_id or None, "status": rec.status, "at_time": now_utc(), "who": rec.who,
            "why": rec.why, "target": p.target, "adapter": p.adapter, "op": p.op, "runbook": rec.runbook,
            "step": rec.step, "undo_of": p.undo_of, "plan": p.to_dict(), "gate": rec.gate, "before": p.before,
            "after": p.after, "result": rec.result, "error": rec.error, "verification": rec.verification,
            "applied": {**(applied or {}), "timings": rec.timings} if rec.status != STARTED else None}


def _record(db: Store, rec: ActionRecord) -> int:
    """The `started` row, which takes the next action id (returned)."""
    return audit.append_row(db, _row(rec))  # action_id None: audit numbers it


def _finish(db: Store, rec: ActionRecord, status: str, result: str, *, error: str | None = None,
            applied: dict[str, Any] | None = None) -> ActionRecord:
    rec.status, rec.result, rec.error = status, scrub(result), scrub(error)
    rec.finished_at = now_iso()
    audit.append_row(db, _row(rec, applied))
    summary = f"action {rec.action_id} {status}: {rec.plan.summary}"
    db.record_event("action", summary, {"action_id": rec.action_id, "status": status, "target": rec.plan.target,
                                        "undo_of": rec.plan.undo_of, "why": rec.why}, actor=rec.who)
    return rec


# -- undo ---------------------------------------------------------------------------------------------
def plan_undo(action_id: int, *, db: Store, config: ActionsConfig | None = None,
              adapter: Adapter | None = None) -> Plan:
    """The plan that puts back what action `action_id` changed; refuses if the target moved since."""
    rows = audit.action_rows(db, action_id)
    if not rows:
        raise ActionError(f"no action {action_id} in this incident (oncall action list shows them)")
    last = rows[-1]
    if last["status"] not in WRITTEN_STATUSES:
        raise NotUndoable(f"action {action_id} wrote nothing ({last['status']}); there is nothing to undo")
    for u in audit.undone_by(db, action_id):
        if u["status"] in (*WRITTEN_STATUSES, UNCHANGED):
            raise NotUndoable(f"action {action_id} was already undone by action {u['action_id']}")
    original = Plan.from_dict(last["plan"])
    adapter = adapter or get_adapter(original.target, config, incident=getattr(db, "path", None))
    state = adapter.read(original.args)
    if state.fingerprint != original.expected:
        raise StateMoved(f"{original.target} changed since action {action_id} ({original.summary}); undoing it "
                         "would overwrite that later change. Look at the target and plan a new action instead")
    prop = adapter.restore(original, state)
    prop.summary = f"undo action {action_id}: {prop.summary}"
    args = prop.args if prop.args is not None else original.args
    fingerprint = adapter.read(args).fingerprint if prop.args is not None else state.fingerprint
    return _make_plan(adapter, f"undo-{original.op}", args, fingerprint, prop, action_id)


def undo(action_id: int, *, db: Store, confirm: bool | str | None, who: str | None = None, why: str | None = None,
         config: ActionsConfig | None = None) -> ActionRecord:
    p = plan_undo(action_id, db=db, config=config)
    return execute(p, db=db, confirm=confirm, who=who, why=why or f"undo action {action_id}")


def check_writable(db: Store) -> None:
    """Refuse early (before planning) when the incident is open read-only."""
    if getattr(db, "read_only", False):
        raise Refused("the incident is open read-only (--read-only): actions are disabled; "
                      "--dry-run shows the plan without writing")
