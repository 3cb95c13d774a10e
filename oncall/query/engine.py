"""Where a question's aggregates are computed: the incident's DuckDB, or in place where the spans
live (ClickHouse, oncall/sources/clickhouse/engine.py). `compare` asks its questions through this
interface, so the same algorithm and the same metric definitions (the registry, compiled by each
engine's Dialect) run on either; only aggregates come back from an engine.

Filters are the filter language's (query/filters.py), compiled by each engine for its own SQL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from oncall.query.filters import Compiled, Filter, compile_filter
from oncall.query.registry import Metric, Stat, key_set_counts, measure

DIMENSIONS = ("served_model", "finish_reason")  # what a cohort is besides its metrics (compare's `_dims`)


class Engine(Protocol):
    """Aggregates over the LLM calls a filter names."""

    name: str

    def compile(self, flt: Filter | str | list[str] | None) -> Any:
        """The filter in this engine's SQL (`.filter`, `.notes`): passed back to the methods below."""
        ...

    def measure(self, c: Any, metrics: Iterable[Metric], refs: Mapping[str, Any] | None = None) -> dict[str, Stat]:
        """Every metric's aggregates (n, sum, squares, quantiles) over the rows, in one scan."""
        ...

    def key_set_counts(self, c: Any) -> dict[str, int]:
        """How often each JSON key set occurs among the rows' outputs (json_key_drift's rows)."""
        ...

    def dims(self, c: Any) -> dict[str, Any]:
        """first/last start time, and counts per served model and finish reason (top 20 each)."""
        ...

    def estimated_share(self, c: Any) -> dict[str, Any]:
        """Of the rows' costs: how many, how many estimated, the share (cost_marks)."""
        ...


class DuckDBEngine:
    """The incident's spans table (alias `s`)."""

    name = "duckdb"

    def __init__(self, con: Any) -> None:
        self.con = con

    def compile(self, flt: Filter | str | list[str] | None) -> Compiled:
        return compile_filter(self.con, flt, alias="s")

    def measure(self, c: Compiled, metrics: Iterable[Metric], refs: Mapping[str, Any] | None = None) -> dict[str, Stat]:
        return measure(self.con, c.where, c.params, list(metrics), refs=refs)

    def key_set_counts(self, c: Compiled) -> dict[str, int]:
        return key_set_counts(self.con, c.where, c.params)

    def dims(self, c: Compiled) -> dict[str, Any]:
        # One statement (grouping sets) for the range and every dimension: over many load parts each
        # statement pays for planning every part's branch of the views (bench/RESULTS.md).
        keys = ", ".join(f"s.{dim}" for dim in DIMENSIONS)
        sets = ", ".join(f"(s.{dim})" for dim in DIMENSIONS)
        rows = self.con.execute(
            f"SELECT GROUPING({keys}), {keys}, count(*), min(s.start_time), max(s.start_time) "
            f"FROM spans s WHERE {c.where} GROUP BY GROUPING SETS ((), {sets})", c.params).fetchall()
        out: dict[str, Any] = {"first": None, "last": None}
        everything = (1 << len(DIMENSIONS)) - 1  # GROUPING() sets a bit per dimension not grouped by
        counts: dict[str, list[tuple[str, int]]] = {dim: [] for dim in DIMENSIONS}
        for g, *values, n, first, last in rows:
            if g == everything:
                out["first"], out["last"] = first, last
                continue
            i = len(DIMENSIONS) - (everything ^ g).bit_length()
            if values[i] is not None:
                counts[DIMENSIONS[i]].append((str(values[i]), int(n)))
        for dim, kv in counts.items():  # top 20, most frequent first, then by value
            out[dim + "s"] = dict(sorted(kv, key=lambda x: (-x[1], x[0]))[:20])
        return out

    def estimated_share(self, c: Compiled) -> dict[str, Any]:
        from oncall.query.cost_marks import estimated_share

        return estimated_share(self.con, c.where, c.params)


def utc(t: Any) -> dt.datetime | None:
    """A time an engine returned, as an aware UTC datetime (ClickHouse hands naive UTC)."""
    if t is None:
        return None
    if isinstance(t, dt.datetime):
        return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)
    return t
