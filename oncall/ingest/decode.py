"""Decoders for the value encodings real exports use (trace-formats.md §8).

Every function here is total: it returns None for what it cannot decode instead of raising,
so a strange value costs one NULL column, never a lost record. Property tests live in
tests/test_decode.py.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from oncall.ingest import jsonio

_HEX_RE = re.compile(r"^[0-9a-fA-F]+$")
_LOWER_HEX_RE = re.compile(r"[0-9a-f]+\Z")
_B64_RE = re.compile(r"^[A-Za-z0-9+/_-]+={0,2}$")
_PREFIXED_RE = re.compile(r"^(trace|span|group|run|obs)_[0-9A-Za-z-]+$")


def normalize_id(value: Any, *, hex_len: int | None = None) -> str | None:
    """Normalise a trace/span id to lower-case hex where the encoding allows, else keep the string.

    Accepts hex in either case (optionally `0x`-prefixed), base64 of the raw bytes (24 chars for
    16-byte trace ids, 12 for 8-byte span ids), protobufjs `{"type":"Buffer","data":[…]}`, byte
    lists, UUIDs and arbitrary strings (kept as they are, stripped).
    """
    if value is None:
        return None
    if type(value) is str and len(value) in (16, 32) and _LOWER_HEX_RE.match(value):
        return value  # the OTLP/JSON form itself (what the receiver and most exporters write)
    if isinstance(value, dict):
        data = value.get("data")
        if isinstance(data, list) and all(isinstance(b, int) and 0 <= b < 256 for b in data):
            return bytes(data).hex() if data else None
        return None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex() or None
    if isinstance(value, list) and value and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        return bytes(value).hex()
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return format(value, "x") if value >= 0 else str(value)
    if not isinstance(value, str):
        return None
    s = value.strip()
    if not s:
        return None
    if _PREFIXED_RE.match(s):
        return s  # OpenAI Agents SDK `trace_…`/`span_…`: kept as the SDK and its dashboard show them
    if s[:2] in ("0x", "0X") and len(s) > 2 and _HEX_RE.match(s[2:]):
        return s[2:].lower()
    if _HEX_RE.match(s) and len(s) in (16, 32):
        return s.lower()
    # base64 of 16 or 8 raw bytes: 24 or 12 chars. Only decode these exact shapes, so that ordinary
    # string ids ("s01", "fixture-trace-1", UUIDs) are never mangled.
    if len(s) in (24, 12) and _B64_RE.match(s) and not _HEX_RE.match(s):
        try:
            raw = base64.b64decode(s + "=" * (-len(s) % 4), altchars=b"-_" if ("-" in s or "_" in s) else None,
                                   validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) in (16, 8) and (hex_len is None or len(raw) * 2 == hex_len):
            return raw.hex()
    if _HEX_RE.match(s):
        return s.lower()
    return s


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        return int(value)
    if isinstance(value, str):
        s = value.strip()
        if re.fullmatch(r"[+-]?\d+", s):
            return int(s)
        try:
            d = Decimal(s)
        except (InvalidOperation, ValueError):
            return None
        if not d.is_finite():
            return None
        return int(d)
    return None


# Plausible bounds (years ~1973..2200) decide the unit of a bare epoch number.
_S_MAX = 7_258_118_400  # 2200-01-01 in seconds


def epoch_us_from_number(n: float | Decimal, unit: str | None = None) -> int | None:
    """Convert an epoch number to microseconds, guessing ns/us/ms/s by magnitude unless `unit` says."""
    try:
        if unit == "ns":
            return int(n) // 1000
        if unit == "us":
            return int(n)
        if unit == "ms":
            return int(Decimal(str(n)) * 1000)
        if unit == "s":
            return int(Decimal(str(n)) * 1_000_000)
    except (InvalidOperation, ValueError, OverflowError):
        return None
    a = abs(n)
    if a == 0:
        return None
    if a < _S_MAX:
        return epoch_us_from_number(n, "s")
    if a < _S_MAX * 1000:
        return epoch_us_from_number(n, "ms")
    if a < _S_MAX * 1_000_000:
        return epoch_us_from_number(n, "us")
    if a < _S_MAX * 1_000_000_000:
        return epoch_us_from_number(n, "ns")
    return None


def to_epoch_us(value: Any, unit: str | None = None) -> int | None:
    """Decode any time encoding seen in exports into microseconds since the epoch (UTC).

    Handles: nanosecond ints or decimal strings (OTLP, beyond 2^53 so never via float), protobufjs
    Long `{low, high}` (signed low), JS HrTime `[seconds, nanos]`, epoch ms ints (LangSmith JS),
    epoch seconds floats (LiteLLM, OpenAI `created`), ISO-8601 with Z/offsets/any precision, and
    naive datetimes (read as UTC: the export gives no zone). `unit` forces the unit of a bare number.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        delta = value - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(value, dict):
        if "low" in value and "high" in value:
            lo, hi = _int_or_none(value.get("low")), _int_or_none(value.get("high"))
            if lo is None or hi is None:
                return None
            return epoch_us_from_number((hi << 32) + (lo & 0xFFFFFFFF), unit or "ns")
        return None
    if isinstance(value, (list, tuple)):
        if len(value) == 2:
            s, ns = _int_or_none(value[0]), _int_or_none(value[1])
            if s is None or ns is None:
                return None
            return s * 1_000_000 + ns // 1000
        return None
    if isinstance(value, int):
        return epoch_us_from_number(value, unit)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        return epoch_us_from_number(value, unit)
    if isinstance(value, Decimal):
        return epoch_us_from_number(value, unit) if value.is_finite() else None
    if isinstance(value, str):
        if value.isascii() and value.isdigit():  # OTLP/JSON's decimal nanoseconds: no regex needed
            return epoch_us_from_number(int(value), unit)
        s = value.strip()
        if not s:
            return None
        if re.fullmatch(r"[+-]?\d+", s):
            return epoch_us_from_number(int(s), unit)
        if re.fullmatch(r"[+-]?\d+\.\d*", s):
            try:
                return epoch_us_from_number(Decimal(s), unit)
            except InvalidOperation:
                return None
        return _parse_iso_us(s)
    return None


_ISO_RE = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<h>\d{2}):(?P<m>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<frac>\d+))?)?"
    r"\s*(?P<tz>Z|z|[+-]\d{2}:?\d{2}|[+-]\d{2})?$"
)


def _parse_iso_us(s: str) -> int | None:
    m = _ISO_RE.match(s)
    if not m:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
            try:
                return to_epoch_us(datetime.fromisoformat(s))
            except ValueError:
                return None
        return None
    frac = (m.group("frac") or "")[:6].ljust(6, "0")
    tz = m.group("tz")
    base = f"{m.group('date')}T{m.group('h')}:{m.group('m')}:{m.group('s') or '00'}"
    try:
        dt = datetime.fromisoformat(base)
    except ValueError:
        return None
    if tz and tz not in ("Z", "z"):
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        hh, mm = int(digits[:2]), int(digits[2:4] or 0)
        offset_s = sign * (hh * 3600 + mm * 60)
    else:
        offset_s = 0
    us = to_epoch_us(dt.replace(tzinfo=UTC))
    if us is None:
        return None
    return us + int(frac) - offset_s * 1_000_000


def coerce_int(value: Any) -> int | None:
    """Numbers as ints, strings ("412", "39.0"), Decimals; None for anything else."""
    if isinstance(value, dict) and "intValue" in value:
        value = value["intValue"]
    return _int_or_none(value)


def coerce_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) or isinstance(value, Decimal):
        f = float(value)
    elif isinstance(value, str):
        try:
            f = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    if f != f or f in (float("inf"), float("-inf")):
        return None
    return f


def json_deep_loads(value: Any, max_depth: int = 4) -> Any:
    """Decode JSON-in-a-string repeatedly while the result is a string that parses as JSON.

    Exports encode JSON twice (Langfuse trace input, traceloop.entity.output); a plain string that
    is not JSON is returned unchanged.
    """
    for _ in range(max_depth):
        if not isinstance(value, str):
            return value
        s = value.strip()
        # Only an object, array or string decodes: a bare number/bool/null in a string stays a
        # string, and neither starts with one of these.
        if not s or s[0] not in '{["':
            return value
        try:
            value = jsonio.loads(s)
        except (ValueError, RecursionError):
            return value
    return value


def first(*values: Any) -> Any:
    """The first value that is not None and not an empty string."""
    for v in values:
        if v is not None and v != "":
            return v
    return None
