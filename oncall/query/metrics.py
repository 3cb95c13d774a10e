"""Cohort metrics in one aggregate query, and per-bucket time series (what `compare`, `changes` and the
console's overview read). Everything aggregates in DuckDB; only summary numbers come back."""

from __future__ import annotations

from typing import Any

from oncall.query.registry import (
    COMPARED_ERRORS,
    METRICS,
    SERIES,
    Dialect,
    DuckDB,
    Metric,
    aggregate_columns,
    dialect_of,
    key_set_counts,
    projection_columns,
)

__all__ = ["COMPARED_ERRORS", "SIGNALS", "auto_bucket", "grouped_signals", "key_sets", "present_signals",
           "series", "series_sets", "signal_list"]


def key_sets(con: Any, where: str, params: list[Any], limit: int = 50) -> dict[str, int]:
    """JSON key sets of the cohort's outputs and how often each occurs."""
    return key_set_counts(con, where, params, limit=limit)


BUCKETS_S = [60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400]


def auto_bucket(seconds: float, target: int = 72) -> int:
    """A round bucket width giving about `target` buckets over the range."""
    for b in BUCKETS_S:
        if seconds / b <= target:
            return b
    return BUCKETS_S[-1]


# -- the tracked signals ------------------------------------------------------------------------------
# Every series `changes` searches: the registry's metrics marked `series` (the names are the --json
# contract). Each row gives a value, or NULL where it does not count; buckets and cohorts aggregate
# sums, counts and sums of squares, so they recombine across any split.
SIGNALS: dict[str, Metric] = SERIES
SERIES_KEYS = ("provider", "feature", "model", "tenant")


def signal_list(quality: bool = True, key_ref: list[str] | None = None,
                only: set[str] | None = None) -> list[Metric]:
    """The signals a scan computes: those running output heuristics only when asked, key drift only
    with a reference, and (given `only`) only those the data can show."""
    return [m for m in SIGNALS.values()
            if (quality or not m.heuristic) and (m.reference is None or key_ref is not None)
            and (only is None or m.name in only)]


def present_signals(con: Any, where: str, params: list[Any]) -> set[str]:
    """The signals the rows matching `where` can show: an export without TTFT, cost, tool spans or a
    finish reason of some kind does not pay for their aggregates (nor could they shift). Read cheaply:
    only metrics that read no text are checked (validity masks and small columns)."""
    cheap = [m for m in SIGNALS.values() if not m.reads_text]
    d = dialect_of(con)("s")
    row = con.execute(f"SELECT {', '.join(m.presence_sql(d) for m in cheap)} FROM spans s WHERE {where}",
                      [*d.params, *params]).fetchone()
    absent = {m.name for m, v in zip(cheap, row, strict=True) if not v}
    return set(SIGNALS) - absent


def _projection(where: str, params: list[Any], signals: list[Metric], key_ref: list[str] | None,
                extra: str = "", quantiles: list[Metric] | None = None,
                dialect: type[Dialect] = DuckDB) -> tuple[str, list[Any]]:
    """One row per span with every signal's value (v_NAME; alias s), and its parameters in textual order."""
    d = dialect("s", {"key_sets": list(key_ref or [])}, {"key_set": "s._ks"})
    cols = projection_columns([*signals, *(quantiles or [])], d)
    ks = (f", {d.function('key_set', 's.output_text', None)} AS _ks"
          if any("key_set" in m.columns() for m in signals) else "")
    sql = (f"SELECT s.start_time, s.provider, s.feature, s.model, s.tenant, (s.kind = 'llm')::INT AS is_llm{extra}, "
           f"{', '.join(cols)} FROM (SELECT s.*{ks} FROM spans s WHERE {where} AND s.start_time IS NOT NULL) s")
    return sql, d.params + list(params)


def _sums(signals: list[Metric], quantiles: list[Metric], d: Dialect) -> list[tuple[str, str]]:
    out = [("requests", "sum(is_llm)")]
    out += [(f"{name}__{stat}", agg) for name, stat, agg in aggregate_columns(signals, dialect=d)]
    out += [(name, agg) for name, stat, agg in aggregate_columns(quantiles, dialect=d) if stat == "q"]
    return out


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
    quantiles = [METRICS["latency_ms_p95"]] if percentiles else []
    dialect = dialect_of(con)
    proj, pparams = _projection(where, params, signals, key_ref, quantiles=quantiles, dialect=dialect)
    sets = ", ".join("(bucket)" if k is None else f"(bucket, {k})" for k in keys)
    named = [k for k in SERIES_KEYS if k in keys]  # GROUPING() may only name columns some set groups by
    sums = _sums(signals, quantiles, dialect())
    grouping = f"GROUPING({', '.join(named)})" if named else "0"
    # Rows of one bucket come in the key's value order: without it their order follows the hash
    # aggregate's threads, and two asks of the same question list a bucket's cohorts differently.
    order = "".join(f", {k}" for k in named)
    if percentiles:  # a quantile does not recombine: every grouping set aggregates the rows
        cols = ", ".join(f"{expr} AS {name}" for name, expr in sums)
        sql = (f"SELECT {group} AS bucket, {''.join(k + ', ' for k in named)}{grouping} AS g, {cols} "
               f"FROM ({proj}) GROUP BY GROUPING SETS ({sets}) ORDER BY g, bucket{order}")
    else:
        # Sums recombine: aggregate the rows once per (group, every key), then roll the few
        # resulting rows up into the grouping sets (one hash aggregate over the spans, not one per set).
        fine_cols = ", ".join(f"{expr} AS {name}" for name, expr in sums)
        fine_keys = "".join(f", {k}" for k in named)
        cols = ", ".join(f"sum({name}) AS {name}" for name, _ in sums)
        sql = (f"WITH fine AS (SELECT {group} AS bucket{fine_keys}, {fine_cols} FROM ({proj}) "
               f"GROUP BY bucket{fine_keys}) "
               f"SELECT bucket, {''.join(k + ', ' for k in named)}{grouping} AS g, {cols} "
               f"FROM fine GROUP BY GROUPING SETS ({sets}) ORDER BY g, bucket{order}")
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
        out.append(d)
    return out


def series_sets(con: Any, where: str, params: list[Any], *, bucket_s: int,
                keys: list[str | None], quality: bool = True, key_ref: list[str] | None = None,
                percentiles: bool = True, only: set[str] | None = None) -> list[dict[str, Any]]:
    """Per-bucket signal sums for several groupings in one scan (see grouped_signals)."""
    return grouped_signals(con, where, params, group=dialect_of(con)().time_bucket(bucket_s, "start_time"),
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
