"""`oncall compare FILTER --baseline FILTER`: a cohort's metrics beside its baseline, with deltas and
an honest significance mark per metric (stats.py). Every row is a metric of the registry
(query/registry.py), in its order, with its unit, direction and test. Field names are a contract
(`--json`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from oncall.query.cost_marks import mark_compare
from oncall.query.engine import DuckDBEngine, Engine
from oncall.query.filters import Filter
from oncall.query.registry import JSON_COHORT_MIN, METRICS, Metric, Stat, key_drift, shown
from oncall.query.stats import Test, relative_change

__all__ = ["JSON_COHORT_MIN", "compare", "compare_on", "metric_row"]


def metric_row(m: Metric, cohort: Any, baseline: Any, test: Test | None) -> dict[str, Any]:
    """One row of a side-by-side table, in compare's --json field names."""
    delta = cohort - baseline if isinstance(cohort, (int, float)) and isinstance(baseline, (int, float)) else None
    return {"metric": m.name, "unit": m.unit, "cohort": cohort, "baseline": baseline, "delta": delta,
            "delta_pct": None if delta is None else (None if not baseline else 100.0 * delta / abs(baseline)),
            "significance": test.significance if test else "n/a", "p_value": test.p_value if test else None,
            "worse_when": m.worse,
            "relative_change": relative_change(cohort, baseline) if m.unit != "count" else None}


def compare(con: Any, flt: Filter | str | Sequence[str] | None,
            baseline: Filter | str | Sequence[str] | None) -> dict[str, Any]:
    """Metrics of the cohort and of the baseline, side by side, on the incident."""
    return compare_on(DuckDBEngine(con), flt, baseline)


def compare_on(engine: Engine, flt: Filter | str | Sequence[str] | None,
               baseline: Filter | str | Sequence[str] | None) -> dict[str, Any]:
    """compare, with every aggregate asked of `engine` (the incident's DuckDB, or a source in place)."""
    c = engine.compile(flt)
    b = engine.compile(baseline)
    plain = [m for m in METRICS.values() if m.reference is None]
    m, base = engine.measure(c, plain), engine.measure(b, plain)
    drift = None
    if any(x.name == "json_valid_rate" for x in shown(m, base)):
        # Key drift: the cohort's JSON key sets against the baseline's (the registry's fold over counts).
        ks_c, ks_b = engine.key_set_counts(c), engine.key_set_counts(b)
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
    dc, db = engine.dims(c), engine.dims(b)

    def labels(s: dict[str, Stat]) -> dict[str, int]:
        lab = s["labelled_bad_rate"]
        return {"good": int(lab.n - lab.x), "bad": int(lab.x)}

    result = {
        "cohort": {"filter": c.filter.text, "requests": int(m["requests"].n), "first": dc["first"],
                   "last": dc["last"], "labels": labels(m)},
        "baseline": {"filter": b.filter.text, "requests": int(base["requests"].n), "first": db["first"],
                     "last": db["last"], "labels": labels(base)},
        "notes": list(c.notes) + list(b.notes),
        "metrics": rows,
        "served_models": {"cohort": dc["served_models"], "baseline": db["served_models"]},
        "finish_reasons": {"cohort": dc["finish_reasons"], "baseline": db["finish_reasons"]},
        "json_key_sets": drift,
    }
    # Cost rows say which share of their costs are estimates.
    mark_compare(result, engine.estimated_share(c)["share"], engine.estimated_share(b)["share"])
    return result
