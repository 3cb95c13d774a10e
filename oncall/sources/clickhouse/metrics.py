"""The metric registry (oncall/query/registry.py) spelled for ClickHouse: the second `Dialect`.

The registry's metric records are written once over canonical span columns; `ClickHouse` renders
the same nodes with ClickHouse's functions and `measure` runs every metric's aggregates (n, sum,
sum of squares, quantiles) in one scan of a ClickHouse relation holding canonical columns, so a
number computed there is the number DuckDB computes on the same rows (tests/test_clickhouse_source.py
feeds the demo's spans through both engines and compares every metric).

What this does not yet have is the relation itself for a raw `otel_traces` table: canonical columns
such as `output_text` (the message normalisers) and estimated `cost` are derived in Python at load
today (see docs/sources.md, "Questions asked of a source").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from oncall.query import quality
from oncall.query.registry import METRICS, Dialect, Metric, Stat, needs_key_set, projection_columns
from oncall.sources.clickhouse.sql import Params, literal

# DuckDB's regexp_replace(…, 'g') and ClickHouse's replaceRegexpAll both run RE2 on the same pattern.
_FENCE = quality._FENCE
_JSON_START = quality._JSON_START
_OBJECT_START = quality._OBJECT_START


class ClickHouse(Dialect):
    """Registry nodes in ClickHouse SQL. Reference lists are bound as `{pN:Array(String)}`."""

    name = "clickhouse"

    def __init__(self, alias: str = "s", refs: Mapping[str, Any] | None = None,
                 columns: Mapping[str, str] | None = None, params: Params | None = None) -> None:
        super().__init__(alias, refs, columns)
        self.bound = params or Params()

    def equals(self, x: str, value: str) -> str:
        return f"ifNull({x} = {literal(value)}, 0)"

    def function(self, name: str, x: str, ref: str | None) -> str:
        if name == "length":
            return f"lengthUTF8({x})"
        if name == "refusal":
            return (f"ifNull(match(lowerUTF8(substringUTF8({x}, 1, {quality.REFUSAL_WINDOW})), "
                    f"{literal(quality.REFUSAL_PATTERN)}), 0)")
        if name == "json_valid":
            return (f"ifNull(if(match({x}, {literal(_JSON_START)}), "
                    f"isValidJSON({_json_text(x)}), 0), 0)")
        if name == "key_set":
            j = _json_text(x)
            return (f"if(ifNull(match({x}, {literal(_OBJECT_START)}), 0) AND isValidJSON({j}) "
                    f"AND JSONType({j}) = 'Object', arrayStringConcat(arraySort(JSONExtractKeys({j})), ','), NULL)")
        if name == "has_tool_calls":
            return f"(ifNull(JSONLength({x}), 0) > 0)"
        if name == "in_ref":
            ph = self.bound.p(list(self.refs.get(ref or "") or []), "Array(String)")
            return f"ifNull(has({ph}, {x}), 0)"
        raise ValueError(f"no ClickHouse form for {name}")

    def as_int(self, pred: str) -> str:
        return f"if({pred}, 1, 0)"

    def quantile(self, x: str, q: float) -> str:
        # The same linear interpolation between closest ranks as DuckDB's quantile_cont.
        return f"quantileExactInclusive({float(q)})({x})"

    def variance(self, x: str) -> str:
        return f"varSamp({x})"


def _json_text(x: str) -> str:
    return f"replaceRegexpAll(trimBoth(ifNull({x}, '')), {literal(_FENCE)}, '')"


def aggregate_columns(metrics: Iterable[Metric], d: ClickHouse) -> list[tuple[str, str, str]]:
    """registry.aggregate_columns in ClickHouse: n, x, sq (recombine) and quantiles per metric."""
    out = []
    for m in metrics:
        c = f"v_{m.name}"
        if m.kind == "quantile":
            out.append((m.name, "q", d.quantile(c, m.q or 0.5)))
            out.append((m.name, "n", f"count({c})"))
            continue
        out += [(m.name, "x", f"sum({c})"), (m.name, "n", f"count({c})")]
        if m.kind == "mean":
            out.append((m.name, "sq", f"sum(toFloat64({c}) * {c})"))
    return out


def measure(client: Any, relation: str, where: str, params: Params, metrics: Iterable[Metric] | None = None, *,
            refs: Mapping[str, Any] | None = None, settings: Mapping[str, Any] | None = None) -> dict[str, Stat]:
    """registry.measure on ClickHouse: every metric's aggregates over the rows of `relation` (canonical
    columns, alias `s`) matching `where`, in one scan; only the aggregates come back."""
    ms = [m for m in (metrics if metrics is not None else METRICS.values())
          if m.reference is None or (refs and m.reference in refs)]
    d = ClickHouse("s", refs, {"key_set": "s._ks", "label": "s.label"}, params)
    cols = projection_columns(ms, d)
    extra = f", {d.function('key_set', 's.output_text', None)} AS _ks" if needs_key_set(ms) else ""
    proj = f"SELECT {', '.join(cols)} FROM (SELECT s.*{extra} FROM {relation} AS s WHERE {where}) AS s"
    aggs = aggregate_columns(ms, d)
    sql = f"SELECT {', '.join(a for _, _, a in aggs)} FROM ({proj})"
    row = client.query(sql, parameters=params.values, settings=dict(settings or {})).result_rows[0]
    out: dict[str, Stat] = {m.name: Stat() for m in ms}
    for (name, stat, _), v in zip(aggs, row, strict=True):
        if stat == "q":
            setattr(out[name], stat, None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v))
        else:
            setattr(out[name], stat, float(v or 0.0))
    for m in ms:
        if m.kind == "count":
            out[m.name].x = out[m.name].n
    return out
