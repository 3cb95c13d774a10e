"""How values read to a responder, the same in every surface (CLI tables, `--json`, the console).

One place, so `show` and `search` (and the console's reader and results) never disagree: a
request's status, a cost, a time. Plain strings only (no rich, no textual): the CLI and the TUI
both build on these.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
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


def status_word(status: str | None) -> str:
    """The one word for a request's outcome: `ok` or `error`. OTLP's `unset` reads `ok` on every
    surface (the explorer, the reader, `show`, `--json`'s `status`); `--json` keeps the export's own
    code beside it as `status_code` (`ok`, `error` or `unset`, what the filter `status=unset` matches)."""
    return "error" if is_failure(status) else "ok"


def public_status(row: dict[str, Any]) -> dict[str, Any]:
    """A copy of a span row for `--json`: `status` in the one vocabulary, `status_code` as exported."""
    if "status" not in row:
        return dict(row)
    out = dict(row)
    out["status"] = status_word(row["status"])
    out["status_code"] = row["status"]
    return out


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


def time_text(t: dt.datetime | None, *, date: bool | str = True, seconds: bool = True) -> str:
    """A time for people, in UTC (the column or the line around it says "UTC"): `2026-11-24 02:59:39`;
    date="short": `11-24 02:59:39`; date=False: `02:59:39`; seconds=False drops them; "" for none."""
    if t is None:
        return ""
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    t = t.astimezone(dt.UTC)
    clock = t.strftime("%H:%M:%S" if seconds else "%H:%M")
    if not date:
        return clock
    return f"{t:%m-%d} {clock}" if date == "short" else f"{t:%Y-%m-%d} {clock}"


def spans_days(first: dt.datetime | str | None, last: dt.datetime | str | None) -> bool:
    """Does the incident run over more than one UTC day? Then a time in a list carries its date
    (`11-23 23:58:02`, `11-24 00:01:13`): the clock alone would read as one night out of order."""
    if first is None or last is None:
        return False
    days = {_utc(t).date() for t in (first, last)}
    return len(days) > 1


def list_time(t: dt.datetime | str | None, days: bool, *, seconds: bool = True) -> str:
    """A time in a list or column (UTC, said by its header): the clock, with the month and day when the
    incident spans days (spans_days); an ISO string is read first."""
    if t is None:
        return ""
    return time_text(_utc(t), date="short" if days else False, seconds=seconds)


def _utc(t: dt.datetime | str) -> dt.datetime:
    if isinstance(t, str):
        t = dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
    return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


def source_text(path: str | None, line: int | None, fmt: str | None) -> str | None:
    """Where a span came from: `file:line (format)`, `file (format)` for formats without lines
    (a Langfuse trace file, Parquet), None when unknown."""
    if not path:
        return None
    where = f"{path}:{line}" if line is not None else str(path)
    return f"{where} ({fmt})" if fmt else where


def request_fields(d: dict[str, Any], *, source_path: bool = True) -> list[tuple[str, str]]:
    """The header of one request as (name, text) pairs, empty ones left out: what `show` prints and the
    console's reader shows, so the two never disagree (`request_detail` is the dict). The reader's
    narrow panel names the source file without its directory (source_path=False)."""
    from oncall.query.cost_marks import cost_detail

    prompt = " ".join(str(x) for x in (d.get("prompt_name"), d.get("prompt_version")) if x)
    tokens = (f"{d.get('input_tokens')} in / {d.get('output_tokens')} out"
              if d.get("input_tokens") is not None or d.get("output_tokens") is not None else None)
    fields = [("request", d.get("request_id")), ("response", d.get("response_id")), ("trace", d.get("trace_id")),
              ("span", d.get("span_id")), ("time (UTC)", time_text(d.get("start_time"))),
              ("latency", f"{d['latency_ms']:.0f} ms" if d.get("latency_ms") is not None else None),
              ("provider", d.get("provider")), ("model", d.get("model")), ("served model", d.get("served_model")),
              ("tenant", d.get("tenant")), ("user", d.get("user_id")), ("session", d.get("session_id")),
              ("feature", d.get("feature")), ("prompt", prompt), ("release", d.get("release")),
              ("status", status_text(d.get("status"), d.get("error_type"))), ("error", d.get("error")),
              ("tokens", tokens), ("cost", cost_detail(d.get("cost"), d.get("cost_source"))),
              ("finish", d.get("finish_reason")),
              ("source", source_text(d.get("source_file") if source_path or not d.get("source_file")
                                     else Path(d["source_file"]).name, d.get("source_line"), d.get("source_format")))]
    return [(k, str(v)) for k, v in fields if v not in (None, "")]


def format_cost_cell(v: float | None, source: str | None = None, *, dollar: bool = True) -> str:
    """A cost in a table cell: format_cost's significant digits (never cut to fit: size the column to
    it), `~` when estimated, no `$` where the column header says the unit (dollar=False)."""
    from oncall.query.cost_marks import marked

    text = format_cost(v)
    if not dollar:
        text = text.replace("$", "", 1)
    return marked(text, source)


def unit_of(metric: str) -> str:
    """A metric's unit for a number that arrives with only its name (a gate's check): the registry's,
    else by name for the run's own counts (`*_rate` is a ratio, `cost*` dollars)."""
    from oncall.query.registry import METRICS

    if metric in METRICS:
        return METRICS[metric].unit
    if metric.endswith("_rate") or metric in ("json_key_drift", "share"):
        return "ratio"
    if metric.startswith("cost"):
        return "usd"
    return ""


def metric_value(v: Any, unit: str = "") -> str:
    """A metric's value in its unit, the same in every table, gate and draft: the registry's units
    read through metric_text (ratios as %, 0.95 is `95 %`; dollars with significant digits); a number
    without a unit (a count the replay adds) with commas; "—" for no value."""
    if v is None:
        return "—"
    if unit:
        return metric_text(v, unit)
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.3g}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def gate_actual(check: dict[str, Any]) -> str:
    """The number an evidence gate's check tested, in its unit (`95.0 %` for `expect json_valid_rate
    >= 95%`), or "no value". Checks recorded before they named their metric are read from `expect`."""
    metric = check.get("metric") or (str(check.get("expect") or "").split() + ["", ""])[1]
    if check.get("actual") is None:
        return "no value"
    return metric_value(check["actual"], unit_of(str(metric)))


def iso_z(t: dt.datetime | str | None) -> str | None:
    """The hand-off's spelling of a time (timeline, postmortem, eval set): ISO 8601 in UTC to the
    second with `Z`, `2026-11-24T01:12:01Z`; a string is read as ISO first; None stays None."""
    if t is None:
        return None
    if isinstance(t, str):
        t = dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


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


def retrieval_header(d: dict[str, Any]) -> str | None:
    """One line on the retrieval that fed a call (or a retrieval span's own): how many documents from
    which index, the best score, the embedding model, the time; None when no retrieval is linked.
    An empty retrieval says so plainly: the answer beside it was given from nothing."""
    if d.get("retrieved") is None and not d.get("retrieval_span") and d.get("kind") != "retriever":
        return None
    n = d.get("retrieved")
    parts = [("EMPTY: no document" if n == 0 else f"{n} document" + ("" if n == 1 else "s")) if n is not None
             else "documents not recorded"]
    if d.get("retrieval_index"):
        parts[0] += f" from {d['retrieval_index']}"
    if d.get("top_score") is not None:
        parts.append(f"top score {d['top_score']:.2f}")
    if d.get("embedding_model"):
        parts.append(f"embedding {d['embedding_model']}")
    if d.get("retrieval_ms") is not None:
        parts.append(f"{d['retrieval_ms']:.0f} ms")
    if d.get("doc_age_s") is not None:
        parts.append(f"newest document {age_text(d['doc_age_s'])} old")
    return ", ".join(parts)


def document_lines(docs: Any, *, excerpt_chars: int = 300) -> list[tuple[str, str]]:
    """The documents a call was given, in rank order, as (head, excerpt) pairs: head is
    `1. 0.87  help/billing/refunds.md  [ha-1011]` (score or distance, source, id, date), the excerpt
    the stored content cut to excerpt_chars. Plain strings of untrusted text: callers pass them through
    safe_text before display."""
    out: list[tuple[str, str]] = []
    for i, doc in enumerate(docs if isinstance(docs, list) else [], 1):
        if not isinstance(doc, dict):
            continue
        head = [f"{i}."]
        if doc.get("score") is not None:
            head.append(f"{float(doc['score']):.2f}")
        elif doc.get("distance") is not None:
            head.append(f"distance {float(doc['distance']):.2f}")
        if doc.get("source"):
            head.append(str(doc["source"]))
        if doc.get("id"):
            head.append(f"[{doc['id']}]")
        if doc.get("updated_at"):
            head.append(f"updated {str(doc['updated_at'])[:10]}")
        text = str(doc.get("content") or "")
        out.append(("  ".join(head), text if len(text) <= excerpt_chars else text[:excerpt_chars - 1] + "…"))
    return out
