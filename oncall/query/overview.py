"""The incident at a glance: the numbers the console's header and filter completion show, asked of
the core so a screen holds no SQL (and `oncall` scripts can ask the same)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from oncall.query.filters import CATEGORICAL, COLUMNS


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
        "SELECT count(*), count(*) FILTER (WHERE status = 'error'), sum(cost), min(start_time), max(start_time), "
        "count(*) FILTER (WHERE cost_source = 'estimated') FROM spans WHERE kind = 'llm'").fetchone()
    return Header(int(n), int(errors), None if cost is None else float(cost), first, last, int(estimated))


def top_values(con: Any, key: str, limit: int) -> list[str]:
    """The `limit` most frequent values of a filter key among LLM calls, most frequent first (the
    column the filter language reads for it)."""
    col = COLUMNS[key]
    if col is None:
        raise ValueError(f"{key} is not a column of its own")
    rows = con.execute(f"SELECT {col}, count(*) FROM spans WHERE kind = 'llm' AND {col} IS NOT NULL "
                       f"GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?", [int(limit)]).fetchall()
    return [str(r[0]) for r in rows]


def completion_values(con: Any, keys: Sequence[str] = CATEGORICAL, limit: int = 50) -> dict[str, list[str]]:
    """{filter key: its most frequent values}: what the filter bar completes beside the language's
    closed vocabularies (filters.completions)."""
    return {k: top_values(con, k, limit) for k in keys}
