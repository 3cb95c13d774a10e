"""Ingest benchmark: `oncall load` against DuckDB reading the same file natively, in the same run.

    .venv/bin/python bench/ingest.py                 # 1M spans, median of 3, writes bench/RESULTS.md
    .venv/bin/python bench/ingest.py --quick         # 100k spans, to try it
    .venv/bin/python bench/ingest.py --spans 200000 --runs 3

Generates (into bench/data/, gitignored, reused when already there) N spans of about 3 KB each,
deterministically, twice: as generic JSONL request logs and as OTLP JSON Lines (traces of a root
span and three GenAI chat spans, 64 spans per line as a batching exporter writes them). Then, each
in a fresh subprocess with a fresh database file, measures:

- native:  CREATE TABLE t AS SELECT * FROM read_json('<file>')   (the reference, per file)
- oncall load <generic file>,  oncall load <otlp file>
wall time, spans/s, MB/s, peak RSS (that child's own ru_maxrss, bench/peak_rss.py), and the speed ratio to native on
the same file (native wall / oncall wall; targets: generic >= 0.7x, OTLP >= 0.5x). Memory growth:
the same loads of a 2N-span file, peak RSS(2N) / peak RSS(N) (target < 1.3, i.e. streaming).
`--profile` also runs one oncall load per format with its phases timed (bench/ingest_phases.py) and writes
where the time goes into the results; `--cprofile` prints a cProfile of one load per format instead.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.peak_rss import run_with_peak  # noqa: E402

DATA = ROOT / "bench" / "data"
RESULTS = ROOT / "bench" / "RESULTS.md"
GENERATOR_VERSION = 2  # 2: every question and answer is unique text, as in real traffic
OTLP_SPANS_PER_LINE = 64
SPANS_PER_TRACE = 4  # one root (the application's request) and three chat calls
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SECTION_BEGIN = "<!-- ingest:begin (written by bench/ingest.py) -->"
SECTION_END = "<!-- ingest:end -->"

# -- deterministic data -------------------------------------------------------------------------

WORDS = ("incident latency tenant request model token cache retry invoice refund account order shipping "
         "delivery password reset billing plan upgrade downgrade export report dashboard alert threshold "
         "customer support agent answer question policy summary translate document contract clause "
         "the a of to and in for is on with as by at from that this it be are was".split())


def _paragraphs(seed: int, count: int, min_words: int, max_words: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        n = rng.randint(min_words, max_words)
        words = [rng.choice(WORDS) for _ in range(n)]
        out.append(" ".join(words).capitalize() + ".")
    return out


SYSTEM_PROMPTS = _paragraphs(1, 8, 120, 140)  # ~900 B: a few templates, as applications have
# Questions and answers are unique per call, as real traffic is: windows at call-specific offsets of
# a seeded word stream. (Version 1 reused 257 questions and 263 answers, which let DuckDB's native
# load dictionary-compress the text and made the reference several times faster than real data.)
_STREAM_RNG = random.Random(4)
STREAM = [_STREAM_RNG.choice(WORDS) for _ in range(1 << 20)]


def _window(i: int, salt: int, min_words: int, max_words: int) -> str:
    n = min_words + (i * 31 + salt) % (max_words - min_words + 1)
    o = (i * 2654435761 + salt * 40503) % (len(STREAM) - max_words)
    return " ".join(STREAM[o:o + n]).capitalize() + f" ({i})."
TENANTS = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka"]
FEATURES = ["support-bot", "summarize", "translate", "search-answer"]


@dataclass(frozen=True)
class Call:
    """The facts of one LLM call, shared by both file shapes."""

    i: int
    trace: str
    span: str
    parent: str | None
    start_us: int
    latency_us: int
    tenant: str
    user: str
    session: str
    feature: str
    model: str
    served: str
    system: str
    question: str
    answer: str
    input_tokens: int
    output_tokens: int
    error: bool


def call(i: int) -> Call:
    trace_n = i // (SPANS_PER_TRACE - 1)
    served = "gpt-4o-mini-2024-07-18" if i % 1000 < 600 else "gpt-4o-mini-2024-11-20"
    q = _window(i, 1, 50, 90)  # ~450 B
    a = _window(i, 2, 120, 170)  # ~1 KB
    return Call(
        i=i, trace=f"{trace_n + 1:032x}", span=f"{(i + 1) << 8:016x}", parent=f"{trace_n + 1:016x}",
        start_us=int(T0.timestamp() * 1e6) + i * 50_000, latency_us=200_000 + (i * 7919) % 3_000_000,
        tenant=TENANTS[trace_n % len(TENANTS)], user=f"user-{trace_n % 5000}", session=f"sess-{trace_n % 20000}",
        feature=FEATURES[trace_n % len(FEATURES)], model="gpt-4o-mini", served=served,
        system=SYSTEM_PROMPTS[trace_n % len(SYSTEM_PROMPTS)], question=q, answer=a,
        input_tokens=len(q.split()) + 180, output_tokens=len(a.split()), error=i % 50 == 49,
    )


def _iso(us: int) -> str:
    return (T0 + dt.timedelta(microseconds=us - int(T0.timestamp() * 1e6))).isoformat().replace("+00:00", "Z")


def generic_record(c: Call) -> dict:
    return {
        "request_id": f"req-{c.i:09d}", "trace_id": c.trace, "span_id": c.span,
        "start_time": _iso(c.start_us), "end_time": _iso(c.start_us + c.latency_us),
        "provider": "openai", "model": c.model, "served_model": c.served,
        "tenant": c.tenant, "user_id": c.user, "session_id": c.session, "feature": c.feature,
        "prompt_name": f"{c.feature}-system", "prompt_version": "v3", "env": "prod", "release": "2026.01.1",
        "status": "error" if c.error else "ok",
        "error": "Error code: 429 - Rate limit reached for gpt-4o-mini" if c.error else None,
        "http_status": 429 if c.error else 200,
        "input_tokens": c.input_tokens, "output_tokens": None if c.error else c.output_tokens,
        "cost": round(c.input_tokens * 1.5e-7 + c.output_tokens * 6e-7, 8),
        "finish_reason": None if c.error else "stop",
        "input_messages": [{"role": "system", "content": c.system}, {"role": "user", "content": c.question}],
        "output_messages": None if c.error else [{"role": "assistant", "content": c.answer}],
    }


def _kv(key: str, value: object) -> dict:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    if isinstance(value, list):
        return {"key": key, "value": {"arrayValue": {"values": [{"stringValue": v} for v in value]}}}
    return {"key": key, "value": {"stringValue": str(value)}}


def otlp_root(c: Call) -> dict:
    start = c.start_us - 5_000
    return {
        "traceId": c.trace, "spanId": c.parent, "parentSpanId": "", "name": "POST /v1/answer", "kind": 2,
        "startTimeUnixNano": str(start * 1000), "endTimeUnixNano": str((start + 3 * c.latency_us) * 1000),
        "attributes": [_kv("tenant.id", c.tenant), _kv("user.id", c.user), _kv("session.id", c.session),
                       _kv("app.feature", c.feature), _kv("http.route", "/v1/answer"),
                       _kv("http.response.status_code", 200)],
        "status": {}, "flags": 256,
    }


def otlp_llm(c: Call) -> dict:
    inp = [{"role": "system", "parts": [{"type": "text", "content": c.system}]},
           {"role": "user", "parts": [{"type": "text", "content": c.question}]}]
    attrs = [_kv("gen_ai.operation.name", "chat"), _kv("gen_ai.provider.name", "openai"),
             _kv("gen_ai.request.model", c.model), _kv("gen_ai.request.temperature", 0.2),
             _kv("gen_ai.input.messages", json.dumps(inp, separators=(",", ":"))),
             _kv("server.address", "api.openai.com")]
    if c.error:
        attrs.append(_kv("error.type", "RateLimitError"))
        status = {"code": 2, "message": "Error code: 429 - Rate limit reached for gpt-4o-mini"}
    else:
        out = [{"role": "assistant", "parts": [{"type": "text", "content": c.answer}], "finish_reason": "stop"}]
        attrs += [_kv("gen_ai.response.model", c.served), _kv("gen_ai.response.id", f"chatcmpl-{c.i:012d}"),
                  _kv("gen_ai.response.finish_reasons", ["stop"]),
                  _kv("gen_ai.usage.input_tokens", c.input_tokens), _kv("gen_ai.usage.output_tokens", c.output_tokens),
                  _kv("gen_ai.output.messages", json.dumps(out, separators=(",", ":")))]
        status = {}
    return {
        "traceId": c.trace, "spanId": c.span, "parentSpanId": c.parent, "name": f"chat {c.model}", "kind": 3,
        "startTimeUnixNano": str(c.start_us * 1000), "endTimeUnixNano": str((c.start_us + c.latency_us) * 1000),
        "attributes": attrs, "status": status, "flags": 256,
    }


def otlp_spans(n: int):
    """n spans: every trace is a root followed by its chat calls."""
    made = 0
    i = 0
    while made < n:
        c = call(i)
        if i % (SPANS_PER_TRACE - 1) == 0:
            yield otlp_root(c)
            made += 1
            if made >= n:
                return
        yield otlp_llm(c)
        made += 1
        i += 1


def otlp_envelope(spans: list[dict]) -> dict:
    return {"resourceSpans": [{
        "resource": {"attributes": [_kv("service.name", "answer-api"), _kv("deployment.environment.name", "prod"),
                                    _kv("service.version", "2026.01.1")]},
        "scopeSpans": [{"scope": {"name": "opentelemetry.instrumentation.openai_v2", "version": "2.4b0"},
                        "spans": spans}],
        "schemaUrl": "https://opentelemetry.io/schemas/1.37.0",
    }]}


def generate(kind: str, n: int) -> Path:
    """bench/data/<kind>-<n>.jsonl, generated once (a sidecar records the generator version)."""
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"{kind}-{n}.jsonl"
    meta = path.with_suffix(".meta.json")
    want = {"kind": kind, "spans": n, "generator": GENERATOR_VERSION}
    if path.exists() and meta.exists() and json.loads(meta.read_text()) == want:
        return path
    t = time.perf_counter()
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        if kind == "generic":
            for i in range(n):
                fh.write(json.dumps(generic_record(call(i)), separators=(",", ":")))
                fh.write("\n")
        else:
            batch: list[dict] = []
            for span in otlp_spans(n):
                batch.append(span)
                if len(batch) == OTLP_SPANS_PER_LINE:
                    fh.write(json.dumps(otlp_envelope(batch), separators=(",", ":")))
                    fh.write("\n")
                    batch = []
            if batch:
                fh.write(json.dumps(otlp_envelope(batch), separators=(",", ":")) + "\n")
    tmp.replace(path)
    meta.write_text(json.dumps(want))
    print(f"generated {path} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.0f} s", flush=True)
    return path


# -- measuring ---------------------------------------------------------------------------------

NATIVE = ("import duckdb, sys\n"
          "con = duckdb.connect(sys.argv[1])\n"
          "con.execute(\"CREATE TABLE t AS SELECT * FROM read_json(?)\", [sys.argv[2]])\n"
          "print(con.execute('SELECT count(*) FROM t').fetchone()[0])\n")


@dataclass
class Run:
    wall_s: float
    peak_rss_mb: float
    rows: int
    load: float = 0.0  # 1-minute load average when the run started (the machine is shared)


def run_child(cmd: list[str]) -> tuple[float, float, str]:
    """Wall time, peak RSS (MB) of exactly this child (bench/peak_rss.py), and its stdout.

    Output goes to temporary files so nothing waits on the child but the launcher itself.
    """
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        proc, peak_mb = run_with_peak(cmd, cwd=ROOT, stdout=out, stderr=err)
        wall = time.perf_counter() - t
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {stderr[-2000:]}")
    return wall, peak_mb, stdout


def measure(what: str, path: Path, expect: int, workdir: Path) -> Run:
    load = os.getloadavg()[0]
    db = workdir / f"{what}.duckdb"
    for p in (db, Path(str(db) + ".wal")):
        p.unlink(missing_ok=True)
    shutil.rmtree(str(db) + ".d", ignore_errors=True)  # the store's load parts and journal
    if what == "native":
        wall, rss, out = run_child([sys.executable, "-c", NATIVE, str(db), str(path)])
        rows = int(out.strip().splitlines()[-1])
    else:
        wall, rss, out = run_child([sys.executable, "-m", "oncall", "--db", str(db), "load", "--no-progress",
                                    "--json", str(path)])
        report = json.loads(out)
        rows = int(report["spans_added"])
        if report["problems"]:
            raise RuntimeError(f"oncall load {path} reported problems: {report['problems'][:3]}")
        if rows != expect:
            raise RuntimeError(f"oncall load {path} added {rows} spans, expected {expect}")
    db.unlink(missing_ok=True)
    Path(str(db) + ".wal").unlink(missing_ok=True)
    shutil.rmtree(str(db) + ".d", ignore_errors=True)
    return Run(wall, rss, rows, load)


def median_runs(runs: list[Run]) -> Run:
    return Run(statistics.median(r.wall_s for r in runs), statistics.median(r.peak_rss_mb for r in runs),
               runs[0].rows, statistics.median(r.load for r in runs))


def machine() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = next(int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines()
                  if x.startswith("MemTotal"))
    import duckdb

    return {"cpus": str(os.cpu_count()), "ram": f"{mem_kb / 1024 / 1024:.1f} GiB", "cpu": cpu,
            "python": platform.python_version(), "duckdb": duckdb.__version__,
            "kernel": platform.release()}


def cprofile(path: Path, workdir: Path, top: int = 30) -> str:
    """One in-process oncall load under cProfile: the functions that take the time."""
    code = (
        "import cProfile, pstats, io, sys\n"
        "from oncall.store import open_db\n"
        "from oncall.ingest.loader import load_paths\n"
        "db = open_db(sys.argv[1])\n"
        "pr = cProfile.Profile(); pr.enable()\n"
        "load_paths(db, [sys.argv[2]])\n"
        "pr.disable(); db.close()\n"
        "s = io.StringIO(); pstats.Stats(pr, stream=s).sort_stats('cumulative').print_stats(int(sys.argv[3]))\n"
        "s2 = io.StringIO(); pstats.Stats(pr, stream=s2).sort_stats('tottime').print_stats(int(sys.argv[3]))\n"
        "print(s.getvalue()); print(s2.getvalue())\n"
    )
    db = workdir / "profile.duckdb"
    db.unlink(missing_ok=True)
    _, _, out = run_child([sys.executable, "-c", code, str(db), str(path), str(top)])
    db.unlink(missing_ok=True)
    shutil.rmtree(str(db) + ".d", ignore_errors=True)
    return out


def phases(path: Path, workdir: Path) -> dict:
    """One oncall load with its phases timed (bench/ingest_phases.py), in its own process."""
    db = workdir / "phases.duckdb"
    db.unlink(missing_ok=True)
    shutil.rmtree(str(db) + ".d", ignore_errors=True)
    load = os.getloadavg()[0]
    _, _, out = run_child([sys.executable, "-m", "bench.ingest_phases", str(db), str(path)])
    db.unlink(missing_ok=True)
    shutil.rmtree(str(db) + ".d", ignore_errors=True)
    report = json.loads(out.strip().splitlines()[-1])
    report["load_before"] = load
    return report


def phases_table(kind: str, report: dict) -> list[str]:
    lines = [f"**{kind}**: one load of {report['spans']:,} spans, {report['wall_s']:.1f} s wall "
             f"(load average {report['load_before']:.2f} at its start).", "",
             "| thread | phase | s | share of wall |", "|---|---|---:|---:|"]
    for p in report["phases"]:
        if p["seconds"] < 0.05:
            continue
        lines.append(f"| {p['thread']} | {p['phase']} | {p['seconds']:.2f} | {p['seconds'] / report['wall_s']:.0%} |")
    return lines + [""]


# -- report ------------------------------------------------------------------------------------

def write_results(text: str) -> None:
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
    section = f"{SECTION_BEGIN}\n{text.rstrip()}\n{SECTION_END}"
    if SECTION_BEGIN in old and SECTION_END in old:
        head, rest = old.split(SECTION_BEGIN, 1)
        tail = rest.split(SECTION_END, 1)[1]
        new = head + section + tail
    else:
        new = old.rstrip() + "\n\n" + section + "\n"
    RESULTS.write_text(new)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spans", type=int, default=1_000_000, help="spans per file (default 1M)")
    ap.add_argument("--runs", type=int, default=3, help="median of K runs (default 3)")
    ap.add_argument("--quick", action="store_true", help="100k spans, to try it")
    ap.add_argument("--formats", default="generic,otlp", help="formats to measure (default: both)")
    ap.add_argument("--no-memory", action="store_true", help="skip the 2N-span memory-growth loads")
    ap.add_argument("--memory-formats", default="generic,otlp",
                    help="formats given the 2N load (default: both)")
    ap.add_argument("--profile", action="store_true",
                    help="also time the phases of one oncall load per format (written to the results)")
    ap.add_argument("--cprofile", action="store_true", help="also print a cProfile of one oncall load per format")
    ap.add_argument("--no-write", action="store_true", help="print only; do not update bench/RESULTS.md")
    ap.add_argument("--keep-data", action="store_true", help="keep the generated files in bench/data/")
    args = ap.parse_args()
    n = 100_000 if args.quick else args.spans
    workdir = DATA / "run"
    workdir.mkdir(parents=True, exist_ok=True)

    files = {kind: generate(kind, n) for kind in ("generic", "otlp") if kind in args.formats.split(",")}
    results: dict[str, Run] = {}
    for kind, path in files.items():
        for what in ("native", "oncall"):
            runs = []
            for k in range(args.runs):
                r = measure(what, path, n, workdir)
                print(f"{what:<6} {kind:<7} run {k + 1}/{args.runs}: {r.wall_s:7.2f} s  {r.peak_rss_mb:7.0f} MB  "
                      f"{r.rows} rows  (load {r.load:.2f})", flush=True)
                runs.append(r)
            results[f"{what}-{kind}"] = median_runs(runs)

    growth: dict[str, tuple[float, float, float]] = {}
    if not args.no_memory:
        for kind in [k.strip() for k in args.memory_formats.split(",") if k.strip() and k.strip() in files]:
            big = generate(kind, 2 * n)
            for what in ("native", "oncall"):
                r = measure(what, big, 2 * n, workdir)
                print(f"{what:<6} {kind:<7} 2N: {r.wall_s:7.2f} s  {r.peak_rss_mb:7.0f} MB  (load {r.load:.2f})",
                      flush=True)
                growth[f"{what}-{kind}"] = (r.peak_rss_mb, r.peak_rss_mb / results[f"{what}-{kind}"].peak_rss_mb,
                                            r.load)
            if not args.keep_data:
                big.unlink(missing_ok=True)

    prof = {}
    if args.cprofile:
        for kind, path in files.items():
            prof[kind] = cprofile(path, workdir)
    timed = {}
    if args.profile:
        for kind, path in files.items():
            timed[kind] = phases(path, workdir)
    shutil.rmtree(workdir, ignore_errors=True)

    m = machine()
    cmd = "python bench/ingest.py " + " ".join(sys.argv[1:])
    lines = [
        "## Ingest",
        "",
        f"Measured {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}: {n:,} spans per file, median of "
        f"{args.runs} run(s), each load in a fresh subprocess with a fresh database file.",
        f"Machine: {m['cpus']} CPUs ({m['cpu']}), {m['ram']} RAM, Linux {m['kernel']}; "
        f"Python {m['python']}, DuckDB {m['duckdb']}.",
        f"Command: `{cmd}`",
        "",
        "| load | file | MB | wall s | spans/s | MB/s | peak RSS MB | speed vs native (same file) | target | load avg |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    targets = {"generic": 0.7, "otlp": 0.5}  # issue 22
    verdicts = []
    for kind, path in files.items():
        mb = path.stat().st_size / 1e6
        nat = results[f"native-{kind}"]
        for what in ("native", "oncall"):
            r = results[f"{what}-{kind}"]
            if what == "native":
                ratio, target = "1.00x (reference)", ""
            else:
                x = nat.wall_s / r.wall_s
                ok = x >= targets[kind]
                ratio, target = f"{x:.2f}x", f">= {targets[kind]}x {'met' if ok else '**MISSED**'}"
                verdicts.append((kind, x, ok))
            label = "DuckDB read_json CTAS" if what == "native" else "oncall load"
            lines.append(f"| {label} | {kind} | {mb:,.0f} | {r.wall_s:.2f} | {n / r.wall_s:,.0f} | "
                         f"{mb / r.wall_s:.1f} | {r.peak_rss_mb:,.0f} | {ratio} | {target} | {r.load:.2f} |")
    if growth:
        lines += ["", f"Memory growth: peak RSS loading a {2 * n:,}-span file / loading the {n:,}-span file "
                  "(one run at 2N; target < 1.3 for oncall load).", "",
                  "| load | file | peak RSS MB at 2N | ratio 2N / N | target | load avg |", "|---|---|---:|---:|---|---:|"]
        for key, (rss, ratio, load) in growth.items():
            what, kind = key.split("-", 1)
            label = "DuckDB read_json CTAS" if what == "native" else "oncall load"
            target = "" if what == "native" else f"< 1.3 {'met' if ratio < 1.3 else '**MISSED**'}"
            lines.append(f"| {label} | {kind} | {rss:,.0f} | {ratio:.2f} | {target} | {load:.2f} |")
    lines += ["", "Wall time includes interpreter start-up and imports (~0.3 s native, ~1 s oncall). "
              "Peak RSS is that child's own ru_maxrss (bench/peak_rss.py)."]
    if timed:
        lines += ["", "Where one load's time goes (`--profile`, bench/ingest_phases.py): wall seconds per phase, "
                  "exclusive of the phases inside it. The insert thread runs beside the main thread, so the "
                  "two overlap; \"waits for the insert thread\" is the DuckDB time Python could not hide.", ""]
        for kind, report in timed.items():
            lines += phases_table(kind, report)
    text = "\n".join(lines) + "\n"
    if not args.no_write:
        write_results(text)
    print()
    print(text)
    if not args.no_write:
        print(f"wrote {RESULTS}")
    for kind, out in prof.items():
        dest = DATA / f"profile-{kind}-{n}.txt"
        dest.write_text(out)
        print(f"\n===== cProfile: oncall load {kind} (also in {dest}) =====\n{out}")
    return 0 if all(ok for _, _, ok in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
