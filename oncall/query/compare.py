"""`oncall compare FILTER --baseline FILTER`: a cohort's metrics beside its baseline, with deltas and
an honest significance mark per metric (stats.py). Every row is a metric of the registry
(query/registry.py), in its order, with its unit, direction and test. Field names are a contract
(`--json`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from oncall.query.cost_marks import mark_compare
from oncall.query.filters import Filter, compile_filter
from oncall.query.registry import JSON_COHORT_MIN, METRICS, Metric, Stat, key_drift, key_set_counts, measure, shown
from oncall.query.stats import Test, relative_change

__all__ = ["JSON_COHORT_MIN", "compare", "metric_row"]


def metric_row(m: Metric, cohort: Any, baseline: Any, test: Test | None) -> dict[str, Any]:
    """One row of a side-by-side table, in compare's --json field names."""
    delta = cohort - baseline if isinstance(cohort, (int, float)) and isinstance(baseline, (int, float)) else None
    return {"metric": m.name, "unit": m.unit, "cohort": cohort, "baseline": baseline, "delta": delta,
            "delta_pct": None if delta is None else (None if not baseline else 100.0 * delta / abs(baseline)),
            "significance": test.significance if test else "n/a", "p_value": test.p_value if test else None,
            "worse_when": m.worse,
            "relative_change": relative_change(cohort, baseline) if m.unit != "count" else None}


def _dims(con: Any, where: str, params: list[Any]) -> dict[str, Any]:
    """What a cohort is besides its metrics: its time span and its served models and finish reasons."""
    first, last = con.execute(f"SELECT min(s.start_time), max(s.start_time) FROM spans s WHERE {where}",
                              params).fetchone()
    out: dict[str, Any] = {"first": first, "last": last}
    for dim in ("served_model", "finish_reason"):
        out[dim + "s"] = {str(k): int(v) for k, v in con.execute(
            f"SELECT s.{dim}, count(*) FROM spans s WHERE {where} AND s.{dim} IS NOT NULL "
            f"GROUP BY 1 ORDER BY 2 DESC LIMIT 20", params).fetchall()}
    return out


def compare(con: Any, flt: Filter | str | Sequence[str] | None,
            baseline: Filter | str | Sequence[str] | None) -> dict[str, Any]:
    """Metrics of the cohort and of the baseline, side by side."""
    c = compile_filter(con, flt, alias="s")
    b = compile_filter(con, baseline, alias="s")
    plain = [m for m in METRICS.values() if m.reference is None]
    m, base = measure(con, c.where, c.params, plain), measure(con, b.where, b.params, plain)
    drift = None
    if any(x.name == "json_valid_rate" for x in shown(m, base)):
        # Key drift: the cohort's JSON key sets against the baseline's (the registry's fold over counts).
        ks_c, ks_b = key_set_counts(con, c.where, c.params), key_set_counts(con, b.where, b.params)
        m["json_key_drift"] = key_drift(ks_c, ks_b)
        base["json_key_drift"] = key_drift(ks_b, ks_b) if ks_b else Stat()
        new = {k: v for k, v in ks_c.items() if k not in ks_b}
        total_c = sum(ks_c.values())
        drift = {"new_key_sets": dict(list(new.items())[:50]), "cohort_key_sets": dict(list(ks_c.items())[:50]),
                 "baseline_key_sets": dict(list(ks_b.items())[:50]),
                 "share_new": (sum(new.values()) / total_c) if total_c else None}
    rows = []
    for metric in shown(m, base):
        sa, sb = m[metric.name], base[metric.name]
        va, vb = metric.of(sa), metric.of(sb)
        test = metric.test(sa, sb)
        if metric.name == "json_key_drift" and not sb.n:
            vb, test = None, None  # no baseline key sets: nothing to drift from
        rows.append(metric_row(metric, va, vb, test))
    dc, db = _dims(con, c.where, c.params), _dims(con, b.where, b.params)

    def labels(s: dict[str, Stat]) -> dict[str, int]:
        lab = s["labelled_bad_rate"]
        return {"good": int(lab.n - lab.x), "bad": int(lab.x)}

    result = {
        "cohort": {"filter": c.filter.text, "requests": int(m["requests"].n), "first": dc["first"],
                   "last": dc["last"], "labels": labels(m)},
        "baseline": {"filter": b.filter.text, "requests": int(base["requests"].n), "first": db["first"],
                     "last": db["last"], "labels": labels(base)},
        "notes": c.notes + b.notes,
        "metrics": rows,
        "served_models": {"cohort": dc["served_models"], "baseline": db["served_models"]},
        "finish_reasons": {"cohort": dc["finish_reasons"], "baseline": db["finish_reasons"]},
        "json_key_sets": drift,
    }
    mark_compare(con, result, c, b)  # cost rows say which share of their costs are estimates
    return result
