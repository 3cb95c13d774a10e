"""The ClickHouse source at scale: N spans in `otel_traces` (chDB, the exporter's DDL).

    python -m bench.clickhouse --spans 1000000,10000000 [--runs 3] [--keep DIR]

For each table size it generates the spans in ClickHouse itself (INSERT … SELECT FROM numbers(),
traces of a root server span carrying the cohort keys and an LLM client span under it, GenAI
semantic-convention attributes with messages, an incident injected: a served-model change at 18:00
and a 429 burst from anthropic at 20:00-20:15), then measures, each in a fresh `oncall` process
(peak RSS read by bench/peak_rss.py), median of --runs:

- pulling a cohort of 100,000 LLM calls over 6 hours (`oncall load chdb://… --since --until
  tenant=acme --limit 100000`): seconds, rows and bytes received, peak RSS;
- the same for a small cohort (one tenant and feature over one hour), the case a responder opens;
- the reference "pull everything first": the whole 6-hour window (every LLM call), then `oncall
  changes` on the local incident; at 10M spans it is measured on one hour and scaled (said so);
- in place (issue 20 item 4): `oncall changes --source … --since --until` over the 6-hour window and
  `oncall compare --source …` (the anthropic 429 burst against the hour before), every aggregate
  computed in ClickHouse: seconds, queries and bytes of aggregates received, peak RSS.

The engine runs inside the oncall process (chdb://), so its memory counts in oncall's peak RSS.
Results are printed as a Markdown table with the command, the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.peak_rss import run_with_peak  # noqa: E402
from tests.chdb_tables import create_otel  # noqa: E402

DAY = "2026-11-24"
START, END = f"{DAY} 00:00:00", f"{DAY} 23:59:59"
SIX_HOURS = (f"{DAY}T16:00:00Z", f"{DAY}T22:00:00Z")
ONE_HOUR = (f"{DAY}T19:00:00Z", f"{DAY}T20:00:00Z")

# One trace = a root server span (cohort keys) and one LLM call under it, over 24 hours.
GENERATE = """
INSERT INTO bench.otel_traces (Timestamp, TraceId, SpanId, ParentSpanId, TraceState, SpanName, SpanKind, ServiceName,
    ResourceAttributes, ScopeName, ScopeVersion, SpanAttributes, Duration, StatusCode, StatusMessage)
SELECT
    ts + toIntervalMillisecond(child * 5) AS Timestamp,
    concat(lower(hex(cityHash64(n, 1))), lower(hex(cityHash64(n, 2)))) AS TraceId,
    lower(hex(cityHash64(n, 3 + child))) AS SpanId,
    if(child = 0, '', lower(hex(cityHash64(n, 3)))) AS ParentSpanId,
    '' AS TraceState,
    if(child = 0, concat('POST /v1/', feature), concat('chat ', model)) AS SpanName,
    if(child = 0, 'Server', 'Client') AS SpanKind,
    'support-api' AS ServiceName,
    map('service.name', 'support-api', 'service.version', '2026.11.3', 'deployment.environment.name', 'production')
        AS ResourceAttributes,
    if(child = 0, 'opentelemetry.instrumentation.fastapi', 'opentelemetry.instrumentation.openai_v2') AS ScopeName,
    '' AS ScopeVersion,
    if(child = 0,
       map('app.tenant', tenant, 'app.feature', feature, 'user.id', concat('u-', toString(h % 5000)),
           'session.id', concat('sess-', toString(h % 40000)), 'app.prompt_version', 'v12',
           'http.route', concat('/v1/', feature)),
       map('gen_ai.operation.name', 'chat', 'gen_ai.provider.name', provider, 'gen_ai.request.model', model,
           'gen_ai.response.model', if(failed, '', served),
           'gen_ai.usage.input_tokens', toString(200 + h % 800), 'gen_ai.usage.output_tokens', if(failed, '', toString(20 + h % 300)),
           'gen_ai.response.finish_reasons', if(failed, '', '["stop"]'),
           'gen_ai.input.messages', concat('[{{"role":"user","parts":[{{"type":"text","content":"Question ', toString(h % 997),
               ' about my order: where is it, and can I change the address?"}}]}}]'),
           'gen_ai.output.messages', if(failed, '', concat('[{{"role":"assistant","parts":[{{"type":"text","content":"Answer ',
               toString(h % 991), ': your order ships tomorrow; change the address under Orders."}}],"finish_reason":"stop"}}]')),
           'error.type', if(failed, '429', ''))
    ) AS SpanAttributes,
    if(child = 0, 1000000 + h % 3000000, 800000 + h % 2500000) AS Duration,
    if(child = 1 AND failed, 'Error', 'Unset') AS StatusCode,
    if(child = 1 AND failed, 'Error code: 429 - rate limit exceeded', '') AS StatusMessage
FROM (
    SELECT number AS n, cityHash64(number) AS h,
           toDateTime64('{start}', 9, 'UTC') + toIntervalMicrosecond(intDiv(number * {span_us}, 1)) AS ts,
           ['acme', 'globex', 'initech', 'umbrella', 'hooli'][1 + h % 5] AS tenant,
           ['support-bot', 'extract', 'summarize'][1 + intDiv(h, 7) % 3] AS feature,
           if(feature = 'summarize', 'anthropic', 'openai') AS provider,
           if(feature = 'summarize', 'claude-3-5-sonnet-20241022', 'gpt-4o') AS model,
           multiIf(feature = 'summarize', 'claude-3-5-sonnet-20241022',
                   ts >= toDateTime64('{day} 18:00:00', 9, 'UTC'), 'gpt-4o-2024-11-20', 'gpt-4o-2024-08-06') AS served,
           feature = 'summarize' AND ts >= toDateTime64('{day} 20:00:00', 9, 'UTC')
               AND ts < toDateTime64('{day} 20:15:00', 9, 'UTC') AND intDiv(h, 13) % 10 < 7 AS failed
    FROM numbers({traces})
) ARRAY JOIN [0, 1] AS child
"""


def generate(path: Path, spans: int) -> float:
    import clickhouse_connect

    t0 = time.perf_counter()
    client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
    create_otel(client, "bench")
    traces = spans // 2
    span_us = int(24 * 3600 * 1e6 / traces)
    client.command(GENERATE.format(start=START, day=DAY, span_us=span_us, traces=traces))
    client.command("OPTIMIZE TABLE bench.otel_traces FINAL")
    n = client.query("SELECT count() FROM bench.otel_traces").result_rows[0][0]
    client.close()
    assert n == traces * 2, n
    return time.perf_counter() - t0


def oncall(args: list[str], db: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    proc, peak = run_with_peak([sys.executable, "-m", "oncall", "--db", str(db), *args],
                               capture_output=True, cwd=str(ROOT))
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"oncall {' '.join(args)} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    out: dict[str, Any] = {"seconds": wall, "peak_mb": peak}
    said = re.search(r"computed in .*: (\d+) queries, ([\d,]+) bytes of aggregates received, ([\d.]+) s",
                     proc.stderr.decode(errors="replace"))
    if said:
        out.update(queries=int(said.group(1)), bytes=int(said.group(2).replace(",", "")),
                   in_place_s=float(said.group(3)))
    try:
        doc = json.loads(proc.stdout)
        if isinstance(doc, dict) and "pull" in doc:
            out.update(rows=doc["pull"]["rows_received"], bytes=doc["pull"]["bytes_received"], spans=doc["spans_added"])
    except ValueError:
        pass
    return out


def median_run(args_for: Any, runs: int, tmp: Path, then: list[str] | None = None) -> dict[str, Any]:
    results = []
    for i in range(runs):
        db = tmp / f"run-{time.monotonic_ns()}-{i}.duckdb"
        r = oncall(args_for, db)
        if then:
            r2 = oncall(then, db)
            r["then_seconds"] = r2["seconds"]
            r["then_peak_mb"] = r2["peak_mb"]
        results.append(r)
        for p in tmp.glob(db.name + "*"):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink()
    keys = results[0].keys()
    return {k: statistics.median(r[k] for r in results) if isinstance(results[0][k], (int, float)) else results[0][k]
            for k in keys}


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spans", default="1000000,10000000")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", default=None, help="keep the chDB data here (reused when it holds the same size)")
    ap.add_argument("--full-window", action="store_true", help="also pull the whole 6-hour window (reference)")
    ap.add_argument("--generate-only", action="store_true", help="make the tables (with --keep) and stop")
    ap.add_argument("--only-in-place", action="store_true", help="measure changes/compare --source only")
    args = ap.parse_args()
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-ch-"))
    rows = []
    for n in [int(x) for x in args.spans.split(",")]:
        path = base / f"chdb-{n}"
        gen_s = None
        if not (path / ".generated").exists():
            shutil.rmtree(path, ignore_errors=True)
            print(f"generating {n:,} spans (load {loadavg()})", file=sys.stderr)
            # In a child: chDB keeps its engine (and the data path) for the life of a process, and
            # the measured oncall processes open the same path.
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", f"from bench.clickhouse import generate; from pathlib import Path; "
                            f"generate(Path({str(path)!r}), {n})"], check=True, cwd=str(ROOT))
            gen_s = time.perf_counter() - t0
            (path / ".generated").write_text(str(n))
        if args.generate_only:
            print(f"{n:,} spans in {path} ({gen_s or 'existing'} s)", file=sys.stderr)
            continue
        url = f"chdb://{path}?database=bench&table=otel_traces"
        tmp = Path(tempfile.mkdtemp(prefix="bench-ch-db-"))
        load_before = loadavg()
        entry: dict[str, Any] = {"spans": n, "generate_s": gen_s}
        window = ["--source", url, "--since", SIX_HOURS[0], "--until", SIX_HOURS[1]]
        entry["changes_in_place"] = median_run(["changes", *window, "--json"], args.runs, tmp)
        entry["changes_in_place"]["load"] = loadavg()
        entry["compare_in_place"] = median_run(
            ["compare", *window, f"provider=anthropic since={DAY}T20:00:00Z until={DAY}T20:15:00Z", "--baseline",
             f"provider=anthropic since={DAY}T19:00:00Z until={DAY}T20:00:00Z", "--json"], args.runs, tmp)
        entry["compare_in_place"]["load"] = loadavg()
        if not args.only_in_place:
            entry["cohort_100k"] = median_run(["load", url, "--since", SIX_HOURS[0], "--until", SIX_HOURS[1],
                                               "tenant=acme", "--limit", "100000", "--json"], args.runs, tmp)
            entry["small_cohort"] = median_run(["load", url, "--since", ONE_HOUR[0], "--until", ONE_HOUR[1],
                                                "tenant=acme", "feature=extract", "--json"], args.runs, tmp)
        entry["load"] = f"{load_before} -> {loadavg()}"
        if args.full_window:
            win = SIX_HOURS if n <= 2_000_000 else ONE_HOUR
            full = median_run(["load", url, "--since", win[0], "--until", win[1], "--json"], 1, tmp,
                              then=["changes", "--json"])
            full["window_hours"] = 6 if win == SIX_HOURS else 1
            entry["pull_everything"] = full
        rows.append(entry)
        shutil.rmtree(tmp, ignore_errors=True)
        print(json.dumps(entry, default=str), file=sys.stderr)
    print(json.dumps(rows, indent=2, default=str))
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
