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


SERIES_METRICS = {
    "requests": "count(*)",
    "errors": "count(*) FILTER (WHERE s.status = 'error')",
    "latency_p95": "quantile_cont(s.latency_ms, 0.95)",
    # Latency of successful calls: fast-failing 429s would otherwise read as a latency improvement.
    "latency_sum": "sum(s.latency_ms) FILTER (WHERE s.status IS DISTINCT FROM 'error')",
    "latency_sq": "sum(s.latency_ms * s.latency_ms) FILTER (WHERE s.status IS DISTINCT FROM 'error')",
    "latency_n": "count(s.latency_ms) FILTER (WHERE s.status IS DISTINCT FROM 'error')",
    "cost_sum": "sum(s.cost)", "cost_sq": "sum(s.cost * s.cost)", "cost_n": "count(s.cost)",
    "outputs": f"count(*) FILTER (WHERE {has_output('s')})",
    "length_sum": f"sum(length(s.output_text)) FILTER (WHERE {has_output('s')})",
    "length_sq": f"sum(length(s.output_text)::DOUBLE * length(s.output_text)) FILTER (WHERE {has_output('s')})",
    "refusals": f"count(*) FILTER (WHERE {has_output('s')} AND {refusal_sql('s')})",
    "json_valid": f"count(*) FILTER (WHERE {has_output('s')} AND {json_valid_sql('s')})",
}


def series(con: Any, where: str, params: list[Any], *, bucket_s: int | None = None, by: str | None = None,
           metrics: list[str] | None = None) -> dict[str, Any]:
    """Per-bucket sums/counts (so rates and means can be recombined), optionally per value of `by`.

    Returns {"bucket_s", "start", "rows": [{"bucket": datetime, "group": value|None, metric: …}]}.
    """
    names = metrics or list(SERIES_METRICS)
    if bucket_s is None:
        lo, hi = con.execute(f"SELECT min(s.start_time), max(s.start_time) FROM spans s WHERE {where}",
                             params).fetchone()
        if lo is None:
            return {"bucket_s": 60, "start": None, "rows": []}
        bucket_s = auto_bucket((hi - lo).total_seconds())
    group = f"s.{by}" if by else "NULL"
    cols = ", ".join(f"{SERIES_METRICS[m]} AS {m}" for m in names)
    sql = (f"SELECT time_bucket(INTERVAL '{int(bucket_s)} seconds', s.start_time) AS bucket, {group} AS grp, {cols} "
           f"FROM spans s WHERE {where} AND s.start_time IS NOT NULL GROUP BY ALL ORDER BY grp, bucket")
    cur = con.execute(sql, params)
    keys = [d[0] for d in cur.description]
    rows = [dict(zip(keys, r, strict=True)) for r in cur.fetchall()]
    start = min((r["bucket"] for r in rows), default=None)
    return {"bucket_s": int(bucket_s), "start": start, "rows": rows}
