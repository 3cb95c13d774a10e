"""`oncall receive` under load: four exporter processes sending OTLP/HTTP on loopback.

    .venv/bin/python bench/receive.py                      # 60 s, 4 exporters x 8 senders, write RESULTS.md
    .venv/bin/python bench/receive.py --seconds 15 --no-write

What runs, all on this machine's two cores at once:
- the real `oncall receive` (a subprocess of the CLI, `--flush-every 1`) on a fresh incident;
- four exporter processes. Each builds one batch of 512 GenAI spans (the SDK's default batch size:
  an HTTP server span, a retrieval span and an openai-v2-style chat span per trace) with the real
  OpenTelemetry SDK and encodes it once with the SDK's own OTLP encoder; each send then gives every
  span fresh ids and times (protobuf setters, a few µs a span) and posts it through the real
  `OTLPSpanExporter`'s HTTP client (gzip, its retries honouring Retry-After). Encoding ReadableSpans
  anew costs the SDK ~90 µs a span, which on two shared cores would measure the exporters, not the
  receiver. Each exporter runs 8 senders, as a Collector's sending queue runs 10 consumers;
- a reader that opens the incident as a console does and refreshes every second, recording how old
  the newest span it can see is (a console shows new spans within that).
Counted: spans acknowledged (200) by the receiver, and afterwards the spans in the incident, each
acknowledged batch checked whole (none lost) and no span twice; the receiver's RSS every second.
Results go to bench/RESULTS.md between the receive markers, with the load average beside them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from results import write_section  # noqa: E402

BEGIN, END = "<!-- receive:begin -->", "<!-- receive:end -->"
BATCH_TRACES = 171  # x 3 spans = 513 ~ the SDK's 512-span batches
DATA = ROOT / "bench" / "data" / "receive"


def template_request() -> bytes:
    """One ExportTraceServiceRequest of BATCH_TRACES traces, made and encoded by the real SDK."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.trace import SpanKind

    spans = []

    class Keep(SpanExporter):
        def export(self, batch):  # type: ignore[no-untyped-def]
            spans.extend(batch)
            return SpanExportResult.SUCCESS

    tp = TracerProvider(resource=Resource.create({"service.name": "support-bot", "deployment.environment.name": "prod",
                                                  "service.version": "1.4.2"}))
    tp.add_span_processor(SimpleSpanProcessor(Keep()))
    app = tp.get_tracer("support-bot")
    genai = tp.get_tracer("opentelemetry.instrumentation.openai_v2", "2.4b0")
    for i in range(BATCH_TRACES):
        with app.start_as_current_span("POST /chat", kind=SpanKind.SERVER, attributes={
                "http.request.method": "POST", "url.path": "/chat", "http.response.status_code": 200,
                "tenant": f"tenant-{i % 7}", "user.id": f"user-{i % 100}", "session.id": f"s-{i % 300}",
                "feature": "support_chat", "prompt_version": "v12"}):
            with app.start_as_current_span("retrieve", attributes={"db.system.name": "postgresql", "k": 5}):
                pass
            with genai.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT, attributes={
                    "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                    "gen_ai.response.id": f"chatcmpl-{i:08d}", "gen_ai.usage.input_tokens": 312 + i,
                    "gen_ai.usage.output_tokens": 87, "gen_ai.response.finish_reasons": ("stop",),
                    "gen_ai.request.temperature": 0.2, "server.address": "api.openai.com", "server.port": 443}):
                pass
    return encode_spans(spans).SerializeToString()


def request_shape(req: object) -> tuple[list, list[tuple[int, int | None]]]:
    """The request's spans and, for each, (its trace's number, its parent's index or None).

    The SDK groups spans by scope (the app's spans, then every chat span), so a trace's spans are
    not side by side: the trace and parent of each span are read from the template's own ids."""
    spans = [s for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]  # type: ignore[attr-defined]
    traces: dict[bytes, int] = {}
    index = {s.span_id: i for i, s in enumerate(spans)}
    shape = [(traces.setdefault(s.trace_id, len(traces)), index.get(s.parent_span_id) if s.parent_span_id else None)
             for s in spans]
    return spans, shape


def renumber(spans: list, shape: list[tuple[int, int | None]], key: int, now: int) -> None:
    """Fresh ids (trace and span ids name the batch `key`; parents kept) and times for one send."""
    for i, s in enumerate(spans):
        trace_no, parent = shape[i]
        s.trace_id = key.to_bytes(8, "big") + trace_no.to_bytes(8, "big")
        s.span_id = (key << 16 | i).to_bytes(8, "big")
        if parent is not None:
            s.parent_span_id = (key << 16 | parent).to_bytes(8, "big")
        s.start_time_unix_nano = now
        s.end_time_unix_nano = now + 1_000_000


def exporter_process(port: int, proc_no: int, senders: int, seconds: float, out: mp.Queue,
                     every: float = 0.0) -> None:
    """Send fresh-id copies of the template until time is up; report acked batches and send times.
    `every` > 0: each sender starts a send at most every `every` seconds (a paced, offered load)."""
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    template = template_request()
    deadline = time.monotonic() + seconds
    acked: list[int] = []
    failed: list[int] = []
    lock = threading.Lock()

    def sender(t: int) -> None:
        exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces", compression=Compression.Gzip,
                                    timeout=30)
        req = ExportTraceServiceRequest.FromString(template)
        spans, shape = request_shape(req)
        batch = 0
        next_send = time.monotonic() + every * t / senders  # paced senders spread over the interval
        while time.monotonic() < deadline:
            if every:
                time.sleep(max(0.0, next_send - time.monotonic()))
                next_send += every
            key = (proc_no << 40) | (t << 32) | batch  # which batch a span id belongs to
            renumber(spans, shape, key, time.time_ns())
            ok = exporter._client.export(req.SerializeToString()).success  # the exporter's own HTTP client
            with lock:
                (acked if ok else failed).append(key)
            batch += 1
        exporter.shutdown()

    threads = [threading.Thread(target=sender, args=(t,)) for t in range(senders)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    out.put((proc_no, acked, failed, len([s for rs in ExportTraceServiceRequest.FromString(template).resource_spans
                                           for ss in rs.scope_spans for s in ss.spans])))


def reader_process(db: str, seconds: float, out: mp.Queue) -> None:
    """A console's view: refresh as often as the console does (oncall.tui.app.REFRESH_S), note how old
    the newest visible span is, and what the refresh and the query cost."""
    from oncall.store import open_db
    from oncall.tui.app import REFRESH_S

    while not Path(db).exists():
        time.sleep(0.1)
    store = open_db(db, read_only=True)
    lags = []
    costs = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(REFRESH_S)
        t0 = time.monotonic()
        store.refresh()
        t1 = time.monotonic()
        newest = store.cursor().execute("SELECT max(start_time) FROM spans").fetchone()[0]
        t2 = time.monotonic()
        if newest is not None:
            lags.append(time.time() - newest.timestamp())
            costs.append((t1 - t0, t2 - t1))
    out.put((lags, costs))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU the process has used (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(seconds: float, exporters: int, senders: int, rate: float = 0.0) -> dict:
    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir(parents=True)
    db = DATA / "live.duckdb"
    port = free_port()
    load_before = os.getloadavg()
    recv = subprocess.Popen([sys.executable, "-m", "oncall", "--db", str(db), "receive", "--port", str(port),
                             "--json"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if recv.poll() is not None:
                raise SystemExit(f"receiver died: {recv.stderr.read()}") from None
            time.sleep(0.1)
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()
    rq: mp.Queue = ctx.Queue()
    # --rate: every sender of every exporter sends one batch every `every` seconds (0: back to back).
    every = exporters * senders * BATCH_TRACES * 3 / rate if rate else 0.0
    procs = [ctx.Process(target=exporter_process, args=(port, p, senders, seconds, q, every))
             for p in range(exporters)]
    reader = ctx.Process(target=reader_process, args=(str(db), seconds + 15, rq))
    reader.start()
    for p in procs:
        p.start()
    rss = []
    t0 = time.monotonic()
    cpu0 = cpu_seconds(recv.pid)
    while any(p.is_alive() for p in procs):
        rss.append((time.monotonic() - t0, rss_mb(recv.pid)))
        cpu_end = cpu_seconds(recv.pid)
        time.sleep(1.0)
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.monotonic() - t0
    load_during = os.getloadavg()
    recv.send_signal(signal.SIGINT)
    out, err = recv.communicate(timeout=120)
    lags, reader_costs = rq.get()
    reader.join()
    acked = [k for _, a, _, _ in results for k in a]
    failed = [k for _, _, f, _ in results for k in f]
    per_batch = results[0][3]
    check = verify(db, acked, per_batch)

    summary = json.loads(out) if out.strip() else {}
    steady = [m for t, m in rss if t >= 10]
    return {
        "seconds": elapsed, "acked_spans": len(acked) * per_batch, "failed_batches": len(failed),
        "rate": len(acked) * per_batch / elapsed, "receiver": summary, "check": check,
        "cpu_us_per_span": 1e6 * (cpu_end - cpu0) / max(1, len(acked) * per_batch),
        "rss_10s": steady[0] if steady else None, "rss_end": steady[-1] if steady else None,
        "rss_max": max((m for _, m in rss), default=None),
        "lag_p50": statistics.median(lags) if lags else None, "lag_max": max(lags) if lags else None,
        "reader_refresh_p50": statistics.median(c[0] for c in reader_costs) if reader_costs else None,
        "reader_query_p50": statistics.median(c[1] for c in reader_costs) if reader_costs else None,
        "load_before": load_before, "load_during": load_during, "stderr_tail": err[-500:],
    }


def verify(db: Path, acked: list[int], per_batch: int) -> dict:
    """Every acknowledged batch whole in the incident, and no span twice."""
    from oncall.store import open_db

    with open_db(db, read_only=True) as store:
        cur = store.cursor()
        total, distinct = cur.execute("SELECT count(*), count(DISTINCT (trace_id, span_id)) FROM spans").fetchone()
        # span_id = batch key (48 bits) << 16 | index: the first 12 hex digits name the batch
        counts = dict(cur.execute("SELECT substr(span_id, 1, 12), count(*) FROM spans GROUP BY 1").fetchall())
    missing = [k for k in acked if counts.get(f"{k:012x}", 0) != per_batch]
    return {"spans_in_incident": int(total), "distinct": int(distinct), "acked_batches_incomplete": len(missing)}


def _s(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--exporters", type=int, default=4)
    ap.add_argument("--senders", type=int, default=8, help="concurrent requests per exporter process")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="offer about this many spans/s in all (paced senders); default: as fast as acknowledged")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--json", metavar="PATH", help="also write every figure measured to PATH")
    args = ap.parse_args()
    r = run(args.seconds, args.exporters, args.senders, args.rate)
    c = r["check"]
    lines = [
        "## Receive (`oncall receive`)",
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} ({os.cpu_count()} cores): "
        f"`.venv/bin/python bench/receive.py --seconds {args.seconds:g} --exporters {args.exporters} "
        f"--senders {args.senders}{f' --rate {args.rate:g}' if args.rate else ''}`. Load average before: {r['load_before'][0]:.2f} (1 min), "
        f"at the end: {r['load_during'][0]:.2f}, {r['load_during'][1]:.2f}, {r['load_during'][2]:.2f}.",
        "",
        "| measure | value | target |",
        "|---|---:|---|",
        f"| spans acknowledged / s | {r['rate']:,.0f} | >= 20,000 |",
        f"| spans acknowledged | {r['acked_spans']:,} in {r['seconds']:.1f} s | |",
        f"| acknowledged batches missing a span in the incident | {c['acked_batches_incomplete']} | 0 |",
        f"| spans in the incident / distinct | {c['spans_in_incident']:,} / {c['distinct']:,} | equal |",
        f"| batches the exporters gave up on (not acknowledged) | {r['failed_batches']} | |",
        f"| receiver RSS at 10 s / at the end / max (MB) | {r['rss_10s'] or 0:,.0f} / {r['rss_end'] or 0:,.0f} / "
        f"{r['rss_max'] or 0:,.0f} | flat |",
        f"| newest span's age seen by a console refreshing every 1 s: median / max (s) | "
        f"{r['lag_p50'] or 0:.2f} / {r['lag_max'] or 0:.2f} | < 2 s |",
        f"| of which, median: a part's first request queued / the part's write / the console's refresh + "
        f"query (s) | {_s(r['receiver'].get('queued_seconds_recent_median'))} / "
        f"{_s(r['receiver'].get('flush_seconds_recent_median'))} / "
        f"{_s(r['reader_refresh_p50'])} + {_s(r['reader_query_p50'])} | |",
        f"| receiver CPU per acknowledged span (user + system, all its threads) | {r['cpu_us_per_span']:.0f} µs | |",
        f"| receiver: parts written / 429s sent | {r['receiver'].get('parts', '?')} / "
        f"{r['receiver'].get('busy_responses', '?')} | |",
    ]
    text = "\n".join(lines)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({k: v for k, v in r.items() if k != "stderr_tail"}, default=str))
    if not args.no_write:
        write_section(BEGIN, END, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
