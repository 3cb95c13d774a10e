"""Garbage-collector pacing for processes that map spans in bulk (`oncall receive`, `oncall load`).

Mapping a span allocates a few hundred short-lived dicts and lists, none of them in a reference
cycle: reference counting frees them. CPython's default pacing still runs a generation-0 collection
every 700 allocations and promotes survivors into older generations that are walked again and
again, which cost 15-20 % of the receiver's mapping CPU (bench/RESULTS.md, "Receive"). Collections
every 50,000 allocations keep the cycle collector for what it is for at a fraction of the cost;
memory held by cyclic garbage waits a little longer, bounded by the same thresholds.
"""

from __future__ import annotations

import gc

GEN0_ALLOCATIONS = 50_000
GEN1_EVERY = 20
GEN2_EVERY = 100


def pace_for_bulk_mapping() -> None:
    """Collect less often in this process (a command that maps spans in bulk calls this once)."""
    gc.set_threshold(GEN0_ALLOCATIONS, GEN1_EVERY, GEN2_EVERY)
