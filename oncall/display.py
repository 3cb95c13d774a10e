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


def percent(v: float) -> str:
    """A ratio as a percentage with the digits that matter: 0.53 %, 7.3 %, 26 %."""
    pct = 100 * v
    if pct == 0:
        return "0 %"
    if abs(pct) < 1:
        return f"{pct:.2g} %"
    if abs(pct) < 10:
        return f"{pct:.1f} %"
    return f"{pct:.0f} %"


def age_text(seconds: float | None) -> str:
    """An age or a long duration for reading: 40 min, 5.2 h, 12 d."""
    if seconds is None:
        return "—"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} d"


def metric_text(v: float | None, unit: str) -> str:
    """A metric's value in its unit (the registry's units: ratio, usd, ms, chars, tokens, count, docs,
    score, s)."""
    if v is None:
        return "—"
    if unit == "ratio":
        return percent(v)
    if unit == "usd":
        return format_cost(v)
    if unit == "count":
        return f"{int(v):,}"
    if unit in ("ms", "chars"):
        return f"{v:,.0f} {unit}"
    if unit == "tokens":
        return f"{v:,.0f}" if abs(v) >= 10 else f"{v:.2g}"
    if unit == "docs":
        return f"{v:.1f} docs"
    if unit == "score":
        return f"{v:.2f}"
    if unit == "s":
        return age_text(v)
    return f"{v:.3g}" if isinstance(v, float) else str(v)
