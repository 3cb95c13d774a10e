"""Sampling a cohort to read: uniform over the filtered rows, or stratified by a key; repeatable with a seed.

Uniform: every matching row gets a pseudo-random rank `hash(span_pk + seed * P)` and the N smallest win.
That is a uniform sample without replacement, deterministic for a seed and database, and needs only
a top-N over two narrow columns — no `ORDER BY random()` over text, and never `WHERE … USING
SAMPLE`, which samples before filtering (design §10). Full text is fetched only for the N chosen rows.
Stratified (`by=tenant`): the same ranking inside each group, N split evenly across the groups
(remainder to the largest), so a small tenant is not drowned by a big one.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from oncall.errors import InputError
from oncall.query.filters import COLUMNS, Filter, compile_filter
from oncall.query.search import ROW_COLUMNS, rows_by_pk

MAX_SAMPLE = 10_000
FULL_COLUMNS = ROW_COLUMNS + ["input_messages", "output_messages", "tool_calls", "input_text", "output_text",
                              "error", "prompt_name", "release", "env"]


def _by_column(by: str) -> str:
    col = COLUMNS.get(by, by if by in ROW_COLUMNS else None)
    if col is None or by in ("request", "text", "label", "since", "until", "error"):
        allowed = sorted(k for k, v in COLUMNS.items() if v is not None)
        raise InputError(f"--by {by}: cannot stratify by {by!r}; use one of {', '.join(allowed)}")
    return col


def sample(con: Any, flt: Filter | str | Sequence[str] | None, n: int, *, by: str | None = None,
           seed: int | None = None) -> list[dict[str, Any]]:
    """N requests of the cohort in full (uniform, or stratified by a key), in a stable order."""
    if n < 1 or n > MAX_SAMPLE:
        raise InputError(f"-n must be between 1 and {MAX_SAMPLE}, not {n}")
    if seed is None:
        seed = random.SystemRandom().randrange(1 << 31)
    c = compile_filter(con, flt, alias="s")
    # hash(a, b) mixes poorly (a chi-square test caught it); hashing one combined integer is uniform.
    rank = "hash(s.span_pk + CAST(? AS BIGINT) * 1000003)"
    if by is None:
        chosen = _pick_uniform(con, c.where, c.params, rank, seed, n)
    else:
        # One scan: each group's size and its n best-ranked rows (min_by keeps the top n per group), then
        # the quotas are split in Python over a handful of groups.
        col = _by_column(by)
        groups = con.execute(
            f"SELECT s.{col}, count(*), min_by(s.span_pk, {rank}, {int(n)}) FROM spans s WHERE {c.where} "
            f"GROUP BY 1 ORDER BY 2 DESC", [seed, *c.params]).fetchall()
        quota = _quotas([int(g[1]) for g in groups], n)
        chosen = [pk for g, q in zip(groups, quota, strict=True) for pk in (g[2] or [])[:q]]
    # The chosen rows in full, fetched by key (search.rows_by_pk says why not a join).
    cols = ", ".join(f"s.{x}" for x in FULL_COLUMNS)
    return rows_by_pk(con, f"{cols}, {rank} AS sample_rank", chosen, "ORDER BY sample_rank, s.span_pk",
                      select_params=[seed])


def _pick_uniform(con: Any, where: str, params: list[Any], rank: str, seed: int, n: int) -> list[int]:
    """The n best-ranked keys of the cohort: a top-N over two narrow columns."""
    return [int(r[0]) for r in con.execute(
        f"SELECT s.span_pk, {rank} AS r FROM spans s WHERE {where} ORDER BY r, s.span_pk LIMIT ?",
        [seed, *params, n]).fetchall()]


def _quotas(sizes: list[int], n: int) -> list[int]:
    """Split n across groups as evenly as their sizes allow (largest groups absorb what small ones lack)."""
    quota = [0] * len(sizes)
    left = n
    open_groups = [i for i, s in enumerate(sizes) if s > 0]
    while left > 0 and open_groups:
        share = max(1, left // len(open_groups))
        for i in list(open_groups):
            take = min(share, sizes[i] - quota[i], left)
            quota[i] += take
            left -= take
            if quota[i] >= sizes[i]:
                open_groups.remove(i)
            if left == 0:
                break
    return quota
