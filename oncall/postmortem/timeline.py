"""The incident's timeline: what happened in the data and what the responder did, in one stream.

Data entries come from `changes` (each cause's first appearance with its effects, each unexplained
shift, the end of a burst) and from recovery: the first bucket after a mitigation in which an
effect's cohort is back within noise of its value before the cause. Responder entries come from
the trail (loads, labels, notes, replays with their summaries, runbooks and their gates, actions
and undos). Every entry has its time in UTC, its source and what reproduces it: a filter, a
request id, a replay run or an action id. Entries can be starred for the report (table `stars`,
latest row per entry wins).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from oncall.display import iso_z

if TYPE_CHECKING:
    from oncall.store.contracts import ReadStore, Store

# Responder trail kinds, as they read on a timeline.
_KIND = {"load": "load", "label": "label", "note": "note", "replay": "replay", "runbook": "runbook",
         "action": "action", "demo": "load"}
RECOVERY_MAX_BUCKETS = 200


@dataclass
class Entry:
    at: str  # ISO 8601 UTC, 'Z'
    source: str  # data | responder
    kind: str  # cause | shift | burst_end | recovery | still_degraded | detection | load | label | note | replay | runbook | action | undo
    summary: str
    key: str  # stable: what a star refers to
    actor: str | None = None
    ref: dict[str, Any] = field(default_factory=dict)  # filter | request | run_id | action_id
    detail: dict[str, Any] = field(default_factory=dict)
    starred: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


iso = iso_z  # the hand-off's one spelling of a time (display.iso_z)


def _ts(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def timeline(db: ReadStore, *, since: str | None = None, until: str | None = None,
             found: list[Any] | None = None) -> list[Entry]:
    """Every entry, oldest first (`found`: the changes already computed, to spare a second scan)."""
    from oncall.query.changes import changes

    con = db.cursor()
    if found is None:
        found = changes(con)
    entries = _data_entries(found)
    responder = _trail_entries(con)
    entries += responder
    entries += _recoveries(con, found, responder)
    detection = _detection(responder)
    if detection:
        entries.append(detection)
    stars = starred_keys(con)
    for e in entries:
        e.starred = e.key in stars
    entries.sort(key=lambda e: (e.at, 0 if e.source == "data" else 1, e.key))
    lo = iso(since) if since else None
    hi = iso(until) if until else None
    return [e for e in entries if (lo is None or e.at >= lo) and (hi is None or e.at < hi)]


def _change_key(c: dict[str, Any]) -> str:
    cohort = ",".join(f"{k}={v}" for k, v in sorted((c.get("cohort") or {}).items()))
    return f"change:{c['kind']}:{c.get('metric') or ''}:{cohort}:{c['began_at']}"


def _data_entries(found: list[Any]) -> list[Entry]:
    out = []
    for ch in found:
        c = ch.to_dict() if hasattr(ch, "to_dict") else dict(ch)
        kind = "shift" if c["kind"] == "metric_shift" else "cause"
        effects = [{"metric": e.get("metric"), "description": e.get("description"), "began_at": e.get("began_at"),
                    "filter": e.get("filter")} for e in c.get("effects") or []]
        out.append(Entry(at=iso(c["began_at"]) or "", source="data", kind=kind,
                         summary=c.get("description") or c.get("title") or c["kind"], key=_change_key(c),
                         ref={"filter": c.get("filter")},
                         detail={"change": c["kind"], "before": c.get("before"), "after": c.get("after"),
                                 "cohort": c.get("cohort"), "requests": c.get("affected_requests"),
                                 "effects": effects, "ended_at": c.get("ended_at")}))
        if c.get("ended_at"):
            out.append(Entry(at=iso(c["ended_at"]) or "", source="data", kind="burst_end",
                             summary=f"ended: {c.get('title') or c.get('description')}",
                             key=_change_key(c) + ":end", ref={"filter": c.get("filter")}))
    return out


def _trail_entries(con: Any) -> list[Entry]:
    rows = con.execute("SELECT event_id, at_time, actor, kind, summary, detail FROM trail ORDER BY event_id").fetchall()
    out = []
    for event_id, at, actor, kind, summary, detail in rows:
        d = json.loads(detail) if isinstance(detail, str) and detail else (detail or {})
        ref: dict[str, Any] = {}
        k = _KIND.get(kind, kind)
        if kind == "label":
            ref = {"request": d.get("request") or d.get("span_pk")}
        elif kind == "note" and d.get("span_pk"):
            ref = {"span_pk": d.get("span_pk")}
        elif kind == "replay":
            ref = {"run_id": d.get("run_id")}
        elif kind == "action":
            ref = {"action_id": d.get("action_id")}
            if d.get("undo_of"):
                k = "undo"
        elif kind == "runbook":
            ref = {"runbook": d.get("runbook")}
        out.append(Entry(at=iso(at) or "", source="responder", kind=k, summary=summary, key=f"trail:{event_id}",
                         actor=actor, ref=ref, detail=d if isinstance(d, dict) else {"detail": d}))
    return out


def _detection(responder: list[Entry]) -> Entry | None:
    """When the incident was picked up: the responder's first own act on it (the demo's build is not)."""
    for e in responder:
        if e.detail.get("runbook") == "demo" or e.actor == "oncall demo":
            continue
        return Entry(at=e.at, source="responder", kind="detection", summary=f"first response: {e.summary}",
                     key="detection", actor=e.actor, ref=e.ref)
    return None


WROTE = ("verified", "unverified")  # an action's final statuses that mean its change was written


def undone(responder: list[Entry]) -> dict[int, Entry]:
    """{action id: the undo entry that put it back} for every action an undo reverted."""
    out: dict[int, Entry] = {}
    for e in responder:
        if e.kind == "undo" and e.detail.get("status") in WROTE and e.detail.get("undo_of") is not None:
            out[int(e.detail["undo_of"])] = e
    return out


def mitigations(responder: list[Entry]) -> list[Entry]:
    """The actions still in force, oldest first: changed something, were verified, and were not undone
    since. An undo puts the problem back, so neither it nor the action it reverted is a mitigation;
    the last of these is *the* mitigation."""
    gone = undone(responder)
    return [e for e in responder if e.kind == "action" and e.detail.get("status") == "verified"
            and _action_id(e) not in gone]


def done_and_undone(responder: list[Entry]) -> list[tuple[Entry, Entry]]:
    """(action, its undo) for every action that was taken and then reverted, oldest first."""
    gone = undone(responder)
    return [(e, gone[_action_id(e)]) for e in responder
            if e.kind == "action" and e.detail.get("status") in WROTE and _action_id(e) in gone]


def _action_id(e: Entry) -> int:
    return int(e.ref.get("action_id") or e.detail.get("action_id") or 0)


def _recoveries(con: Any, found: list[Any], responder: list[Entry]) -> list[Entry]:
    mits = mitigations(responder)
    if not mits:
        return []
    out = []
    for ch in found:
        c = ch.to_dict() if hasattr(ch, "to_dict") else dict(ch)
        after = [m for m in mits if m.at >= iso(c["began_at"])]
        if not after:
            continue
        m = after[0]
        for eff in (c.get("effects") or [])[:3] or ([c] if c.get("metric") else []):
            rec = recovery_time(con, eff, _ts(m.at), bucket_s=int(c.get("bucket_s") or 300))
            if rec is None:
                # Not back yet: as traffic keeps arriving (live), the timeline says so, at the newest data,
                # until a bucket is back within noise and this becomes "recovered".
                degraded = _still_degraded(con, c, eff, m)
                if degraded is not None:
                    out.append(degraded)
                continue
            out.append(Entry(at=iso(rec["at"]) or "", source="data", kind="recovery",
                             summary=f"recovered: {eff.get('description') or eff.get('metric')} back within noise "
                                     f"({rec['value']:.4g} against {rec['before']:.4g} before)",
                             key=f"recovery:{_change_key(c)}:{eff.get('metric')}", ref={"filter": rec["filter"]},
                             detail={"after_action": m.ref.get("action_id"), **{k: v for k, v in rec.items()
                                                                                 if k != "at"}}))
    return out


def _still_degraded(con: Any, c: dict[str, Any], eff: dict[str, Any], m: Entry) -> Entry | None:
    """'still degraded' for an effect with no recovered bucket since the mitigation, as of the newest
    call of its cohort after it (None when no call came after the mitigation: nothing to tell)."""
    from oncall.query.filters import compile_filter

    words = _without_window(eff.get("filter") or c.get("filter"))
    f = compile_filter(con, words, alias="s")
    last, n = con.execute(f"SELECT max(s.start_time), count(*) FROM spans s WHERE {f.where} AND s.start_time >= ?",
                          [*f.params, _ts(m.at)]).fetchone()
    if not n:
        return None
    what = eff.get("description") or eff.get("metric")
    return Entry(at=iso(last) or "", source="data", kind="still_degraded",
                 summary=f"still degraded: {what} not back within noise in {int(n):,} calls since the action",
                 key=f"still_degraded:{_change_key(c)}:{eff.get('metric')}",
                 ref={"filter": " ".join(words + [f"since={iso(_ts(m.at))}"])},
                 detail={"after_action": m.ref.get("action_id"), "metric": eff.get("metric"), "requests": int(n)})


def _without_window(text: str | None) -> list[str]:
    import shlex

    if not text:
        return []
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    return [w for w in words if not w.startswith(("since=", "until="))]


def recovery_time(con: Any, effect: dict[str, Any], after: dt.datetime, *, bucket_s: int) -> dict[str, Any] | None:
    """The first bucket after `after` where the effect's cohort is back within noise of its value
    before the cause (|z| < 3 against that value, or within 10 % of it), with at least 10 rows."""
    from oncall.query.filters import compile_filter
    from oncall.query.metrics import SIGNALS
    from oncall.query.registry import DuckDB

    metric, before = effect.get("metric"), effect.get("before")
    if metric not in SIGNALS or before is None:
        return None
    sg = SIGNALS[metric]
    if metric == "json_key_drift":
        return None  # needs the before-period's key sets; its cause's other effects cover it
    words = _without_window(effect.get("filter"))
    c = compile_filter(con, words, alias="s")
    d = DuckDB("s")
    sql = (f"SELECT time_bucket(INTERVAL '{int(bucket_s)} seconds', s.start_time) AS b, count(v) AS n, avg(v) AS m, "
           f"var_samp(v) AS var FROM (SELECT s.start_time, {sg.row_sql(d)} AS v "
           f"FROM spans s WHERE {c.where} AND s.start_time >= ?) s GROUP BY 1 ORDER BY 1 LIMIT {RECOVERY_MAX_BUCKETS}")
    rows = con.execute(sql, [*d.params, *c.params, after]).fetchall()
    before = float(before)
    for b, n, m, var in rows:
        if not n or n < 10 or m is None:
            continue
        if sg.kind == "rate":
            p0 = min(max(before, 1e-6), 1 - 1e-6)
            z = (float(m) - before) / ((p0 * (1 - p0) / n) ** 0.5)
        else:
            sd = (float(var) ** 0.5) if var else 0.0
            z = (float(m) - before) / (sd / n ** 0.5) if sd else (0.0 if float(m) == before else float("inf"))
        close = before and abs(float(m) - before) <= 0.1 * abs(before)
        if abs(z) < 3 or close:
            at = max(b if b.tzinfo else b.replace(tzinfo=dt.UTC), after)
            return {"at": at, "value": float(m), "before": before, "metric": metric, "requests": int(n),
                    "filter": " ".join(words + [f"since={iso(after)}"])}
    return None


def timeline_document(entries: list[Entry]) -> dict[str, Any]:
    """What `oncall timeline --json` prints (and the console's ctrl+s writes): the zone and the entries,
    through the export redactor (secrets and PII in notes and summaries; the key stays as stored, since
    `oncall timeline star KEY` takes it back)."""
    from oncall.redact import redact_export_value

    out = []
    for e in entries:
        d = e.to_dict()
        key = d.pop("key")
        out.append({**redact_export_value(d), "key": key})
    return {"zone": "UTC", "entries": out}


def starred_keys(con: Any) -> set[str]:
    rows = con.execute("SELECT entry_key, arg_max(starred, star_id) FROM stars GROUP BY entry_key").fetchall()
    return {k for k, on in rows if on}


def star(db: Store, key: str, on: bool = True, author: str | None = None) -> int:
    """Star (or unstar) a timeline entry for the report."""
    from oncall.store.db import current_user, now_utc

    return db.append("stars", {"entry_key": key, "starred": on, "author": author or current_user(),
                               "created_at": now_utc()})


def data_signature(con: Any) -> tuple[Any, ...]:
    """The spans in a few numbers (how many, the newest span_pk): a load since changes it, so the
    data's entries (what changed) must be computed again."""
    return tuple(con.execute("SELECT count(*), max(span_pk) FROM spans").fetchone())


def incident_signature(con: Any) -> tuple[Any, ...]:
    """What a timeline or draft is built from, in a few counts: requests, trail events, stars, labels,
    actions. A write by this very console (a star, a label) is not reported by the store's refresh, so
    a screen coming back compares these instead."""
    out: list[Any] = [data_signature(con)]
    for sql in ("SELECT count(*), max(event_id) FROM trail", "SELECT count(*) FROM stars",
                "SELECT count(*) FROM labels", "SELECT count(*) FROM actions"):
        try:
            out.append(tuple(con.execute(sql).fetchone()))
        except Exception:  # noqa: BLE001 - an incident without that table has nothing of it
            out.append(None)
    return tuple(out)
