"""Is the cause's cohort back within noise? The one test `watch` resolves with and the timeline's recovery uses.

A cohort (the cause's cohort keys, e.g. tenant=acme feature=support) has recovered over a period
when, in that period:
- it has at least MIN_REQUESTS LLM calls (no traffic is no evidence: it fails closed);
- none of them carries the cause's value any more (the served model, prompt version … it introduced);
- every metric the cause moved reads as noise against the cohort's baseline, the calls before the
  cause began: the same metric definitions and tests as what-changed (query.registry,
  query.stats), so "recovered" and "changed" cannot disagree about what noise is.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from oncall.query.filters import compile_filter, parse_filter, quote_value
from oncall.query.registry import METRICS, measure
from oncall.query.stats import Test

MIN_REQUESTS = 10


@dataclass
class RecoveryCheck:
    recovered: bool
    since: str  # start of the period tested
    requests: int
    reason: str
    metrics: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"recovered": self.recovered, "since": self.since, "requests": self.requests, "reason": self.reason,
                "metrics": self.metrics}


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _parse_time(value: Any) -> dt.datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def cohort_where(con: Any, cohort: dict[str, str], words: list[str], extra: list[str]) -> tuple[str, list[Any]]:
    c = compile_filter(con, parse_filter([*(f"{k}={quote_value(v)}" for k, v in cohort.items()), *words, *extra]),
                       alias="s")
    return c.where, list(c.params)


def signal_test(con: Any, metric: str, a: tuple[str, list[Any]], b: tuple[str, list[Any]]) -> Test | None:
    """The what-changed test of one metric between two sets of calls, in the registry's definitions (None:
    nothing to compare — key drift needs the before-period's key sets, tool errors count tool spans)."""
    m = METRICS.get(metric)
    if m is None or m.reference is not None or m.test_kind is None:
        return None
    sa, sb = (measure(con, where, params, [m])[metric] for where, params in (a, b))
    if not sa.n or not sb.n:
        return None
    return m.test(sa, sb)


def check_recovered(con: Any, cause: dict[str, Any], *, recent: dt.timedelta, now: dt.datetime,
                    filter_words: list[str] | None = None) -> RecoveryCheck:
    """Whether the cause's cohort is back within noise over the last `recent` (see the module doc).

    `cause` holds what an alert or a timeline entry keeps: cohort, dimension and value (a cause),
    began_at, and the effects' metric names (`effects[].metric`, or `metric` for a shift).
    """
    since = now - recent
    return check_period(con, cause, since=since, until=now, filter_words=filter_words)


def check_period(con: Any, cause: dict[str, Any], *, since: dt.datetime, until: dt.datetime,
                 filter_words: list[str] | None = None) -> RecoveryCheck:
    words = list(filter_words or [])
    cohort = dict(cause.get("cohort") or {})
    period = cohort_where(con, cohort, words, [f"since={_iso(since)}", f"until={_iso(until)}"])
    n = int(con.execute(f"SELECT count(*) FROM spans s WHERE {period[0]}", period[1]).fetchone()[0])
    out = RecoveryCheck(False, _iso(since), n, "")
    if n < MIN_REQUESTS:
        out.reason = f"only {n} calls in the cohort since {_iso(since)} (need {MIN_REQUESTS})"
        return out
    dim, value = cause.get("dimension"), cause.get("value")
    if dim and value is not None:
        still = int(con.execute(f"SELECT count(*) FROM spans s WHERE {period[0]} AND s.{dim} = ?",
                                [*period[1], value]).fetchone()[0])
        if still:
            out.reason = f"{still} of {n} calls still have {dim}={value}"
            return out
    began = _parse_time(cause.get("began_at"))
    metrics = [e.get("metric") for e in cause.get("effects") or [] if e.get("metric")]
    if not metrics and cause.get("metric") and not dim:
        metrics = [cause["metric"]]
    if metrics and began is not None:
        base = cohort_where(con, cohort, words, [f"until={_iso(began)}"])
        for metric in dict.fromkeys(metrics):
            test = signal_test(con, metric, period, base)
            mark = test.significance if test else "n/a"
            out.metrics.append({"metric": metric, "significance": mark, "p_value": test.p_value if test else None})
            if mark == "significant":
                out.reason = f"{metric} is still beyond noise of the baseline before {_iso(began)}"
                return out
    out.recovered = True
    out.reason = "back within noise of the baseline" if metrics else "the cause's value is gone from the cohort"
    return out


def recovered_at(con: Any, cause: dict[str, Any], *, after: dt.datetime, until: dt.datetime,
                 bucket: dt.timedelta, filter_words: list[str] | None = None) -> tuple[dt.datetime | None, RecoveryCheck | None]:
    """The start of the first bucket after `after` in which the cohort is back within noise, or None."""
    t = after
    last: RecoveryCheck | None = None
    while t < until:
        end = min(t + bucket, until)
        last = check_period(con, cause, since=t, until=end, filter_words=filter_words)
        if last.recovered:
            return t, last
        t = end
    return None, last
