"""Cohort metrics in one aggregate query, and per-bucket time series (what `compare`, `changes` and the
console's overview read). Everything aggregates in DuckDB; only summary numbers come back."""

from __future__ import annotations

from typing import Any

from oncall.query.quality import has_output, json_valid_sql, refusal_sql
from oncall.store.schema import ERROR_TYPES

COMPARED_ERRORS = ("rate_limit", "quota", "server", "timeout", "content_filter")


def _aggregates() -> list[tuple[str, str]]:
    ok = has_output("s")
    return [
        ("requests", "count(*)"),
        ("errors", "count(*) FILTER (WHERE s.status = 'error')"),
        *[(f"errors_{e}", f"count(*) FILTER (WHERE s.status = 'error' AND s.error_type = '{e}')") for e in ERROR_TYPES],
        ("latency_n", "count(s.latency_ms)"),
        ("latency_mean", "avg(s.latency_ms)"), ("latency_var", "var_samp(s.latency_ms)"),
        ("latency_p50", "quantile_cont(s.latency_ms, 0.5)"), ("latency_p95", "quantile_cont(s.latency_ms, 0.95)"),
        ("latency_p99", "quantile_cont(s.latency_ms, 0.99)"),
        ("input_tokens_n", "count(s.input_tokens)"),
        ("input_tokens_mean", "avg(s.input_tokens)"), ("input_tokens_var", "var_samp(s.input_tokens)"),
        ("output_tokens_n", "count(s.output_tokens)"),
        ("output_tokens_mean", "avg(s.output_tokens)"), ("output_tokens_var", "var_samp(s.output_tokens)"),
        ("cost_n", "count(s.cost)"),
        ("cost_mean", "avg(s.cost)"), ("cost_var", "var_samp(s.cost)"), ("cost_total", "sum(s.cost)"),
        ("outputs", f"count(*) FILTER (WHERE {ok})"),
        ("length_mean", f"avg(length(s.output_text)) FILTER (WHERE {ok})"),
        ("length_var", f"var_samp(length(s.output_text)) FILTER (WHERE {ok})"),
        ("refusals", f"count(*) FILTER (WHERE {ok} AND {refusal_sql('s')})"),
        ("json_valid", f"count(*) FILTER (WHERE {ok} AND {json_valid_sql('s')})"),
        ("labels_good", "count(*) FILTER (WHERE lab.label = 'good')"),
        ("labels_bad", "count(*) FILTER (WHERE lab.label = 'bad')"),
        ("first", "min(s.start_time)"), ("last", "max(s.start_time)"),
    ]


_LATEST_LABEL = """LEFT JOIN (SELECT span_pk, arg_max(label, created_at) AS label FROM labels GROUP BY span_pk) lab
                   ON lab.span_pk = s.span_pk"""


def cohort_metrics(con: Any, where: str, params: list[Any]) -> dict[str, Any]:
    """Every compared number for the spans matching `where` (alias `s`)."""
    aggs = _aggregates()
    sql = f"SELECT {', '.join(f'{expr} AS {name}' for name, expr in aggs)} FROM spans s {_LATEST_LABEL} WHERE {where}"
    row = con.execute(sql, params).fetchone()
    out = dict(zip([a[0] for a in aggs], row, strict=True))
    for dim in ("served_model", "finish_reason"):
        out[dim + "s"] = {str(k): int(v) for k, v in con.execute(
            f"SELECT s.{dim}, count(*) FROM spans s WHERE {where} AND s.{dim} IS NOT NULL "
            f"GROUP BY 1 ORDER BY 2 DESC LIMIT 20", params).fetchall()}
    return out


def key_sets(con: Any, where: str, params: list[Any], limit: int = 50) -> dict[str, int]:
    """JSON key sets of the cohort's outputs and how often each occurs."""
    from oncall.query.quality import key_set_sql

    rows = con.execute(
        f"SELECT ks, count(*) FROM (SELECT {key_set_sql('s')} AS ks FROM spans s WHERE {where} "
        f"AND {has_output('s')}) WHERE ks IS NOT NULL GROUP BY 1 ORDER BY 2 DESC LIMIT ?", [*params, limit]).fetchall()
    return {str(k): int(v) for k, v in rows}


BUCKETS_S = [60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400]


def auto_bucket(seconds: float, target: int = 72) -> int:
    """A round bucket width giving about `target` buckets over the range."""
    for b in BUCKETS_S:
        if seconds / b <= target:
            return b
    return BUCKETS_S[-1]


# Per-row values computed once, then aggregated per bucket (and per cohort key, with grouping sets).
def _series_projection(where: str, quality: bool = True) -> str:
    ok = has_output("s")
    # The refusal regex is most of a scan's cost: skipped when the caller does not plot quality.
    ref = f"({ok} AND {refusal_sql('s')})::INT" if quality else "0"
    jv = f"({ok} AND {json_valid_sql('s')})::INT" if quality else "0"
    return f"""SELECT s.start_time, s.provider, s.feature, s.model, s.tenant,
            (s.status = 'error')::INT AS err,
            CASE WHEN s.status IS DISTINCT FROM 'error' THEN s.latency_ms END AS lat,
            s.cost AS cost,
            CASE WHEN {ok} THEN length(s.output_text) END AS len,
            {ref} AS ref, {jv} AS jv
        FROM spans s WHERE {where} AND s.start_time IS NOT NULL"""


# Sums and counts, so rates and means can be recombined across buckets; latency of successful calls
# only (fast-failing 429s would otherwise read as a latency improvement).
SERIES_METRICS = {
    "requests": "count(*)",
    "errors": "sum(err)",
    "latency_p95": "quantile_cont(lat, 0.95)",
    "latency_sum": "sum(lat)", "latency_sq": "sum(lat * lat)", "latency_n": "count(lat)",
    "cost_sum": "sum(cost)", "cost_sq": "sum(cost * cost)", "cost_n": "count(cost)",
    "outputs": "count(len)", "length_sum": "sum(len)", "length_sq": "sum(len::DOUBLE * len)",
    "refusals": "sum(ref)", "json_valid": "sum(jv)",
}
SERIES_KEYS = ("provider", "feature", "model", "tenant")


def series_sets(con: Any, where: str, params: list[Any], *, bucket_s: int,
                keys: list[str | None], quality: bool = True) -> list[dict[str, Any]]:
    """Per-bucket series for several groupings in one scan: `key` is None (all traffic) or the cohort key,
    `grp` its value. The expensive per-row checks (refusal, JSON validity) run once per row, not per grouping."""
    for k in keys:
        if k is not None and k not in SERIES_KEYS:
            raise ValueError(f"cannot group series by {k!r}; use one of {', '.join(SERIES_KEYS)}")
    sets = ", ".join("(bucket)" if k is None else f"(bucket, {k})" for k in keys)
    named = [k for k in SERIES_KEYS if k in keys]  # GROUPING() may only name columns some set groups by
    cols = ", ".join(f"{expr} AS {m}" for m, expr in SERIES_METRICS.items())
    grouping = f"GROUPING({', '.join(named)})" if named else "0"
    # time_bucket on a TIMESTAMPTZ cuts buckets from a UTC origin whatever the connection's zone
    # (checked under TZ=Asia/Kolkata: hour and day buckets start on the UTC hour and midnight).
    sql = (f"SELECT time_bucket(INTERVAL '{int(bucket_s)} seconds', start_time) AS bucket, "
           f"{''.join(k + ', ' for k in named)}{grouping} AS g, {cols} "
           f"FROM ({_series_projection(where, quality)}) GROUP BY GROUPING SETS ({sets}) ORDER BY g, bucket")
    cur = con.execute(sql, params)
    names = [d[0] for d in cur.description]
    out = []
    full = (1 << len(named)) - 1
    for r in cur.fetchall():
        d = dict(zip(names, r, strict=True))
        missing = full ^ d.pop("g")  # GROUPING() sets a bit for every named key NOT grouped by
        key = None if missing == 0 else named[len(named) - missing.bit_length()]
        d["key"], d["grp"] = key, (d[key] if key else None)
        for k in named:
            d.pop(k)
        out.append(d)
    return out


def series(con: Any, where: str, params: list[Any], *, bucket_s: int | None = None, by: str | None = None,
           metrics: list[str] | None = None) -> dict[str, Any]:
    """Per-bucket sums/counts for all traffic, or per value of `by` (one of SERIES_KEYS).

    Returns {"bucket_s", "start", "rows": [{"bucket": datetime, "grp": value|None, metric: …}]}.
    """
    if bucket_s is None:
        lo, hi = con.execute(f"SELECT min(s.start_time), max(s.start_time) FROM spans s WHERE {where}",
                             params).fetchone()
        if lo is None:
            return {"bucket_s": 60, "start": None, "rows": []}
        bucket_s = auto_bucket((hi - lo).total_seconds())
    rows = series_sets(con, where, params, bucket_s=bucket_s, keys=[by])
    if metrics:
        rows = [{k: v for k, v in r.items() if k in metrics or k in ("bucket", "grp", "key")} for r in rows]
    start = min((r["bucket"] for r in rows), default=None)
    return {"bucket_s": int(bucket_s), "start": start, "rows": rows}
