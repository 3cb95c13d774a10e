"""Prices per token for a (provider, model): `oncall.toml` overrides first, then genai-prices' snapshot.

genai-prices (pydantic/genai-prices) ships per-model prices offline, including the awkward parts:
dated price changes, off-peak windows and tiers by prompt size. oncall never re-implements its
arithmetic: for a model and a moment it asks genai-prices for the price of small probe usages
and reads the per-token rates back (its prices are linear within a tier, so the probes are exact),
which lets a whole import be priced by one SQL UPDATE instead of a Python call per span.

Overrides (negotiated rates, self-hosted models), USD per million tokens:

    # oncall.toml: the project's (nearest upwards, or $ONCALL_TOML) over the user's (oncall/config.py)
    [prices."gpt-4o"]
    input = 2.0
    cached_input = 1.0     # optional; defaults to input
    output = 8.0

A name matches the served model, then the requested model, case-insensitively; an override beats
genai-prices for either. The working directory's file wins over the user's for the same model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from oncall.config import Config, ConfigError, load_config

_KEYS = ("input", "cached_input", "output")


class PriceConfigError(ConfigError):
    """oncall.toml has a [prices] entry oncall cannot use; the message names the file and key."""


@dataclass(frozen=True)
class Tier:
    """Per-token USD rates for prompts of `lo < input_tokens <= hi` tokens (None: unbounded)."""

    lo: int | None
    hi: int | None
    per_request: float
    input: float
    cached_input: float
    output: float


@dataclass(frozen=True)
class Price:
    source: str  # "oncall.toml" or "genai-prices"
    model: str  # the name that matched (the override key, or genai-prices' model id)
    tiers: tuple[Tier, ...]
    varies_by: str | None = None  # None, "day" or "minute": the price depends on when the call was made
    origin: str | None = None  # the oncall.toml that set an override


# -- oncall.toml -----------------------------------------------------------------------------------

def overrides(cwd: Path | None = None) -> dict[str, Price]:
    """{lower-cased model name: Price} from `[prices]` of the oncall.toml files (oncall.config's one
    discovery order: the project's file wins over the user's for the same model)."""
    return _overrides(load_config(cwd=cwd))


@lru_cache(maxsize=8)
def _overrides(cfg: Config) -> dict[str, Price]:
    out: dict[str, Price] = {}
    for model, entry in cfg.section("prices").items():
        where = f"{cfg.origin('prices', model)}: [prices.\"{model}\"]"
        if not isinstance(entry, dict):
            raise PriceConfigError(f"{where} must be a table with input, cached_input and output (USD per million tokens)")
        unknown = sorted(set(entry) - set(_KEYS))
        if unknown:
            raise PriceConfigError(f"{where}: unknown key {unknown[0]!r}; expected {', '.join(_KEYS)}")
        rates: dict[str, float] = {}
        for k in _KEYS:
            if k not in entry:
                continue
            v = entry[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or v != v:
                raise PriceConfigError(f"{where} {k} = {v!r}: expected a number >= 0 (USD per million tokens)")
            rates[k] = float(v) / 1_000_000
        for k in ("input", "output"):
            if k not in rates:
                raise PriceConfigError(f"{where}: {k} is missing (USD per million tokens)")
        tier = Tier(None, None, 0.0, rates["input"], rates.get("cached_input", rates["input"]), rates["output"])
        out[model.lower()] = Price("oncall.toml", model, (tier,), origin=str(cfg.origin("prices", model)))
    return out


# -- genai-prices -----------------------------------------------------------------------------------

@lru_cache(maxsize=4096)
def genai_model(provider: str | None, model: str) -> tuple[Any, Any] | None:
    """genai-prices' (Provider, ModelInfo) for a model, trying the provider first; None if unknown."""
    from genai_prices.data_snapshot import get_snapshot

    snap = get_snapshot()
    for pid in ([provider, None] if provider else [None]):
        try:
            return snap.find_provider_model(model, None, pid, None)
        except LookupError:
            continue
    return None


def varies_by(model_info: Any) -> str | None:
    """Whether a model's price depends on the date ("day") or the time of day ("minute")."""
    from genai_prices.types import TimeOfDateConstraint

    prices = model_info.prices
    if not isinstance(prices, list):
        return None
    if any(isinstance(c.constraint, TimeOfDateConstraint) for c in prices):
        return "minute"
    return "day" if any(c.constraint is not None for c in prices) else None


@lru_cache(maxsize=4096)
def genai_price(provider: str | None, model: str, when: datetime | None = None) -> Price | None:
    """The model's per-token rates at `when` (None: now) as genai-prices computes them."""
    found = genai_model(provider, model)
    if found is None:
        return None
    prov, info = found
    ts = when or datetime.now(UTC)
    starts = sorted({t.start for v in vars(info.get_prices(ts)).values() if hasattr(v, "tiers") for t in v.tiers})
    bounds = [None, *starts]
    tiers = []
    for i, lo in enumerate(bounds):
        hi = bounds[i + 1] if i + 1 < len(bounds) else None
        tiers.append(_probe(prov, info, ts, lo, hi))
    return Price("genai-prices", info.id, tuple(tiers), varies_by(info))


def _probe(prov: Any, info: Any, ts: datetime, lo: int | None, hi: int | None) -> Tier:
    """Per-token rates within one tier, read from genai-prices' own calculation of probe usages."""
    from genai_prices.types import Usage

    n = (lo or 0) + 1  # a prompt size inside the tier (tiers apply when input_tokens > start)

    def total(**usage: int) -> Decimal:
        return info.calc_price(Usage(**usage), prov, genai_request_timestamp=ts).total_price

    base = total()
    uncached = total(input_tokens=n)
    cached = total(input_tokens=n, cache_read_tokens=n)
    with_output = total(input_tokens=n, output_tokens=1_000_000)
    return Tier(lo, hi, float(base), float((uncached - base) / n), float((cached - base) / n),
                float((with_output - uncached) / 1_000_000))


def lookup(provider: str | None, served: str | None, requested: str | None,
           table: dict[str, Price] | None = None) -> Price | None:
    """The price for a call: an override for the served, then the requested model; then genai-prices
    for the served, then the requested model. None when nobody knows the model."""
    table = overrides() if table is None else table
    names = [m for m in (served, requested) if m]
    for m in names:
        if m.lower() in table:
            return table[m.lower()]
    for m in names:
        if genai_model(provider, m) is not None:
            return genai_price(provider, m)
    return None


def split_provider(model: str) -> tuple[str | None, str]:
    """LiteLLM-style "openai/gpt-4o" -> ("openai", "gpt-4o"); a bare name has no provider."""
    if "/" in model:
        provider, _, name = model.partition("/")
        return provider or None, name
    return None, model


def list_price(model: str | None, provider: str | None = None) -> tuple[float, float, str] | None:
    """(input, output) USD per million tokens of a model's base tier today, and where the rates came
    from ("oncall.toml" or "genai-prices"): the price a replay target estimates with and a spend cap
    is checked against. The same lookup as import (`lookup`), so a replay's estimate and an imported
    call's estimated cost agree for the same model. None when nobody knows the model."""
    if not model:
        return None
    prefix, name = split_provider(model)
    price = lookup(provider or prefix, name, None)
    if price is None and name != model:
        price = lookup(provider, model, None)
    if price is None:
        return None
    base = price.tiers[0]  # per token, read back from genai-prices' arithmetic: round off float noise
    return float(f"{base.input * 1e6:.10g}"), float(f"{base.output * 1e6:.10g}"), price.source
