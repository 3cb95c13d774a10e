"""CPU per span of the receive path in process, without HTTP or compaction: decode, then write parts.

    .venv/bin/python bench/receive_phases.py                      # 3 parts of 40 requests (20,520 spans)
    .venv/bin/python bench/receive_phases.py --parts 12 --requests 8 --gc-paced

The bench's own protobuf request (bench/receive.py: 513 GenAI spans made and encoded by the real
SDK) is given fresh ids per request; each part's requests are decoded as the receiver's handlers
decode them (live.payload.decode_body: the one OTLP mapping, staged as the writer's Arrow batch)
and written as one part (live.partwrite.write_part: redaction, insert, dedupe, inheritance, links,
cost, ids, checkpoint, register) into a fresh incident. Prints process CPU time per span of each
phase as JSON. `--gc-paced` paces the collector as `oncall receive` does (ingest.gcpace). Compare
two versions of the code by running this file from each checkout, interleaved, and note `uptime`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", type=int, default=3)
    ap.add_argument("--requests", type=int, default=40, help="requests of 513 spans per part")
    ap.add_argument("--gc-paced", action="store_true", help="pace the GC as `oncall receive` does")
    args = ap.parse_args()
    if args.gc_paced:
        from oncall.ingest.gcpace import pace_for_bulk_mapping

        pace_for_bulk_mapping()
    import pyarrow as pa
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from receive import renumber, request_shape, template_request

    from oncall.live.partwrite import write_part
    from oncall.live.payload import PROTOBUF, decode_body
    from oncall.store import open_db

    req = ExportTraceServiceRequest.FromString(template_request())
    spans, shape = request_shape(req)
    bodies = []
    for key in range(args.parts * args.requests):
        renumber(spans, shape, key, time.time_ns())
        bodies.append(req.SerializeToString())
    tmp = Path(tempfile.mkdtemp(prefix="oncall-receive-phases-"))
    try:
        db = open_db(tmp / "live.duckdb")
        n, decode_s, write_s = 0, 0.0, 0.0
        for p in range(args.parts):
            t0 = time.process_time()
            tables = [decode_body(body, PROTOBUF, None, max_bytes=1 << 30, source="otlp-http://bench").table
                      for body in bodies[p * args.requests:(p + 1) * args.requests]]
            part = pa.concat_tables(tables)
            t1 = time.process_time()
            write_part(db, part, source="otlp-http://bench", digest=f"part-{p}")
            write_s += time.process_time() - t1
            decode_s += t1 - t0
            n += part.num_rows
        spans_in, inherited = db.cursor().execute("SELECT count(*), count(inherited) FROM spans").fetchone()
        db.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({"spans": n, "decode_us_per_span": round(1e6 * decode_s / n, 1),
                      "write_us_per_span": round(1e6 * write_s / n, 1),
                      "total_us_per_span": round(1e6 * (decode_s + write_s) / n, 1),
                      "spans_in_incident": spans_in, "spans_with_inherited_keys": inherited}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
