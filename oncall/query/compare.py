"""`oncall compare FILTER --baseline FILTER`: a cohort's metrics beside its baseline, with deltas and
an honest significance mark per metric (stats.py). Field names are a contract (`--json`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from oncall.query.cost_marks import mark_compare
from oncall.query.filters import Filter, compile_filter
from oncall.query.metrics import COMPARED_ERRORS, cohort_metrics, key_sets
from oncall.query.stats import Test, relative_change, two_proportions, welch

JSON_COHORT_MIN = 0.5  # JSON rates are reported when at least half of either side's outputs are JSON


def _rate(x: int | None, n: int | None) -> float | None:
    return (x or 0) / n if n else None


def _row(metric: str, unit: str, cohort: Any, baseline: Any, test: Test | None, higher_is: str) -> dict[str, Any]:
    delta = cohort - baseline if isinstance(cohort, (int, float)) and isinstance(baseline, (int, float)) else None
    return {"metric": metric, "unit": unit, "cohort": cohort, "baseline": baseline, "delta": delta,
            "delta_pct": None if delta is None else (None if not baseline else 100.0 * delta / abs(baseline)),
            "significance": test.significance if test else "n/a", "p_value": test.p_value if test else None,
            "worse_when": higher_is}


def compare(con: Any, flt: Filter | str | Sequence[str] | None,
            baseline: Filter | str | Sequence[str] | None) -> dict[str, Any]:
    """Metrics of the cohort and of the baseline, side by side."""
    c = compile_filter(con, flt, alias="s")
    b = compile_filter(con, baseline, alias="s")
    m, base = cohort_metrics(con, c.where, c.params), cohort_metrics(con, b.where, b.params)
    rows: list[dict[str, Any]] = []
    n1, n2 = m["requests"], base["requests"]
    rows.append(_row("requests", "count", n1, n2, None, "n/a"))
    rows.append(_row("error_rate", "ratio", _rate(m["errors"], n1), _rate(base["errors"], n2),
                     two_proportions(m["errors"], n1, base["errors"], n2), "higher"))
    for e in COMPARED_ERRORS:
        x1, x2 = m[f"errors_{e}"], base[f"errors_{e}"]
        if x1 or x2:
            rows.append(_row(f"error_rate_{e}", "ratio", _rate(x1, n1), _rate(x2, n2),
                             two_proportions(x1, n1, x2, n2), "higher"))
    rows.append(_row("latency_ms_mean", "ms", m["latency_mean"], base["latency_mean"],
                     welch(m["latency_mean"], m["latency_var"], m["latency_n"], base["latency_mean"],
                           base["latency_var"], base["latency_n"]), "higher"))
    for q in ("p50", "p95", "p99"):
        rows.append(_row(f"latency_ms_{q}", "ms", m[f"latency_{q}"], base[f"latency_{q}"], None, "higher"))
    for t in ("input_tokens", "output_tokens"):
        rows.append(_row(f"{t}_mean", "tokens", m[f"{t}_mean"], base[f"{t}_mean"],
                         welch(m[f"{t}_mean"], m[f"{t}_var"], m[f"{t}_n"], base[f"{t}_mean"], base[f"{t}_var"],
                               base[f"{t}_n"]), "higher"))
    rows.append(_row("cost_per_request", "usd", m["cost_mean"], base["cost_mean"],
                     welch(m["cost_mean"], m["cost_var"], m["cost_n"], base["cost_mean"], base["cost_var"],
                           base["cost_n"]), "higher"))
    rows.append(_row("cost_total", "usd", m["cost_total"], base["cost_total"], None, "higher"))
    o1, o2 = m["outputs"], base["outputs"]
    rows.append(_row("output_length_mean", "chars", m["length_mean"], base["length_mean"],
                     welch(m["length_mean"], m["length_var"], o1, base["length_mean"], base["length_var"], o2),
                     "either"))
    rows.append(_row("refusal_rate", "ratio", _rate(m["refusals"], o1), _rate(base["refusals"], o2),
                     two_proportions(m["refusals"], o1, base["refusals"], o2), "higher"))
    jv1, jv2 = _rate(m["json_valid"], o1), _rate(base["json_valid"], o2)
    drift = None
    if (jv1 or 0) >= JSON_COHORT_MIN or (jv2 or 0) >= JSON_COHORT_MIN:
        rows.append(_row("json_valid_rate", "ratio", jv1, jv2,
                         two_proportions(m["json_valid"], o1, base["json_valid"], o2), "lower"))
        ks_c, ks_b = key_sets(con, c.where, c.params), key_sets(con, b.where, b.params)
        new = {k: v for k, v in ks_c.items() if k not in ks_b}
        total_c = sum(ks_c.values())
        drift = {"new_key_sets": new, "cohort_key_sets": ks_c, "baseline_key_sets": ks_b,
                 "share_new": (sum(new.values()) / total_c) if total_c else None}
        rows.append(_row("json_key_drift", "ratio", drift["share_new"], 0.0 if ks_b else None,
                         two_proportions(sum(new.values()), total_c, 0, sum(ks_b.values())) if ks_b else None,
                         "higher"))
    lab1, lab2 = m["labels_good"] + m["labels_bad"], base["labels_good"] + base["labels_bad"]
    if lab1 or lab2:
        rows.append(_row("labelled_bad_rate", "ratio", _rate(m["labels_bad"], lab1), _rate(base["labels_bad"], lab2),
                         two_proportions(m["labels_bad"], lab1, base["labels_bad"], lab2), "higher"))
    for r in rows:
        rel = relative_change(r["cohort"], r["baseline"]) if r["unit"] != "count" else None
        r["relative_change"] = rel
    result = {
        "cohort": {"filter": c.filter.text, "requests": n1, "first": m["first"], "last": m["last"],
                   "labels": {"good": m["labels_good"], "bad": m["labels_bad"]}},
        "baseline": {"filter": b.filter.text, "requests": n2, "first": base["first"], "last": base["last"],
                     "labels": {"good": base["labels_good"], "bad": base["labels_bad"]}},
        "notes": c.notes + b.notes,
        "metrics": rows,
        "served_models": {"cohort": m["served_models"], "baseline": base["served_models"]},
        "finish_reasons": {"cohort": m["finish_reasons"], "baseline": base["finish_reasons"]},
        "json_key_sets": drift,
    }
    mark_compare(con, result, c, b)  # cost rows say which share of their costs are estimates
    return result
