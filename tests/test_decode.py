"""Property tests for the value decoders every importer relies on (oncall/ingest/decode.py)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from oncall.ingest.decode import coerce_int, json_deep_loads, normalize_id, to_epoch_us

trace_bytes = st.binary(min_size=16, max_size=16)
span_bytes = st.binary(min_size=8, max_size=8)
any_id_bytes = st.one_of(trace_bytes, span_bytes)

# Plausible export times: 1973-03-03 .. 2106-02-07 (the ranges the unit guess is defined for).
EPOCH_US = st.integers(min_value=100_000_000 * 1_000_000, max_value=(2**32 - 1) * 1_000_000)


# -- ids ------------------------------------------------------------------------------------------
@given(any_id_bytes, st.sampled_from(["lower", "upper", "0x"]))
def test_hex_ids_normalise_to_lower_hex(raw: bytes, style: str) -> None:
    h = raw.hex()
    s = {"lower": h, "upper": h.upper(), "0x": "0x" + h}[style]
    assert normalize_id(s) == h


@given(trace_bytes, st.booleans())
def test_base64_trace_ids_decode_to_hex(raw: bytes, urlsafe: bool) -> None:
    enc = (base64.urlsafe_b64encode(raw) if urlsafe else base64.b64encode(raw)).decode()
    assert normalize_id(enc, hex_len=32) == raw.hex()


@given(span_bytes)
def test_base64_span_ids_decode_to_hex(raw: bytes) -> None:
    assert normalize_id(base64.b64encode(raw).decode(), hex_len=16) == raw.hex()


@given(any_id_bytes)
def test_protobufjs_buffer_and_byte_lists(raw: bytes) -> None:
    assert normalize_id({"type": "Buffer", "data": list(raw)}) == raw.hex()
    assert normalize_id(list(raw)) == raw.hex()
    assert normalize_id(raw) == raw.hex()


@given(st.uuids())
def test_uuids_and_plain_strings_are_kept(u) -> None:
    assert normalize_id(str(u)) == str(u)
    assert normalize_id(" fixture-trace-1 ") == "fixture-trace-1"
    assert normalize_id("s01") == "s01"


def test_ids_that_are_not_ids() -> None:
    assert normalize_id(None) is None
    assert normalize_id("") is None
    assert normalize_id("   ") is None
    assert normalize_id(True) is None
    assert normalize_id({"data": [300]}) is None


# -- times ----------------------------------------------------------------------------------------
@given(st.integers(min_value=10**17, max_value=7 * 10**18))
def test_ns_decimal_strings_beyond_2_53_keep_precision(ns: int) -> None:
    assert to_epoch_us(str(ns)) == ns // 1000
    assert to_epoch_us(ns) == ns // 1000
    assert to_epoch_us(str(ns), "ns") == ns // 1000


def test_ns_example_from_the_langsmith_docs() -> None:
    # > 2^53: a float parser would lose the last digits.
    assert to_epoch_us(1747675155185223936) == 1747675155185223
    assert to_epoch_us("1544712660000000000") == 1544712660000000


@given(st.integers(min_value=10**17, max_value=2**63 - 1), st.booleans())
def test_protobufjs_long_with_signed_low(ns: int, unsigned: bool) -> None:
    low = ns & 0xFFFFFFFF
    if low >= 2**31:
        low -= 2**32  # protobufjs stores `low` as a signed 32-bit int
    value = {"low": low, "high": ns >> 32, "unsigned": unsigned}
    assert to_epoch_us(value) == ns // 1000  # a Long is always nanoseconds


@given(st.integers(min_value=100_000_000, max_value=2**32), st.integers(min_value=0, max_value=999_999_999))
def test_hrtime_pairs(seconds: int, nanos: int) -> None:
    assert to_epoch_us([seconds, nanos]) == seconds * 1_000_000 + nanos // 1000
    assert to_epoch_us((seconds, nanos)) == seconds * 1_000_000 + nanos // 1000


@given(EPOCH_US, st.integers(min_value=-14 * 60, max_value=14 * 60), st.sampled_from(["T", " "]))
def test_iso_with_offsets(us: int, offset_min: int, sep: str) -> None:
    tz = timezone(timedelta(minutes=offset_min))
    dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
    text = dt.astimezone(tz).isoformat(sep=sep)
    assert to_epoch_us(text) == us


@given(EPOCH_US)
def test_iso_z_and_naive(us: int) -> None:
    dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
    assert to_epoch_us(dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")) == us
    assert to_epoch_us(dt.strftime("%Y-%m-%d %H:%M:%S.%f")) == us  # naive: read as UTC
    ms = us - us % 1000
    assert to_epoch_us(dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{(us // 1000) % 1000:03d}Z") == ms
    # nanosecond precision fractions are truncated to microseconds
    assert to_epoch_us(dt.strftime("%Y-%m-%dT%H:%M:%S.%f") + "999+00:00") == us


def test_iso_offset_spellings() -> None:
    base = to_epoch_us("2026-07-09T00:00:00+00:00")
    assert base == 1783555200000000
    assert to_epoch_us("2026-07-09T00:00:00Z") == base
    assert to_epoch_us("2026-07-08T18:00:00-06:00") == base
    assert to_epoch_us("2026-07-08T18:00:00-0600") == base
    assert to_epoch_us("2026-07-09T05:00:00+05") == base
    assert to_epoch_us("not a time") is None


@given(st.integers(min_value=10**11, max_value=7_200_000_000_000))
def test_epoch_milliseconds(ms: int) -> None:
    assert to_epoch_us(ms) == ms * 1000
    assert to_epoch_us(str(ms)) == ms * 1000


@given(EPOCH_US)
def test_epoch_seconds_floats_round_to_the_microsecond(us: int) -> None:
    # LiteLLM / OpenAI `created`: a float of seconds. The nearest float to us/1e6 must come back as us.
    assert to_epoch_us(us / 1e6) == us
    assert to_epoch_us(us // 1_000_000) == (us // 1_000_000) * 1_000_000


@given(EPOCH_US)
def test_explicit_units(us: int) -> None:
    assert to_epoch_us(us, "us") == us
    assert to_epoch_us(us * 1000, "ns") == us
    assert to_epoch_us(us // 1000, "ms") == (us // 1000) * 1000


def test_times_that_are_not_times() -> None:
    for v in (None, True, "", "  ", [1, 2, 3], {"low": "x", "high": 1}, float("nan"), float("inf"), 0):
        assert to_epoch_us(v) is None


# -- numbers and JSON-in-strings ------------------------------------------------------------------
@given(st.integers(min_value=-(2**63), max_value=2**63))
def test_coerce_int_from_strings_and_anyvalue(n: int) -> None:
    assert coerce_int(str(n)) == n
    assert coerce_int({"intValue": str(n)}) == n
    assert coerce_int(n) == n


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(), c, max_size=3), max_leaves=8),
       st.integers(min_value=1, max_value=3))
def test_json_deep_loads_undoes_repeated_encoding(value, times: int) -> None:
    import json

    encoded = value
    for _ in range(times):
        encoded = json.dumps(encoded)
    decoded = json_deep_loads(encoded)
    if isinstance(value, (dict, list)):
        assert decoded == value
