"""Cohort metrics in one aggregate query, and per-bucket time series (what `compare`, `changes` and the
console's overview read). Everything aggregates in DuckDB; only summary numbers come back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from oncall.query.labels import LATEST_LABELS
from oncall.query.quality import has_output, json_valid_sql, key_set_sql, refusal_sql
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
        ("ttft_n", "count(s.ttft_ms) FILTER (WHERE s.status IS DISTINCT FROM 'error')"),
        ("ttft_mean", "avg(s.ttft_ms) FILTER (WHERE s.status IS DISTINCT FROM 'error')"),
        ("ttft_var", "var_samp(s.ttft_ms) FILTER (WHERE s.status IS DISTINCT FROM 'error')"),
        ("answered", "count(*) FILTER (WHERE s.status IS DISTINCT FROM 'error')"),
        ("finished", "count(*) FILTER (WHERE s.status IS DISTINCT FROM 'error' AND s.finish_reason IS NOT NULL "
                     "AND s.finish_reason <> 'error')"),
        *[(f"finish_{r}", f"count(*) FILTER (WHERE s.status IS DISTINCT FROM 'error' AND s.finish_reason = '{r}')")
          for r in ("length", "content_filter", "tool_calls")],
        ("tool_call_requests", "count(*) FILTER (WHERE s.status IS DISTINCT FROM 'error' "
                               "AND coalesce(json_array_length(s.tool_calls), 0) > 0)"),
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


_LATEST_LABEL = f"LEFT JOIN {LATEST_LABELS} lab ON lab.span_pk = s.span_pk"


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


# -- the tracked signals ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Signal:
    """One tracked series. Each row gives a value, or NULL where it does not count; buckets and
    cohorts aggregate sums, counts and sums of squares, so they recombine across any split.

    `rate` signals are 0/1 per row (their mean is the rate); `mean` signals are numbers. `quality`
    signals run the output heuristics of quality.py, the costly part of a scan."""
    name: str
    kind: str  # rate | mean
    sql: str  # over the projection's alias s; NULL where the row does not count
    counts: str  # what the denominator is, in a responder's words
    quality: bool = False


def _ok() -> str:
    return "s.status IS DISTINCT FROM 'error'"


def _finish(reason: str) -> str:
    return (f"CASE WHEN {_ok()} AND s.finish_reason IS NOT NULL AND s.finish_reason <> 'error' "
            f"THEN (s.finish_reason = '{reason}')::INT END")


# Every series `changes` searches, in one vocabulary (the names are the --json contract).
# Latency, TTFT and output tokens count successful calls only: fast-failing 429s would otherwise
# read as an improvement. Spans of kind `tool` count only towards tool_error_rate.
SIGNALS: dict[str, Signal] = {sg.name: sg for sg in [
    Signal("error_rate", "rate", "(s.status = 'error')::INT", "LLM calls"),
    Signal("latency_ms_mean", "mean", f"CASE WHEN {_ok()} THEN s.latency_ms END", "successful calls"),
    Signal("ttft_ms_mean", "mean", f"CASE WHEN {_ok()} THEN s.ttft_ms END", "successful streamed calls"),
    Signal("input_tokens_mean", "mean", "s.input_tokens", "calls with token counts"),
    Signal("output_tokens_mean", "mean", f"CASE WHEN {_ok()} THEN s.output_tokens END",
           "successful calls with token counts"),
    Signal("cost_per_request", "mean", "s.cost", "calls with a cost"),
    Signal("output_length_mean", "mean", f"CASE WHEN {has_output('s')} THEN length(s.output_text) END",
           "successful calls with an output"),
    Signal("refusal_rate", "rate", f"CASE WHEN {has_output('s')} THEN ({refusal_sql('s')})::INT END",
           "successful calls with an output", quality=True),
    Signal("json_valid_rate", "rate", f"CASE WHEN {has_output('s')} THEN ({json_valid_sql('s')})::INT END",
           "successful calls with an output", quality=True),
    # A key set absent from the reference (the before-period's key sets, passed as a list).
    Signal("json_key_drift", "rate", "CASE WHEN s._ks IS NOT NULL THEN (NOT list_contains(?::VARCHAR[], s._ks))::INT END",
           "JSON-object outputs", quality=True),
    Signal("finish_length_rate", "rate", _finish("length"), "successful calls with a finish reason"),
    Signal("finish_content_filter_rate", "rate", _finish("content_filter"), "successful calls with a finish reason"),
    Signal("finish_tool_calls_rate", "rate", _finish("tool_calls"), "successful calls with a finish reason"),
    Signal("tool_call_rate", "rate",
           f"CASE WHEN {_ok()} THEN (coalesce(json_array_length(s.tool_calls), 0) > 0)::INT END", "successful calls"),
    Signal("tool_error_rate", "rate", "(s.status = 'error')::INT", "tool spans"),
]}
TOOL_SIGNALS = frozenset({"tool_error_rate"})
SERIES_KEYS = ("provider", "feature", "model", "tenant")


def signal_list(quality: bool = True, key_ref: list[str] | None = None,
                only: set[str] | None = None) -> list[Signal]:
    """The signals a scan computes: quality ones only when asked, key drift only with a reference,
    and (given `only`) only those the data can show."""
    return [sg for sg in SIGNALS.values()
            if (quality or not sg.quality) and (sg.name != "json_key_drift" or key_ref is not None)
            and (only is None or sg.name in only)]


# What a signal needs to be non-empty, read cheaply (validity masks and small columns, no text).
_PRESENCE = {
    "ttft_ms_mean": "count(s.ttft_ms) FILTER (WHERE s.kind = 'llm')",
    "input_tokens_mean": "count(s.input_tokens) FILTER (WHERE s.kind = 'llm')",
    "output_tokens_mean": "count(s.output_tokens) FILTER (WHERE s.kind = 'llm')",
    "cost_per_request": "count(s.cost) FILTER (WHERE s.kind = 'llm')",
    "finish_length_rate": "count(*) FILTER (WHERE s.kind = 'llm' AND s.finish_reason = 'length')",
    "finish_content_filter_rate": "count(*) FILTER (WHERE s.kind = 'llm' AND s.finish_reason = 'content_filter')",
    "finish_tool_calls_rate": "count(*) FILTER (WHERE s.kind = 'llm' AND s.finish_reason = 'tool_calls')",
    "tool_call_rate": "count(s.tool_calls) FILTER (WHERE s.kind = 'llm')",
    "tool_error_rate": "count(*) FILTER (WHERE s.kind = 'tool')",
    "latency_ms_mean": "count(s.latency_ms) FILTER (WHERE s.kind = 'llm')",
}


def present_signals(con: Any, where: str, params: list[Any]) -> set[str]:
    """The signals the rows matching `where` can show: an export without TTFT, cost, tool spans or a
    finish reason of some kind does not pay for their aggregates (nor could they shift)."""
    names = list(_PRESENCE)
    row = con.execute(f"SELECT {', '.join(_PRESENCE[n] for n in names)} FROM spans s WHERE {where}",
                      params).fetchone()
    absent = {n for n, v in zip(names, row, strict=True) if not v}
    return set(SIGNALS) - absent


def _projection(where: str, params: list[Any], signals: list[Signal], key_ref: list[str] | None,
                extra: str = "") -> tuple[str, list[Any]]:
    """One row per span with every signal's value (alias s), and its parameters in textual order."""
    cols, cparams = [], []
    for sg in signals:
        kind = "tool" if sg.name in TOOL_SIGNALS else "llm"
        cols.append(f"CASE WHEN s.kind = '{kind}' THEN {sg.sql} END AS v_{sg.name}")
        if sg.name == "json_key_drift":
            cparams.append(list(key_ref or []))
    ks = f", {key_set_sql('s')} AS _ks" if any(sg.name == "json_key_drift" for sg in signals) else ""
    sql = (f"SELECT s.start_time, s.provider, s.feature, s.model, s.tenant, (s.kind = 'llm')::INT AS is_llm, "
           f"CASE WHEN s.kind = 'llm' AND {_ok()} THEN s.latency_ms END AS lat{extra}, {', '.join(cols)} "
           f"FROM (SELECT s.*{ks} FROM spans s WHERE {where} AND s.start_time IS NOT NULL) s")
    return sql, cparams + list(params)


def _sums(signals: list[Signal], percentiles: bool) -> list[tuple[str, str]]:
    out = [("requests", "sum(is_llm)")]
    for sg in signals:
        v = f"v_{sg.name}"
        out += [(f"{sg.name}__x", f"sum({v})"), (f"{sg.name}__n", f"count({v})")]
        if sg.kind == "mean":
            out.append((f"{sg.name}__sq", f"sum({v}::DOUBLE * {v})"))
    if percentiles:
        out.append(("latency_p95", "quantile_cont(lat, 0.95)"))
    return out


# The older names the overview plots, kept beside the signal sums.
_LEGACY = {"errors": "error_rate__x", "latency_sum": "latency_ms_mean__x", "latency_n": "latency_ms_mean__n",
           "latency_sq": "latency_ms_mean__sq", "cost_sum": "cost_per_request__x", "cost_n": "cost_per_request__n",
           "cost_sq": "cost_per_request__sq", "outputs": "output_length_mean__n",
           "length_sum": "output_length_mean__x", "length_sq": "output_length_mean__sq",
           "refusals": "refusal_rate__x", "json_valid": "json_valid_rate__x"}


def grouped_signals(con: Any, where: str, params: list[Any], *, group: str, group_params: list[Any] | None = None,
                    keys: list[str | None], quality: bool = True, key_ref: list[str] | None = None,
                    percentiles: bool = False, only: set[str] | None = None) -> list[dict[str, Any]]:
    """Signal sums per `group` (an SQL expression over the projection: a time bucket, a before/after
    phase) and per cohort key, in one scan with grouping sets. `key` is None (all rows) or the cohort
    key, `grp` its value; the projection's expensive per-row checks run once per row."""
    for k in keys:
        if k is not None and k not in SERIES_KEYS:
            raise ValueError(f"cannot group series by {k!r}; use one of {', '.join(SERIES_KEYS)}")
    signals = signal_list(quality, key_ref, only)
    proj, pparams = _projection(where, params, signals, key_ref)
    sets = ", ".join("(bucket)" if k is None else f"(bucket, {k})" for k in keys)
    named = [k for k in SERIES_KEYS if k in keys]  # GROUPING() may only name columns some set groups by
    sums = _sums(signals, percentiles)
    grouping = f"GROUPING({', '.join(named)})" if named else "0"
    if percentiles:  # a quantile does not recombine: every grouping set aggregates the rows
        cols = ", ".join(f"{expr} AS {name}" for name, expr in sums)
        sql = (f"SELECT {group} AS bucket, {''.join(k + ', ' for k in named)}{grouping} AS g, {cols} "
               f"FROM ({proj}) GROUP BY GROUPING SETS ({sets}) ORDER BY g, bucket")
    else:
        # Sums recombine: aggregate the rows once per (group, every key), then roll the few
        # resulting rows up into the grouping sets (one hash aggregate over the spans, not one per set).
        fine_cols = ", ".join(f"{expr} AS {name}" for name, expr in sums)
        fine_keys = "".join(f", {k}" for k in named)
        cols = ", ".join(f"sum({name}) AS {name}" for name, _ in sums)
        sql = (f"WITH fine AS (SELECT {group} AS bucket{fine_keys}, {fine_cols} FROM ({proj}) "
               f"GROUP BY bucket{fine_keys}) "
               f"SELECT bucket, {''.join(k + ', ' for k in named)}{grouping} AS g, {cols} "
               f"FROM fine GROUP BY GROUPING SETS ({sets}) ORDER BY g, bucket")
    cur = con.execute(sql, list(group_params or []) + pparams)
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
        for old, new in _LEGACY.items():
            d[old] = d.get(new)  # None when the signal was not computed
        out.append(d)
    return out


def series_sets(con: Any, where: str, params: list[Any], *, bucket_s: int,
                keys: list[str | None], quality: bool = True, key_ref: list[str] | None = None,
                percentiles: bool = True, only: set[str] | None = None) -> list[dict[str, Any]]:
    """Per-bucket signal sums for several groupings in one scan (see grouped_signals)."""
    # time_bucket on a TIMESTAMPTZ cuts buckets from a UTC origin whatever the connection's zone
    # (checked under TZ=Asia/Kolkata: hour and day buckets start on the UTC hour and midnight).
    return grouped_signals(con, where, params, group=f"time_bucket(INTERVAL '{int(bucket_s)} seconds', start_time)",
                           keys=keys, quality=quality, key_ref=key_ref, percentiles=percentiles, only=only)


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
