"""`oncall changes`: what changed, when, for whom — ranked by impact (affected requests × effect size).

Two detectors, both over DuckDB aggregates (no rows come to Python):

1. **New values.** A served model, prompt version, release, provider or requested model that first
   appears after the data begins (a silent provider update shows up as a new `served_model` string
   while the requested model stays the same). The cohort is every key (tenant, feature, model,
   provider) that has one value across the rows with the new value; the effect is the strongest
   significant shift in that cohort after versus before the first appearance.
2. **Metric shifts.** For the whole traffic and for each tenant, feature, model and provider, the
   per-bucket series of error rate, cost per request, latency, output length, refusal rate and
   JSON validity is searched for its best single change point (the split maximising the two-sample
   test statistic, each side at least MIN_SEGMENT buckets), then for a second one inside the changed
   part, so a burst that ends is reported as a window. A shift counts when p < ALPHA (strict: many
   series and splits are searched), the relative change is at least MIN_EFFECT and rates move by at
   least MIN_RATE_DELTA. The same shift seen in several cohorts is reported once, in the cohort
   where it is strongest, with the others listed in `also_in`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from oncall.display import format_cost
from oncall.query.cost_marks import mark_change
from oncall.query.filters import Filter, compile_filter, parse_filter, quote_value
from oncall.query.metrics import auto_bucket, cohort_metrics, series_sets
from oncall.query.stats import relative_change, two_proportions, welch

ALPHA = 1e-6
MIN_EFFECT = 0.20
MIN_RATE_DELTA = 0.02
MIN_SEGMENT = 3
MIN_REQUESTS = 30
NEW_VALUE_DIMENSIONS = ("served_model", "prompt_version", "release", "provider", "model")
COHORT_KEYS = ("tenant", "feature", "model", "provider")
SHIFT_KEYS = (None, "provider", "feature", "model", "tenant")
# metric -> (kind, numerator column, denominator column, squares column or None)
SHIFT_METRICS = {
    "error_rate": ("rate", "errors", "requests", None),
    "cost_per_request": ("mean", "cost_sum", "cost_n", "cost_sq"),
    "latency_ms_mean": ("mean", "latency_sum", "latency_n", "latency_sq"),
    "output_length_mean": ("mean", "length_sum", "outputs", "length_sq"),
    "refusal_rate": ("rate", "refusals", "outputs", None),
    "json_valid_rate": ("rate", "json_valid", "outputs", None),
}


@dataclass
class Change:
    kind: str  # new_served_model | new_prompt_version | new_release | new_provider | new_model | metric_shift
    metric: str | None
    cohort: dict[str, str]
    began_at: str
    ended_at: str | None
    before: Any
    after: Any
    relative_change: float | None
    affected_requests: int
    impact: float
    significance: str
    p_value: float | None
    description: str
    filter: str
    also_in: list[dict[str, str]] = field(default_factory=list)
    cost_estimated: float | None = None  # cost shifts: share of the cohort's costs that are estimates

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _cohort_filter(cohort: dict[str, str]) -> list[str]:
    return [f"{k}={quote_value(v)}" for k, v in cohort.items()]


def changes(con: Any, flt: Filter | str | Sequence[str] | None = None, *, bucket_s: int | None = None) -> list[Change]:
    """Everything that changed in the (filtered) requests, most impactful first."""
    base = compile_filter(con, flt, alias="s")
    lo, hi, n = con.execute(f"SELECT min(s.start_time), max(s.start_time), count(*) FROM spans s WHERE {base.where}",
                            base.params).fetchone()
    if lo is None or n < MIN_REQUESTS:
        return []
    span_s = max((hi - lo).total_seconds(), 1.0)
    bucket_s = bucket_s or auto_bucket(span_s)
    found = _new_values(con, base, lo, span_s) + _shifts(con, base, bucket_s)
    found.sort(key=lambda c: c.impact, reverse=True)
    _scope(found, base.filter)
    for c in found:
        mark_change(con, c)  # a cost shift says when its costs are estimates (query.cost_marks)
    return found


def _scope(found: list[Change], scope: Filter) -> None:
    """Each change's filter reproduces its cohort *within the filter `changes` ran on*: without the
    scope, `changes tenant=hooli` would hand out `provider=anthropic since=…` for every tenant."""
    if not scope.terms:
        return
    outer = [str(t) for t in scope.terms]
    for c in found:
        own = [str(t) for t in parse_filter(c.filter).terms]
        c.filter = " ".join(outer + [t for t in own if t not in outer])


# -- 1. new values ---------------------------------------------------------------------------------
def _new_values(con: Any, base: Any, lo: dt.datetime, span_s: float) -> list[Change]:
    out: list[Change] = []
    settle = lo + dt.timedelta(seconds=0.05 * span_s)
    for dim in NEW_VALUE_DIMENSIONS:
        rows = con.execute(
            f"SELECT s.{dim}, min(s.start_time), count(*) FROM spans s WHERE {base.where} AND s.{dim} IS NOT NULL "
            f"GROUP BY 1 HAVING min(s.start_time) > ? AND count(*) >= 5 ORDER BY 2", [*base.params, settle]).fetchall()
        for value, first, count in rows:
            ch = _describe_new_value(con, base, dim, str(value), first, int(count))
            if ch is not None:
                out.append(ch)
    return out


def _describe_new_value(con: Any, base: Any, dim: str, value: str, first: dt.datetime, count: int) -> Change | None:
    keys = [k for k in COHORT_KEYS if k != dim]
    agg = ", ".join(f"count(DISTINCT s.{k}), any_value(s.{k})" for k in keys)
    row = con.execute(f"SELECT {agg} FROM spans s WHERE {base.where} AND s.{dim} = ?", [*base.params, value]).fetchone()
    cohort = {k: str(row[2 * i + 1]) for i, k in enumerate(keys) if row[2 * i] == 1 and row[2 * i + 1] is not None}
    cohort_where = " AND ".join([base.where] + [f"s.{k} = ?" for k in cohort])
    cohort_params = [*base.params, *cohort.values()]
    prev = con.execute(
        f"SELECT s.{dim}, count(*) FROM spans s WHERE {cohort_where} AND s.start_time < ? AND s.{dim} IS NOT NULL "
        f"GROUP BY 1 ORDER BY 2 DESC LIMIT 1", [*cohort_params, first]).fetchone()
    if prev is None:
        return None  # the whole cohort is new (a new tenant or feature), not a change of an existing one
    before = cohort_metrics(con, f"{cohort_where} AND s.start_time < ?", [*cohort_params, first])
    after = cohort_metrics(con, f"{cohort_where} AND s.{dim} = ?", [*cohort_params, value])
    effect = _strongest_effect(after, before)
    rel = effect["relative_change"] if effect else None
    flt = _cohort_filter(cohort) + [f"{dim}={quote_value(value)}"]
    what = ", ".join(f"{k}={v}" for k, v in cohort.items()) or "all traffic"
    desc = f"{dim.replace('_', ' ')} {prev[0]} -> {value} for {what} from {_iso(first)}"
    if effect:
        desc += "; " + describe_effect(effect["metric"], effect["before"], effect["after"])
    return Change(
        kind=f"new_{dim}", metric=effect["metric"] if effect else None, cohort=cohort, began_at=_iso(first),
        ended_at=None, before=str(prev[0]), after=value, relative_change=rel, affected_requests=count,
        impact=count * max(effect["effect"] if effect else 0.0, 0.1), significance=effect["significance"] if effect else "n/a",
        p_value=effect["p_value"] if effect else None, description=desc, filter=" ".join(flt))


def _strongest_effect(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any] | None:
    """The significant metric with the largest relative change between two cohorts' metrics."""
    cands = []

    def add(metric: str, a: float | None, b: float | None, test: Any, min_abs: float = 0.0) -> None:
        rel = relative_change(a, b)
        if test.significance != "significant" or a is None or b is None or abs(a - b) < min_abs:
            return
        score = effect_size("rate" if metric.endswith("_rate") else "mean", a, b)
        cands.append({"metric": metric, "before": b, "after": a, "relative_change": rel, "score": score,
                      "effect": score,
                      "significance": test.significance, "p_value": test.p_value})

    def rate(x: str, n: str, m: dict[str, Any]) -> float | None:
        return m[x] / m[n] if m[n] else None

    add("error_rate", rate("errors", "requests", after), rate("errors", "requests", before),
        two_proportions(after["errors"], after["requests"], before["errors"], before["requests"]), MIN_RATE_DELTA)
    add("cost_per_request", after["cost_mean"], before["cost_mean"],
        welch(after["cost_mean"], after["cost_var"], after["cost_n"], before["cost_mean"], before["cost_var"],
              before["cost_n"]))
    add("output_length_mean", after["length_mean"], before["length_mean"],
        welch(after["length_mean"], after["length_var"], after["outputs"], before["length_mean"], before["length_var"],
              before["outputs"]))
    add("latency_ms_mean", after["latency_mean"], before["latency_mean"],
        welch(after["latency_mean"], after["latency_var"], after["latency_n"], before["latency_mean"],
              before["latency_var"], before["latency_n"]))
    add("json_valid_rate", rate("json_valid", "outputs", after), rate("json_valid", "outputs", before),
        two_proportions(after["json_valid"], after["outputs"], before["json_valid"], before["outputs"]), MIN_RATE_DELTA)
    add("refusal_rate", rate("refusals", "outputs", after), rate("refusals", "outputs", before),
        two_proportions(after["refusals"], after["outputs"], before["refusals"], before["outputs"]), MIN_RATE_DELTA)
    return max(cands, key=lambda c: c["score"]) if cands else None


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) >= 0.001 or v == 0 else f"{v:.2e}"
    return str(v)


# How a responder reads each metric: its name, and its values with units.
METRIC_NAMES = {"error_rate": "error rate", "cost_per_request": "cost/request", "latency_ms_mean": "mean latency",
                "output_length_mean": "output length", "refusal_rate": "refusal rate",
                "json_valid_rate": "JSON-valid outputs"}


def _value(metric: str, v: float) -> str:
    if metric.endswith("_rate"):
        pct = 100 * v
        return f"{pct:.1f} %" if pct < 10 else f"{pct:.0f} %"
    if metric == "cost_per_request":
        return format_cost(v)
    if metric == "latency_ms_mean":
        return f"{v:,.0f} ms"
    if metric == "output_length_mean":
        return f"{v:,.0f} chars"
    return _fmt(v)


def describe_effect(metric: str, before: float, after: float) -> str:
    """`cost/request $0.00047 -> $0.00132 (+182 %)`: rates as percentages, means with the relative change."""
    text = f"{METRIC_NAMES.get(metric, metric)} {_value(metric, before)} -> {_value(metric, after)}"
    rel = relative_change(after, before)
    if not metric.endswith("_rate") and rel is not None:
        text += f" ({100 * rel:+.0f} %)"
    return text


# -- 2. metric shifts ------------------------------------------------------------------------------
@dataclass
class _Seg:
    x: float  # successes (rates) or sum (means)
    n: float
    sq: float  # sum of squares (means)


def _stat(kind: str, a: _Seg, b: _Seg) -> tuple[float, float | None, float | None]:
    """(|z|, value of a, value of b) comparing segment a against b."""
    if a.n < MIN_REQUESTS or b.n < MIN_REQUESTS:
        return 0.0, None, None
    if kind == "rate":
        t = two_proportions(int(a.x), int(a.n), int(b.x), int(b.n))
        return abs(t.statistic or 0.0), a.x / a.n, b.x / b.n
    ma, mb = a.x / a.n, b.x / b.n
    va = max((a.sq - a.n * ma * ma) / (a.n - 1), 0.0)
    vb = max((b.sq - b.n * mb * mb) / (b.n - 1), 0.0)
    t = welch(ma, va, int(a.n), mb, vb, int(b.n))
    return abs(t.statistic or 0.0), ma, mb


def _best_split(kind: str, segs: list[_Seg], lo: int, hi: int) -> tuple[float, int] | None:
    """The split k in (lo, hi) maximising the statistic of segs[k:hi] against segs[lo:k]."""
    best = None
    pre = _Seg(0, 0, 0)
    total = _Seg(sum(s.x for s in segs[lo:hi]), sum(s.n for s in segs[lo:hi]), sum(s.sq for s in segs[lo:hi]))
    for k in range(lo + 1, hi):
        s = segs[k - 1]
        pre = _Seg(pre.x + s.x, pre.n + s.n, pre.sq + s.sq)
        if k - lo < MIN_SEGMENT or hi - k < MIN_SEGMENT:
            continue
        post = _Seg(total.x - pre.x, total.n - pre.n, total.sq - pre.sq)
        z, _, _ = _stat(kind, post, pre)
        if best is None or z > best[0]:
            best = (z, k)
    return best


def _shifts(con: Any, base: Any, bucket_s: int) -> list[Change]:
    raw: list[Change] = []
    rows = series_sets(con, base.where, base.params, bucket_s=bucket_s, keys=list(SHIFT_KEYS))
    if not rows:
        return []
    start = min(r["bucket"] for r in rows)
    groups: dict[tuple[Any, Any], dict[int, dict[str, Any]]] = {}
    for r in rows:
        idx = int((r["bucket"] - start).total_seconds() // bucket_s)
        groups.setdefault((r["key"], r["grp"]), {})[idx] = r
    nb = max(i for g in groups.values() for i in g) + 1
    for (key, grp), by_idx in groups.items():
        if key is not None and grp is None:
            continue
        cohort = {key: str(grp)} if key else {}
        for metric, (kind, xcol, ncol, sqcol) in SHIFT_METRICS.items():
            segs = [_Seg(float(by_idx[i][xcol] or 0) if i in by_idx else 0.0,
                         float(by_idx[i][ncol] or 0) if i in by_idx else 0.0,
                         float(by_idx[i][sqcol] or 0) if (i in by_idx and sqcol) else 0.0) for i in range(nb)]
            ch = _detect(metric, kind, segs, start, bucket_s, cohort)
            if ch is not None:
                raw.append(ch)
    return _dedupe(raw, bucket_s)


def _detect(metric: str, kind: str, segs: list[_Seg], start: dt.datetime, bucket_s: int,
            cohort: dict[str, str]) -> Change | None:
    nb = len(segs)
    if nb < 2 * MIN_SEGMENT or sum(s.n for s in segs) < 2 * MIN_REQUESTS:
        return None
    if metric == "json_valid_rate" and sum(s.x for s in segs) < 0.5 * sum(s.n for s in segs):
        return None  # not a JSON-producing cohort
    first = _best_split(kind, segs, 0, nb)
    if first is None:
        return None
    k = first[1]
    began, ended = k, None
    window = segs[k:]
    rest = segs[:k]
    # A burst that ends: a second split inside the changed part that returns towards the level before.
    second = _best_split(kind, segs, k, nb)
    if second is not None:
        e = second[1]
        pre = _merge(segs[:k])
        mid, tail = _merge(segs[k:e]), _merge(segs[e:])
        if pre.n and mid.n and tail.n:
            lvl = lambda s: s.x / s.n  # noqa: E731
            if abs(lvl(tail) - lvl(pre)) < 0.5 * abs(lvl(mid) - lvl(pre)):
                ended = e
                window = segs[k:e]
                rest = segs[:k] + segs[e:]
    a, b = _merge(window), _merge(rest)
    z, va, vb = _stat(kind, a, b)
    if va is None or vb is None:
        return None
    p = math.erfc(z / math.sqrt(2.0))
    rel = relative_change(va, vb)
    if p >= ALPHA or (rel is not None and abs(rel) < MIN_EFFECT) or (kind == "rate" and abs(va - vb) < MIN_RATE_DELTA):
        return None
    began_at = start + dt.timedelta(seconds=began * bucket_s)
    ended_at = start + dt.timedelta(seconds=ended * bucket_s) if ended is not None else None
    what = ", ".join(f"{kk}={v}" for kk, v in cohort.items()) or "all traffic"
    when = f"from {_iso(began_at)}" + (f" to {_iso(ended_at)}" if ended_at else "")
    flt = _cohort_filter(cohort) + [f"since={_iso(began_at)}"] + ([f"until={_iso(ended_at)}"] if ended_at else [])
    affected = int(a.n)
    return Change(kind="metric_shift", metric=metric, cohort=cohort, began_at=_iso(began_at),
                  ended_at=_iso(ended_at) if ended_at else None, before=vb, after=va, relative_change=rel,
                  affected_requests=affected, impact=affected * effect_size(kind, va, vb),
                  significance="significant", p_value=p,
                  description=f"{describe_effect(metric, vb, va)} for {what} {when}", filter=" ".join(flt))


def effect_size(kind: str, after: float, before: float) -> float:
    """How big a change is, comparable across metrics: relative for means; for rates the absolute
    change against a floor of 5 %, so 0.8 % -> 76 % errors counts big but not infinite. Capped at 10."""
    if kind == "rate":
        return min(abs(after - before) / max(before, 0.05), 10.0)
    rel = relative_change(after, before)
    return min(abs(rel), 10.0) if rel is not None else 0.0


def _merge(segs: list[_Seg]) -> _Seg:
    return _Seg(sum(s.x for s in segs), sum(s.n for s in segs), sum(s.sq for s in segs))


def _dedupe(found: list[Change], bucket_s: int) -> list[Change]:
    """One shift per (metric, start time ± one bucket): kept where its relative change is largest."""
    found.sort(key=lambda c: (abs(c.relative_change or 0.0), -c.affected_requests), reverse=True)
    kept: list[Change] = []
    for c in found:
        t = dt.datetime.fromisoformat(c.began_at.replace("Z", "+00:00"))
        twin = next((k for k in kept if k.metric == c.metric and abs(
            (dt.datetime.fromisoformat(k.began_at.replace("Z", "+00:00")) - t).total_seconds()) <= bucket_s
            and (k.relative_change or 0) * (c.relative_change or 0) > 0), None)
        if twin is None:
            kept.append(c)
        else:
            twin.also_in.append(c.cohort)
    return kept
