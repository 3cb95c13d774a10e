"""The postmortem draft: what the incident database knows, as Markdown a human finishes.

Every number is computed here from the database, and the command that reproduces it is listed in
the appendix (numbered [n] beside the number). Sections a machine cannot write — root cause and
trigger, what went well or badly — are marked for a human. Everything quoted from the data goes
through the export redactor (secrets and PII) and is fenced or escaped so it renders as text.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from oncall.display import gate_actual, metric_value, unit_of
from oncall.postmortem.markdown import Raw, code, fence, mermaid_label, table
from oncall.postmortem.timeline import Entry, done_and_undone, iso, mitigations, timeline
from oncall.query.ids import request_key_sql
from oncall.query.labels import LATEST_LABELS, REQUEST_NOTES

if TYPE_CHECKING:
    from oncall.store.contracts import ReadStore

EVIDENCE_MAX = 5


@dataclass
class Query:
    """A number's provenance: the command a reader runs to get it again."""

    n: int
    what: str
    command: str


@dataclass
class Draft:
    markdown: str
    facts: dict[str, Any]
    queries: list[Query] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)  # the timeline the draft was built from

    def to_dict(self) -> dict[str, Any]:
        return {"markdown": self.markdown, "facts": self.facts,
                "queries": [{"n": q.n, "what": q.what, "command": q.command} for q in self.queries]}


# The responder acting this long after the data's last span means an old export: the response is on
# another clock than the incident, and a duration that spans both would be meaningless.
CLOCK_SLACK = dt.timedelta(hours=1)


@dataclass
class Clocks:
    """The incident's own clock (the data's first and last span) and the responder's (their first
    and last act). Durations are measured on the data's clock; where the two are apart (an export
    read days later), the draft says both."""

    data_start: str | None
    data_end: str | None
    response_start: str | None
    response_end: str | None

    @property
    def apart(self) -> bool:
        """The response happened after the data ends (more than CLOCK_SLACK later)."""
        if not self.data_end or not self.response_start:
            return False
        return _t(self.response_start) > _t(self.data_end) + CLOCK_SLACK

    def in_data(self, at: str) -> bool:
        """Whether a responder's time falls on the data's clock (while the data was still coming)."""
        return bool(self.data_end) and _t(at) <= _t(self.data_end) + CLOCK_SLACK

    def gap(self) -> str:
        """How far after the data ends the response began: `13 days`, `5 hours`."""
        seconds = (_t(self.response_start or "") - _t(self.data_end or "")).total_seconds()
        return _span_text(seconds)


def _t(at: str) -> dt.datetime:
    return dt.datetime.fromisoformat(at.replace("Z", "+00:00"))


def _span_text(seconds: float) -> str:
    """A duration as people say it: `14 min`, `5.2 hours`, `13 days`."""
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 86400:.0f} days"


def clocks(con: Any, responder: list[Entry]) -> Clocks:
    first, last = con.execute("SELECT min(start_time), max(coalesce(end_time, start_time)) FROM spans").fetchone()
    acts = [e.at for e in responder if e.kind not in ("load", "detection") and e.actor != "oncall demo"
            and e.detail.get("runbook") != "demo"]
    return Clocks(iso(first), iso(last), min(acts) if acts else None, max(acts) if acts else None)


class _Appendix:
    def __init__(self, db_path: str) -> None:
        self.db = db_path
        self.queries: list[Query] = []

    def ref(self, what: str, argv: list[str]) -> str:
        cmd = "oncall --db " + shlex.quote(self.db) + " " + " ".join(shlex.quote(a) for a in argv)
        self.queries.append(Query(len(self.queries) + 1, what, cmd))
        return f"[{len(self.queries)}]"


def _redact(text: str | None) -> str:
    from oncall.redact import redact_export

    return redact_export(text or "") or ""


def _count(con: Any, flt: str) -> int:
    from oncall.query.search import count

    return int(count(con, flt))


def _words(flt: str | None) -> list[str]:
    try:
        return shlex.split(flt or "")
    except ValueError:
        return (flt or "").split()


def _baseline_of(change: dict[str, Any]) -> str:
    """The same cohort before the cause: its cohort terms, until its first appearance."""
    from oncall.query.filters import quote_value

    terms = [f"{k}={quote_value(str(v))}" for k, v in (change.get("cohort") or {}).items()]
    return " ".join(terms + [f"until={change['began_at']}"])


def build_draft(db: ReadStore, *, title: str | None = None, found: list[Any] | None = None) -> Draft:
    """The whole draft (changes are computed once and shared with the timeline)."""
    from oncall.query.changes import changes

    con = db.cursor()
    found = found if found is not None else changes(con)
    causes = [c.to_dict() if hasattr(c, "to_dict") else dict(c) for c in found]
    entries = timeline(db, found=found)
    app = _Appendix(str(db.path))
    facts: dict[str, Any] = {"generated_at": iso(dt.datetime.now(dt.UTC)), "db": str(db.path)}
    responder = [e for e in entries if e.source == "responder"]
    mits = mitigations(responder)
    undone = done_and_undone(responder)
    clock = clocks(con, responder)
    facts["clocks"] = {"data": [clock.data_start, clock.data_end],
                       "response": [clock.response_start, clock.response_end], "apart": clock.apart}
    facts["mitigation"] = {"in_force": [m.ref.get("action_id") for m in mits],
                           "undone": [{"action_id": a.ref.get("action_id"), "undone_by": u.ref.get("action_id")}
                                      for a, u in undone]}
    impact_rows, impact = _impact(con, causes, mits, app, clock)
    facts["impact"] = impact
    facts["causes"] = [{k: c.get(k) for k in ("kind", "description", "began_at", "ended_at", "before", "after",
                                               "together_with", "cohort", "filter", "affected_requests")}
                       for c in causes]
    evidence = _evidence(con)
    facts["evidence"] = [{k: v for k, v in e.items() if k != "output"} for e in evidence]
    actions = _actions(con)
    facts["actions"] = [{k: a.get(k) for k in ("action_id", "status", "at_time", "who", "target", "op",
                                               "runbook", "undo_of")} for a in actions]
    replays = _replays(con, entries)
    facts["replays"] = [{"run_id": r["run_id"], "headline": r.get("headline")} for r in replays]
    blast = _blast(con, causes, mits, app)
    facts["blast_radius"] = blast
    suggested = _suggestions(db, con, found)
    facts["next_steps"] = suggested

    name = title or _title(causes)
    md: list[str] = [f"# Postmortem (draft): {_plain(name)}", ""]
    md += ["> Draft written by `oncall postmortem` at " + facts["generated_at"] + " from the incident database. "
           "Every number was computed from the database; the command behind each `[n]` is in the appendix. "
           "Sections marked ✍️ are for a human to write. All times are UTC.", ""]
    md += _summary(causes, impact, mits, undone, entries, clock)
    md += ["## Impact", "", table(["cause", "requests", "users", "sessions", "tenants", "duration",
                                   "error rate before → after", "cost/request before → after", "queries"],
                                  impact_rows) if impact_rows
           else "No cause was detected in the data, so no impact could be computed.", ""]
    md += _timeline_section(entries, clock)
    md += _what_changed(causes, app)
    md += _evidence_section(evidence)
    md += _replay_section(replays)
    md += _suggestions_section(suggested)
    md += _blast_section(blast)
    md += _mitigation_section(actions, mits, undone)
    md += ["## Root cause and trigger", "",
           "> ✍️ **To be written by a human.** The data shows *what* changed and when (above); the *why* — the "
           "upstream release notes, the deploy, the decision that let it through — is not in the traces.", ""]
    md += ["## What went well", "", "> ✍️ To be written.", "", "## What went badly", "", "> ✍️ To be written.", "",
           "## Where we got lucky", "", "> ✍️ To be written.", ""]
    md += _action_items(causes)
    md += ["## Appendix: the queries behind the numbers", ""]
    for q in app.queries:
        md.append(f"{q.n}. {_plain(q.what)}: {code(q.command, max_len=1000)}")
    md.append("")
    return Draft("\n".join(md), facts, app.queries, entries)


def _plain(text: Any) -> str:
    from oncall.postmortem.markdown import cell

    return cell(text, max_len=300)


def _title(causes: list[dict[str, Any]]) -> str:
    real = [c for c in causes if c["kind"] != "metric_shift"]
    if real:
        return real[0].get("title") or real[0].get("description") or "incident"
    if causes:
        return causes[0].get("title") or causes[0].get("description") or "incident"
    return "incident"


def _impact(con: Any, causes: list[dict[str, Any]], mits: list[Entry], app: _Appendix, clock: Clocks
            ) -> tuple[list[list[Any]], list[dict[str, Any]]]:
    """One row per cause (causes first, then unexplained shifts): who and how much it touched."""
    from oncall.query.compare import compare

    rows: list[list[Any]] = []
    out = []
    ordered = [c for c in causes if c["kind"] != "metric_shift"] + [c for c in causes if c["kind"] == "metric_shift"]
    for c in ordered[:5]:
        flt = c.get("filter") or ""
        label = c.get("title") or c.get("description") or c["kind"]
        item: dict[str, Any] = {"cause": label, "filter": flt, "requests": _count(con, flt)}
        refs = [app.ref(f"requests, users, sessions and tenants of: {label}",
                        ["search", *_words(flt), "--json", "--distinct", "user_id", "--distinct", "session_id",
                         "--distinct", "tenant"])]
        from oncall.query.search import count_distinct

        distinct = count_distinct(con, flt, ["user_id", "session_id", "tenant"])  # one scan for all three
        item.update(users=distinct["user_id"], sessions=distinct["session_id"], tenants=distinct["tenant"])
        end, until = _cause_end(c, mits, clock)
        duration = "ongoing in the data"
        if end:
            seconds = (_t(end) - _t(c["began_at"])).total_seconds()
            item["duration_minutes"] = round(seconds / 60, 1)
            item["duration_until"] = until
            duration = _span_text(seconds) + {"ended": "", "mitigation": " (to the mitigation)",
                                              "data_end": " (still on when the data ends)"}[until]
        deltas = {}
        base = _baseline_of(c)
        try:
            res = compare(con, flt, base)
        except ValueError:
            res = None
        if res is not None:
            d = res.to_dict() if hasattr(res, "to_dict") else res
            for m in d.get("metrics", []):
                if m.get("metric") in ("error_rate", "cost_per_request") and m.get("cohort") is not None:
                    item[m["metric"]] = {"before": m.get("baseline"), "after": m.get("cohort")}
                    deltas[m["metric"]] = (f"{_num(m.get('baseline'), m['metric'])} → {_num(m.get('cohort'), m['metric'])}"
                                           + (" (est.)" if m.get("estimated") else ""))
            refs.append(app.ref(f"error rate and cost per request of: {label}, against the same cohort before it",
                                ["compare", *_words(flt), "--baseline", base, "--json"]))
        rows.append([label, item["requests"], item["users"], item["sessions"], item["tenants"], duration,
                     deltas.get("error_rate", "—"), deltas.get("cost_per_request", "—"), Raw(" ".join(refs))])
        out.append(item)
    return rows, out


def _cause_end(c: dict[str, Any], mits: list[Entry], clock: Clocks) -> tuple[str | None, str]:
    """When a cause stopped, on the data's clock, and why then: it "ended" in the data, the
    "mitigation" in force after it (taken while the data was coming), or the "data_end" (still on in
    the last span: the response, if any, came after the data, on another clock)."""
    if c.get("ended_at"):
        return c["ended_at"], "ended"
    after = [m for m in mits if m.at >= (iso(c["began_at"]) or "")]
    if after and clock.in_data(after[0].at):
        return after[0].at, "mitigation"
    return clock.data_end, "data_end"


def _num(v: Any, metric: str | None = None, unit: str | None = None) -> str:
    """A number in the draft: a metric's value in its unit (rates as %, dollars), else as given."""
    if v is None:
        return "—"
    if metric or unit:
        return metric_value(v, unit if unit is not None else unit_of(metric or ""))
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _summary(causes: list[dict[str, Any]], impact: list[dict[str, Any]], mits: list[Entry],
             undone: list[tuple[Entry, Entry]], entries: list[Entry], clock: Clocks) -> list[str]:
    out = ["## Summary", ""]
    real = [c for c in causes if c["kind"] != "metric_shift"]
    if not causes:
        out.append("- `oncall changes` found no cause or shift above the noise threshold.")
    for c in causes[:5]:
        kind = "cause" if c in real else "unexplained shift"
        out.append(f"- **{_plain(c.get('title') or c.get('description'))}** ({kind}, from {c['began_at']}"
                   + (f" to {c['ended_at']}" if c.get("ended_at") else "") + ")")
    for i in impact[:5]:
        out.append(f"- {i['requests']} requests affected by {_plain(i['cause'])}, across {i.get('tenants', 0)} "
                   f"tenant(s) and {i.get('users', 0)} user(s)")
    if clock.apart:
        out.append(f"- Two clocks: the data runs {clock.data_start} → {clock.data_end}; the response ran "
                   f"{clock.response_start} → {clock.response_end}, {clock.gap()} after the data ends (an older "
                   "export). Durations are measured on the data's clock; the response's times are its own.")
    det = next((e for e in entries if e.kind == "detection"), None)
    if det:
        out.append(f"- Picked up at {det.at} ({_plain(det.summary)})")
    for action, undo in undone:
        out.append(f"- Done and undone: action {action.ref.get('action_id')} at {action.at} "
                   f"({_plain(_what(action))}), undone by action {undo.ref.get('action_id')} at {undo.at}"
                   + (f" ({_plain(undo.detail.get('why'))})" if undo.detail.get("why") else "")
                   + "; not a mitigation")
    for m in mits[:-1]:
        out.append(f"- Also in force: action {m.ref.get('action_id')} at {m.at} ({_plain(_what(m))})")
    if mits:
        m = mits[-1]
        out.append(f"- Mitigated at {m.at}: action {m.ref.get('action_id')} ({_plain(_what(m))}), still in force")
    elif undone:
        out.append("- No mitigation in force: every action taken was undone.")
    rec = [e for e in entries if e.kind == "recovery"]
    if rec:
        out.append(f"- Recovered at {rec[0].at}: {_plain(rec[0].summary)}")
    elif mits and clock.apart:
        out.append("- No recovery can be seen: the data ends before the mitigation (load traffic from after it).")
    elif mits:
        out.append("- No recovery seen in the data yet (load the export after the mitigation to see it).")
    out.append("")
    return out


def _step(text: Any) -> str:
    """A runbook step as recorded; audits written before step titles were fixed say `2. 2. Flip`."""
    return re.sub(r"^(\d+)\. \1\. ", r"\1. ", str(text or ""))


def _what(e: Entry) -> str:
    """An action's change without its "action N verified: " prefix (the draft names the id itself)."""
    text = e.summary
    head = f"action {e.ref.get('action_id')} "
    if text.startswith(head) and ": " in text:
        return text.split(": ", 1)[1]
    return text


KEY_KINDS = ("cause", "shift", "burst_end", "detection", "replay", "runbook", "action", "undo", "recovery")


def _timeline_section(entries: list[Entry], clock: Clocks) -> list[str]:
    key = [e for e in entries if e.starred or e.kind in KEY_KINDS]
    out = ["## Timeline", ""]
    if not key:
        return out + ["Nothing on the timeline yet.", ""]
    rows = []
    for e in key:
        ref = e.ref.get("filter") or e.ref.get("request") or (f"replay run {e.ref['run_id']}" if e.ref.get("run_id")
                                                              else "") or (f"action {e.ref['action_id']}"
                                                                           if e.ref.get("action_id") else "")
        rows.append([e.at.replace("T", " ").replace("Z", ""), ("★ " if e.starred else "") + e.source, e.kind,
                     e.summary, Raw(code(ref)) if ref else ""])
    out += [table(["time (UTC)", "source", "what", "summary", "reproduce"], rows), ""]
    out += _gantt(key, clock)
    return out


RESPONSE_KINDS = ("detection", "replay", "runbook", "action", "undo", "recovery")


def _gantt(entries: list[Entry], clock: Clocks) -> list[str]:
    """A Mermaid gantt chart: causes as bars (until they end, the mitigation in force, or the end of
    the data), responder events as milestones; GitHub renders it. When the response came long after
    the data (an older export), it gets a chart of its own: one axis would stretch over the days
    between and draw every cause as lasting until the responder's clock."""
    causes = [e for e in entries if e.kind in ("cause", "shift")]
    resp = [e for e in entries if e.kind in RESPONSE_KINDS]
    in_force = {int(m.ref.get("action_id") or 0) for m in mitigations([e for e in entries if e.source == "responder"])}
    mits = [e for e in entries if e.kind == "action" and int(e.ref.get("action_id") or 0) in in_force]
    bars = []
    for i, e in enumerate(causes):
        end = e.detail.get("ended_at") or next((m.at for m in mits if m.at >= e.at and clock.in_data(m.at)), None) \
            or clock.data_end
        if not end or end <= e.at:
            end = _plus(e.at, 60)
        bars.append(f"    {mermaid_label(e.summary)} :crit, c{i}, {_m(e.at)}, {_m(end)}")
    milestones = [f"    {mermaid_label(e.kind + ' ' + e.summary)} :milestone, r{i}, {_m(e.at)}, 0m"
                  for i, e in enumerate(resp)]
    if clock.apart and bars and milestones:
        return (_chart("Incident timeline (UTC, on the clock of the data)", [("What changed", bars)])
                + _chart(f"Response (UTC, {clock.gap()} after the data ends)", [("Response", milestones)]))
    return _chart("Incident timeline (UTC)", [("What changed", bars), ("Response", milestones)])


def _chart(title: str, sections: list[tuple[str, list[str]]]) -> list[str]:
    """One gantt block; `title` is our own text (no data in it), so it needs no escaping."""
    lines = ["```mermaid", "gantt", f"    title {title}", "    dateFormat YYYY-MM-DDTHH:mm:ss",
             "    axisFormat %H:%M"]
    for name, rows in sections:
        if rows:
            lines += [f"    section {name}", *rows]
    return [*lines, "```", ""]


def _m(at: str) -> str:
    return at.replace("Z", "")[:19]


def _plus(at: str, seconds: int) -> str:
    t = dt.datetime.fromisoformat(at.replace("Z", "+00:00")) + dt.timedelta(seconds=seconds)
    return iso(t) or at


def _what_changed(causes: list[dict[str, Any]], app: _Appendix) -> list[str]:
    out = ["## What changed", ""]
    real = [c for c in causes if c["kind"] != "metric_shift"]
    if not real:
        return out + ["No new served model, prompt version, release, provider, retrieval index or embedding model "
                      "appeared in the data.", ""]
    rows = []
    for c in real:
        effects = "; ".join(str(e.get("description") or e.get("metric")) for e in c.get("effects") or []) or "—"
        # What changed on the same rows (an index rebuilt with another embedding model): one cause, both named.
        together = "".join(f"; {t['dimension'].replace('_', ' ')} {_num(t.get('before'))} → {_num(t.get('after'))}"
                           for t in c.get("together_with") or [])
        rows.append([c["kind"].replace("new_", "").replace("_", " "),
                     f"{_num(c.get('before'))} → {_num(c.get('after'))}{together}",
                     c["began_at"], ", ".join(f"{k}={v}" for k, v in (c.get("cohort") or {}).items()) or "all traffic",
                     effects, Raw(app.ref(f"the cohort of {c.get('title') or c['kind']}",
                                          ["search", *_words(c.get("filter")), "--json"]))])
    return out + [table(["what", "before → after", "first seen", "cohort", "effects", "query"], rows), ""]


def _evidence(con: Any) -> list[dict[str, Any]]:
    """Up to five labelled requests, bad ones first, with the note the responder wrote."""
    rows = con.execute(
        f"""SELECT l.span_pk, l.label, nullif(concat_ws('\n', l.note, n.notes), ''), l.author, l.created_at,
                  {request_key_sql('s')}, s.output_text, s.served_model, s.tenant
           FROM {LATEST_LABELS} l JOIN spans s ON s.span_pk = l.span_pk
                LEFT JOIN {REQUEST_NOTES} n ON n.span_pk = l.span_pk
           ORDER BY (l.label = 'bad') DESC, l.created_at, l.label_id LIMIT ?""", [EVIDENCE_MAX]).fetchall()
    return [{"span_pk": r[0], "label": r[1], "note": _redact(r[2]) if r[2] else None, "author": r[3],
             "labelled_at": iso(r[4]), "request": r[5], "output": _redact(r[6]), "served_model": r[7],
             "tenant": r[8]} for r in rows]


def _evidence_section(evidence: list[dict[str, Any]]) -> list[str]:
    out = ["## Evidence", ""]
    if not evidence:
        return out + ["No request was labelled (`g`/`b` in the reader, or `oncall label ID bad --note …`).", ""]
    for e in evidence:
        out.append(f"### {e['label'].upper()}: request {code(e['request'])}")
        out.append("")
        out.append(f"Labelled {e['label']} by {_plain(e['author'])} at {e['labelled_at']}"
                   + (f"; served by {code(e['served_model'])}" if e.get("served_model") else "")
                   + (f"; tenant {code(e['tenant'])}" if e.get("tenant") else "") + ".")
        if e.get("note"):
            out.append(f"Note: {_plain(e['note'])}")
        out += ["", fence(_cut(e["output"])), ""]
    return out


def _cut(text: str, limit: int = 1500) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n… ({len(text) - limit} more characters)"


def _replays(con: Any, entries: list[Entry]) -> list[dict[str, Any]]:
    ids = []
    for e in entries:
        rid = e.ref.get("run_id") if e.kind == "replay" else None
        if rid and rid not in ids:
            ids.append(rid)
    out = []
    if not ids:
        return out
    try:
        from oncall.replay.runner import summarize
    except ImportError:
        return out
    for rid in ids:
        try:
            s = summarize(con, int(rid), per_request=False)
        except Exception as exc:  # noqa: BLE001 - a broken run must not sink the draft; it is named instead
            out.append({"run_id": rid, "headline": f"replay run {rid} could not be summarised: {exc}", "metrics": []})
            continue
        out.append({"run_id": rid, **s, "pair_labels": _pair_labels(con, int(rid))})
    return out


def _pair_labels(con: Any, run_id: int) -> list[dict[str, Any]]:
    """The responder's verdicts on this run's pairs (the compare screen's g/b), latest per pair."""
    from oncall.replay.store import labelled_pairs

    return [{"request": x["request"], "repeat_index": x["repeat_index"], "label": x["label"], "author": x["author"],
             "labelled_at": iso(x["created_at"])} for x in labelled_pairs(con, run_id)]


def _replay_section(replays: list[dict[str, Any]]) -> list[str]:
    out = ["## Replay results", ""]
    if not replays:
        return out + ["No replay was run. (`oncall replay FILTER --target NAME --repeat 3` tells a real "
                      "regression from the model's own variation.)", ""]
    for r in replays:
        run = r.get("run") or {}
        out.append(f"### Replay run {r['run_id']}: {_plain(run.get('target') or '')}")
        out.append("")
        out.append(_plain(r.get("headline") or ""))
        out.append("")
        rows = [[m.get("metric"), _num(m.get("original"), m.get("metric"), m.get("unit")),
                 _num(m.get("replay"), m.get("metric"), m.get("unit")), m.get("significance") or ""]
                for m in r.get("metrics") or []]
        if rows:
            out += [table(["metric", "original", "replay", "significance"], rows), ""]
        note = (r.get("noise") or {}).get("note")
        if note:
            out += [f"Noise: {_plain(note)}", ""]
        labels = r.get("pair_labels") or []
        if labels:
            good = sum(1 for x in labels if x["label"] == "good")
            out += [f"The responder labelled {len(labels)} replayed output(s): {good} good, {len(labels) - good} bad.", ""]
            out += [table(["request", "repeat", "label", "by", "at"],
                          [[Raw(code(x["request"])), x["repeat_index"], x["label"], _plain(x["author"] or ""),
                            x["labelled_at"]] for x in labels]), ""]
    return out


def _suggestions(db: ReadStore, con: Any, found: list[Any]) -> list[dict[str, Any]]:
    """Each cause's suggested next steps (oncall/query/next_steps.py) and which of them were taken:
    recorded by the console when the responder started one, or a replay or runbook run with its parameters."""
    from oncall.query.next_steps import load_setting, steps_for_all, taken

    steps = steps_for_all(con, found, load_setting(con, db=str(db.path), incident=db.path))
    took = taken(con, found, steps)
    out = []
    for i, (c, ss) in enumerate(zip(found, steps, strict=True)):
        d = c.to_dict() if hasattr(c, "to_dict") else dict(c)
        rows = []
        for s in ss:
            hit = next((t for t in took if t["cause_index"] == i and t["step"] == s.id), None)
            rows.append({"id": s.id, "title": s.title, "command": s.command,
                         "taken": None if hit is None else {k: (iso(v) if isinstance(v, dt.datetime) else v)
                                                            for k, v in hit.items() if k in
                                                            ("at", "actor", "how", "run_id", "runbook")}})
        if rows:
            out.append({"cause": d.get("title") or d.get("description"), "steps": rows})
    return out


def _suggestions_section(suggested: list[dict[str, Any]]) -> list[str]:
    out = ["## Suggested next steps", ""]
    if not suggested:
        return out + ["No cause came with a suggested step.", ""]
    for c in suggested:
        out += [f"**{_plain(c['cause'])}**", ""]
        for s in c["steps"]:
            t = s["taken"]
            if t is None:
                mark = "not taken"
            else:
                ref = (f", replay run {t['run_id']}" if t.get("run_id") else "") + (
                    f", runbook {t['runbook']}" if t.get("runbook") else "")
                mark = f"**taken** ({t['how']}{ref}, {t.get('at') or ''}, by {_plain(t.get('actor') or 'unknown')})"
            out.append(f"- {_plain(s['title'])}: {mark} — {code(s['command'], max_len=1000)}")
        out.append("")
    return out


def _actions(con: Any) -> list[dict[str, Any]]:
    try:
        rows = con.execute("SELECT * FROM actions ORDER BY at_time").fetchall()
        cols = [d[0] for d in con.description]
    except Exception:  # noqa: BLE001 - an incident without the actions table has no actions
        return []
    latest: dict[Any, dict[str, Any]] = {}
    for r in rows:
        d = dict(zip(cols, r, strict=True))
        aid = d.get("action_id")
        if aid is None:
            continue
        latest[aid] = d
    out = []
    for d in latest.values():
        for k in ("plan", "gate", "verification", "before", "after"):
            if isinstance(d.get(k), str):
                try:
                    d[k] = json.loads(d[k])
                except json.JSONDecodeError:
                    pass
        d["at_time"] = iso(d.get("at_time"))
        out.append(d)
    return sorted(out, key=lambda d: d["action_id"])


def _mitigation_section(actions: list[dict[str, Any]], mits: list[Entry],
                        undone: list[tuple[Entry, Entry]]) -> list[str]:
    out = ["## Mitigation", ""]
    if not actions:
        return out + ["No action was taken through oncall (`oncall runbook run …` or `oncall action run …`).", ""]
    in_force = [int(m.ref.get("action_id") or 0) for m in mits]
    undone_by = {int(a.ref.get("action_id") or 0): u for a, u in undone}
    if in_force:
        out += [f"The mitigation is action {in_force[-1]}, the last action still in force"
                + (f" (also in force: {', '.join(f'action {i}' for i in in_force[:-1])})" if in_force[1:] else "")
                + ".", ""]
    else:
        out += ["No action is in force: " + ("every action taken was undone." if undone_by else
                                             "no action changed something and verified."), ""]
    for a in actions:
        plan = a.get("plan") or {}
        aid = int(a["action_id"])
        title = f"### Action {aid}: {_plain(plan.get('summary') or a.get('op'))}"
        out += [title, ""]
        if aid in undone_by:
            u = undone_by[aid]
            state = f"undone by action {u.ref.get('action_id')} at {u.at}: not in force"
        elif aid in in_force:
            state = "in force" + (" (the mitigation)" if aid == in_force[-1] else "")
        elif a.get("undo_of"):
            state = f"the undo of action {a['undo_of']}"
        else:
            state = "nothing in force"
        out.append(table(["", ""], [
            ["status", a.get("status")], ["now", state], ["at", a.get("at_time")], ["who", a.get("who")],
            ["why", a.get("why")],
            ["target", f"{a.get('target')} ({a.get('adapter')} {a.get('op')})"],
            ["runbook", f"{a.get('runbook')}, step {_step(a.get('step'))}" if a.get("runbook") else "—"],
            ["undo of", a.get("undo_of") or "—"],
            ["result", a.get("result") or a.get("error")],
            ["verification", (a.get("verification") or {}).get("message") if isinstance(a.get("verification"), dict)
             else a.get("verification")],
        ]))
        gate = a.get("gate")
        if gate:
            for g in (gate.get("gates") if isinstance(gate, dict) else None) or []:
                checks = "; ".join(f"{c['expect']} ({'pass' if c['passed'] else 'FAIL'}: {gate_actual(c)})"
                                   for c in g.get("checks") or [])
                out += ["", f"Evidence gate: {code(g.get('command'))} — {'passed' if g.get('passed') else 'FAILED'}"
                        + (f"; {_plain(checks)}" if checks else "")]
        diff = plan.get("diff") or []
        if diff:
            out += ["", fence("\n".join(diff), "diff")]
        out.append("")
    return out


def _blast(con: Any, causes: list[dict[str, Any]], mits: list[Entry], app: _Appendix) -> list[dict[str, Any]]:
    from oncall.query.blast_radius import blast_radius

    out = []
    for c in [c for c in causes if c["kind"] in ("new_served_model", "new_prompt_version")][:2]:
        after = [m for m in mits if m.at >= iso(c["began_at"])]
        when = dt.datetime.fromisoformat(after[0].at.replace("Z", "+00:00")) if after else None
        flt = " ".join(w for w in _words(c.get("filter")) if not w.startswith(("since=", "until=")))
        try:
            res = blast_radius(con, flt, mitigated_at=when, limit=10)
        except ValueError:
            continue
        argv = ["blast-radius", *_words(flt), "--json"] + (["--mitigated-at", after[0].at] if after else [])
        out.append({"cause": c.get("title") or c.get("description"), "filter": flt,
                    "result": {k: res.get(k) for k in ("contaminated_sessions", "sessions_total", "mitigated_at",
                                                       "verdict", "after_mitigation") if k in res},
                    "query": app.ref(f"blast radius of {c.get('title') or c['kind']}", argv)})
    return out


def _blast_section(blast: list[dict[str, Any]]) -> list[str]:
    out = ["## Blast radius", ""]
    if not blast:
        return out + ["No served-model or prompt-version cause to trace through sessions.", ""]
    for b in blast:
        r = b["result"]
        after = r.get("after_mitigation") or {}
        out.append(f"- {_plain(b['cause'])}: {r.get('contaminated_sessions', 0)} session(s) carry its outputs "
                   f"in later turns {b['query']}"
                   + (f"; after the mitigation: {_plain(after.get('summary') or after.get('verdict') or '')}"
                      if after else ""))
    return out + [""]


def _action_items(causes: list[dict[str, Any]]) -> list[str]:
    out = ["## Action items", "",
           "- [ ] Add the exported eval set to CI, so the next prompt or model change must pass it: "
           "`oncall export evalset label=bad --format promptfoo --out evals/` (or `--format inspect`).",
           ]
    kinds = {c["kind"] for c in causes}
    if "new_served_model" in kinds:
        out.append("- [ ] Pin dated model snapshots in the gateway config; alert when the served model changes.")
    if "new_prompt_version" in kinds:
        out.append("- [ ] Gate prompt releases on a replay of production traffic against the new version.")
    if kinds & {"new_retrieval_index", "new_embedding_model"}:
        out.append("- [ ] Gate index rebuilds and alias moves on a retrieval check (empty-retrieval rate, top score "
                   "on known questions), and check the index was built with the embedding model the queries use; "
                   "roll the alias back with runbook index-rollback.")
    if any(c["kind"] == "metric_shift" and c.get("metric") == "error_rate" for c in causes):
        out.append("- [ ] Configure a fallback deployment for rate-limit storms (runbook provider-outage).")
    out.append("- [ ] ✍️ Add the items this review decides on.")
    return [*out, ""]
