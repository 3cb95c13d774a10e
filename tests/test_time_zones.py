"""Times are right in every time zone: the same loads and queries, run as real `oncall` processes
under TZ=UTC, America/New_York and Asia/Kolkata, print byte-identical --json, and zone-less times
(ISO without an offset, epoch seconds/ms/us/ns) are stored as UTC.

Each zone gets its own incident database built from the same inputs (the demo, generic JSONL, CSV and
Parquet with naive, zone-aware, epoch and text timestamps, and
the public OTLP and LiteLLM fixtures when present), then the same reading commands run on it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, fixtures_dir

ZONES = ("UTC", "America/New_York", "Asia/Kolkata")
TEN_UTC = "2026-11-30T10:00:00+00:00"
# 10:00Z on 2025-11-30 as epoch seconds, milliseconds, microseconds and nanoseconds.
EPOCH_S = 1764496800
GENERIC = [
    {"timestamp": "2026-11-30T10:00:00", "request_id": "gen-iso", "tenant": "tz", "model": "gpt-4o",
     "input": "when?", "output": "ten", "cost": 0.000373},
    {"timestamp": "2026-11-30 10:00:00", "request_id": "gen-sql", "tenant": "tz", "model": "gpt-4o",
     "input": "when?", "output": "ten"},
    {"timestamp": EPOCH_S, "request_id": "gen-epoch-s", "tenant": "tz", "model": "gpt-4o", "input": "when?",
     "output": "ten"},
    {"timestamp": EPOCH_S * 1000, "request_id": "gen-epoch-ms", "tenant": "tz", "model": "gpt-4o"},
    {"timestamp": EPOCH_S * 1_000_000, "request_id": "gen-epoch-us", "tenant": "tz", "model": "gpt-4o"},
    {"timestamp": EPOCH_S * 1_000_000_000, "request_id": "gen-epoch-ns", "tenant": "tz", "model": "gpt-4o"},
    {"timestamp": "2026-11-30T15:30:00+05:30", "request_id": "gen-offset", "tenant": "tz", "model": "gpt-4o"},
]
CSV = ("request_id,timestamp,tenant,model,output\n"
       "csv-iso,2026-11-30T10:00:00,tz,gpt-4o,ten\n"
       f"csv-epoch,{EPOCH_S * 1000},tz,gpt-4o,ten\n")
EXPECTED_START = {"gen-iso": TEN_UTC, "gen-sql": TEN_UTC, "gen-offset": TEN_UTC, "csv-iso": TEN_UTC,
                  "pq-naive": TEN_UTC, "pq-aware": TEN_UTC, "pq-text": TEN_UTC,
                  **{f"gen-epoch-{u}": "2025-11-30T10:00:00+00:00" for u in ("s", "ms", "us", "ns")},
                  "csv-epoch": "2025-11-30T10:00:00+00:00", "pq-epoch": "2025-11-30T10:00:00+00:00"}


def _write_parquet(path: Path) -> None:
    """Parquet as pandas/pyarrow write it: a naive and a zone-aware timestamp column, epoch ints, text."""
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    ten = dt.datetime(2026, 11, 30, 10, 0)
    tables = [
        pa.table({"request_id": ["pq-naive"], "timestamp": pa.array([ten], pa.timestamp("us"))}),
        pa.table({"request_id": ["pq-aware"], "timestamp": pa.array([ten.replace(tzinfo=dt.UTC)],
                                                                    pa.timestamp("us", tz="UTC"))}),
        pa.table({"request_id": ["pq-epoch"], "timestamp": pa.array([EPOCH_S * 1000], pa.int64())}),
        pa.table({"request_id": ["pq-text"], "timestamp": pa.array(["2026-11-30T10:00:00"])}),
    ]
    for i, t in enumerate(tables):
        t = t.append_column("tenant", pa.array(["tz"])).append_column("model", pa.array(["gpt-4o"]))
        pq.write_table(t, path.with_name(f"{path.stem}-{i}.parquet"))

# (name, argv after `oncall --db incident.duckdb`): loads first, in order, then the reading commands.
LOADS = ["demo --no-tui --hours 2 --seed 3 --json", "load {generic} --json", "load {csv} --json",
         *[f"load {{parquet}}-{i}.parquet --json" for i in range(4)]]
QUERIES = {
    "search": ["search", "--json", "--limit", "200", "tenant=tz"],
    "search_since_clock": ["search", "--json", "--limit", "200", "tenant=tz", "since=09:30"],
    "search_since_iso": ["search", "--json", "since=2026-11-30T09:59:59", "until=2026-11-30T10:00:01"],
    "search_since_relative": ["search", "--json", "--limit", "20", "since=-1h"],
    "search_demo_window": ["search", "--json", "--limit", "30", "since=2026-11-24T02:05",
                           "until=2026-11-24T02:06"],
    "show_iso": ["show", "gen-iso", "--json"],
    "show_epoch": ["show", "gen-epoch-s", "--json"],
    "show_parquet_raw": ["show", "pq-aware", "--raw", "--json"],
    "compare": ["compare", "--json", "served_model=gpt-4o-2024-11-20",
                "--baseline", "served_model=gpt-4o-2024-08-06"],
    "changes": ["changes", "--json", "since=2026-11-24T00:00Z", "until=2026-11-24T03:00Z"],
    "sample": ["sample", "--json", "-n", "5", "--seed", "1", "since=2026-11-24T01:00Z", "until=2026-11-25"],
}


def _oncall(cwd: Path, tz: str, argv: list[str]) -> str:
    env = {**os.environ, "TZ": tz, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    env.pop("ONCALL_DB", None)
    proc = subprocess.run([sys.executable, "-m", "oncall", "--db", "incident.duckdb", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"TZ={tz} oncall {' '.join(argv)}: exit {proc.returncode}\n{proc.stderr}"
    return proc.stdout.replace(str(cwd), "CWD")  # each zone's own directory (the demo names its world's)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict[str, str]]:
    inputs = tmp_path_factory.mktemp("tz-inputs")
    generic = inputs / "generic.jsonl"
    generic.write_text("".join(json.dumps(r) + "\n" for r in GENERIC))
    extra = [fixtures_dir() / "otel-genai" / "interlingua-raw-openai-v2.otlp.json",  # OTLP, unix nanos
             fixtures_dir() / "openai-logs" / "litellm-standard_logging_payload.json"]  # naive times
    (inputs / "requests.csv").write_text(CSV)
    _write_parquet(inputs / "requests.parquet")
    loads = [a.format(generic=generic, csv=inputs / "requests.csv", parquet=inputs / "requests") for a in LOADS]
    loads += [f"load {p} --json" for p in extra if p.is_file()]  # read in place, never copied
    out: dict[str, dict[str, str]] = {}
    for tz in ZONES:
        cwd = tmp_path_factory.mktemp("tz-" + tz.replace("/", "-"))
        out[tz] = {f"load{i}": _oncall(cwd, tz, a.split()) for i, a in enumerate(loads)}
        out[tz].update({name: _oncall(cwd, tz, argv) for name, argv in QUERIES.items()})
    return out


def test_zone_less_times_are_stored_as_utc(runs) -> None:
    rows = json.loads(runs["America/New_York"]["search"])["requests"]
    assert {r["request_id"]: r["start_time"] for r in rows} == EXPECTED_START
    assert json.loads(runs["Asia/Kolkata"]["show_iso"])["start_time"] == TEN_UTC
    assert json.loads(runs["Asia/Kolkata"]["show_epoch"])["start_time"] == "2025-11-30T10:00:00+00:00"


def test_since_and_until_read_clock_and_zone_less_times_as_utc(runs) -> None:
    for tz in ZONES:
        clock = json.loads(runs[tz]["search_since_clock"])
        at_ten = {k for k, v in EXPECTED_START.items() if v == TEN_UTC}
        assert {r["request_id"] for r in clock["requests"]} == at_ten, tz
        iso = json.loads(runs[tz]["search_since_iso"])
        assert {r["request_id"] for r in iso["requests"]} == at_ten, tz
        # The demo's 429 burst starts at 02:05 UTC: the window holds rows, all inside it.
        window = json.loads(runs[tz]["search_demo_window"])["requests"]
        assert window and all("2026-11-24T02:05" in r["start_time"] for r in window), tz


@pytest.mark.parametrize("name", [f"load{i}" for i in range(len(LOADS) + 2)] + list(QUERIES))
def test_json_output_is_byte_identical_in_every_zone(runs, name: str) -> None:
    if name not in runs["UTC"]:
        pytest.skip(f"{name}: the public fixtures are not at {fixtures_dir()} (set ONCALL_FIXTURES)")
    assert runs["America/New_York"][name] == runs["UTC"][name]
    assert runs["Asia/Kolkata"][name] == runs["UTC"][name]


def test_changes_found_the_same_times_in_every_zone(runs) -> None:
    found = json.loads(runs["Asia/Kolkata"]["changes"])
    assert found, "the demo's injected changes must be found"
    assert all(c["began_at"].startswith("2026-11-24T0") and c["began_at"].endswith("Z") for c in found)
