"""How values read to a responder, the same in every surface (CLI tables, `--json`, the console).

One place, so `show` and `search` (and the console's reader and results) never disagree: a
request's status, a cost, a time. Plain strings only (no rich, no textual): the CLI and the TUI
both build on these.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any


def is_failure(status: str | None) -> bool:
    """Only an error status is a failure: OTLP's `unset` (nobody set a status) is not one, which is
    also what the filter `status=ok` means."""
    return status == "error"


def status_text(status: str | None, error_type: str | None, *, short: bool = False) -> str:
    """`ok`, or for a failed request `error (rate_limit)`; `short`: just the class (`rate_limit`)."""
    if not is_failure(status):
        return "ok"
    if short:
        return error_type or "error"
    return f"error ({error_type})" if error_type else "error"


def format_cost(v: float | None) -> str:
    """Dollars with three significant digits below $1 ($0.000373, $0.00132, $0.05), cents above
    ($12.40, $1,234.00); "" for no cost. A fixed number of decimals showed $0.000373 as 0.0."""
    if v is None:
        return ""
    if v == 0:
        return "$0"
    if abs(v) >= 1:
        return f"${v:,.2f}"
    decimals = 2 - math.floor(math.log10(abs(v)))  # three significant digits
    text = f"{v:.{decimals}f}".rstrip("0")
    if len(text.split(".")[1]) < 2:
        text = f"{v:.2f}"
    return ("-$" + text[1:]) if text.startswith("-") else "$" + text


def iso_utc(t: dt.datetime) -> str:
    """ISO 8601 in UTC (`2026-11-24T01:00:00+00:00`), whatever zone the datetime came back in: a
    DuckDB cursor returns TIMESTAMPTZ values in its session's zone, which starts as the machine's."""
    if t.tzinfo is None:  # a naive time in the incident database is UTC (README)
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone(dt.UTC).isoformat()


def jsonable(v: Any) -> Any:
    """A value for `--json`: datetimes as UTC ISO strings, containers walked."""
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, dt.datetime):
        return iso_utc(v)
    return v
