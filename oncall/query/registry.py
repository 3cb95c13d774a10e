"""The metric vocabulary: every number oncall reports about a set of LLM calls, defined once.

A metric is one record (`Metric`): its name (the `--json` contract), a label and a unit, **which
rows it counts** (a predicate: LLM calls or tool spans, failed calls in or out, said in words in
`counts`), **what it measures on each row** (an event for a rate, a number for a mean, a quantile
or a total), which direction is worse, and how it reads (`display.metric_text`). Both halves are
small expressions over the canonical span columns (`Expr`), written once and

- rendered to SQL by a `Dialect` (DuckDB here; a second engine, ClickHouse, is one more subclass
  that renders the same nodes with its own functions — see `Dialect`),
- evaluated in Python on a row dict (`Expr.eval`), which is how replay results, which never sit in
  a SQL table, are folded (`Fold`).

So `compare`, `changes`' series, the overview's charts, replay summaries, runbook gates,
`blast-radius`, the timeline and the postmortem all read the same definitions, and a test feeds the
same rows through every path. Every aggregate is a sum, a count, a sum of squares (these recombine
across any split: buckets, phases, grouping sets) or a quantile; `Stat` holds them.

Definitions that once differed between surfaces, settled as the README documents them:
latency (mean and percentiles), time to first token and output tokens count **successful calls
only** (a fast-failing 429 would read as an improvement); input tokens and cost count every call
that has them, failed calls included (a failed call can still be billed); the error rate counts
every LLM call; output quality counts successful calls with an output.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from oncall.query import quality
from oncall.query.labels import LATEST_LABELS
from oncall.query.stats import Test, two_proportions, welch
from oncall.store.schema import SPAN_COLUMN_NAMES

# -- expressions over canonical columns ------------------------------------------------------------------


class Expr:
    """A node of a metric's definition. Predicates are two-valued in every engine (a NULL column
    makes them false, never NULL), so SQL and Python agree row by row."""

    def sql(self, d: Dialect) -> str:
        raise NotImplementedError

    def eval(self, row: Mapping[str, Any], refs: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def columns(self) -> set[str]:
        """The canonical columns this expression reads."""
        return set()

    def functions(self) -> set[str]:
        """The functions (Fn names) this expression calls."""
        return set()


@dataclass(frozen=True)
class Col(Expr):
    name: str

    def sql(self, d: Dialect) -> str:
        return d.col(self.name)

    def eval(self, row: Mapping[str, Any], refs: Mapping[str, Any]) -> Any:
        return row.get(self.name)

    def columns(self) -> set[str]:
        return {self.name}


@dataclass(frozen=True)
class Is(Expr):
    """column = value, false when the column is NULL."""
    col: Col
    value: str

    def sql(self, d: Dialect) -> str:
        return d.equals(self.col.sql(d), self.value)

    def eval(self, row: Mapping[str, Any], refs: Mapping[str, Any]) -> Any:
        return self.col.eval(row, refs) == self.value

    def columns(self) -> set[str]:
        return self.col.columns()


@dataclass(frozen=True)
class NotNull(Expr):
    arg: Expr

    def sql(self, d: Dialect) -> str:
        return f"({self.arg.sql(d)} IS NOT NULL)"

    def eval(self, row: Mapping[str, Any], refs: Mapping[str, Any]) -> Any:
        return self.arg.eval(row, refs) is not None

    def columns(self) -> set[str]:
        return self.arg.columns()

    def functions(self) -> set[str]:
        return self.arg.functions()


@dataclass(frozen=True)
class Not(Expr):
    arg: Expr

    def sql(self, d: Dialect) -> str:
        return f"(NOT {self.arg.sql(d)})"

    def eval(self, row: Mapping[str, Any], refs: Mapping[str, Any]) -> Any:
        return not self.arg.eval(row, refs)

    def columns(self) -> set[str]:
        return self.arg.columns()

    def functions(self) -> set[str]:
        return self.arg.functions()


@dataclass(frozen=True)
class And(Expr):
    args: tuple[Expr, ...]
    op = "AND"

    def sql(self, d: Dialect) -> str:
        return "(" + f" {self.op} ".join(a.sql(d) for a in self.args) + ")"

    def eval(self, row: Mapping[str, Any], refs: Mapping[str, Any]) -> Any:
        return all(a.eval(row, refs) for a in self.args)

    def columns(self) -> set[str]:
        return set().union(*(a.columns() for a in self.args))

    def functions(self) -> set[str]:
        return set().union(*(a.functions() for a in self.args))


@dataclass(frozen=True)
class Or(And):
    op = "OR"

    def eval(self, row: Mapping[str, Any], refs: Mapping[str, Any]) -> Any:
        return any(a.eval(row, refs) for a in self.args)


@dataclass(frozen=True)
class Below(Expr):
    """column < n (a number), false when the column is NULL: `retrieved < 1` is an empty retrieval."""
    col: Col
    n: float

    def sql(self, d: Dialect) -> str:
        return f"coalesce({self.col.sql(d)} < {float(self.n)!r}, false)"

    def eval(self, row: Mapping[str, Any], refs: Mapping[str, Any]) -> Any:
        v = self.col.eval(row, refs)
        return v is not None and v < self.n

    def columns(self) -> set[str]:
        return self.col.columns()


@dataclass(frozen=True)
class Fn(Expr):
    """A function the dialects name differently (or a quality heuristic of quality.py)."""
    name: str  # length | refusal | json_valid | key_set | has_tool_calls | in_ref
    arg: Expr
    ref: str | None = None  # in_ref: the name of the reference list (bound per query)

    def sql(self, d: Dialect) -> str:
        return d.function(self.name, self.arg.sql(d), self.ref)

    def eval(self, row: Mapping[str, Any], refs: Mapping[str, Any]) -> Any:
        v = self.arg.eval(row, refs)
        return PY_FUNCTIONS[self.name](v, refs.get(self.ref) if self.ref else None)

    def columns(self) -> set[str]:
        return self.arg.columns()

    def functions(self) -> set[str]:
        return {self.name} | self.arg.functions()


def _has_tool_calls(v: Any, _: Any) -> bool:
    if v is None:
        return False
    if isinstance(v, str):
        import json

        try:
            v = json.loads(v)
        except ValueError:
            return False
    return isinstance(v, list) and len(v) > 0


PY_FUNCTIONS = {
    "length": lambda v, _: None if v is None else len(v),
    "refusal": lambda v, _: quality.is_refusal(v),
    "json_valid": lambda v, _: quality.is_json(v),
    "key_set": lambda v, _: quality.key_set(v),
    "has_tool_calls": _has_tool_calls,
    "in_ref": lambda v, ref: v in (ref or ()),
}


def col(name: str) -> Col:
    return Col(name)


def all_of(*args: Expr) -> Expr:
    return args[0] if len(args) == 1 else And(tuple(args))


# -- dialects -------------------------------------------------------------------------------------------------


class Dialect:
    """How one engine spells the nodes. `alias` prefixes column names; `params` collects the values
    bound to `?` in textual order (a reference list such as the before-period's JSON key sets).

    A second engine subclasses this and overrides `equals`, `function`, `as_int`, `quantile` and
    `variance`; the metric records do not change. (ClickHouse: `ifNull(x = 'v', 0)`, `lengthUTF8`,
    `match(lowerUTF8(substringUTF8(x, 1, 160)), …)`, `isValidJSON`, `JSONExtractKeys`,
    `quantileExactInclusive(q)(x)` — the same interpolation as DuckDB's `quantile_cont` —, `has(?, x)`.)"""

    name = "base"

    def __init__(self, alias: str = "s", refs: Mapping[str, Any] | None = None,
                 columns: Mapping[str, str] | None = None) -> None:
        self.alias = alias
        self.refs = dict(refs or {})
        self.params: list[Any] = []
        self.column_sql = dict(columns or {})  # a canonical column computed once per row (key_set -> s._ks)

    def col(self, name: str) -> str:
        if name in self.column_sql:
            return self.column_sql[name]
        return f"{self.alias}.{name}" if self.alias else name

    def equals(self, x: str, value: str) -> str:
        raise NotImplementedError

    def function(self, name: str, x: str, ref: str | None) -> str:
        raise NotImplementedError

    def as_int(self, pred: str) -> str:
        return f"CASE WHEN {pred} THEN 1 ELSE 0 END"

    def quantile(self, x: str, q: float) -> str:
        raise NotImplementedError

    def variance(self, x: str) -> str:
        raise NotImplementedError

    # Idioms of the queries `changes` asks beside the metrics (one spelling per engine).
    def time_bucket(self, seconds: int, x: str) -> str:
        """The start of x's bucket of `seconds`, buckets cut from a UTC origin."""
        raise NotImplementedError

    def mode(self, x: str) -> str:
        raise NotImplementedError

    def contains_param(self, x: str) -> str:
        """x is in the list bound to the next `?` (the caller appends the list to its parameters)."""
        raise NotImplementedError


class DuckDB(Dialect):
    name = "duckdb"

    def equals(self, x: str, value: str) -> str:
        return f"({x} IS NOT DISTINCT FROM '{value.replace(chr(39), chr(39) * 2)}')"

    def function(self, name: str, x: str, ref: str | None) -> str:
        if name == "length":
            return f"length({x})"
        if name == "refusal":
            return quality.refusal_sql_of(x)
        if name == "json_valid":
            return quality.json_valid_sql_of(x)
        if name == "key_set":
            return quality.key_set_sql_of(x)
        if name == "has_tool_calls":
            return f"(coalesce(json_array_length({x}), 0) > 0)"
        if name == "in_ref":
            self.params.append(list(self.refs.get(ref or "") or []))
            return f"coalesce(list_contains(?::VARCHAR[], {x}), false)"
        raise ValueError(f"no DuckDB form for {name}")

    def as_int(self, pred: str) -> str:
        return f"({pred})::INT"

    def quantile(self, x: str, q: float) -> str:
        return f"quantile_cont({x}, {q})"

    def variance(self, x: str) -> str:
        return f"var_samp({x})"

    def time_bucket(self, seconds: int, x: str) -> str:
        # time_bucket on a TIMESTAMPTZ cuts buckets from a UTC origin whatever the connection's zone
        # (checked under TZ=Asia/Kolkata: hour and day buckets start on the UTC hour and midnight).
        return f"time_bucket(INTERVAL '{int(seconds)} seconds', {x})"

    def mode(self, x: str) -> str:
        return f"mode({x})"

    def contains_param(self, x: str) -> str:
        return f"coalesce(list_contains(?::VARCHAR[], {x}), false)"


def dialect_of(con: Any) -> type[Dialect]:
    """The Dialect of the engine behind a connection: DuckDB for the incident, or the one a connection
    to another engine names (`con.dialect`, e.g. a ClickHouse source asked in place)."""
    return getattr(con, "dialect", DuckDB)


# -- the records ----------------------------------------------------------------------------------------------
KINDS = ("count", "rate", "mean", "quantile", "total")


@dataclass(frozen=True)
class Metric:
    """One metric. `rows` says which rows count (the denominator); `value` what each of them gives:
    the event (a predicate) for a rate, a number for a mean, quantile or total. A row whose value
    is NULL does not count (a call without a TTFT is not in the TTFT mean)."""
    name: str
    label: str  # how a responder reads it in a sentence: "error rate"
    unit: str  # count | ratio | ms | tokens | usd | chars | docs | score | s (compare's --json `unit`)
    kind: str  # one of KINDS
    rows: Expr
    counts: str  # the rows in a responder's words: "successful calls with an output"
    errors: str  # "in" | "out": whether failed calls count
    worse: str = "higher"  # higher | lower | either | n/a (compare's `worse_when`)
    value: Expr | None = None
    q: float | None = None  # a quantile's fraction
    series: bool = False  # searched by `changes` (per bucket, per cohort)
    show: str = "always"  # always | events (either side has one) | counted (either side has rows) | json
    reference: str | None = None  # a reference list the value reads (json_key_drift: key sets seen before)
    family: str | None = None  # quantiles and totals: the mean they share rows with
    entity: str = "llm"  # the spans it is about: LLM calls, or tool spans (tool_error_rate)

    def row_sql(self, d: Dialect) -> str:
        """The row's value (NULL where the row does not count): sums, counts, squares and quantiles of
        it are every aggregate."""
        rows = self.rows.sql(d)
        if self.kind == "count":
            return f"CASE WHEN {rows} THEN 1 END"
        assert self.value is not None
        if self.kind == "rate":
            return f"CASE WHEN {rows} THEN {d.as_int(self.value.sql(d))} END"
        return f"CASE WHEN {rows} THEN {self.value.sql(d)} END"

    def row_value(self, row: Mapping[str, Any], refs: Mapping[str, Any] | None = None) -> float | None:
        """The same, in Python."""
        r = refs or {}
        if not self.rows.eval(row, r):
            return None
        if self.kind == "count":
            return 1.0
        assert self.value is not None
        v = self.value.eval(row, r)
        if self.kind == "rate":
            return 1.0 if v else 0.0
        return None if v is None else float(v)

    def presence_sql(self, d: Dialect) -> str:
        """Rows that could move it: the event for a rate (a rate that is 0 everywhere cannot shift), a
        value for the others."""
        rows = self.rows.sql(d)
        if self.kind == "rate":
            assert self.value is not None
            return f"count(*) FILTER (WHERE {rows} AND {self.value.sql(d)})"
        if self.kind == "count":
            return f"count(*) FILTER (WHERE {rows})"
        assert self.value is not None
        return f"count({self.value.sql(d)}) FILTER (WHERE {rows})"

    def columns(self) -> set[str]:
        return self.rows.columns() | (self.value.columns() if self.value is not None else set())

    @property
    def heuristic(self) -> bool:
        """Runs an output heuristic of quality.py (a regex, a JSON parse): the costly part of a scan."""
        fns = self.rows.functions() | (self.value.functions() if self.value is not None else set())
        return bool(fns & HEURISTICS) or "key_set" in self.columns()

    @property
    def reads_text(self) -> bool:
        """Reads output or input text (the costly part of a scan)."""
        return bool(self.columns() & TEXT_COLUMNS)

    @property
    def test_kind(self) -> str | None:
        return {"rate": "rate", "mean": "mean"}.get(self.kind)

    def of(self, s: Stat) -> float | None:
        """The metric's value from its aggregates."""
        if self.kind == "count":
            return int(s.n)
        if self.kind == "quantile":
            return s.q
        if not s.n:
            return None
        if self.kind == "total":
            return s.x
        return s.x / s.n

    def test(self, a: Stat, b: Stat) -> Test | None:
        """Significance of a against b: two proportions for a rate, Welch for a mean, none else."""
        if self.kind == "rate":
            return two_proportions(int(a.x), int(a.n), int(b.x), int(b.n))
        if self.kind == "mean":
            return welch(self.of(a), a.var, int(a.n), self.of(b), b.var, int(b.n))
        return None

    def text(self, v: float | None) -> str:
        from oncall.display import metric_text

        return metric_text(v, self.unit)


TEXT_COLUMNS = frozenset({"output_text", "input_text", "key_set"})
HEURISTICS = frozenset({"refusal", "json_valid", "key_set"})


@dataclass
class Stat:
    """A metric's aggregates over some rows: n counted, x their sum (events for a rate), sq the sum of
    squares; q a quantile's value (quantiles do not recombine)."""
    n: float = 0.0
    x: float = 0.0
    sq: float = 0.0
    q: float | None = None

    def __add__(self, o: Stat) -> Stat:
        return Stat(self.n + o.n, self.x + o.x, self.sq + o.sq)

    def __sub__(self, o: Stat) -> Stat:
        return Stat(self.n - o.n, self.x - o.x, self.sq - o.sq)

    @property
    def level(self) -> float | None:
        return self.x / self.n if self.n else None

    @property
    def var(self) -> float | None:
        if self.n < 2:
            return 0.0 if self.n == 1 else None
        m = self.x / self.n
        return max((self.sq - self.n * m * m) / (self.n - 1), 0.0)


# -- the vocabulary -------------------------------------------------------------------------------------------
LLM = Is(col("kind"), "llm")
TOOL = Is(col("kind"), "tool")
FAILED = Is(col("status"), "error")
OK = all_of(LLM, Not(FAILED))
FED = all_of(LLM, NotNull(col("retrieved")))  # LLM calls a retrieval fed (its count is known)
HAS_OUTPUT = all_of(OK, NotNull(col("output_text")))
FINISHED = all_of(OK, NotNull(col("finish_reason")), Not(Is(col("finish_reason"), "error")))
COMPARED_ERRORS = ("rate_limit", "quota", "server", "timeout", "content_filter")
FINISH_REASONS = ("length", "content_filter", "tool_calls")
_FINISH_LABELS = {"length": "truncated (finish=length)", "content_filter": "content-filtered (finish=content_filter)",
                  "tool_calls": "finish=tool_calls"}


def _metrics() -> list[Metric]:
    lat, ttft = col("latency_ms"), col("ttft_ms")
    out = [
        Metric("requests", "requests", "count", "count", LLM, "LLM calls", "in", worse="n/a"),
        Metric("error_rate", "error rate", "ratio", "rate", LLM, "LLM calls", "in", value=FAILED, series=True),
        *[Metric(f"error_rate_{e}", f"{e} error rate", "ratio", "rate", LLM, "LLM calls", "in",
                 value=all_of(FAILED, Is(col("error_type"), e)), show="events", series=True) for e in COMPARED_ERRORS],
        Metric("latency_ms_mean", "mean latency", "ms", "mean", OK, "successful calls", "out", value=lat,
               series=True),
        *[Metric(f"latency_ms_p{int(q * 100)}", f"latency p{int(q * 100)}", "ms", "quantile", OK, "successful calls",
                 "out", value=lat, q=q, family="latency_ms_mean") for q in (0.5, 0.95, 0.99)],
        Metric("ttft_ms_mean", "time to first token", "ms", "mean", OK, "successful streamed calls", "out",
               value=ttft, series=True, show="counted"),
        Metric("ttft_ms_p50", "time to first token p50", "ms", "quantile", OK, "successful streamed calls", "out",
               value=ttft, q=0.5, show="counted", family="ttft_ms_mean"),
        Metric("input_tokens_mean", "input tokens/request", "tokens", "mean", LLM, "calls with token counts", "in",
               value=col("input_tokens"), series=True),
        Metric("output_tokens_mean", "output tokens/request", "tokens", "mean", OK,
               "successful calls with token counts", "out", value=col("output_tokens"), series=True),
        *[Metric(f"finish_{r}_rate", _FINISH_LABELS[r], "ratio", "rate", FINISHED,
                 "successful calls with a finish reason", "out", value=Is(col("finish_reason"), r), series=True,
                 show="events") for r in FINISH_REASONS],
        Metric("tool_call_rate", "calls with tool calls", "ratio", "rate", OK, "successful calls", "out",
               value=Fn("has_tool_calls", col("tool_calls")), worse="either", series=True, show="events"),
        Metric("cost_per_request", "cost/request", "usd", "mean", LLM, "calls with a cost", "in", value=col("cost"),
               series=True),
        Metric("cost_total", "total cost", "usd", "total", LLM, "calls with a cost", "in", value=col("cost"),
               family="cost_per_request"),
        Metric("output_length_mean", "output length", "chars", "mean", HAS_OUTPUT, "successful calls with an output",
               "out", value=Fn("length", col("output_text")), worse="either", series=True),
        Metric("refusal_rate", "refusal rate", "ratio", "rate", HAS_OUTPUT, "successful calls with an output", "out",
               value=Fn("refusal", col("output_text")), series=True),
        Metric("json_valid_rate", "JSON-valid outputs", "ratio", "rate", HAS_OUTPUT,
               "successful calls with an output", "out", value=Fn("json_valid", col("output_text")), worse="lower",
               series=True, show="json"),
        # A key set absent from the reference (the before-period's or the baseline's key sets).
        Metric("json_key_drift", "outputs with a new JSON key set", "ratio", "rate",
               all_of(HAS_OUTPUT, NotNull(col("key_set"))), "JSON-object outputs", "out",
               value=Not(Fn("in_ref", col("key_set"), ref="key_sets")), series=True, show="json",
               reference="key_sets"),
        Metric("labelled_bad_rate", "labelled bad", "ratio", "rate",
               all_of(LLM, Or((Is(col("label"), "good"), Is(col("label"), "bad")))),
               "labelled calls", "in", value=Is(col("label"), "bad"), show="counted"),
        Metric("tool_error_rate", "tool-span error rate", "ratio", "rate", TOOL, "tool spans", "in", value=FAILED,
               series=True, show="counted", entity="tool"),
        # Retrieval, read on the LLM calls a retrieval fed (the link made at load, ingest.retrieval_link):
        # "answers given from an empty retrieval" is the rate's event, and `retrieved<1` its filter.
        Metric("empty_retrieval_rate", "answers from an empty retrieval", "ratio", "rate", FED,
               "LLM calls fed by a retrieval", "in", value=Below(col("retrieved"), 1), series=True, show="counted"),
        Metric("docs_per_request", "documents per request", "docs", "mean", FED, "LLM calls fed by a retrieval",
               "in", value=col("retrieved"), worse="lower", series=True, show="counted"),
        Metric("top_score_mean", "top retrieval score", "score", "mean", FED,
               "LLM calls fed by a retrieval with scored documents", "in", value=col("top_score"), worse="lower",
               series=True, show="counted"),
        Metric("doc_age_mean", "age of newest document", "s", "mean", FED,
               "LLM calls fed by a retrieval with dated documents", "in", value=col("doc_age_s"), series=True,
               show="counted"),
        Metric("retrieval_ms_mean", "retrieval latency", "ms", "mean", FED, "LLM calls fed by a timed retrieval",
               "in", value=col("retrieval_ms"), series=True, show="counted"),
    ]
    for m in out:
        assert m.kind in KINDS and (m.kind == "count") == (m.value is None), m.name
    return out


METRICS: dict[str, Metric] = {m.name: m for m in _metrics()}
SERIES: dict[str, Metric] = {n: m for n, m in METRICS.items() if m.series}
# A column no span stores but a metric reads: computed per row from another (in SQL once per row).
DERIVED = {"key_set": Fn("key_set", col("output_text"))}
JSON_COHORT_MIN = 0.5  # JSON metrics are shown for cohorts where at least half the outputs are JSON


def metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(METRICS)}") from None


def is_rate(name: str) -> bool:
    return name in METRICS and METRICS[name].kind == "rate"


def label(name: str) -> str:
    return METRICS[name].label if name in METRICS else name


# -- SQL: one scan, every metric ------------------------------------------------------------------------------
def aggregate_columns(metrics: Iterable[Metric], v: str = "v_{name}", *,
                      dialect: Dialect | None = None) -> list[tuple[str, str, str]]:
    """(metric, stat, aggregate SQL) over a projection whose column `v_NAME` is each metric's row
    value: n, x and sq recombine across any split; a quantile is computed on its rows."""
    out = []
    d = dialect or DuckDB()
    for m in metrics:
        c = v.format(name=m.name)
        if m.kind == "quantile":
            out.append((m.name, "q", d.quantile(c, m.q or 0.5)))
            out.append((m.name, "n", f"count({c})"))
            continue
        out += [(m.name, "x", f"sum({c})"), (m.name, "n", f"count({c})")]
        if m.kind == "mean":
            out.append((m.name, "sq", f"sum({c}::DOUBLE * {c})"))
    return out


def projection_columns(metrics: Iterable[Metric], d: Dialect) -> list[str]:
    """`<row value> AS v_NAME` per metric."""
    return [f"{m.row_sql(d)} AS v_{m.name}" for m in metrics]


def needs_key_set(metrics: Iterable[Metric]) -> bool:
    return any("key_set" in m.columns() for m in metrics)


def needs_label(metrics: Iterable[Metric]) -> bool:
    return any("label" in m.columns() for m in metrics)


# The latest label of each request: the one rule of oncall.query.labels.
LATEST_LABEL_JOIN = "LEFT JOIN " + LATEST_LABELS + " lab ON lab.span_pk = {a}.span_pk"


def measure(con: Any, where: str, params: Sequence[Any], metrics: Iterable[Metric] | None = None, *,
            refs: Mapping[str, Any] | None = None) -> dict[str, Stat]:
    """Every metric's aggregates over the spans matching `where` (alias `s`), in one scan."""
    ms = [m for m in (metrics if metrics is not None else METRICS.values())
          if m.reference is None or (refs and m.reference in refs)]
    d = dialect_of(con)("s", refs, {"key_set": "s._ks", "label": "s._label"})
    cols = projection_columns(ms, d)
    extra = ""
    if needs_key_set(ms):
        extra += f", {d.function('key_set', 's.output_text', None)} AS _ks"
    join = ""
    if needs_label(ms):
        extra += ", lab.label AS _label"
        join = LATEST_LABEL_JOIN.format(a="s")
    # Only the columns the metrics read go through the label join (`s.*` carried all of them: ~10 %
    # more CPU at one part and at 10, bench/RESULTS.md).
    read = set().union(*(m.columns() for m in ms))
    inner = ", ".join(f"s.{c}" for c in SPAN_COLUMN_NAMES if c in read) or "s.span_pk"
    proj = f"SELECT 1 AS _one, {', '.join(cols)} FROM (SELECT {inner}{extra} FROM spans s {join} WHERE {where}) s"
    aggs = aggregate_columns(ms, dialect=d)
    # Grouped by a constant (one group): an ungrouped aggregate holding a floating-point sum is
    # order-dependent to DuckDB, so over the spans view of several load parts (a UNION ALL) it
    # scans the parts one after another on one core, to keep the sum's order fixed; a grouped one
    # scans them on every core (bench/RESULTS.md, many parts). No row matches: no group, no row.
    sql = f"SELECT {', '.join(a for _, _, a in aggs)} FROM ({proj}) GROUP BY _one"
    row = con.execute(sql, [*d.params, *params]).fetchone() or [None] * len(aggs)
    out: dict[str, Stat] = {m.name: Stat() for m in ms}
    for (name, stat, _), v in zip(aggs, row, strict=True):
        setattr(out[name], stat, v if stat == "q" else float(v or 0.0))
    for m in ms:
        if m.kind == "count":
            out[m.name].x = out[m.name].n
    return out


def key_set_counts(con: Any, where: str, params: Sequence[Any], limit: int | None = None) -> dict[str, int]:
    """How often each JSON key set occurs among the outputs matching `where` (the rows
    json_key_drift counts), most frequent first."""
    m = METRICS["json_key_drift"]
    d = dialect_of(con)("s", None, {"key_set": "s._ks"})
    rows_sql = m.rows.sql(d)
    lim = f" LIMIT {int(limit)}" if limit else ""
    rows = con.execute(
        f"SELECT _ks, count(*) FROM (SELECT s.*, {d.function('key_set', 's.output_text', None)} AS _ks "
        f"FROM spans s WHERE {where}) s "
        f"WHERE {rows_sql} GROUP BY 1 ORDER BY 2 DESC, 1{lim}", [*d.params, *params]).fetchall()
    return {str(k): int(n) for k, n in rows}


def key_drift(counts: Mapping[str, int], reference: Iterable[str]) -> Stat:
    """json_key_drift from key-set counts: the share whose key set is not in the reference (the same
    definition as the SQL, folded from counts already taken)."""
    ref = set(reference)
    n = sum(counts.values())
    return Stat(n=float(n), x=float(sum(v for k, v in counts.items() if k not in ref)))


# -- Python: the fold ---------------------------------------------------------------------------------------------
class Fold:
    """Every metric folded one row at a time (replay results, which are not in a SQL table): the same
    expressions as the SQL, evaluated in Python. Keeps sums and counts, the values of quantile
    metrics and the key-set counts, never the rows."""

    def __init__(self, metrics: Iterable[Metric] | None = None, *, columns: Iterable[str] | None = None,
                 kind: str = "llm") -> None:
        have = set(columns) | {"kind", "key_set"} if columns is not None else None
        self.metrics = [m for m in (metrics if metrics is not None else METRICS.values())
                        if m.entity == kind and (have is None or m.columns() <= have)]
        self.kind = kind
        self.stats: dict[str, Stat] = {m.name: Stat() for m in self.metrics if m.reference is None}
        self.values: dict[str, list[float]] = {m.name: [] for m in self.metrics if m.kind == "quantile"}
        self.key_sets: Counter[str] = Counter()
        self.finish: Counter[str] = Counter()  # finish reasons of successful calls (a distribution, not a metric)
        self._drift = next((m for m in self.metrics if m.reference == "key_sets"), None)

    def add(self, row: Mapping[str, Any]) -> None:
        r = dict(row)
        r.setdefault("kind", self.kind)
        if r.get("finish_reason") and OK.eval(r, {}):
            self.finish[str(r["finish_reason"])] += 1
        if self._drift is not None:
            r["key_set"] = quality.key_set(r.get("output_text"))
            if self._drift.rows.eval(r, {}):
                self.key_sets[r["key_set"]] += 1
        for m in self.metrics:
            if m.reference is not None:
                continue
            v = m.row_value(r)
            if v is None:
                continue
            s = self.stats[m.name]
            s.n += 1
            s.x += v
            s.sq += v * v
            if m.kind == "quantile":
                self.values[m.name].append(v)

    def result(self, refs: Mapping[str, Any] | None = None) -> dict[str, Stat]:
        out = dict(self.stats)
        for name, xs in self.values.items():
            out[name] = Stat(n=float(len(xs)), q=quantile(xs, METRICS[name].q or 0.5))
        if self._drift is not None and refs and refs.get("key_sets") is not None:
            out[self._drift.name] = key_drift(self.key_sets, refs["key_sets"])
        return out


def quantile(xs: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks: DuckDB's quantile_cont."""
    if not xs:
        return None
    s = sorted(xs)
    pos = (len(s) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


# -- side by side ----------------------------------------------------------------------------------------------
def shown(a: Mapping[str, Stat], b: Mapping[str, Stat]) -> list[Metric]:
    """The metrics a table of a against b shows, in the vocabulary's order: `events` ones when either
    side has one, `counted` ones when either side has rows, JSON ones for JSON-producing cohorts (a
    prose bot is not "0 % valid")."""
    def json_cohort(s: Mapping[str, Stat]) -> bool:
        v = s.get("json_valid_rate")
        return v is not None and (v.level or 0.0) >= JSON_COHORT_MIN

    out = []
    for m in METRICS.values():
        if m.name not in a and m.name not in b:
            continue
        sa, sb = a.get(m.name, Stat()), b.get(m.name, Stat())
        if m.show == "events" and not (sa.x or sb.x):
            continue
        if m.show == "counted" and not (sa.n or sb.n):
            continue
        if m.show == "json" and not (json_cohort(a) or json_cohort(b)):
            continue
        out.append(m)
    return out
