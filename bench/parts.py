"""Many load parts: the responder's queries on the same 1M spans split into 1, 10, 100 parts, and after an
hour-equivalent of one-second parts compacted as they arrive (issue 21 item 2, issue 22 item 2).

    .venv/bin/python bench/parts.py                    # layouts from bench/query.py's 1M-span database
    .venv/bin/python bench/parts.py --spans 200000     # smaller, to try it
    .venv/bin/python bench/parts.py --layouts 10,100   # only some layouts
    .venv/bin/python bench/parts.py --reuse            # measure the layouts an earlier run cut

Layouts are cut from the one load part of bench/query.py's database (built there if missing), so
every layout holds exactly the same rows: part k gets the k-th slice of spans in load order with
their ids, as k loads of consecutive slices of the export leave them (`oncall load` of each slice
writes the same tables; cutting is 100x faster than reloading). Each part is registered through
the journal as a load registers it.

- `N`: N parts, no compaction (what the views cost with N parts);
- `hour`: 3,600 parts registered one after another (one-second parts of ~280 spans at 1M), the
  compactor's pass (oncall/store/compact.py, default policy) run after each registration as the
  receiver's background compactor does; the layout it leaves is what is measured.

Each operation runs on the layout and on the one-part database interleaved (one, then the other,
RUNS times), so the ratio holds on a shared machine whatever its load. Results go to
bench/RESULTS.md between the parts markers.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ingest import DATA, machine  # noqa: E402
from query import build  # noqa: E402
from results import write_section  # noqa: E402

BEGIN, END = "<!-- parts:begin -->", "<!-- parts:end -->"
HOUR_PARTS = 3600


def cut(src_db: Path, dst_db: Path, n_parts: int, compact_each: bool = False) -> dict[str, float]:
    """Write dst_db as src_db's spans in n_parts load parts; returns how long it took."""
    from oncall.store import open_db
    from oncall.store.compact import compact
    from oncall.store.db import remove_incident
    from oncall.store.loadparts import attach_new_part, detach_part
    from oncall.store.parts import numbers_on_disk, part_files, parts_dir

    remove_incident(dst_db)
    dst_db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src_db, dst_db)
    (src,) = part_files(src_db)
    db = open_db(dst_db)
    cur = db.cursor()
    cur.execute(f"ATTACH '{src}' AS src (READ_ONLY)")
    pks = list(cur.execute(
        f"SELECT quantile_disc(span_pk, [i / {n_parts} for i in range(1, {n_parts})]) FROM src.spans").fetchone()[0])
    bounds = [None, *pks, None]
    t0 = time.perf_counter()
    merging = 0.0
    for k in range(n_parts):
        lo, hi = bounds[k], bounds[k + 1]
        where = " AND ".join([f"span_pk >= {lo}"] * (lo is not None) + [f"span_pk < {hi}"] * (hi is not None)) or "true"
        # Numbered as a load numbers its part: merged parts share the numbering.
        number = max(numbers_on_disk(dst_db) | db.registered_parts(), default=0) + 1
        path = parts_dir(dst_db) / f"part-{number}.duckdb"
        path.parent.mkdir(parents=True, exist_ok=True)
        pcur = attach_new_part(db, path, "cutpart")
        pcur.execute(f"INSERT INTO cutpart.main.spans SELECT * FROM src.spans WHERE {where}")
        pcur.execute(f"INSERT INTO cutpart.main.span_ids SELECT * FROM src.span_ids WHERE {where}")
        if k == 0:
            pcur.execute("INSERT INTO cutpart.main.imports SELECT * FROM src.imports")
            pcur.execute("INSERT INTO cutpart.main.problems SELECT * FROM src.problems")
        detach_part(db, pcur, "cutpart")
        db.register_part(number, [1] if k == 0 else [])
        if compact_each:
            t = time.perf_counter()
            compact(db)
            merging += time.perf_counter() - t
    cur.execute("DETACH src")
    out = {"seconds": time.perf_counter() - t0, "compaction_s": merging, "parts": len(db.attached_parts())}
    db.close()
    return out


def reused(dst: Path) -> dict[str, float] | None:
    """What cutting `dst` reported, if an earlier run cut it (and nothing else wrote it since)."""
    info = dst.parent / "cut.json"
    if not (dst.exists() and info.exists() and info.stat().st_mtime >= dst.stat().st_mtime):
        return None
    print(f"reusing {dst.parent.name} (cut earlier: {info})", flush=True)
    return json.loads(info.read_text())


def ops(con, ids: list[str], rng: random.Random) -> list[tuple[str, object, int | None]]:
    from oncall.query.changes import changes
    from oncall.query.compare import compare
    from oncall.query.ids import resolve_request
    from oncall.query.sample import sample
    from oncall.query.search import count, search

    three = "tenant=acme served_model=gpt-4o-mini-2024-11-20 since=-6h"
    return [
        ("request-ID lookup", lambda: resolve_request(con, rng.choice(ids)), 10),
        (f"search, three terms: {three}", lambda: search(con, three, limit=50), 200),
        ("search, text: tenant=acme refund", lambda: search(con, "tenant=acme refund", limit=50), 200),
        ("count of a three-term filter", lambda: count(con, three), 200),
        ("sample 50 of a cohort (tenant=acme)", lambda: sample(con, "tenant=acme", 50, seed=rng.randrange(99)), 100),
        ("compare tenant=acme vs tenant=globex", lambda: compare(con, "tenant=acme", "tenant=globex"), 500),
        ("changes (all traffic)", lambda: changes(con), 1000),
    ]


def measure(one: Path, layout: Path, runs: int) -> list[tuple[str, float, float, int | None, float, float]]:
    """(operation, one part ms, layout ms, target, one part CPU ms, layout CPU ms), medians.

    CPU is the process's (every DuckDB thread): on a shared machine wall time says how busy the
    machine was, CPU what the query cost and, over wall, how many cores it could use."""
    from oncall.store import open_db

    a = open_db(one, read_only=True)
    b = open_db(layout, read_only=True)
    ca, cb = a.cursor(), b.cursor()
    ids = [r[0] for r in ca.execute("SELECT request_id FROM spans USING SAMPLE 200 ROWS").fetchall()]
    rows = []
    for (name, fa, target), (_, fb, _) in zip(ops(ca, ids, random.Random(5)), ops(cb, ids, random.Random(5)),
                                              strict=True):
        fa()
        fb()
        ta, tb, pa, pb = [], [], [], []
        n = 3 if name.startswith(("compare", "changes")) else runs
        for _ in range(n):
            t, p = time.perf_counter(), time.process_time()
            fa()
            ta.append((time.perf_counter() - t) * 1000)
            pa.append((time.process_time() - p) * 1000)
            t, p = time.perf_counter(), time.process_time()
            fb()
            tb.append((time.perf_counter() - t) * 1000)
            pb.append((time.process_time() - p) * 1000)
        rows.append((name, statistics.median(ta), statistics.median(tb), target, statistics.median(pa),
                     statistics.median(pb)))
        print(f"  {name:<70} one part {rows[-1][1]:8.1f} ms  layout {rows[-1][2]:8.1f} ms  "
              f"x{rows[-1][2] / rows[-1][1]:.2f}", flush=True)
    a.close()
    b.close()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spans", type=int, default=1_000_000)
    ap.add_argument("--layouts", default="10,100,hour")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--reuse", action="store_true",
                    help="measure a layout already cut by an earlier run (same database) instead of cutting it again")
    args = ap.parse_args()
    one = build(args.spans)
    sections = []
    for layout in args.layouts.split(","):
        dst = DATA / f"parts-{args.spans}-{layout}" / "incident.duckdb"
        hour = layout == "hour"
        info = reused(dst) if args.reuse else None
        if info is None:
            print(f"cutting {layout} ...", flush=True)
            info = cut(one, dst, HOUR_PARTS if hour else int(layout), compact_each=hour)
            (dst.parent / "cut.json").write_text(json.dumps(info))
        print(f"  {info}", flush=True)
        load = os.getloadavg()
        rows = measure(one, dst, args.runs)
        load_end = os.getloadavg()
        sections.append((layout, info, rows, load, load_end))
    m = machine()
    lines = [
        "## Many load parts (views over N parts, and compaction)",
        "",
        f"Measured {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} on bench/query.py's {args.spans:,}-span "
        "database cut into N load parts (same rows); each operation run on the one-part database and on the "
        f"layout interleaved, median of {args.runs} pairs (3 for compare and changes), in one process; CPU is "
        "the process's CPU time (all of DuckDB's threads), which a busy machine does not inflate as it does wall "
        "time: CPU over wall is the cores a query could use.",
        f"Machine: {m['cpus']} CPUs ({m['cpu']}), {m['ram']} RAM; Python {m['python']}, DuckDB {m['duckdb']}, "
        f"{platform.platform()}. Shared with other engineers' jobs: the load average is given per layout.",
        f"Command: `python bench/parts.py {' '.join(sys.argv[1:])}`",
        "",
    ]
    for layout, info, rows, load, load_end in sections:
        what = (f"{HOUR_PARTS} one-second parts compacted as they arrived: **{info['parts']} parts** left "
                f"(compaction {info['compaction_s']:.0f} s of {info['seconds']:.0f} s)" if layout == "hour"
                else f"{layout} parts")
        lines += [f"**{what}**; load average {load[0]:.1f} at the start, {load_end[0]:.1f} at the end.", "",
                  "| operation | one part, ms | this layout, ms | ratio | target ms | CPU ms, one part | CPU ms, layout |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for name, a, b, target, cpu_a, cpu_b in rows:
            lines.append(f"| {name} | {a:.1f} | {b:.1f} | {b / a:.2f} | {target or ''} | {cpu_a:.0f} | {cpu_b:.0f} |")
        lines.append("")
    text = "\n".join(lines)
    if not args.no_write:
        write_section(BEGIN, END, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
