"""The incident at a glance: the numbers the console's header and filter completion show, asked of
the core so a screen holds no SQL (and `oncall` scripts can ask the same).

`con` is the incident's DuckDB connection or a source's connection in place (a console opened on a
ClickHouse source): the SQL here is written for both (alias `s`, a dialect-free subset)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from oncall.query.filters import CATEGORICAL, COLUMNS, compile_on
from oncall.query.metrics import auto_bucket, series_sets
from oncall.query.registry import METRICS


@dataclass(frozen=True)
class Header:
    """The LLM calls of the incident: how many, how many failed, what they cost, when."""

    calls: int
    errors: int
    cost: float | None
    first: dt.datetime | None
    last: dt.datetime | None
    estimated_costs: int  # how many of the costs are estimates (the header marks the total with ~)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.calls if self.calls else None

    @property
    def span_s(self) -> float:
        return (self.last - self.first).total_seconds() if self.first and self.last else 0.0


def incident_header(con: Any) -> Header:
    n, errors, cost, first, last, estimated = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE s.status = 'error'), sum(s.cost), min(s.start_time), "
        "max(s.start_time), count(*) FILTER (WHERE s.cost_source = 'estimated') FROM spans s "
        "WHERE s.kind = 'llm'").fetchone()
    n = int(n or 0)
    return Header(n, int(errors or 0), None if cost is None else float(cost), first if n else None,
                  last if n else None, int(estimated or 0))


def top_values(con: Any, key: str, limit: int) -> list[str]:
    """The `limit` most frequent values of a filter key among LLM calls, most frequent first (the
    column the filter language reads for it)."""
    col = COLUMNS[key]
    if col is None:
        raise ValueError(f"{key} is not a column of its own")
    rows = con.execute(f"SELECT s.{col}, count(*) FROM spans s WHERE s.kind = 'llm' AND s.{col} IS NOT NULL "
                       f"GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {int(limit)}").fetchall()
    return [str(r[0]) for r in rows]


def completion_values(con: Any, keys: Sequence[str] = CATEGORICAL, limit: int = 50) -> dict[str, list[str]]:
    """{filter key: its most frequent values}: what the filter bar completes beside the language's
    closed vocabularies (filters.completions)."""
    return {k: top_values(con, k, limit) for k in keys}


# What the console's overview charts, per cohort: all traffic and the top TOP_COHORTS tenants.
CHARTED = ("error_rate", "latency_ms_p95", "cost_per_request", "output_length_mean")
TOP_COHORTS = 3


@dataclass(frozen=True)
class Glance:
    """What the overview shows above what-changed: the header, the top cohorts, and per-bucket signal
    sums for all traffic and for each tenant (metrics.series_sets rows, `key` None or "tenant")."""

    head: Header
    top: list[str]
    bucket_s: int
    overall: list[dict[str, Any]]
    by_key: list[dict[str, Any]]


def glance(con: Any, key: str = "tenant", top: int = 3, metrics: Collection[str] | None = None) -> Glance:
    """The overview's numbers in one pass of questions (one scan for all the series). `metrics`: the
    ones the series carry (None: every signal but the quality checks, and the p95 latency)."""
    head = incident_header(con)
    values = top_values(con, key, top)
    c = compile_on(con, "")
    bucket_s = auto_bucket(head.span_s) if head.first is not None else 60
    # The quantiles of a grouping do not recombine from sums: only the p95 latency is computed beside them.
    only = None if metrics is None else {m for m in metrics if METRICS[m].kind != "quantile"}
    p95 = metrics is None or "latency_ms_p95" in metrics
    # One scan for all traffic and every value of the key; only what is charted is computed (a chart of
    # four metrics read in 0.4-0.6 of the time of every signal at 1M spans, same numbers).
    rows = series_sets(con, c.where, c.params, bucket_s=bucket_s, keys=[None, key], quality=False, only=only,
                       percentiles=p95)
    return Glance(head, values, bucket_s, [r for r in rows if r["key"] is None], [r for r in rows if r["key"] == key])


def overview_glance(con: Any) -> Glance:
    """The console overview's header and charts (CHARTED for all traffic and the top tenants)."""
    return glance(con, "tenant", TOP_COHORTS, CHARTED)
