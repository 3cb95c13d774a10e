"""Prices per token for a (provider, model): `oncall.toml` overrides first, then genai-prices' snapshot.

genai-prices (pydantic/genai-prices) ships per-model prices offline, including the awkward parts:
dated price changes, off-peak windows and tiers by prompt size. oncall never re-implements its
arithmetic: for a model and a moment it asks genai-prices for the price of small probe usages
and reads the per-token rates back (its prices are linear within a tier, so the probes are exact),
which lets a whole import be priced by one SQL UPDATE instead of a Python call per span.

Overrides (negotiated rates, self-hosted models), USD per million tokens:

    # ./oncall.toml, then $ONCALL_CONFIG_DIR/oncall.toml or ~/.config/oncall/oncall.toml
    [prices."gpt-4o"]
    input = 2.0
    cached_input = 1.0     # optional; defaults to input
    output = 8.0

A name matches the served model, then the requested model, case-insensitively; an override beats
genai-prices for either. The working directory's file wins over the user's for the same model.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

CONFIG_NAME = "oncall.toml"
_KEYS = ("input", "cached_input", "output")


class PriceConfigError(ValueError):
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


# -- oncall.toml -----------------------------------------------------------------------------------

def config_paths(cwd: Path | None = None) -> list[Path]:
    """Where oncall.toml is read from, lowest precedence first."""
    base = os.environ.get("ONCALL_CONFIG_DIR")
    user = Path(base) / CONFIG_NAME if base else Path.home() / ".config" / "oncall" / CONFIG_NAME
    return [user, (cwd or Path.cwd()) / CONFIG_NAME]


def overrides(cwd: Path | None = None) -> dict[str, Price]:
    """{lower-cased model name: Price} from every oncall.toml that exists (working directory wins)."""
    stamp = []
    for p in config_paths(cwd):
        try:
            stamp.append((str(p.resolve()), p.stat().st_mtime_ns))
        except OSError:
            continue
    return _overrides(tuple(stamp))


@lru_cache(maxsize=8)
def _overrides(stamp: tuple[tuple[str, int], ...]) -> dict[str, Price]:
    out: dict[str, Price] = {}
    for path, _ in stamp:
        out.update(_read_config(Path(path)))
    return out


def _read_config(path: Path) -> dict[str, Price]:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise PriceConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise PriceConfigError(f"{path}: cannot read: {exc}") from None
    table = doc.get("prices", {})
    if not isinstance(table, dict):
        raise PriceConfigError(f"{path}: [prices] must be a table of models, e.g. [prices.\"gpt-4o\"]")
    out: dict[str, Price] = {}
    for model, entry in table.items():
        where = f"{path}: [prices.\"{model}\"]"
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
        out[model.lower()] = Price("oncall.toml", model, (tier,))
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
