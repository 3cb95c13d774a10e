"""`oncall watch`: what changed on a rolling window, notified once per new cause, resolved on recovery.

Each check runs what-changed (query.changes) over the last `window` of LLM calls and turns every
entry into an alert with a stable key:
- a cause (a served model, prompt version, release, provider or requested model) alerts when its
  value was never seen before the window: a value that merely returned is not new;
- an unexplained metric shift beyond noise alerts as itself (the metric, the cohort, the direction).
Alerts already sent are in the incident's journal (`notifications`, one row per alert, action and
target), so a restarted watch, or the next `--once` from cron, never sends one twice.

An open alert resolves when its cohort is back within noise (live.recovery): no call of the cause's
value in the recent period, and every effect it was sent with reads as noise against the cohort's
baseline before the cause began. A resolved cause alerts again only if its value comes back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oncall.live.notify import Alert, NotifyError, Target
from oncall.live.recovery import RecoveryCheck, check_recovered, cohort_where
from oncall.query.changes import Change, changes
from oncall.query.filters import parse_filter
from oncall.store.db import IncidentDB, now_utc

CAUSE_DIMENSIONS = {"new_served_model": "served_model", "new_prompt_version": "prompt_version",
                    "new_release": "release", "new_provider": "provider", "new_model": "model"}
MAX_EFFECTS = 6


@dataclass
class CheckResult:
    at: str
    window_start: str
    changes: int
    sent: list[dict[str, Any]] = field(default_factory=list)  # {action, dedup_key, target, title}
    failed: list[str] = field(default_factory=list)
    open: list[str] = field(default_factory=list)  # dedup keys still open after the check
    waiting: dict[str, str] = field(default_factory=dict)  # open key -> why it has not resolved yet

    @property
    def notified(self) -> bool:
        return bool(self.sent)

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at, "window_start": self.window_start, "changes": self.changes, "sent": self.sent,
                "failed": self.failed, "open": self.open, "waiting": self.waiting}


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def dedup_key(db_path: Path, change: Change) -> str:
    """Stable for one cause (or one metric shift) of one incident, whatever check finds it."""
    dim = CAUSE_DIMENSIONS.get(change.kind)
    what = [change.kind, *(f"{k}={v}" for k, v in sorted(change.cohort.items()))]
    what += [f"{dim}={change.after}"] if dim else [f"metric={change.metric}",
                                                    f"up={_up(change.before, change.after)}"]
    digest = hashlib.sha256("\x1f".join([str(db_path.resolve()), *what]).encode()).hexdigest()[:24]
    return f"oncall-{digest}"


def _up(before: Any, after: Any) -> bool:
    try:
        return float(after) > float(before)
    except (TypeError, ValueError):
        return True


def open_command(db_path: Path, change: Change, source: str | None = None) -> str:
    """The command a responder runs to see it: the cohort's requests, newest first (with a source:
    the console on the source's window from the cause's start)."""
    if source:
        since = change.began_at or ""
        return f"oncall --db {shlex.quote(str(db_path))} open --source {shlex.quote(source)} --since {since}".rstrip()
    return f"oncall --db {shlex.quote(str(db_path))} search {change.filter}".rstrip()


def _effect_lines(change: Change) -> list[str]:
    out = [str(e.get("description") or e.get("metric")) for e in change.effects[:MAX_EFFECTS]]
    return out or ([change.description] if change.description and change.description != change.title else [])


def build_alert(db: IncidentDB, change: Change, key: str, action: str, *, at: dt.datetime,
                recovery: RecoveryCheck | None = None, source: str | None = None) -> Alert:
    title = change.title or change.description
    effects = _effect_lines(change)
    counts: dict[str, Any] = {"affected_requests": change.affected_requests}
    if recovery is not None:
        counts["recent_requests"] = recovery.requests
    if action == "trigger":
        summary = title + (": " + "; ".join(effects[:3]) if effects else "") + \
            f" ({change.affected_requests:,} requests)"
    else:
        summary = f"resolved: {title}: back within noise since {recovery.since if recovery else '?'}"
    return Alert(action=action, dedup_key=key, title=title, summary=summary, effects=effects, counts=counts,
                 command=open_command(db.path, change, source), cohort=dict(change.cohort), kind=change.kind,
                 began_at=change.began_at, at=_iso(at), incident=str(db.path),
                 detail={"filter": change.filter, "metric": change.metric, "before": change.before,
                         "after": change.after})


# -- state in the journal -------------------------------------------------------------------------

def notification_state(db: IncidentDB) -> dict[tuple[str, str], dict[str, Any]]:
    """(dedup_key, target) -> the latest notification row sent."""
    rows = db.cursor().execute(
        "SELECT dedup_key, target, action, at_time, detail FROM notifications "
        "QUALIFY row_number() OVER (PARTITION BY dedup_key, target ORDER BY notification_id DESC) = 1").fetchall()
    return {(r[0], r[1]): {"action": r[2], "at": r[3], "detail": r[4]} for r in rows}


def _record(db: IncidentDB, alert: Alert, target: Target, change: Change, trigger_detail: dict[str, Any]) -> None:
    db.append("notifications", {
        "at_time": now_utc(), "dedup_key": alert.dedup_key, "action": alert.action, "target": target.name,
        "target_kind": target.kind, "kind": alert.kind, "title": alert.title, "detail": trigger_detail})


# -- one check ------------------------------------------------------------------------------------

def check(db: IncidentDB, targets: list[Target], *, window: dt.timedelta, recent: dt.timedelta,
          filter_words: list[str] | None = None, now: dt.datetime | None = None,
          data: IncidentDB | None = None, source: str | None = None) -> CheckResult:
    """Run what-changed on the window, send new alerts and resolutions, record what was sent.

    The calls are read from `data` (with --source: a scratch incident holding the source's window)
    or else from `db`; what was sent is always kept in `db`'s journal."""
    db.refresh()
    src = data or db
    src.refresh()
    now = now or now_utc()
    start = now - window
    words = list(filter_words or [])
    flt = parse_filter([*words, f"since={_iso(start)}"])
    found = changes(src.cursor(), flt)
    result = CheckResult(at=_iso(now), window_start=_iso(start), changes=len(found))
    state = notification_state(db)
    con = src.cursor()
    by_key: dict[str, Change] = {}
    for change in found:
        if change.kind in CAUSE_DIMENSIONS and _seen_before(con, change, start, words):
            continue  # a value that returned is not new
        by_key[dedup_key(db.path, change)] = change
    for key, change in by_key.items():
        for target in targets:
            last = state.get((key, target.name))
            if last is not None and last["action"] == "trigger":
                continue  # sent already; resolution is decided below
            if last is not None and last["action"] == "resolve" and not _active_since(con, change, last["at"], words):
                continue  # resolved and its value has not come back
            detail = _trigger_detail(change)
            _send(db, target, build_alert(db, change, key, "trigger", at=now, source=source), change, detail, result)
    # Resolutions: every alert still open on a target, whether or not this window still lists it.
    for (key, target_name), last in state.items():
        if last["action"] != "trigger":
            continue
        target = next((t for t in targets if t.name == target_name), None)
        if target is None:
            continue  # sent to a target this watch does not notify
        detail = _json(last["detail"])
        rec = check_recovered(con, detail, recent=recent, now=now, filter_words=words)
        if not rec.recovered:
            if key not in result.open:
                result.open.append(key)
            result.waiting[key] = rec.reason
            continue
        change = _change_from_detail(detail)
        _send(db, target, build_alert(db, change, key, "resolve", at=now, recovery=rec, source=source), change,
              {**detail, "recovered": rec.as_dict()}, result)
    for key in by_key:
        if key not in result.open and any(s["dedup_key"] == key and s["action"] == "trigger" for s in result.sent):
            result.open.append(key)
    return result


def _send(db: IncidentDB, target: Target, alert: Alert, change: Change, detail: dict[str, Any],
          result: CheckResult) -> None:
    try:
        target.send(alert)
    except NotifyError as exc:
        result.failed.append(str(exc))
        return
    _record(db, alert, target, change, detail)
    result.sent.append({"action": alert.action, "dedup_key": alert.dedup_key, "target": target.name,
                        "title": alert.title, "summary": alert.summary})


def _trigger_detail(change: Change) -> dict[str, Any]:
    """What resolving needs later, kept with the alert in the journal (restarts included)."""
    return {"kind": change.kind, "dimension": CAUSE_DIMENSIONS.get(change.kind), "value": change.after,
            "before": change.before, "cohort": dict(change.cohort), "began_at": change.began_at,
            "metric": change.metric, "filter": change.filter, "title": change.title,
            "description": change.description, "affected_requests": change.affected_requests,
            "effects": [{"metric": e.get("metric"), "description": e.get("description")}
                        for e in change.effects[:MAX_EFFECTS]]}


def _change_from_detail(detail: dict[str, Any]) -> Change:
    return Change(kind=detail["kind"], metric=detail.get("metric"), cohort=detail.get("cohort") or {},
                  began_at=detail.get("began_at") or "", ended_at=None, before=detail.get("before"),
                  after=detail.get("value"), relative_change=None,
                  affected_requests=int(detail.get("affected_requests") or 0), impact=0.0, significance="",
                  p_value=None, description=detail.get("description") or "", filter=detail.get("filter") or "",
                  effects=detail.get("effects") or [], title=detail.get("title") or "")


def _json(value: Any) -> dict[str, Any]:
    import orjson

    if isinstance(value, str):
        return orjson.loads(value)
    return dict(value or {})


def _seen_before(con: Any, change: Change, start: dt.datetime, words: list[str]) -> bool:
    dim = CAUSE_DIMENSIONS[change.kind]
    where, params = cohort_where(con, change.cohort, words, [])
    return bool(con.execute(f"SELECT count(*) FROM (SELECT 1 FROM spans s WHERE {where} AND s.{dim} = ? "
                            "AND s.start_time < ? LIMIT 1)", [*params, change.after, start]).fetchone()[0])


def _active_since(con: Any, change: Change, since: Any, words: list[str]) -> bool:
    """A cause's value seen again after it was resolved (a metric shift: never re-sent once resolved
    unless what-changed finds it anew after that time)."""
    dim = CAUSE_DIMENSIONS.get(change.kind)
    if dim is None:
        began = dt.datetime.fromisoformat(change.began_at.replace("Z", "+00:00")) if change.began_at else None
        return began is not None and began > since
    where, params = cohort_where(con, change.cohort, words, [])
    return bool(con.execute(f"SELECT count(*) FROM (SELECT 1 FROM spans s WHERE {where} AND s.{dim} = ? "
                            "AND s.start_time > ? LIMIT 1)", [*params, change.after, since]).fetchone()[0])
