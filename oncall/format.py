"""Numbers as a responder reads them (headless: the CLI and the console both use these)."""

from __future__ import annotations

import math

COST_DIGITS = 3  # significant digits of a cost under $1: $0.000373, not 0.0


def format_cost(value: float | None, *, unit: str = "$") -> str:
    """A cost in dollars with its significant digits: $0.000373, $0.0123, $0.5, $1,234.50; "" for None.

    A fixed number of decimals turned a real $0.000373 into `0.0` (and per-request costs of cheap
    models are that small), so under $1 the decimals follow the first significant digit.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    v = float(value)
    sign = "-" if v < 0 else ""
    v = abs(v)
    if v == 0:
        return f"{unit}0"
    if v >= 1:
        return f"{sign}{unit}{v:,.2f}"
    decimals = COST_DIGITS - 1 - math.floor(math.log10(v))
    text = f"{v:.{decimals}f}"
    if float(text) >= 1:  # 0.9996 rounds up to 1.00
        return f"{sign}{unit}{float(text):,.2f}"
    return f"{sign}{unit}{text.rstrip('0')}"
