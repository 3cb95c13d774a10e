"""`oncall changes`: what changed, named by cause, with everything it moved inside it.

A responder reads this first, so it must not make them de-duplicate by hand. Three steps, all over
DuckDB aggregates (only boundary rows of a window come to Python, to place it precisely):

1. **Causes.** A served model, prompt version, release, provider or requested model that first
   appears after the data begins (a silent provider update shows up as a new `served_model` while
   the requested model stays the same). Its cohort is every key (tenant, feature, model, provider)
   with one value across the rows carrying it. Values that appear together on the same rows (a new
   requested model and its snapshot, a release shipping a prompt) are one cause. A value that took
   under MIN_SHARE of its cohort while it was there and moved nothing is not a cause.
2. **Effects.** For each cause, every signal of metrics.SIGNALS is compared after its first
   appearance against before, in its cohort and in each sub-cohort (one more key), with the split
   known rather than searched (EFFECT_ALPHA). An effect must also show right at the first
   appearance (the first MIN_SEGMENT buckets after it move at least half as far), so a burst an
   hour later in the same cohort is not blamed on it. Each metric is listed once, at the broadest
   cohort that holds it (see `_holder`), with the narrower ones in `also_in`. Effects start at the
   cause's first appearance.
3. **Unexplained shifts.** Every signal's per-bucket series for all traffic and each tenant,
   feature, model and provider is searched for its best change point, then a second one inside the
   changed part, so a burst that ends is a window (p < ALPHA, strict because many series and
   splits are searched; at least MIN_EFFECT relative and MIN_RATE_DELTA for rates). Shifts of one
   metric and direction starting within a bucket of each other are one shift. A shift within a
   bucket of a cause whose rows account for at least half of it is that cause's effect. The rest
   are entries of their own, named by what moved, reported at the broadest cohort that holds the
   shift with the others in `also_in`; shifts of several metrics in the same window and cohort
   are one entry. Window edges are placed from the rows around the bucket boundary (the split
   that best separates the two levels), not at bucket boundaries.

Every entry carries a filter and `affected_requests`, the number of LLM calls that filter returns
in `search` (errors included); `counts` says so, and each effect says what its numbers count.
Ranking is by impact: requests affected times effect size, for a cause its strongest effect plus a
quarter of the others, never by how many cohorts echo it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from oncall.query.cost_marks import mark_change
from oncall.query.filters import Filter, compile_on, parse_filter, quote_value
from oncall.query.metrics import SIGNALS, auto_bucket, grouped_signals, present_signals, series_sets
from oncall.query.quality import has_output
from oncall.query.registry import METRICS, Stat, dialect_of
from oncall.query.stats import relative_change, two_proportions

ALPHA = 1e-6  # a searched change point
EFFECT_ALPHA = 1e-5  # a cause's effect: the split is its first appearance, not searched
MIN_EFFECT = 0.20
MIN_RATE_DELTA = 0.02
MIN_SEGMENT = 3
MAX_WINDOW = 6  # buckets: the longest burst searched directly as a window (see _short_window)
MIN_BURST = 5  # errors of a class never seen before that make a burst (see _class_bursts)
MIN_BURST_RATE = MIN_RATE_DELTA  # ... failing at least this share of the cohort's calls while it lasts
MIN_REQUESTS = 30
MIN_RATE_N = 10
MIN_SHARE = 0.2  # a new value without effects is a cause when it took at least this share of its cohort
MIN_NEAR = 10  # rows right after a cause needed to check that its effect starts there
HOLD_SHARE = 0.5  # a broader cohort holds a shift that it shows at least half as strongly
EXPLAIN_SHARE = 0.5  # a cause explains a shift when its rows account for at least half of it
# An index version or embedding model (the retrieval that fed a call, oncall.ingest.retrieval_link) is a
# cause like a served model; an index rebuilt with another embedding model is one cause, named by the index.
CAUSE_DIMENSIONS = ("release", "prompt_version", "retrieval_index", "embedding_model", "model", "provider",
                    "served_model")  # priority when together
NEW_VALUE_DIMENSIONS = ("served_model", "prompt_version", "release", "provider", "model", "retrieval_index",
                        "embedding_model")
COHORT_KEYS = ("tenant", "feature", "model", "provider")
SHIFT_KEYS: tuple[str | None, ...] = (None, "provider", "feature", "model", "tenant")


@dataclass
class Change:
    kind: str  # new_served_model | new_prompt_version | new_release | new_provider | new_model |
    # new_retrieval_index | new_embedding_model | metric_shift
    metric: str | None  # the strongest effect's metric (a metric shift: what moved)
    cohort: dict[str, str]
    began_at: str
    ended_at: str | None
    before: Any  # a cause: the value it replaced; a shift: the metric before
    after: Any
    relative_change: float | None
    affected_requests: int  # LLM calls `filter` returns in search, errors included
    impact: float
    significance: str
    p_value: float | None
    description: str
    filter: str
    also_in: list[dict[str, str]] = field(default_factory=list)
    effects: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    together_with: list[dict[str, str]] = field(default_factory=list)  # other new values on the same rows
    bucket_s: int = 0
    title: str = ""  # the cause (or what moved) without its effects: the console's line
    cost_estimated: float | None = None  # cost shifts: share of the cohort's costs that are estimates
    # A served-model cause's rows split by served model ("none": failed calls, which have none), so the
    # responder sees the failures its cohort holds: {"by": "served_model", "values": {value: calls}}.
    split: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return _rounded(asdict(self))


P_DIGITS = 4  # a p-value's significant digits: a tail probability far out (z of 30 or more) is
# ill-conditioned, the sums' last-digit noise is multiplied by about z squared in it


def _rounded(v: Any, digits: int = 12) -> Any:
    """Floats to 12 significant digits: DuckDB sums doubles in parallel, in no fixed order, so the
    last digits differ between runs and --json would not be byte-identical from one run to the next.
    p-values to P_DIGITS."""
    if isinstance(v, float):
        return float(f"{v:.{digits}g}")
    if isinstance(v, dict):
        return {k: _rounded(x, P_DIGITS if k == "p_value" else 12) for k, x in v.items()}
    if isinstance(v, list):
        return [_rounded(x) for x in v]
    return v


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _ceil_s(t: dt.datetime) -> dt.datetime:
    """The next whole second after t: `until=` is exclusive, and filters speak in seconds."""
    return t.replace(microsecond=0) + dt.timedelta(seconds=1)


def _q(v: str) -> str:
    """A filter value that reads back as exactly `v` (quoted when it holds spaces, commas or quotes)."""
    return quote_value(v)


def _cohort_terms(cohort: dict[str, str]) -> list[str]:
    return [f"{k}={_q(v)}" for k, v in cohort.items()]


def _what(cohort: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in cohort.items()) or "all traffic"


# -- reading a metric ------------------------------------------------------------------------------
def describe_effect(metric: str, before: float, after: float, *, estimated: bool = False) -> str:
    """`cost/request $0.00047 -> $0.00132 (+182 %)`: rates as percentages, means with the relative change
    (labels, units and formatting from the metric registry)."""
    m = METRICS[metric]
    name = m.label
    if metric == "cost_per_request" and estimated:
        name = "estimated " + name
    text = f"{name} {m.text(before)} -> {m.text(after)}"
    rel = relative_change(after, before)
    if m.kind != "rate" and rel is not None:
        text += f" ({100 * rel:+.0f} %)"
    return text


def effect_size(kind: str, after: float, before: float) -> float:
    """How big a change is, comparable across metrics: relative for means; for rates the absolute
    change against a floor of 5 %, so 0.8 % -> 76 % errors counts big but not infinite. Capped at 10."""
    if kind == "rate":
        return min(abs(after - before) / max(before, 0.05), 10.0)
    rel = relative_change(after, before)
    return min(abs(rel), 10.0) if rel is not None else 0.0


def _hold_size(kind: str, after: float, before: float) -> float:
    """The size compared across cohorts to find the broadest that holds a shift."""
    return abs(after - before) if kind == "rate" else abs(relative_change(after, before) or 0.0)


# -- segments and tests ----------------------------------------------------------------------------
def _Seg(x: float, n: float, sq: float) -> Stat:  # noqa: N802 - reads as the constructor it is
    """A metric's aggregates over some buckets (registry.Stat), built in the (x, n, sq) order of the sums:
    successes (rates) or sum (means), rows counted, sum of squares."""
    return Stat(n=n, x=x, sq=sq)


def _seg(row: dict[str, Any] | None, metric: str) -> Stat:
    if row is None:
        return _Seg(0.0, 0.0, 0.0)
    x, n = row.get(f"{metric}__x") or 0, row.get(f"{metric}__n") or 0
    sq = row.get(f"{metric}__sq") or 0 if SIGNALS[metric].kind == "mean" else x
    return _Seg(float(x), float(n), float(sq))


def _merge(segs: list[Stat]) -> Stat:
    out = _Seg(0.0, 0.0, 0.0)
    for s in segs:
        out = out + s
    return out


def _test(kind: str, a: Stat, b: Stat) -> tuple[float, float | None, float | None]:
    """(signed z of a against b, level of a, level of b); 0 when a side is too small: MIN_REQUESTS
    each for means; for rates MIN_RATE_N on the smaller side and MIN_REQUESTS on the larger (a short
    burst of ten calls is a finding when most of them fail; `_p_rate` then gives its exact p)."""
    if kind == "rate":
        if min(a.n, b.n) < MIN_RATE_N or max(a.n, b.n) < MIN_REQUESTS:
            return 0.0, None, None
    elif a.n < MIN_REQUESTS or b.n < MIN_REQUESTS:
        return 0.0, None, None
    if kind == "rate":
        t = two_proportions(int(a.x), int(a.n), int(b.x), int(b.n))
        return (t.statistic or 0.0), a.x / a.n, b.x / b.n
    ma, mb = a.x / a.n, b.x / b.n
    va = max((a.sq - a.n * ma * ma) / (a.n - 1), 0.0)
    vb = max((b.sq - b.n * mb * mb) / (b.n - 1), 0.0)
    se = math.sqrt(va / a.n + vb / b.n)
    if se == 0:
        return (0.0 if ma == mb else math.copysign(1e9, ma - mb)), ma, mb
    return (ma - mb) / se, ma, mb


def _p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2.0))


def _p_rate(a: Stat, b: Stat, z: float) -> float:
    """Two-sided p of a's rate against b's. When the rarer outcome is expected fewer than ten times
    in a, the normal approximation overstates significance (7 truncated outputs of 45 where 1 % is
    usual read as p = 4e-12; 14 refusals of 550 against none of 150 as 1e-12): then Fisher's exact
    test, which also knows how little b's own rate is pinned down."""
    na, nb = int(round(a.n)), int(round(b.n))
    xa, xb = int(round(a.x)), int(round(b.x))
    n, k = na + nb, xa + xb
    if k > n - k:  # count the rarer outcome
        xa, k = na - xa, n - k
    expected = na * k / n if n else 0.0
    if expected >= 10 or k > 2000:
        return _p(z)

    def log_c(m: int, r: int) -> float:
        return math.lgamma(m + 1) - math.lgamma(r + 1) - math.lgamma(m - r + 1)

    total = log_c(n, na)
    lo, hi = max(0, na - (n - k)), min(k, na)

    def pmf(r: int) -> float:
        return math.exp(log_c(k, r) + log_c(n - k, na - r) - total)

    tail = sum(pmf(r) for r in range(xa, hi + 1)) if xa >= expected else sum(pmf(r) for r in range(lo, xa + 1))
    return min(1.0, 2.0 * tail)


def _big_enough(kind: str, after: float, before: float) -> bool:
    if kind == "rate":
        return abs(after - before) >= MIN_RATE_DELTA and (before == 0 or abs(after - before) / before >= MIN_EFFECT
                                                           or abs(after - before) >= 0.1)
    rel = relative_change(after, before)
    return rel is None or abs(rel) >= MIN_EFFECT


def _json_cohort(before: Stat, after: Stat) -> bool:
    """JSON validity is a signal only for cohorts that mostly produce JSON (a prose bot is not "0 % valid")."""
    return max(before.level or 0.0, after.level or 0.0) >= 0.5


# -- the run -----------------------------------------------------------------------------------------
@dataclass
class _Ctx:
    con: Any
    llm: Any  # compiled filter: LLM calls in scope
    where: str  # LLM calls and tool spans in scope
    params: list[Any]
    lo: dt.datetime
    hi: dt.datetime
    bucket_s: int
    estimated_cost: bool
    scope: Filter
    signals: set[str]  # the signals this data can show (metrics.present_signals)
    key_ref: list[str] | None = None  # JSON key sets of the first third, the series' drift reference


def changes(con: Any, flt: Filter | str | Sequence[str] | None = None, *, bucket_s: int | None = None) -> list[Change]:
    """Everything that changed in the (filtered) requests: one entry per cause, most impactful first."""
    llm = compile_on(con, flt)
    lo, hi, n = con.execute(f"SELECT min(s.start_time), max(s.start_time), count(*) FROM spans s WHERE {llm.where}",
                            llm.params).fetchone()
    if lo is None or n < MIN_REQUESTS:
        return []
    if "kind" in llm.filter.keys():
        where, params = llm.where, list(llm.params)
    else:  # tool spans too, for the tool-span error rate
        wide = compile_on(con, flt, default_kind=None)
        where, params = f"s.kind IN ('llm', 'tool') AND {wide.where}", list(wide.params)
    bucket_s = bucket_s or _auto_bucket(con, llm, int(n))
    ctx = _Ctx(con, llm, where, params, lo, hi, int(bucket_s), _estimated_cost(con, llm), llm.filter,
               # Error classes are read from their own rows (_class_bursts, _refine), not scanned per bucket.
               {m for m in present_signals(con, where, params) if not _class_of(m)})

    causes = _causes(ctx)
    for c in causes:
        _cause_effects(ctx, c, causes)
    causes = [c for c in causes if c.effects or c.share >= MIN_SHARE]
    families = _shift_families(ctx)
    unexplained = [f for f in families if not _explain(ctx, f, causes) and not _dated_before(ctx, f, causes)]
    found = [_cause_change(ctx, c) for c in causes] + _unexplained_changes(ctx, unexplained)
    found.sort(key=lambda c: c.impact, reverse=True)
    _scope(found, ctx.scope)
    _count(ctx, found)
    for c in found:
        mark_change(con, c)  # a cost shift says when its costs are estimates (query.cost_marks)
    return found


def _auto_bucket(con: Any, llm: Any, n: int) -> int:
    """About 72 buckets over the time that holds data (long gaps do not count), fewer when there are
    few requests (about 40 a bucket), never fewer than 12."""
    minute = dialect_of(con)().time_bucket(60, "s.start_time")
    minutes = con.execute(f"SELECT count(DISTINCT {minute}) FROM spans s "
                          f"WHERE {llm.where}", llm.params).fetchone()[0]
    return auto_bucket(max(int(minutes), 1) * 60.0, target=max(12, min(72, n // 40)))


def _estimated_cost(con: Any, llm: Any) -> bool:
    """Cost estimated from tokens (the importer's `cost_source` column, where it exists) is said to be."""
    cols = set(con.columns("spans")) if hasattr(con, "columns") else {
        r[0] for r in con.execute("SELECT column_name FROM information_schema.columns "
                                  "WHERE table_name = 'spans'").fetchall()}
    if "cost_source" not in cols:
        return False
    return bool(con.execute(f"SELECT count(*) FILTER (WHERE s.cost_source = 'estimated') > 0 FROM spans s "
                            f"WHERE {llm.where}", llm.params).fetchone()[0])


def _scope(found: list[Change], scope: Filter) -> None:
    """Each filter reproduces its cohort *within the filter `changes` ran on*: without the scope,
    `changes tenant=hooli` would hand out `provider=anthropic since=…` for every tenant."""
    if not scope.terms:
        return
    outer = [str(t) for t in scope.terms]

    def scoped(text: str) -> str:
        own = [str(t) for t in parse_filter(text).terms]
        return " ".join(outer + [t for t in own if t not in outer])

    for c in found:
        c.filter = scoped(c.filter)
        for e in c.effects:
            e["filter"] = scoped(e["filter"])


def _count(ctx: _Ctx, found: list[Change]) -> None:
    """The request count of every entry and effect is what its filter returns in search."""
    for c in found:
        c.affected_requests = _filter_count(ctx.con, c.filter)
        if c.split is not None:
            comp = compile_on(ctx.con, c.filter)
            dim = c.split["by"]
            c.split["values"] = {("none" if v is None else str(v)): int(n) for v, n in ctx.con.execute(
                f"SELECT s.{dim}, count(*) FROM spans s WHERE {comp.where} GROUP BY 1 ORDER BY 2 DESC, 1",
                comp.params).fetchall()}
        c.counts = {"requests": c.affected_requests, "filter": c.filter,
                    "counted": "LLM calls the filter returns in search (errors included)"}
        for e in c.effects:
            e["requests"] = _filter_count(ctx.con, e["filter"])


def _filter_count(con: Any, text: str) -> int:
    c = compile_on(con, text)
    return int(con.execute(f"SELECT count(*) FROM spans s WHERE {c.where}", c.params).fetchone()[0])


# -- 1. causes ---------------------------------------------------------------------------------------
@dataclass
class _Cause:
    dim: str
    value: str
    prev: str
    first: dt.datetime
    last: dt.datetime
    count: int
    cohort: dict[str, str]
    together: list[dict[str, str]] = field(default_factory=list)
    effects: list[dict[str, Any]] = field(default_factory=list)
    groups: dict[tuple[str | None, str | None], dict[int, dict[str, Any]]] = field(default_factory=dict)
    after_until: dt.datetime | None = None
    before_from: dt.datetime | None = None
    share: float = 1.0  # of the cohort's rows with a value for the dimension, while it was there
    # Failed calls do not carry the dimension (a served model is in the response): the cause's rows
    # are then its cohort in its window with the dimension as the split, so its failures stay in.
    response_side: bool = False
    others: list[str] = field(default_factory=list)  # other values of the dimension in the window

    @property
    def holds_failures(self) -> bool:
        """Its rows are its cohort in its window except the other values of the dimension, failed calls
        included; a value that took under half its cohort cannot claim the window's failures."""
        return not self.response_side or self.share >= 0.5

    def terms(self) -> list[str]:
        """Filter terms for the cause's rows after its first appearance (without the window)."""
        if not self.response_side:
            return [f"{self.dim}={_q(self.value)}"]
        if not self.holds_failures:
            return [f"{self.dim}={_q(self.value)}"]
        return [f"{self.dim}!=" + ",".join(quote_value(o) for o in self.others)] if self.others else []

    def after_sql(self) -> tuple[str, list[Any]]:
        """The same rows (after the first appearance) as SQL over alias s, NULL-safe."""
        if self.response_side and self.holds_failures:
            return f"(s.{self.dim} IS NULL OR s.{self.dim} = ?)" if not self.others else \
                f"(s.{self.dim} IS NULL OR s.{self.dim} NOT IN ({', '.join('?' * len(self.others))}))", \
                ([self.value] if not self.others else list(self.others))
        if self.response_side:
            return f"s.{self.dim} = ?", [self.value]
        # A request-side value: rows without one count as the cause's only when it took most of its cohort.
        if self.share >= 0.5:
            return f"(s.{self.dim} IS NULL OR s.{self.dim} = ?)", [self.value]
        return f"s.{self.dim} = ?", [self.value]


def _causes(ctx: _Ctx) -> list[_Cause]:
    con, llm = ctx.con, ctx.llm
    span_s = max((ctx.hi - ctx.lo).total_seconds(), 1.0)
    settle = ctx.lo + dt.timedelta(seconds=max(0.05 * span_s, min(ctx.bucket_s, 0.2 * span_s)))
    found: list[_Cause] = []
    for dim in NEW_VALUE_DIMENSIONS:
        rows = con.execute(
            f"SELECT s.{dim}, min(s.start_time), max(s.start_time), count(*) FROM spans s WHERE {llm.where} "
            f"AND s.{dim} IS NOT NULL GROUP BY 1 HAVING min(s.start_time) > ? AND count(*) >= 5 ORDER BY 2, 1",
            [*llm.params, settle]).fetchall()
        for value, first, last, count in rows:
            c = _new_value(ctx, dim, str(value), first, last, int(count))
            if c is not None:
                found.append(c)
    return _together(ctx, found)


def _new_value(ctx: _Ctx, dim: str, value: str, first: dt.datetime, last: dt.datetime, count: int) -> _Cause | None:
    con, llm = ctx.con, ctx.llm
    keys = [k for k in COHORT_KEYS if k != dim]
    agg = ", ".join(f"count(DISTINCT s.{k}), any_value(s.{k})" for k in keys)
    row = con.execute(f"SELECT {agg} FROM spans s WHERE {llm.where} AND s.{dim} = ?", [*llm.params, value]).fetchone()
    cohort = {k: str(row[2 * i + 1]) for i, k in enumerate(keys) if row[2 * i] == 1 and row[2 * i + 1] is not None}
    cohort = _minimal(ctx, dim, cohort)
    where = " AND ".join([llm.where] + [f"s.{k} = ?" for k in cohort])
    prev = con.execute(
        f"SELECT s.{dim}, count(*) FROM spans s WHERE {where} AND s.start_time < ? AND s.{dim} IS NOT NULL "
        f"GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1", [*llm.params, *cohort.values(), first]).fetchone()
    if prev is None:
        return None  # the whole cohort is new (a new tenant or feature), not a change of an existing one
    # Its share of the cohort while it was there: a rollout or a fallback takes over, a value
    # that turns up now and then among the old one (five calls to another model) is not a change
    # unless something moved with it.
    during = con.execute(f"SELECT count(*) FILTER (WHERE s.{dim} = ?), count(*) FILTER (WHERE s.{dim} IS NOT NULL) "
                         f"FROM spans s WHERE {where} AND s.start_time >= ? AND s.start_time <= ?",
                         [value, *llm.params, *cohort.values(), first, last]).fetchone()
    share = during[0] / during[1] if during[1] else 0.0
    # Do the cohort's failed calls carry this dimension? A served model is read from the response, so
    # a failed call has none: then its cohort in the window, split by the dimension, holds them.
    failed, carried = con.execute(
        f"SELECT count(*) FILTER (WHERE s.status = 'error'), count(*) FILTER (WHERE s.status = 'error' "
        f"AND s.{dim} IS NOT NULL) FROM spans s WHERE {where}", [*llm.params, *cohort.values()]).fetchone()
    response_side = bool(failed) and carried < 0.5 * failed
    others = [str(r[0]) for r in con.execute(
        f"SELECT DISTINCT s.{dim} FROM spans s WHERE {where} AND s.start_time >= ? AND s.start_time <= ? "
        f"AND s.{dim} IS NOT NULL AND s.{dim} <> ? ORDER BY 1", [*llm.params, *cohort.values(), first, last, value]
    ).fetchall()]
    return _Cause(dim, value, str(prev[0]), first, last, count, cohort, share=share, response_side=response_side,
                  others=others)


# Which implied keys go first when a cohort is made minimal: the provider follows from the model; a
# served-model change is named by the requested model it serves, a prompt by its tenant and feature.
_DROP_ORDER = {"served_model": ("provider", "tenant", "feature", "model"),
               "model": ("provider", "tenant", "feature"),
               "provider": ("model", "tenant", "feature")}
_DROP_DEFAULT = ("provider", "model", "tenant", "feature")


def _minimal(ctx: _Ctx, dim: str, cohort: dict[str, str]) -> dict[str, str]:
    """The cohort without keys its other keys imply (model=gpt-4o already means provider=openai; in
    an export with one feature, feature=x says nothing): the same rows, named as a responder would."""
    out = dict(cohort)
    for k in _DROP_ORDER.get(dim, _DROP_DEFAULT):
        if k not in out or len(out) == 1:
            continue
        rest = {kk: v for kk, v in out.items() if kk != k}
        where = " AND ".join([ctx.llm.where] + [f"s.{kk} = ?" for kk in rest])
        other = ctx.con.execute(f"SELECT count(*) FILTER (WHERE s.{k} IS DISTINCT FROM ?) FROM spans s WHERE {where}",
                                [out[k], *ctx.llm.params, *rest.values()]).fetchone()[0]
        if other == 0:
            out = rest
    return out


def _together(ctx: _Ctx, found: list[_Cause]) -> list[_Cause]:
    """New values that arrive together on the same rows are one cause, named by the most deliberate
    (a release over the prompt it shipped, a requested model over the snapshot that serves it)."""
    found.sort(key=lambda c: CAUSE_DIMENSIONS.index(c.dim))
    kept: list[_Cause] = []
    for c in found:
        twin = None
        for k in kept:
            if abs((k.first - c.first).total_seconds()) > ctx.bucket_s:
                continue
            both = ctx.con.execute(f"SELECT count(*) FROM spans s WHERE {ctx.llm.where} AND s.{k.dim} = ? "
                                   f"AND s.{c.dim} = ?", [*ctx.llm.params, k.value, c.value]).fetchone()[0]
            if both >= 0.8 * max(k.count, c.count):
                twin = k
                break
        if twin is None:
            kept.append(c)
        else:
            twin.together.append({"dimension": c.dim, "before": c.prev, "after": c.value})
    return kept


def _compatible(a: dict[str, str], b: dict[str, str]) -> bool:
    return all(b[k] == v for k, v in a.items() if k in b)


# -- 2. a cause's effects -------------------------------------------------------------------------------
def _cause_effects(ctx: _Ctx, cause: _Cause, causes: list[_Cause]) -> None:
    """Each signal after the cause's first appearance against before, in its cohort and sub-cohorts."""
    b = dt.timedelta(seconds=ctx.bucket_s)
    t0 = cause.first
    # An earlier cause in an overlapping cohort starts the before-period, so this one is measured
    # against the state it changed, not against the state before the earlier one. (A later cause is
    # kept out of the effects by the check that an effect starts at the first appearance.)
    earlier = [o.first for o in causes if o is not cause and _compatible(o.cohort, cause.cohort)
               and o.first < t0 and t0 - o.first >= MIN_SEGMENT * b]
    cause.before_from = max(earlier) if earlier else None
    until = None
    if ctx.hi - cause.last > 2 * b:  # the new value went away again (a rollback)
        until = cause.last + dt.timedelta(microseconds=1)
    cause.after_until = until
    cond = [f"s.{k} = ?" for k in cause.cohort]
    params = list(cause.cohort.values())
    # After its first appearance, rows with another value of the dimension are not the cause's (see
    # _Cause.after_sql: a served-model change keeps its failed calls, which have no served model).
    mine, mine_params = cause.after_sql()
    cond.append(f"(s.start_time < ? OR {mine})")
    params += [t0, *mine_params]
    if cause.before_from is not None:
        cond.append("s.start_time >= ?")
        params.append(cause.before_from)
    if until is not None:
        cond.append("s.start_time < ?")
        params.append(until)
    where = " AND ".join([ctx.where] + cond)
    wparams = ctx.params + params
    key_ref = _key_sets(ctx.con, f"{where} AND s.start_time < ?", [*wparams, t0], min_count=1)
    sub = [k for k in COHORT_KEYS if k not in cause.cohort]
    rows = grouped_signals(
        ctx.con, where, wparams, keys=[None, *sub], key_ref=key_ref,
        group="CASE WHEN start_time < ? THEN 0 WHEN start_time < ? THEN 2 ELSE 3 END",
        group_params=[t0, t0 + MIN_SEGMENT * b], only=ctx.signals)
    for r in rows:
        if r["key"] is not None and r["grp"] is None:
            continue
        cause.groups.setdefault((r["key"], None if r["grp"] is None else str(r["grp"])), {})[int(r["bucket"])] = r
    by_metric: dict[str, list[dict[str, Any]]] = {}
    for (key, grp), phases in cause.groups.items():
        for metric, sg in SIGNALS.items():
            if metric not in ctx.signals:
                continue
            if sg.errors == "in" and sg.entity == "llm" and not cause.holds_failures:
                continue  # its after-rows lack the failed calls the metric counts: it would read as a drop
            e = _effect(ctx, cause, metric, sg.kind, key, grp, phases)
            if e is not None:
                by_metric.setdefault(metric, []).append(e)
    if "error_rate" in by_metric:  # the error rate's effect names its class: one effect, not two
        by_metric = {m: c for m, c in by_metric.items() if not _class_of(m)}
    for metric, cands in by_metric.items():
        e = _holder(cands, SIGNALS[metric].kind)
        if metric == "json_key_drift":
            e["new_key_sets"] = _new_key_sets(ctx, cause, e, key_ref)
            if e["new_key_sets"]:
                e["description"] += " (" + "; ".join(list(e["new_key_sets"])[:3]) + ")"
        cause.effects.append(e)
    cause.effects.sort(key=lambda e: e["impact"], reverse=True)


def _effect(ctx: _Ctx, cause: _Cause, metric: str, kind: str, key: str | None, grp: str | None,
            phases: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    before = _seg(phases.get(0), metric)
    near = _seg(phases.get(2), metric)
    after = near + _seg(phases.get(3), metric)
    if metric == "json_valid_rate" and not _json_cohort(before, after):
        return None
    if metric == "json_key_drift":
        before = _Seg(0.0, max(before.n, 0.0), 0.0)  # the before-period's key sets are the reference
    z, va, vb = _test(kind, after, before)
    if va is None or vb is None or not _big_enough(kind, va, vb):
        return None
    p = _p_rate(after, before, z) if kind == "rate" and metric != "json_key_drift" else _p(z)
    if p >= EFFECT_ALPHA:
        return None
    if near.n >= MIN_NEAR and near.level is not None:  # it must start at the first appearance
        if (near.level - vb) * (va - vb) <= 0 or abs(near.level - vb) < 0.5 * abs(va - vb):
            return None
    cohort = dict(cause.cohort)
    if key is not None and grp is not None:
        cohort[key] = grp
    window = [f"since={_iso(cause.first)}"] + ([f"until={_iso(_ceil_s(cause.after_until))}"]
                                               if cause.after_until else [])
    flt = " ".join(_cohort_terms(cohort) + (cause.terms() if cause.response_side else []) + window)
    desc = describe_effect(metric, vb, va, estimated=ctx.estimated_cost)
    if key is not None:
        desc += f" in {key}={grp}"
    return {"metric": metric, "cohort": cohort, "began_at": _iso(cause.first),
            "ended_at": _iso(cause.after_until) if cause.after_until else None, "before": vb, "after": va,
            "relative_change": relative_change(va, vb), "significance": "significant", "p_value": p,
            "measured_on": int(after.n), "counts": SIGNALS[metric].counts, "description": desc, "filter": flt,
            "requests": 0, "also_in": [], "estimated": metric == "cost_per_request" and ctx.estimated_cost,
            "impact": after.n * effect_size(kind, va, vb), "_size": _hold_size(kind, va, vb),
            "_key": key, "_grp": grp, "_delta": va - vb}


def _holder(cands: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The broadest cohort that holds a shift: of those showing at least HOLD_SHARE of the strongest
    size, the one measured on the most rows. The others are listed in its `also_in`."""
    top = max(c["_size"] for c in cands)
    holders = [c for c in cands if c["_size"] >= HOLD_SHARE * top]
    best = max(holders, key=lambda c: (c["measured_on"], c["_key"] is None))
    best["also_in"] = [c["cohort"] for c in sorted(cands, key=lambda c: -c["_size"]) if c is not best]
    return best


def _key_sets(con: Any, where: str, params: list[Any], *, min_count: int) -> list[str] | None:
    """Key sets of the JSON-object outputs matching `where`, seen at least min_count times (None: no JSON)."""
    ks = dialect_of(con)("s").function("key_set", "s.output_text", None)
    rows = con.execute(
        f"SELECT ks, count(*) FROM (SELECT {ks} AS ks FROM spans s WHERE {where} "
        f"AND s.kind = 'llm' AND {has_output('s')}) WHERE ks IS NOT NULL GROUP BY 1", params).fetchall()
    if not rows:
        return None
    return [str(k) for k, n in rows if n >= min_count]


def _new_key_sets(ctx: _Ctx, cause: _Cause, effect: dict[str, Any], key_ref: list[str] | None) -> dict[str, int]:
    c = compile_on(ctx.con, effect["filter"])
    d = dialect_of(ctx.con)("s")
    rows = ctx.con.execute(
        f"SELECT ks, count(*) FROM (SELECT {d.function('key_set', 's.output_text', None)} AS ks FROM spans s "
        f"WHERE {c.where} AND {has_output('s')}) WHERE ks IS NOT NULL AND NOT {d.contains_param('ks')} "
        f"GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5", [*c.params, list(key_ref or [])]).fetchall()
    return {str(k): int(n) for k, n in rows}


def _cause_change(ctx: _Ctx, c: _Cause) -> Change:
    top = c.effects[0] if c.effects else None
    impact = (top["impact"] + 0.25 * sum(e["impact"] for e in c.effects[1:])) if top else 0.1 * c.count
    what = _what(c.cohort)
    desc = f"{c.dim.replace('_', ' ')} {c.prev} -> {c.value} for {what} from {_iso(c.first)}"
    for t in c.together:
        desc += f" (with {t['dimension'].replace('_', ' ')} {t['before']} -> {t['after']})"
    title = desc
    if top:
        desc += "; " + "; ".join(e["description"] for e in c.effects[:3])
    else:
        desc += "; no significant effect"
    ended = _iso(c.last) if c.after_until is not None and ctx.hi - c.last > 2 * dt.timedelta(
        seconds=ctx.bucket_s) else None
    # The cause's cohort and window: its new value, from its first appearance (to its last, if it went
    # away); for a served model, its cohort in the window with the other served models left out, so
    # the failed calls (which have none) stay in.
    flt = _cohort_terms(c.cohort) + c.terms() + [f"since={_iso(c.first)}"]
    if ended:
        flt.append(f"until={_iso(_ceil_s(c.last))}")
    effects = [{k: v for k, v in e.items() if not k.startswith("_")} for e in c.effects]
    return Change(kind=f"new_{c.dim}", metric=top["metric"] if top else None, cohort=c.cohort,
                  began_at=_iso(c.first), ended_at=ended, before=c.prev, after=c.value,
                  relative_change=top["relative_change"] if top else None, affected_requests=c.count,
                  impact=impact, significance=top["significance"] if top else "n/a",
                  p_value=top["p_value"] if top else None, description=desc, filter=" ".join(flt),
                  effects=effects, together_with=c.together, bucket_s=ctx.bucket_s, title=title,
                  split={"by": c.dim, "values": {}} if c.response_side else None)


# -- 3. shifts in the series -------------------------------------------------------------------------
@dataclass
class _Shift:
    metric: str
    kind: str
    cohort: dict[str, str]
    key: str | None
    grp: str | None
    start: int  # index of the first changed bucket
    end: int | None  # index of the first bucket back to normal
    before: float
    after: float
    z: float
    n: int  # rows measured in the changed part
    size: float
    p: float = 1.0


@dataclass
class _Family:
    members: list[_Shift]
    times: list[dt.datetime]  # bucket start per index (occupied buckets only)

    @cached_property
    def holder(self) -> _Shift:
        """The broadest cohort that shows the shift at least HOLD_SHARE as strongly as the strongest can
        be said to: a narrow cohort's size is taken one standard error down, so thirty calls of one
        feature that caught a few more of a burst's errors by chance do not narrow it."""
        top = max(_size_floor(m) for m in self.members)
        return max((m for m in self.members if m.size >= HOLD_SHARE * top), key=lambda m: (m.key is None, m.n))

    @property
    def metric(self) -> str:
        return self.members[0].metric


def _size_floor(m: _Shift) -> float:
    """A shift's size less one standard error of its level inside (rates; a mean's size stands)."""
    if m.kind != "rate" or m.n <= 0:
        return m.size
    return max(m.size - math.sqrt(max(m.after * (1.0 - m.after), 0.0) / m.n), 0.0)


def _shift_families(ctx: _Ctx) -> list[_Family]:
    span_s = max((ctx.hi - ctx.lo).total_seconds(), 1.0)
    key_ref = _key_sets(ctx.con, f"{ctx.llm.where} AND s.start_time < ?",
                        [*ctx.llm.params, ctx.lo + dt.timedelta(seconds=span_s / 3)], min_count=2)
    ctx.key_ref = key_ref
    rows = series_sets(ctx.con, ctx.where, ctx.params, bucket_s=ctx.bucket_s, keys=list(SHIFT_KEYS),
                       key_ref=key_ref, percentiles=False, only=ctx.signals)
    if not rows:
        return []
    # Buckets that hold data, in order: a long gap is not a run of empty buckets to split across.
    times = sorted({r["bucket"] for r in rows if r["key"] is None})
    index = {t: i for i, t in enumerate(times)}
    groups: dict[tuple[Any, Any], dict[int, dict[str, Any]]] = {}
    for r in rows:
        if r["key"] is not None and r["grp"] is None:
            continue
        groups.setdefault((r["key"], r["grp"]), {})[index[r["bucket"]]] = r
    shifts: list[_Shift] = []
    for (key, grp), by_idx in groups.items():
        cohort = {key: str(grp)} if key else {}
        for metric, sg in SIGNALS.items():
            if metric not in ctx.signals or (metric == "json_key_drift" and key_ref is None):
                continue
            segs = [_seg(by_idx.get(i), metric) for i in range(len(times))]
            s = _detect(metric, sg.kind, segs, cohort, key, None if grp is None else str(grp))
            if s is not None:
                shifts.append(s)
    sizes: dict[tuple[Any, Any], float] = {}
    for (key, grp), by_idx in groups.items():
        sizes[(key, None if grp is None else str(grp))] = float(sum(r.get("requests") or 0 for r in by_idx.values()))
    shifts += _class_bursts(ctx, times, shifts, sizes)
    return _without_class_echoes(_families(shifts, times))


def _class_bursts(ctx: _Ctx, times: list[dt.datetime], found: list[_Shift],
                  sizes: dict[tuple[Any, Any], float]) -> list[_Shift]:
    """Bursts of an error class the data had not shown: a class first seen after the data settled, at
    least MIN_BURST times, failing at least MIN_BURST_RATE of its cohort's calls between its first and
    last occurrence, and more than outside that span (Fisher, EFFECT_ALPHA: the span is the class's
    own, not searched). Seven 429s in eight minutes among thirty calls is a finding even where the
    overall error rate's change-point test, which searches every split of every series, cannot tell
    it from noise; a class that turns up now and then (a timeout among thousands of calls) is not."""
    if not times:
        return []
    con, llm = ctx.con, ctx.llm
    span_s = max((ctx.hi - ctx.lo).total_seconds(), 1.0)
    settle = ctx.lo + dt.timedelta(seconds=max(0.05 * span_s, min(ctx.bucket_s, 0.2 * span_s)))
    keys = [k for k in SHIFT_KEYS if k is not None]
    sets = ", ".join(["(error_type)"] + [f"(error_type, {k})" for k in keys])
    rows = con.execute(
        f"SELECT error_type, {', '.join(keys)}, GROUPING({', '.join(keys)}) AS g, count(*), min(start_time), "
        f"max(start_time) FROM (SELECT s.* FROM spans s WHERE {llm.where} AND s.status = 'error' "
        f"AND s.error_type IS NOT NULL) GROUP BY GROUPING SETS ({sets}) HAVING count(*) >= ? AND min(start_time) > ? "
        f"ORDER BY g DESC, error_type, {', '.join(keys)}",  # one order every ask (not the threads')
        [*llm.params, MIN_BURST, settle]).fetchall()
    full = (1 << len(keys)) - 1
    out: list[_Shift] = []
    for r in rows:
        cls, vals, g, n_ev, first, last = r[0], r[1:1 + len(keys)], r[1 + len(keys)], r[-3], r[-2], r[-1]
        metric = f"error_rate_{cls}"
        if metric not in SIGNALS:
            continue
        missing = full ^ g
        key = None if missing == 0 else keys[len(keys) - missing.bit_length()]
        grp = None if key is None else vals[keys.index(key)]
        if key is not None and grp is None:
            continue
        if _covered(found, key, grp, times, first, last):
            continue  # the error rate's own series already holds this burst in this cohort
        # The cohort's calls in the span, estimated from its size: a class spread over hours at its
        # usual trickle is not a burst, and is not worth a scan to say so.
        est = sizes.get((key, None if grp is None else str(grp)), 0.0) * (last - first).total_seconds() / span_s
        if n_ev < 0.5 * MIN_BURST_RATE * est:
            continue
        cond, cparams = ([f"s.{key} = ?"], [grp]) if key else ([], [])
        inside_n, inside_x, outside_n, outside_x = con.execute(
            f"SELECT count(*) FILTER (WHERE s.start_time BETWEEN ? AND ?), "
            f"count(*) FILTER (WHERE s.start_time BETWEEN ? AND ? AND s.status = 'error' AND s.error_type = ?), "
            f"count(*) FILTER (WHERE s.start_time NOT BETWEEN ? AND ?), "
            f"count(*) FILTER (WHERE s.start_time NOT BETWEEN ? AND ? AND s.status = 'error' AND s.error_type = ?) "
            f"FROM spans s WHERE {' AND '.join([llm.where, *cond])}",
            [first, last, first, last, cls, first, last, first, last, cls, *llm.params, *cparams]).fetchone()
        inside, outside = _Seg(float(inside_x), float(inside_n), float(inside_x)), \
            _Seg(float(outside_x), float(outside_n), float(outside_x))
        if not inside.n or not outside.n or inside.level < MIN_BURST_RATE:
            continue
        z, va, vb = _test("rate", inside, outside)
        if va is None or vb is None or not _big_enough("rate", va, vb) or _p_rate(inside, outside, z) >= EFFECT_ALPHA:
            continue
        start = max(i for i, t in enumerate(times) if t <= first) if times[0] <= first else 0
        after_last = [i for i, t in enumerate(times) if t > last]
        end = after_last[0] if after_last else None
        out.append(_Shift(metric, "rate", {key: str(grp)} if key else {}, key, None if grp is None else str(grp),
                          start, end, vb, va, z, int(inside.n), _hold_size("rate", va, vb),
                          _p_rate(inside, outside, z)))
    return out


def _covered(found: list[_Shift], key: str | None, grp: Any, times: list[dt.datetime], first: dt.datetime,
             last: dt.datetime) -> bool:
    """An error-rate increase already found in this cohort over a window that holds [first, last]."""
    for sh in found:
        if sh.metric != "error_rate" or sh.key != key or (key is not None and sh.grp != str(grp)):
            continue
        if sh.after <= sh.before:
            continue
        start = times[sh.start]
        end = times[sh.end] if sh.end is not None and sh.end < len(times) else None
        b = (times[1] - times[0]) if len(times) > 1 else dt.timedelta(0)
        if start - b <= first and (end is None or last < end + b):
            return True
    return False


def _weight(f: _Family) -> float:
    h = f.holder
    return h.n * effect_size(h.kind, h.after, h.before)


def _class_of(metric: str) -> bool:
    """An error-class rate (error_rate_rate_limit): searched so a short burst of a class never seen
    before is found even when the overall error rate's test cannot tell it from noise."""
    return metric.startswith("error_rate_")


def _without_class_echoes(fams: list[_Family]) -> list[_Family]:
    """An error class's shift and an error-rate shift of the same direction and window are the same
    burst: one entry, not two. The one kept is the broader cohort's (the error rate's when as broad:
    its description names the class)."""
    def overlap(a: _Family, b: _Family) -> bool:
        ha, hb = a.holder, b.holder
        if (ha.after > ha.before) != (hb.after > hb.before):
            return False
        a0, a1 = ha.start, ha.end if ha.end is not None else len(a.times)
        b0, b1 = hb.start, hb.end if hb.end is not None else len(b.times)
        return a0 < b1 + 1 and b0 < a1 + 1

    def within(narrow: dict[str, str], broad: dict[str, str]) -> bool:
        return all(narrow.get(k) == v for k, v in broad.items())

    dropped: set[int] = set()
    for r in (f for f in fams if f.metric == "error_rate"):
        for f in (f for f in fams if _class_of(f.metric)):
            if id(f) in dropped or id(r) in dropped or not overlap(r, f):
                continue
            if within(f.holder.cohort, r.holder.cohort) or within(r.holder.cohort, f.holder.cohort):
                # The broader cohort: its filter holds every error of the burst (a narrow one that caught
                # most of a few dozen calls' errors by chance would leave the rest out).
                dropped.add(id(f) if within(f.holder.cohort, r.holder.cohort) else id(r))
            else:  # the same burst held in two unrelated cohorts: the one it weighs most in
                dropped.add(id(f) if _weight(r) >= _weight(f) else id(r))
    return [f for f in fams if id(f) not in dropped]


def _best_split(kind: str, segs: list[Stat], lo: int, hi: int, min_left: int = MIN_SEGMENT) -> tuple[float, int] | None:
    """The split k in (lo, hi) maximising |z| of segs[k:hi] against segs[lo:k], with at least
    min_left buckets before it and MIN_SEGMENT after."""
    best = None
    total = _merge(segs[lo:hi])
    pre = _Seg(0.0, 0.0, 0.0)
    for k in range(lo + 1, hi):
        pre = pre + segs[k - 1]
        if k - lo < min_left or hi - k < MIN_SEGMENT:
            continue
        z, _, _ = _test(kind, total - pre, pre)
        if best is None or abs(z) > best[0]:
            best = (abs(z), k)
    return best


def _detect(metric: str, kind: str, segs: list[Stat], cohort: dict[str, str], key: str | None,
            grp: str | None) -> _Shift | None:
    nb = len(segs)
    total = _merge(segs)
    if nb < 2 * MIN_SEGMENT or total.n < 2 * MIN_REQUESTS:
        return None
    if metric == "json_valid_rate" and (total.level or 0.0) < 0.5:
        return None  # not a JSON-producing cohort
    # An error class is searched for short windows only: its steps are the error rate's.
    step = _step_shift(kind, segs) if not _class_of(metric) else None
    if step is not None and step[0] < ALPHA and step[3] is not None:
        found = [step]  # a window found by its two change points: the direct search adds nothing
    else:
        found = [c for c in (step, _short_window(kind, segs) if kind == "rate" else None) if c is not None]
    if not found:
        return None
    corrected, p, k, end, window, rest = min(found, key=lambda c: c[0])
    if corrected >= ALPHA:
        return None
    z, va, vb = _test(kind, window, rest)
    assert va is not None and vb is not None
    return _Shift(metric, kind, cohort, key, grp, k, end, vb, va, z, int(window.n), _hold_size(kind, va, vb), p)


_Found = tuple[float, float, int, "int | None", Stat, Stat]  # (corrected p, p, start, end, inside, outside)


def _judge(kind: str, window: Stat, rest: Stat, searched: int) -> tuple[float, float] | None:
    """(p corrected for the `searched` places looked at, p) of window against rest, or None when too
    small or too little moved to be a finding."""
    z, va, vb = _test(kind, window, rest)
    if va is None or vb is None or not _big_enough(kind, va, vb):
        return None
    p = _p_rate(window, rest, z) if kind == "rate" else _p(z)
    return p * searched, p


def _step_shift(kind: str, segs: list[Stat]) -> _Found | None:
    """The best change point, then a second one inside the changed part when the level comes back
    (a burst that ends). The window may be a single bucket (a ten-minute burst in ten-minute buckets)."""
    nb = len(segs)
    first = _best_split(kind, segs, 0, nb)
    if first is None:
        return None
    k = first[1]
    end = None
    window, rest = _merge(segs[k:]), _merge(segs[:k])
    second = _best_split(kind, segs, k, nb, min_left=1)
    if second is not None:
        e = second[1]
        pre, mid, tail = _merge(segs[:k]), _merge(segs[k:e]), _merge(segs[e:])
        if pre.n and mid.n and tail.n and abs(tail.level - pre.level) < 0.5 * abs(mid.level - pre.level):
            end = e
            window, rest = mid, pre + tail
    judged = _judge(kind, window, rest, nb if end is not None else 1)  # a window: Bonferroni over its end
    return None if judged is None else (*judged, k, end, window, rest)


def _short_window(kind: str, segs: list[Stat]) -> _Found | None:
    """The strongest window of at most MAX_WINDOW buckets against everything outside it, searched
    directly: a short burst is two change points close together, and the best single change point of
    a series may be its end, leaving the burst in the "before" (seven 429s among thirty calls in one
    ten-minute bucket of three hours). Bonferroni over every window looked at. The scan is plain
    float arithmetic (the same z as _test), since it runs for every series."""
    nb = len(segs)
    tx, tn, tsq = (sum(g.x for g in segs), sum(g.n for g in segs), sum(g.sq for g in segs))
    if not tn:
        return None
    # A window worth testing holds the bucket that departs most from the series' level, up or down:
    # only windows through those (at most four buckets) are scanned, not every window of the series.
    level = tx / tn
    excess = sorted(range(MIN_SEGMENT, nb), key=lambda k: segs[k].x - segs[k].n * level)
    seeds = set(excess[:2] + excess[-2:])
    best: tuple[float, int, int] | None = None
    seen: set[tuple[int, int]] = set()
    for k in seeds:
        for i in range(max(MIN_SEGMENT, k - MAX_WINDOW + 1), k + 1):
            ax = an = asq = 0.0
            for j in range(i + 1, min(nb, i + MAX_WINDOW) + 1):
                g = segs[j - 1]
                ax, an, asq = ax + g.x, an + g.n, asq + g.sq
                if j <= k or (i, j) in seen:
                    continue
                seen.add((i, j))
                bx, bn, bsq = tx - ax, tn - an, tsq - asq
                z = _z_rate(ax, an, bx, bn) if kind == "rate" else _z_mean(ax, an, asq, bx, bn, bsq)
                if z > 0 and (best is None or z > best[0]):
                    best = (z, i, j)
    if best is None:
        return None
    _, i, j = best
    window = _merge(segs[i:j])
    judged = _judge(kind, window, _merge(segs) - window, nb * MAX_WINDOW)
    return None if judged is None else (*judged, i, j if j < nb else None, window, _merge(segs) - window)


def _z_rate(ax: float, an: float, bx: float, bn: float) -> float:
    """|z| of two proportions (0 when a side is too small, as _test)."""
    if min(an, bn) < MIN_RATE_N or max(an, bn) < MIN_REQUESTS:
        return 0.0
    p = (ax + bx) / (an + bn)
    se2 = p * (1 - p) * (1 / an + 1 / bn)
    return abs(ax / an - bx / bn) / math.sqrt(se2) if se2 > 0 else 0.0


def _z_mean(ax: float, an: float, asq: float, bx: float, bn: float, bsq: float) -> float:
    """|Welch z| of two means from sums and sums of squares (0 when a side is too small)."""
    if an < MIN_REQUESTS or bn < MIN_REQUESTS:
        return 0.0
    ma, mb = ax / an, bx / bn
    va = max((asq - an * ma * ma) / (an - 1), 0.0)
    vb = max((bsq - bn * mb * mb) / (bn - 1), 0.0)
    se2 = va / an + vb / bn
    return abs(ma - mb) / math.sqrt(se2) if se2 > 0 else 0.0


def _families(shifts: list[_Shift], times: list[dt.datetime]) -> list[_Family]:
    """Shifts of one metric and direction starting within a bucket of each other are one shift."""
    shifts.sort(key=lambda s: (s.size, s.n), reverse=True)
    fams: list[_Family] = []
    for s in shifts:
        up = s.after > s.before
        fam = next((f for f in fams if f.metric == s.metric and (f.members[0].after > f.members[0].before) == up
                    and abs(f.members[0].start - s.start) <= 1), None)
        if fam is None:
            fams.append(_Family([s], times))
        else:
            fam.members.append(s)
    return fams


def _explain(ctx: _Ctx, fam: _Family, causes: list[_Cause]) -> bool:
    """A shift is a cause's effect when it starts within a bucket of the cause's first appearance and
    the cause's rows, moved as much as they moved, account for at least EXPLAIN_SHARE of it."""
    h = fam.holder
    t_split = fam.times[h.start]
    b = ctx.bucket_s
    best: tuple[float, _Cause] | None = None
    for c in causes:
        # Within a bucket or so of the detected split; a sparse series can place it a little late.
        # Further away, only a metric the cause is known to move, and only when the shift's cohort
        # shows nothing of it outside the cause's rows (a sparse tenant series that placed the
        # served-model change's key drift forty minutes early).
        d = (c.first - t_split).total_seconds()
        if not (-3.0 * b <= d <= 2.0 * b) and not (any(e["metric"] == h.metric and e["_delta"] * (h.after - h.before) > 0
                                     for e in c.effects) and _only_in_cause(ctx, c, fam)):
            continue
        share = _explained_share(c, h)
        if share is not None and share >= EXPLAIN_SHARE and (best is None or share > best[0]):
            best = (share, c)
    if best is None:
        return False
    cause = best[1]
    effect = next((e for e in cause.effects if e["metric"] == h.metric), None)
    if effect is not None:
        for m in fam.members:
            if m.cohort != effect["cohort"] and m.cohort not in effect["also_in"]:
                effect["also_in"].append(m.cohort)
    return True


def _only_in_cause(ctx: _Ctx, c: _Cause, fam: _Family) -> bool:
    """Shift fam's cohort, without the cause's rows after its first appearance, holds no such shift."""
    h = fam.holder
    sg = SIGNALS[h.metric]
    from oncall.query.metrics import _projection

    cond, cparams = ([f"s.{h.key} = ?"], [h.grp]) if h.key else ([], [])
    after, after_params = c.after_sql()
    mine = " AND ".join([f"s.{k} = ?" for k in c.cohort] + ["s.start_time >= ?", after])
    cond.append(f"NOT coalesce({mine}, false)")
    cparams += [*c.cohort.values(), c.first, *after_params]
    proj, params = _projection(" AND ".join([ctx.where, *cond]), [*ctx.params, *cparams], [sg], ctx.key_ref,
                               dialect=dialect_of(ctx.con))
    a0, a1 = _window(fam)
    v = f"v_{sg.name}"
    rows = ctx.con.execute(f"SELECT (start_time >= ? AND start_time < ?) AS inside, sum({v}), count({v}), "
                           f"sum({v}::DOUBLE * {v}) FROM ({proj}) GROUP BY 1", [a0, a1, *params]).fetchall()
    # A side with no value of a mean signal (a cohort whose retrievals all came back empty has no top
    # score) sums to NULL: it is an empty segment, not an error.
    seg = {bool(r[0]): _Seg(float(r[1] or 0), float(r[2] or 0), float((r[3] if sg.kind == "mean" else r[1]) or 0))
           for r in rows}
    z, va, vb = _test(sg.kind, seg.get(True, _Seg(0, 0, 0)), seg.get(False, _Seg(0, 0, 0)))
    return va is None or vb is None or _p(z) >= 1e-3 or _hold_size(sg.kind, va, vb) < HOLD_SHARE * h.size


def _dated_before(ctx: _Ctx, fam: _Family, causes: list[_Cause]) -> bool:
    """A shift whose window holds a cause's first appearance, in a cohort the cause touches, and that
    shows nothing before it, is that cause's effect: its start was placed early by the bucket grid or
    a sparse series (key drift "from 01:10" in an export cut minutes after a model update at 01:21).
    An effect belongs to its cause and is never dated before it: the shift joins the cause, from the
    cause's first appearance."""
    h = fam.holder
    a0, a1 = _window(fam)
    for c in sorted(causes, key=lambda c: c.first):
        if not (a0 < c.first < a1) or not _compatible(c.cohort, h.cohort):
            continue
        if h.key is not None and h.key not in c.cohort and (h.key, h.grp) not in c.groups:
            continue  # the cause has no rows in the shift's cohort
        if not _quiet_before(ctx, fam, c.first):
            continue
        effect = next((e for e in c.effects if e["metric"] == h.metric), None)
        if effect is not None:
            effect["also_in"] += [m.cohort for m in fam.members if m.cohort != effect["cohort"]
                                  and m.cohort not in effect["also_in"]]
            return True
        cohort = {**c.cohort, **h.cohort}
        window = [f"since={_iso(c.first)}"] + ([f"until={_iso(_ceil_s(c.after_until))}"] if c.after_until else [])
        c.effects.append({
            "metric": h.metric, "cohort": cohort, "began_at": _iso(c.first),
            "ended_at": _iso(c.after_until) if c.after_until else None, "before": h.before, "after": h.after,
            "relative_change": relative_change(h.after, h.before), "significance": "significant", "p_value": h.p,
            "measured_on": h.n, "counts": SIGNALS[h.metric].counts,
            "description": describe_effect(h.metric, h.before, h.after, estimated=ctx.estimated_cost)
            + ("" if cohort == c.cohort else f" in {_what(h.cohort)}"),
            "filter": " ".join(_cohort_terms(cohort) + (c.terms() if c.response_side else []) + window),
            "requests": 0, "also_in": [m.cohort for m in fam.members if m is not h],
            "estimated": h.metric == "cost_per_request" and ctx.estimated_cost,
            "impact": h.n * effect_size(h.kind, h.after, h.before), "_size": h.size, "_key": h.key, "_grp": h.grp,
            "_delta": h.after - h.before})
        c.effects.sort(key=lambda e: e["impact"], reverse=True)
        return True
    return False


def _quiet_before(ctx: _Ctx, fam: _Family, t: dt.datetime) -> bool:
    """Shift fam's cohort shows no such shift between its detected start and t: the rows there read as
    the level before (or are too few to show anything)."""
    h = fam.holder
    sg = SIGNALS[h.metric]
    from oncall.query.metrics import _projection

    a0, _ = _window(fam)
    cond, cparams = ([f"s.{h.key} = ?"], [h.grp]) if h.key else ([], [])
    cond.append("s.start_time < ?")
    cparams.append(t)
    proj, params = _projection(" AND ".join([ctx.where, *cond]), [*ctx.params, *cparams], [sg], ctx.key_ref,
                               dialect=dialect_of(ctx.con))
    v = f"v_{sg.name}"
    rows = ctx.con.execute(f"SELECT start_time >= ? AS inside, sum({v}), count({v}), sum({v}::DOUBLE * {v}) "
                           f"FROM ({proj}) GROUP BY 1", [a0, *params]).fetchall()
    # A side with no value of a mean signal (a cohort whose retrievals all came back empty has no top
    # score) sums to NULL: it is an empty segment, not an error.
    seg = {bool(r[0]): _Seg(float(r[1] or 0), float(r[2] or 0), float((r[3] if sg.kind == "mean" else r[1]) or 0))
           for r in rows}
    inside, outside = seg.get(True, _Seg(0, 0, 0)), seg.get(False, _Seg(0, 0, 0))
    if inside.n == 0 or outside.n == 0:
        return True
    z, va, vb = _test(sg.kind, inside, outside)
    if va is None or vb is None:
        # Too few rows between its start and t for a test: quiet unless they already sit at the shifted level.
        lv, lo = inside.level, outside.level
        return lv is None or lo is None or abs(lv - lo) < 0.5 * abs(h.after - h.before)
    return _p(z) >= 1e-3 or _hold_size(sg.kind, va, vb) < HOLD_SHARE * h.size


def _explained_share(c: _Cause, h: _Shift) -> float | None:
    """How much of shift h the cause's rows account for: their share of h's rows times how far they
    moved, against how far h moved. None when the cause does not touch h's cohort."""
    if h.key is not None and h.key in c.cohort:
        if c.cohort[h.key] != h.grp:
            return None
        phases = c.groups.get((None, None))  # h's cohort holds the whole cause
    elif h.key is not None:
        phases = c.groups.get((h.key, h.grp))
    else:
        phases = c.groups.get((None, None))
    if not phases:
        return None
    before, after = _seg(phases.get(0), h.metric), _seg(phases.get(2), h.metric) + _seg(phases.get(3), h.metric)
    if h.metric == "json_key_drift":
        before = _Seg(0.0, before.n, 0.0)
    if after.n < MIN_NEAR:
        return None
    z, va, vb = _test(h.kind, after, before)
    if va is not None and vb is not None:
        if _p(z) >= 0.01:
            return None
        moved = va - vb
    else:
        # Too few of the cause's rows in h's cohort to test there: they moved as the cause's own
        # effect on this metric did, if it has one.
        effect = next((e for e in c.effects if e["metric"] == h.metric), None)
        if effect is None:
            return None
        moved = effect["_delta"]
    delta_h = h.after - h.before
    if delta_h == 0 or moved * delta_h <= 0:
        return None
    share_rows = min(after.n / max(h.n, 1), 1.0)
    return share_rows * moved / delta_h


# -- unexplained shifts as entries ----------------------------------------------------------------------
def _unexplained_changes(ctx: _Ctx, fams: list[_Family]) -> list[Change]:
    entries: list[tuple[_Family, list[_Family]]] = []
    fams = sorted(fams, key=lambda f: f.holder.n * effect_size(f.holder.kind, f.holder.after, f.holder.before),
                  reverse=True)
    kept: list[_Family] = []
    for f in fams:
        main = next((g for g in kept if _echo(ctx, g, f)), None)
        if main is None:
            kept.append(f)
        else:
            main.members.extend(m for m in f.members if m.cohort not in [x.cohort for x in main.members])
    for f in kept:
        home = next((e for e in entries if _same_event(ctx, e[0], f)), None)
        if home is None:
            entries.append((f, []))
        else:
            home[1].append(f)
    return [_shift_change(ctx, primary, rest) for primary, rest in entries]


def _window(f: _Family) -> tuple[dt.datetime, dt.datetime]:
    h = f.holder
    end = f.times[h.end] if h.end is not None else f.times[-1] + dt.timedelta(days=1)
    return f.times[h.start], end


def _echo(ctx: _Ctx, main: _Family, f: _Family) -> bool:
    """Shift f is an echo of the stronger shift `main` (the anthropic burst seen, diluted and with a
    blurred window, in one tenant's series) when their windows overlap and f's cohort without main's
    cohort shows no such shift."""
    if f.metric != main.metric:
        return False
    hm, hf = main.holder, f.holder
    if (hf.after > hf.before) != (hm.after > hm.before):
        # The end of main's window, seen in a cohort whose series folded the window into "before".
        return (hm.end is not None and abs(hf.start - hm.end) <= 1
                and (hm.key is None or hf.cohort in [m.cohort for m in main.members]
                     or _compatible(hf.cohort, hm.cohort)))
    (a0, a1), (b0, b1) = _window(main), _window(f)
    if a0 >= b1 or b0 >= a1:
        return False
    if hm.key is None:
        return True  # main holds in all traffic: f's cohort is part of it
    if hf.key == hm.key:
        return False  # two tenants (say) are disjoint: each shift is its own
    sg = SIGNALS[f.metric]
    from oncall.query.metrics import _projection

    cond = [f"s.{hf.key} = ?"] if hf.key else []
    cparams: list[Any] = [hf.grp] if hf.key else []
    cond.append(f"s.{hm.key} IS DISTINCT FROM ?")
    cparams.append(hm.grp)
    proj, params = _projection(" AND ".join([ctx.where, *cond]), [*ctx.params, *cparams], [sg], None,
                               dialect=dialect_of(ctx.con))
    rows = ctx.con.execute(
        f"SELECT (start_time >= ? AND start_time < ?) AS inside, sum(v_{sg.name}), count(v_{sg.name}), "
        f"sum(v_{sg.name}::DOUBLE * v_{sg.name}) FROM ({proj}) GROUP BY 1", [b0, b1, *params]).fetchall()
    # A side with no value of a mean signal (a cohort whose retrievals all came back empty has no top
    # score) sums to NULL: it is an empty segment, not an error.
    seg = {bool(r[0]): _Seg(float(r[1] or 0), float(r[2] or 0), float((r[3] if sg.kind == "mean" else r[1]) or 0))
           for r in rows}
    inside, outside = seg.get(True, _Seg(0, 0, 0)), seg.get(False, _Seg(0, 0, 0))
    z, va, vb = _test(sg.kind, inside, outside)
    if va is None or vb is None:
        return True  # too little of f is left outside main's cohort to hold a shift of its own
    return _p(z) >= 1e-3 or _hold_size(sg.kind, va, vb) < HOLD_SHARE * hf.size


def _holding(f: _Family) -> list[dict[str, str]]:
    """The cohorts that show f's shift at least HOLD_SHARE as strongly as its strongest (the same rows
    under another name: provider=anthropic, feature=summarize), not the diluted echoes."""
    top = max(m.size for m in f.members)
    return [m.cohort for m in f.members if m.size >= HOLD_SHARE * top]


def _same_event(ctx: _Ctx, a: _Family, b: _Family) -> bool:
    """Shifts of different metrics in the same window and related cohorts are one event (a truncation
    wave moves finish=length, output tokens and latency together). A sparse series may blur b's
    window: it is still a's event when b's cohort, outside a's window, shows no shift."""
    ha, hb = a.holder, b.holder
    if not (hb.cohort in _holding(a) or ha.cohort in _holding(b) or ha.key is None or hb.key is None):
        return False
    (a0, a1), (b0, b1) = _window(a), _window(b)
    if a0 >= b1 or b0 >= a1:
        return False
    if abs(ha.start - hb.start) <= 1 and ((ha.end is None) == (hb.end is None)) and (
            ha.end is None or abs(ha.end - (hb.end or 0)) <= 1):
        return True
    sg = SIGNALS[hb.metric]
    from oncall.query.metrics import _projection

    cond, cparams = ([f"s.{hb.key} = ?"], [hb.grp]) if hb.key else ([], [])
    proj, params = _projection(" AND ".join([ctx.where, *cond]), [*ctx.params, *cparams], [sg], None,
                               dialect=dialect_of(ctx.con))
    v = f"v_{sg.name}"
    rows = ctx.con.execute(
        f"SELECT CASE WHEN start_time >= ? AND start_time < ? THEN 'a' WHEN start_time >= ? AND start_time < ? "
        f"THEN 'b' ELSE 'out' END AS part, sum({v}), count({v}), sum({v}::DOUBLE * {v}) FROM ({proj}) GROUP BY 1",
        [a0, a1, b0, b1, *params]).fetchall()
    seg = {r[0]: _Seg(float(r[1] or 0), float(r[2] or 0), float(r[3] if sg.kind == "mean" else r[1] or 0))
           for r in rows}
    z, vb_only, vout = _test(sg.kind, seg.get("b", _Seg(0, 0, 0)), seg.get("out", _Seg(0, 0, 0)))
    if vb_only is None or vout is None:
        return True  # nothing of b is left outside a's window to hold a shift of its own
    return _p(z) >= 1e-3 or _hold_size(sg.kind, vb_only, vout) < HOLD_SHARE * hb.size


def _shift_change(ctx: _Ctx, fam: _Family, rest: list[_Family]) -> Change:
    h = fam.holder
    began, ended = _refine(ctx, fam)
    effects = [_shift_effect(ctx, f, began, ended) for f in [fam, *rest]]
    main = effects[0]
    what = _what(h.cohort)
    when = f"from {_iso(began)}" + (f" to {_iso(ended)}" if ended else "")
    desc = f"{main['description']} for {what} {when}"
    title = desc
    for e in effects[1:]:
        desc += "; " + e["description"] + ("" if e["cohort"] == h.cohort else f" in {_what(e['cohort'])}")
    flt = _cohort_terms(h.cohort) + [f"since={_iso(began)}"] + ([f"until={_iso(_ceil_s(ended))}"] if ended else [])
    impact = effects[0]["impact"] + 0.25 * sum(e["impact"] for e in effects[1:])
    also = [m.cohort for m in sorted(fam.members, key=lambda m: -m.size) if m is not h]
    return Change(kind="metric_shift", metric=h.metric, cohort=h.cohort, began_at=_iso(began),
                  ended_at=_iso(ended) if ended else None, before=h.before, after=h.after,
                  relative_change=relative_change(h.after, h.before), affected_requests=h.n, impact=impact,
                  significance="significant", p_value=h.p, description=desc, filter=" ".join(flt),
                  also_in=also, effects=[{k: v for k, v in e.items() if not k.startswith("_")} for e in effects],
                  bucket_s=ctx.bucket_s, title=title)


def _shift_effect(ctx: _Ctx, fam: _Family, began: dt.datetime, ended: dt.datetime | None) -> dict[str, Any]:
    h = fam.holder
    desc = describe_effect(h.metric, h.before, h.after, estimated=ctx.estimated_cost)
    window = [f"since={_iso(began)}"] + ([f"until={_iso(_ceil_s(ended))}"] if ended else [])
    flt = " ".join(_cohort_terms(h.cohort) + window)
    if h.metric in ("error_rate", "tool_error_rate"):
        cls = _error_classes(ctx, flt, tool=h.metric == "tool_error_rate")
        if cls:
            desc += f" ({cls})"
    return {"metric": h.metric, "cohort": h.cohort, "began_at": _iso(began), "ended_at": _iso(ended) if ended else None,
            "before": h.before, "after": h.after, "relative_change": relative_change(h.after, h.before),
            "significance": "significant", "p_value": h.p, "measured_on": h.n, "counts": SIGNALS[h.metric].counts,
            "description": desc, "filter": flt, "requests": 0,
            "also_in": [m.cohort for m in fam.members if m is not h],
            "estimated": h.metric == "cost_per_request" and ctx.estimated_cost,
            "impact": h.n * effect_size(h.kind, h.after, h.before)}


def _error_classes(ctx: _Ctx, flt: str, tool: bool) -> str:
    """The error class (and HTTP status) most of a window's errors have: '429 rate_limit'."""
    c = compile_on(ctx.con, flt + (" kind=tool" if tool else ""))
    row = ctx.con.execute(f"SELECT s.error_type, {dialect_of(ctx.con)().mode('s.http_status')}, count(*) FROM spans s WHERE {c.where} "
                          f"AND s.status = 'error' GROUP BY 1 ORDER BY 3 DESC, 1 LIMIT 1", c.params).fetchone()
    if not row or row[0] is None:
        return ""
    return f"{row[1]} {row[0]}" if row[1] else str(row[0])


# -- windows from the rows ------------------------------------------------------------------------------
def _refine(ctx: _Ctx, fam: _Family) -> tuple[dt.datetime, dt.datetime | None]:
    """The window placed from the holder cohort's rows, not at bucket boundaries: over the rows from
    two buckets before the detected start to two after the detected end, the split (a step) or the
    stretch (a window) that best separates the level outside from the level inside — likelihood of
    0/1 rows for a rate, squared error for a mean — fitted twice, the inside level re-estimated
    from the rows the first fit put inside."""
    h = fam.holder
    b = dt.timedelta(seconds=ctx.bucket_s)
    t_start = fam.times[h.start]
    t_end = fam.times[h.end] if h.end is not None else None
    if h.metric == "json_key_drift":
        return t_start, t_end  # its reference is global; the bucket boundary stands
    metric, outside_level = h.metric, h.before
    cls = _dominant_class(ctx, h, t_start, t_end) if h.metric == "error_rate" else None
    if cls is not None:
        # A burst of one error class is placed by that class's rows: a background 500 ten minutes
        # earlier must not stretch a 429 burst back to it.
        metric, outside_level = f"error_rate_{cls}", 0.0
    rows = _rows(ctx, h, t_start - 2 * b, (t_end or t_start) + 2 * b, metric=metric)
    if not rows:
        return t_start, t_end
    xs = [float(x) for _, x in rows]
    inside = h.after
    lo_i, hi_i = 0, len(xs)
    for _ in range(2):
        gain = _gain(SIGNALS[metric].kind, outside_level, inside)
        g = [gain(x) for x in xs]
        lo_i, hi_i = _best_stretch(g) if t_end is not None else (_best_suffix(g), len(xs))
        if hi_i <= lo_i:
            return t_start, t_end
        inside = sum(xs[lo_i:hi_i]) / (hi_i - lo_i)
    began = rows[lo_i][0]
    ended = rows[hi_i - 1][0] if t_end is not None else None
    if metric != h.metric:  # placed by the class: the error rate itself is read inside the placed window
        stop = ended + dt.timedelta(microseconds=1) if ended else ctx.hi + dt.timedelta(seconds=1)
        own = [x for _, x in _rows(ctx, h, began, stop)]
        if own:
            inside, lo_i, hi_i = sum(own) / len(own), 0, len(own)
    h.after = inside  # the level inside the placed window, no longer diluted by the edge buckets
    h.n = hi_i - lo_i
    return began, ended


def _dominant_class(ctx: _Ctx, h: _Shift, t0: dt.datetime, t1: dt.datetime | None) -> str | None:
    """The error class of most of the errors in shift h's window (when it has an error-class series)."""
    cond, params = ([f"s.{h.key} = ?"], [h.grp]) if h.key else ([], [])
    cond += ["s.start_time >= ?"] + (["s.start_time < ?"] if t1 is not None else [])
    params += [t0] + ([t1] if t1 is not None else [])
    row = ctx.con.execute(f"SELECT s.error_type, count(*) FROM spans s WHERE {' AND '.join([ctx.llm.where, *cond])} "
                          f"AND s.status = 'error' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1",
                          [*ctx.llm.params, *params]).fetchone()
    if row is None or row[0] is None or f"error_rate_{row[0]}" not in SIGNALS:
        return None
    return str(row[0])


def _rows(ctx: _Ctx, h: _Shift, lo: dt.datetime, hi: dt.datetime,
          metric: str | None = None) -> list[tuple[dt.datetime, float]]:
    from oncall.query.metrics import _projection

    sg = SIGNALS[metric or h.metric]
    cond, cparams = ([f"s.{h.key} = ?"], [h.grp]) if h.key else ([], [])
    where = " AND ".join([ctx.where, *cond, "s.start_time >= ?", "s.start_time < ?"])
    proj, params = _projection(where, [*ctx.params, *cparams, lo, hi], [sg], None,
                               dialect=dialect_of(ctx.con))
    return ctx.con.execute(f"SELECT start_time, v_{sg.name} FROM ({proj}) WHERE v_{sg.name} IS NOT NULL "
                           f"ORDER BY start_time", params).fetchall()


def _gain(kind: str, outside: float, inside: float) -> Any:
    """Per row: how much better the inside level explains it than the outside level."""
    if kind == "rate":
        p0 = min(max(outside, 1e-3), 1 - 1e-3)
        p1 = min(max(inside, 1e-3), 1 - 1e-3)
        one, zero = math.log(p1) - math.log(p0), math.log(1 - p1) - math.log(1 - p0)
        return lambda x: one if x else zero
    return lambda x: (x - outside) ** 2 - (x - inside) ** 2


def _best_suffix(g: list[float]) -> int:
    """The start of the suffix with the largest total gain (the split of a step)."""
    acc, best, best_i = 0.0, 0.0, 0
    for i, x in enumerate(g):
        acc += x
        if acc < best:
            best, best_i = acc, i + 1
    return best_i


def _best_stretch(g: list[float]) -> tuple[int, int]:
    """The stretch [lo, hi) with the largest total gain (Kadane), the window of a burst."""
    best, best_lo, best_hi = 0.0, 0, 0
    acc, lo = 0.0, 0
    for i, x in enumerate(g):
        if acc <= 0:
            acc, lo = 0.0, i
        acc += x
        if acc > best:
            best, best_lo, best_hi = acc, lo, i + 1
    return best_lo, best_hi
