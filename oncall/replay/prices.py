"""Default prices (USD per million tokens) for targets that do not set `price_in`/`price_out`.

The importers take cost as the export states it and keep no price table of their own, so this is
the one place oncall knows list prices; the demo's generator prices its traffic from the same
numbers. A dated snapshot matches its alias (`gpt-4o-2024-08-06` -> `gpt-4o`) by the longest
prefix. Unknown models have no price: the estimate says so and `--max-cost` refuses to guess.
"""

from __future__ import annotations

# (input, output) per million tokens, list prices.
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5": (1.25, 10.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-opus-4": (15.00, 75.00),
}


def default_price(model: str | None) -> tuple[float, float] | None:
    """(price_in, price_out) per million tokens for a model name, by the longest matching prefix."""
    if not model:
        return None
    name = model.lower().rsplit("/", 1)[-1]  # "openai/gpt-4o" (LiteLLM) -> "gpt-4o"
    best = max((k for k in PRICES_PER_MTOK if name.startswith(k)), key=len, default=None)
    return PRICES_PER_MTOK[best] if best else None
