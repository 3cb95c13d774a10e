"""How estimated costs are shown: one mark, `~`, wherever a cost or a cost metric is displayed.

`cost_source` (oncall.ingest.cost) says whether a span's cost was exported or estimated from tokens
and a price. Every display — CLI search/show/compare/changes, the console's results, reader, trace
and overview — prefixes an estimated cost with `~` (`~0.00047`, `~$0.000470`), and cost metrics
over a cohort carry the share of their costs that are estimates, so a number that came from a
price table is never read as a bill.
"""

from __future__ import annotations

from typing import Any

from oncall.display import percent

MARK = "~"
COST_METRICS = ("cost_per_request", "cost_total")


def marked(text: str, source: str | None) -> str:
    """A formatted cost with the estimate mark when its source is `estimated` ('' stays '')."""
    return f"{MARK}{text}" if text and source == "estimated" else text


def format_cost(cost: float | None, source: str | None) -> str:
    """`$0.00047` (oncall.display's dollars), `~$0.00047` when estimated; '' for no cost."""
    from oncall.display import format_cost as dollars

    return marked(dollars(cost), source)


def cost_detail(cost: float | None, source: str | None) -> str | None:
    """A detail view's cost: `$0.00047`, or `~$0.00047 (estimated from tokens x price)`; None for no cost."""
    if cost is None:
        return None
    text = format_cost(cost, source)
    return f"{text} (estimated from tokens x price)" if source == "estimated" else text


def estimated_share(con: Any, where: str, params: list[Any]) -> dict[str, Any]:
    """Of the costs of the spans matching `where` (alias `s`): how many, how many estimated, the share."""
    n, est = con.execute(
        f"SELECT count(s.cost), count(s.cost) FILTER (WHERE s.cost_source = 'estimated') FROM spans s WHERE {where}",
        params).fetchone()
    n, est = int(n or 0), int(est or 0)
    return {"costs": n, "estimated": est, "share": (est / n) if n else None}


def mark_compare(result: dict[str, Any], cohort_share: float | None, baseline_share: float | None) -> None:
    """Give compare's cost rows `estimated` = {cohort, baseline} shares of estimated costs (estimated_share's
    `share` of each side), or None when neither side has any."""
    shares = {"cohort": cohort_share, "baseline": baseline_share}
    any_estimated = any(shares.values())  # None when no cost on either side is an estimate
    for row in result["metrics"]:
        if row["metric"] in COST_METRICS:
            row["estimated"] = dict(shares) if any_estimated else None


def mark_change(con: Any, change: Any) -> None:
    """A cost shift's description says when its costs are estimates, and by what share."""
    from oncall.query.filters import compile_on

    if getattr(change, "metric", None) not in COST_METRICS and "cost/request" not in (change.description or ""):
        return
    c = compile_on(con, change.filter)
    share = estimated_share(con, c.where, c.params)["share"]
    change.cost_estimated = share
    if share:
        change.description += f" ({MARK} costs estimated from tokens x price: {percent(share)})"


def estimate_note(share: float | None, who: str) -> str | None:
    if not share:
        return None
    return f"{MARK} {who}: {percent(share)} of costs are estimated from tokens x price (cost_source=estimated)"
