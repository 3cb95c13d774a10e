"""Checks on a file's rows that cost nothing while the data is clean (issue 23).

Two places a bad value could slip through and break the load or every later command:
- a batch of importer rows that Arrow cannot hold (an integer past 64 bits: a start time of 1e27
  ns, a token count of 1e30): the batch's one conversion fails, and only then is each row tried
  alone, so the bad record is reported at its line and skipped while the rest of the batch loads;
- times past what every reader of the incident can show (before year 1, past 9999, infinity):
  one query over the file's rows after they are written removes them, each reported at its line.

Times that are representable but absurd for an LLM call (a year-3000 span, an end before its
start, a latency of centuries) are loaded and named in warnings: the export says so, and the
responder should hear it rather than read a chart stretched over a thousand years.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import duckdb
import pyarrow as pa

Report = Callable[[int | None, str, str], None]  # (line, kind, message)

# What DuckDB, Python's datetime and the console can all show.
FIRST_TIME = "0001-01-01 00:00:00+00"
LAST_TIME = "9999-12-31 23:59:59.999999+00"
# Plausible bounds for an LLM call's time; outside them the span loads with a warning.
PLAUSIBLE_FROM = "2000-01-01 00:00:00+00"
PLAUSIBLE_AHEAD = "INTERVAL 1 YEAR"  # past now
MAX_PLAUSIBLE_LATENCY_MS = 7 * 86_400_000.0  # a week
WARNINGS_PER_FILE = 20

_CONVERT_ERRORS = (pa.ArrowException, OverflowError, TypeError, ValueError, RecursionError)


def rows_to_arrow(rows: list[dict[str, Any]], schema: pa.Schema, report: Report) -> pa.Table:
    """The rows as one Arrow table; a row Arrow cannot hold is reported at its line and left out."""
    try:
        return pa.Table.from_pylist(rows, schema=schema)
    except _CONVERT_ERRORS:
        pass  # some row holds a value no column can: find it, one row at a time (rare, so cheap overall)
    good = []
    for row in rows:
        try:
            pa.Table.from_pylist([row], schema=schema)
        except _CONVERT_ERRORS:
            report(row.get("source_line"), "out-of-range", _why_unconvertible(row, schema) + "; record skipped")
            continue
        good.append(row)
    return pa.Table.from_pylist(good, schema=schema)


def _why_unconvertible(row: dict[str, Any], schema: pa.Schema) -> str:
    for name, value in row.items():
        if name not in schema.names or value is None:
            continue
        typ = schema.field(name).type
        try:
            pa.array([value], typ)
        except _CONVERT_ERRORS as exc:
            if pa.types.is_timestamp(typ) and isinstance(value, int):
                return f"{name} is out of range (year before 1 or past 9999)"
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            return f"{name} {shown} does not fit a {typ} column ({type(exc).__name__})"
    return "a value in the record cannot be stored"


def drop_unreadable_times(con: duckdb.DuckDBPyConnection, import_id: int, report: Report) -> int:
    """Remove the import's spans whose start or end time is before year 1, past 9999 or infinite;
    each is reported at its line. Returns how many were removed."""
    out_of_range = (f"NOT (isfinite({{c}}) AND {{c}} BETWEEN TIMESTAMPTZ '{FIRST_TIME}' "
                    f"AND TIMESTAMPTZ '{LAST_TIME}')")
    bad = " OR ".join(out_of_range.format(c=c) for c in ("start_time", "end_time"))
    rows = con.execute(
        f"""DELETE FROM spans WHERE import_id = ? AND ({bad})
            RETURNING source_line, span_id, name, CAST(start_time AS VARCHAR), CAST(end_time AS VARCHAR)""",
        [import_id]).fetchall()
    for line, span_id, name, start, end in sorted(rows, key=lambda r: (r[0] is None, r[0] or 0)):
        which = "start time" if start is not None and _unreadable(start) else "end time"
        value = start if which == "start time" else end
        who = "" if line else f"span {span_id} ({name}): "
        if "infinity" in str(value):
            what = (f"{which} is a number no unit (s, ms, µs, ns) reads as a time between 1973 and 5138, "
                    "or infinite")
        else:
            what = f"{which} {value} is before year 1 or past 9999"
        report(line, "out-of-range", f"{who}{what} (a unit or clock error in the export); record skipped")
    return len(rows)


def _unreadable(text: str) -> bool:
    return "infinity" in text or "(BC)" in text or text[:1] == "-" or len(text.split("-", 1)[0]) > 4


def absurd_times(con: duckdb.DuckDBPyConnection, import_id: int) -> list[tuple[int | None, str]]:
    """(line, message) for the import's spans whose times load but cannot be right, at most
    WARNINGS_PER_FILE, with a last entry counting the rest."""
    checks = {
        "early": f"start_time < TIMESTAMPTZ '{PLAUSIBLE_FROM}'",
        "future": f"start_time > now() + {PLAUSIBLE_AHEAD}",
        "negative": "(end_time < start_time OR latency_ms < 0)",
        "long": f"latency_ms > {MAX_PLAUSIBLE_LATENCY_MS}",
    }
    flags = ", ".join(f"{cond} AS {name}" for name, cond in checks.items())
    where = " OR ".join(checks.values())
    total, = con.execute(f"SELECT count(*) FROM spans WHERE import_id = ? AND ({where})", [import_id]).fetchone()
    if not total:
        return []
    rows = con.execute(
        f"""SELECT source_line, span_id, name, CAST(start_time AS VARCHAR), latency_ms, {flags}
            FROM spans WHERE import_id = ? AND ({where}) ORDER BY source_line NULLS LAST, span_pk LIMIT ?""",
        [import_id, WARNINGS_PER_FILE]).fetchall()
    out: list[tuple[int | None, str]] = []
    for line, span_id, name, start, latency, early, future, negative, long in rows:
        who = "" if line else f"span {span_id} ({name}): "
        why = []
        if early:
            why.append(f"starts {start}, before 2000")
        if future:
            why.append(f"starts {start}, in the future")
        if negative:
            why.append("ends before it starts (negative duration)")
        if long:
            why.append(f"lasts {latency:.4g} ms ({latency / 86_400_000:.3g} days)")
        out.append((line, f"{who}{'; '.join(why)}: loaded, but check the export's clock and time units"))
    if total > len(rows):
        out.append((None, f"… and {total - len(rows)} more spans with absurd times"))
    return out
