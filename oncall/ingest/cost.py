"""Cost where the export has none: estimated at load, per distinct model, in one UPDATE per import.

OTel GenAI spans carry tokens but never cost, so without an estimate "a tenant's cost tripled" is
invisible on the most common export. After a file's spans are written (FileWriter.finish), every
LLM or embedding call of the import gets `cost_source`:

- `exported`: the record had a cost; it is kept as it is;
- `estimated`: no cost, but tokens and a price for the served (else requested) model, from
  oncall.toml or genai-prices (oncall.ingest.prices): uncached input, cached input and output
  tokens priced separately (input tokens include the cached ones, as the GenAI conventions and
  OpenAI count them; reasoning tokens are output tokens);
- `unknown`: no cost and no estimate (no token counts, or a model nobody has a price for — those
  are named by `unpriced_models`, never guessed).

A load stays fast: prices are looked up once per (provider, model) — and per day or minute only
for the few models whose price changes over time — and applied by SQL over the import's rows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from oncall.ingest import prices

PRICED_KINDS = ("llm", "embedding")
_RATE_SCHEMA = pa.schema([("provider", pa.string()), ("served_model", pa.string()), ("model", pa.string()),
                          ("bucket", pa.timestamp("us", tz="UTC")), ("granularity", pa.string()),
                          ("lo", pa.int64()), ("hi", pa.int64()), ("per_request", pa.float64()),
                          ("r_input", pa.float64()), ("r_cached", pa.float64()), ("r_output", pa.float64())])


def estimate_costs(con: Any, import_id: int) -> None:
    """Set cost_source on the import's rows and an estimated cost where the export had none.

    Rows that already have a cost_source (children an earlier load priced, rewritten into this
    load's part when their root arrived) keep it: an estimate never turns into an "exported" cost.
    """
    iid = int(import_id)
    table = prices.overrides()
    groups = con.execute(
        f"""SELECT provider, served_model, model FROM spans
            WHERE import_id = {iid} AND cost_source IS NULL AND cost IS NULL AND kind IN {PRICED_KINDS}
              AND (input_tokens IS NOT NULL OR output_tokens IS NOT NULL)
            GROUP BY ALL""").fetchall()
    rates: list[dict[str, Any]] = []
    for provider, served, requested in groups:
        price = prices.lookup(provider, served, requested, table)
        if price is None:
            continue
        if price.varies_by is None:
            rates += _rate_rows(provider, served, requested, None, None, price)
            continue
        unit = price.varies_by
        buckets = con.execute(
            f"""SELECT DISTINCT date_trunc('{unit}', start_time) FROM spans
                WHERE import_id = {iid} AND cost_source IS NULL AND cost IS NULL AND provider IS NOT DISTINCT FROM ?
                  AND served_model IS NOT DISTINCT FROM ? AND model IS NOT DISTINCT FROM ?""",
            [provider, served, requested]).fetchall()
        for (bucket,) in buckets:
            at = bucket.astimezone(UTC) if bucket is not None else None
            timed = prices.genai_price(provider, price.model, at or datetime.now(UTC))
            rates += _rate_rows(provider, served, requested, at, unit, timed or price)
    # The rates are an Arrow relation readable as `_oncall_rates` in this one statement (no catalog entry).
    rel = con.from_arrow(pa.Table.from_pylist(rates, schema=_RATE_SCHEMA))
    rel.query("_oncall_rates", f"""
        CREATE OR REPLACE TEMP TABLE _oncall_cost AS
        SELECT s.span_pk,
               CASE WHEN s.cost IS NOT NULL THEN s.cost
                    WHEN r.r_input IS NOT NULL THEN
                        r.per_request
                        + r.r_input * (coalesce(s.input_tokens, 0) - least(coalesce(s.cached_tokens, 0), coalesce(s.input_tokens, 0)))
                        + r.r_cached * least(coalesce(s.cached_tokens, 0), coalesce(s.input_tokens, 0))
                        + r.r_output * coalesce(s.output_tokens, 0)
               END AS cost,
               CASE WHEN s.cost IS NOT NULL THEN 'exported'
                    WHEN r.r_input IS NOT NULL THEN 'estimated'
                    ELSE 'unknown' END AS cost_source
        FROM spans s
        LEFT JOIN _oncall_rates r
          ON s.cost IS NULL
         AND r.provider IS NOT DISTINCT FROM s.provider AND r.served_model IS NOT DISTINCT FROM s.served_model
         AND r.model IS NOT DISTINCT FROM s.model
         AND (s.input_tokens IS NOT NULL OR s.output_tokens IS NOT NULL)
         AND (r.granularity IS NULL OR r.bucket IS NOT DISTINCT FROM date_trunc(r.granularity, s.start_time))
         AND (r.lo IS NULL OR coalesce(s.input_tokens, 0) > r.lo)
         AND (r.hi IS NULL OR coalesce(s.input_tokens, 0) <= r.hi)
        WHERE s.import_id = {iid} AND s.cost_source IS NULL AND (s.cost IS NOT NULL OR s.kind IN {PRICED_KINDS})""")
    con.execute("""UPDATE spans SET cost = c.cost, cost_source = c.cost_source
                   FROM _oncall_cost c WHERE spans.span_pk = c.span_pk""")
    con.execute("DROP TABLE _oncall_cost")


def _rate_rows(provider: str | None, served: str | None, requested: str | None, bucket: datetime | None,
               unit: str | None, price: prices.Price) -> list[dict[str, Any]]:
    return [{"provider": provider, "served_model": served, "model": requested, "bucket": bucket,
             "granularity": unit, "lo": t.lo, "hi": t.hi, "per_request": t.per_request, "r_input": t.input,
             "r_cached": t.cached_input, "r_output": t.output} for t in price.tiers]


def unpriced_models(con: Any, import_ids: list[int] | None = None) -> list[dict[str, Any]]:
    """Models whose calls have tokens but no cost and no price: one entry per (provider, model)."""
    where = "" if import_ids is None else (
        f"AND import_id IN ({', '.join(str(int(i)) for i in import_ids)})" if import_ids else "AND false")
    rows = con.execute(
        f"""SELECT provider, coalesce(served_model, model) AS m, count(*) FROM spans
            WHERE cost_source = 'unknown' AND (input_tokens IS NOT NULL OR output_tokens IS NOT NULL) {where}
            GROUP BY 1, 2 ORDER BY 3 DESC, 2""").fetchall()
    return [{"provider": p, "model": m, "calls": int(n),
             "note": f"no price for model {m!r}{f' ({p})' if p else ''}: {int(n)} call(s) left without cost; "
                     f"add [prices.\"{m}\"] to oncall.toml to price it"} for p, m, n in rows]


def cost_summary(con: Any, import_ids: list[int] | None = None) -> dict[str, Any]:
    """How many LLM calls of the given imports have an exported, estimated or unknown cost (the three
    add up to the summary's LLM calls), how many other spans carry a cost of their own (an agent or
    trace span an exporter priced), and which models had no price (for the load summary)."""
    where = "" if import_ids is None else (
        f"AND import_id IN ({', '.join(str(int(i)) for i in import_ids)})" if import_ids else "AND false")
    counts = dict(con.execute(
        f"SELECT cost_source, count(*) FROM spans WHERE kind = 'llm' AND cost_source IS NOT NULL {where} "
        f"GROUP BY 1").fetchall())
    other = con.execute(f"SELECT count(*) FROM spans WHERE kind <> 'llm' AND cost IS NOT NULL {where}").fetchone()[0]
    return {"exported": int(counts.get("exported", 0)), "estimated": int(counts.get("estimated", 0)),
            "unknown": int(counts.get("unknown", 0)), "other_spans_with_cost": int(other),
            "unpriced_models": unpriced_models(con, import_ids)}
