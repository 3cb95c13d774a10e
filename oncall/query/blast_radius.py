"""`oncall blast-radius`: which conversations still carry the bad model's or prompt's answers.

Rolling back a prompt or pinning a model fixes new conversations, but a chat session sends its own
history with every turn: an assistant message written by the bad model keeps steering that session
after the fix. This finds them:

- **bad requests**: the filter (e.g. `served_model=gpt-4o-2024-11-20` or `prompt_version=v13`);
- **carried**: a later request of the same session whose input contains a bad request's output
  (its first 200 characters, so a re-rendered history still matches);
- **after the mitigation** (`--mitigated-at`, default: when the bad requests stop): the carried
  requests after it (the number the headline gives) are compared with clean sessions' requests of
  the same period, on error rate, output length, refusals, JSON validity and bad labels.
- **the verdict**: `degraded` when a metric is significantly worse (p < 0.001 and at least 10 %),
  `not degraded` when every metric could be tested and none is, and `cannot tell` when either side
  has fewer than MIN_N requests (or no metric could be tested): two requests prove nothing either way.
All of it is SQL over the sessions involved; nothing is pulled whole into Python.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from oncall.display import iso_utc
from oncall.query.filters import Filter, compile_filter
from oncall.query.registry import METRICS, measure, shown
from oncall.query.stats import MIN_N, relative_change

MATCH_CHARS = 200
MIN_MATCH_CHARS = 20
LIST_LIMIT = 200
# What the carried requests are compared on: the quality of what they answer (the registry's definitions).
_COMPARED = [METRICS[n] for n in ("requests", "error_rate", "output_length_mean", "refusal_rate", "json_valid_rate",
                                  "labelled_bad_rate")]


def blast_radius(con: Any, flt: Filter | str | Sequence[str] | None, *,
                 mitigated_at: dt.datetime | None = None, limit: int = LIST_LIMIT) -> dict[str, Any]:
    bad = compile_filter(con, flt, alias="b")
    con.execute("DROP TABLE IF EXISTS _oncall_bad")
    con.execute(
        f"""CREATE TEMP TABLE _oncall_bad AS
            SELECT b.span_pk, b.session_id, b.start_time, left(b.output_text, {MATCH_CHARS}) AS needle
            FROM spans b WHERE {bad.where} AND b.session_id IS NOT NULL
              AND b.status IS DISTINCT FROM 'error' AND length(b.output_text) >= {MIN_MATCH_CHARS}""", bad.params)
    try:
        n_bad, last_bad = con.execute("SELECT count(*), max(start_time) FROM _oncall_bad").fetchone()
        mitigation = mitigated_at or last_bad
        # Given a mitigation time, requests from then on count as after it; defaulted to the last bad
        # request, that request itself (and anything at the same instant) is not "after the fix".
        after_op = ">=" if mitigated_at is not None else ">"
        # Later turns of the same session whose input carries a bad answer.
        con.execute("DROP TABLE IF EXISTS _oncall_carried")
        con.execute(
            """CREATE TEMP TABLE _oncall_carried AS
               SELECT DISTINCT s.span_pk, s.session_id, s.start_time
               FROM _oncall_bad b JOIN spans s ON s.session_id = b.session_id AND s.kind = 'llm'
                AND s.start_time > b.start_time
               WHERE contains(s.input_text, b.needle)""")
        sessions = con.execute(
            f"""SELECT c.session_id, count(*) AS carried_requests, min(c.start_time) AS first, max(c.start_time) AS last,
                       count(*) FILTER (WHERE c.start_time {after_op} ?) AS after_mitigation,
                       any_value(s.tenant) AS tenant, any_value(s.user_id) AS user_id
                FROM _oncall_carried c JOIN spans s ON s.span_pk = c.span_pk
                GROUP BY 1 ORDER BY after_mitigation DESC, carried_requests DESC, first LIMIT ?""",
            [mitigation, limit]).fetchall()
        counts = con.execute(
            f"SELECT count(DISTINCT session_id), count(*), count(*) FILTER (WHERE start_time {after_op} ?) "
            "FROM _oncall_carried",
            [mitigation]).fetchone()
        touched = con.execute("SELECT count(DISTINCT session_id) FROM _oncall_bad").fetchone()[0]
        after = None
        if mitigation is not None:
            after = _after_mitigation(con, mitigation, after_op)
    finally:
        con.execute("DROP TABLE IF EXISTS _oncall_bad")
        con.execute("DROP TABLE IF EXISTS _oncall_carried")
    return {
        "filter": bad.filter.text,
        "notes": bad.notes,
        "bad_requests_in_sessions": int(n_bad),
        "sessions_with_bad_outputs": int(touched),
        "contaminated_sessions": int(counts[0]),
        "carried_requests": int(counts[1]),
        "carried_requests_after_mitigation": int(counts[2]),
        "mitigated_at": iso_utc(mitigation) if mitigation else None,
        "mitigated_at_source": "given" if mitigated_at is not None else ("last bad request" if mitigation else None),
        "sessions_listed": len(sessions),
        "sessions_total": int(counts[0]),
        "sessions": [{"session_id": r[0], "carried_requests": int(r[1]), "first": iso_utc(r[2]),
                      "last": iso_utc(r[3]), "after_mitigation": int(r[4]), "tenant": r[5], "user_id": r[6]}
                     for r in sessions],
        "after_mitigation": after,
        "verdict": after["verdict"] if after else "cannot tell",
    }


def _after_mitigation(con: Any, mitigation: dt.datetime, op: str = ">=") -> dict[str, Any] | None:
    """Contaminated sessions' requests after the mitigation against clean sessions' requests then."""
    assert op in (">=", ">")
    # The carried requests after the mitigation: exactly what the headline counts.
    dirty = f"s.start_time {op} ? AND s.span_pk IN (SELECT span_pk FROM _oncall_carried)"
    clean = (f"s.kind = 'llm' AND s.start_time {op} ? AND s.session_id IS NOT NULL "
             "AND s.session_id NOT IN (SELECT session_id FROM _oncall_carried) "
             "AND s.session_id NOT IN (SELECT session_id FROM _oncall_bad)")
    d = measure(con, dirty, [mitigation], _COMPARED)
    c = measure(con, clean, [mitigation], _COMPARED)
    if not d["requests"].n:
        return {"contaminated_requests": 0, "clean_requests": int(c["requests"].n), "metrics": [],
                "still_degraded": False, "verdict": "cannot tell",
                "reason": "no carried requests after the mitigation"}
    rows = []
    for m in shown(d, c):
        if m.name == "requests":
            continue
        a, b = m.of(d[m.name]), m.of(c[m.name])
        if m.name == "labelled_bad_rate" and not (d[m.name].n and c[m.name].n):
            continue  # bad labels only when both sides have labels
        t = m.test(d[m.name], c[m.name])
        rows.append({"metric": m.name, "contaminated": a, "clean": b, "relative_change": relative_change(a, b),
                     "significance": t.significance if t else "n/a", "p_value": t.p_value if t else None})
    degraded = any(r["significance"] == "significant" and abs(r["relative_change"] or 0) >= 0.1 for r in rows)
    tested = [r for r in rows if r["significance"] in ("significant", "noise")]
    d_n, c_n = int(d["requests"].n), int(c["requests"].n)
    reason = None
    if degraded:
        verdict = "degraded"
    elif d_n < MIN_N or c_n < MIN_N or not tested:
        verdict = "cannot tell"
        reason = (f"{d_n:,} carried vs {c_n:,} clean requests after the mitigation; "
                  f"at least {MIN_N} on each side are needed")
    else:
        verdict = "not degraded"
    return {"contaminated_requests": d_n, "clean_requests": c_n, "metrics": rows,
            "still_degraded": degraded, "verdict": verdict, "reason": reason}
