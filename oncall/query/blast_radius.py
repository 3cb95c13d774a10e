"""`oncall blast-radius`: which conversations still carry the bad model's or prompt's answers.

Rolling back a prompt or pinning a model fixes new conversations, but a chat session sends its own
history with every turn: an assistant message written by the bad model keeps steering that session
after the fix. This finds them:

- **bad requests**: the filter (e.g. `served_model=gpt-4o-2024-11-20` or `prompt_version=v13`);
- **carried**: a later request of the same session whose input contains a bad request's output
  (its first 200 characters, so a re-rendered history still matches);
- **after the mitigation** (`--mitigated-at`, default: when the bad requests stop): the contaminated
  sessions' requests are compared with clean sessions' requests of the same period, on error rate,
  output length, refusals, JSON validity and bad labels.
All of it is SQL over the sessions involved; nothing is pulled whole into Python.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from oncall.display import iso_utc
from oncall.query.filters import Filter, compile_filter
from oncall.query.metrics import cohort_metrics
from oncall.query.stats import relative_change, two_proportions, welch

MATCH_CHARS = 200
MIN_MATCH_CHARS = 20
LIST_LIMIT = 200


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
        "sessions": [{"session_id": r[0], "carried_requests": int(r[1]), "first": iso_utc(r[2]),
                      "last": iso_utc(r[3]), "after_mitigation": int(r[4]), "tenant": r[5], "user_id": r[6]}
                     for r in sessions],
        "after_mitigation": after,
    }


def _after_mitigation(con: Any, mitigation: dt.datetime, op: str = ">=") -> dict[str, Any] | None:
    """Contaminated sessions' requests after the mitigation against clean sessions' requests then."""
    assert op in (">=", ">")
    dirty = (f"s.kind = 'llm' AND s.start_time {op} ? AND s.session_id IN (SELECT session_id FROM _oncall_carried) ")
    clean = (f"s.kind = 'llm' AND s.start_time {op} ? AND s.session_id IS NOT NULL "
             "AND s.session_id NOT IN (SELECT session_id FROM _oncall_carried) "
             "AND s.session_id NOT IN (SELECT session_id FROM _oncall_bad)")
    d = cohort_metrics(con, dirty, [mitigation])
    c = cohort_metrics(con, clean, [mitigation])
    if not d["requests"]:
        return {"contaminated_requests": 0, "clean_requests": int(c["requests"]), "metrics": [],
                "still_degraded": False}
    rows = []

    def rate(metric: str, x: str, n: str) -> None:
        a = d[x] / d[n] if d[n] else None
        b = c[x] / c[n] if c[n] else None
        t = two_proportions(d[x], d[n], c[x], c[n])
        rows.append({"metric": metric, "contaminated": a, "clean": b, "relative_change": relative_change(a, b),
                     "significance": t.significance, "p_value": t.p_value})

    rate("error_rate", "errors", "requests")
    rate("refusal_rate", "refusals", "outputs")
    if max(_share(d, "json_valid", "outputs"), _share(c, "json_valid", "outputs")) >= 0.5:
        rate("json_valid_rate", "json_valid", "outputs")  # only for JSON-producing cohorts (as compare does)
    t = welch(d["length_mean"], d["length_var"], d["outputs"], c["length_mean"], c["length_var"], c["outputs"])
    rows.append({"metric": "output_length_mean", "contaminated": d["length_mean"], "clean": c["length_mean"],
                 "relative_change": relative_change(d["length_mean"], c["length_mean"]),
                 "significance": t.significance, "p_value": t.p_value})
    if d["labels_bad"] + d["labels_good"] and c["labels_bad"] + c["labels_good"]:
        rate("labelled_bad_rate", "labels_bad", "requests")
    degraded = any(r["significance"] == "significant" and abs(r["relative_change"] or 0) >= 0.1 for r in rows)
    return {"contaminated_requests": int(d["requests"]), "clean_requests": int(c["requests"]), "metrics": rows,
            "still_degraded": degraded}


def _share(m: dict[str, Any], x: str, n: str) -> float:
    return (m[x] or 0) / m[n] if m[n] else 0.0
