"""What sharing an incident costs: views over read-only attached parts and the journal, at 1M spans.

    .venv/bin/python bench/shared.py                 # the 1M-span database of bench/query.py
    .venv/bin/python bench/shared.py --spans 200000  # smaller, to try it

Every process reads the incident through an in-memory DuckDB that attaches the base file and the
load parts read-only and folds the journal into tables behind views (oncall/store/db.py). This
measures, on the same database and in the same run:
- the responder's queries through those views against the same queries on the part's own tables
  (one DuckDB file opened directly, as before the journal), so the ratio is the cost of the views;
- opening the incident (attach + fold), with an empty journal and with 10,000 labels in it;
- one label written (append + fsync, as `oncall label` does, in-process);
- how long a reader takes to see a label another process wrote (its refresh loop polling at 50 ms).
Results go to bench/RESULTS.md between the shared markers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ingest import DATA, machine  # noqa: E402
from query import build, timed  # noqa: E402
from results import write_section  # noqa: E402

BEGIN, END = "<!-- shared:begin -->", "<!-- shared:end -->"


def direct_connection(part: Path):
    """The part's own tables, as a single-file database was read before (labels/notes empty)."""
    import duckdb

    con = duckdb.connect(str(part), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    from oncall.store.trail_tables import TABLES

    for name, spec in TABLES.items():
        if name == "meta":
            continue
        cols = ", ".join(f"{c} {t}" for c, t in spec.columns)
        con.execute(f"CREATE TEMP TABLE {name} ({cols})")
    return _OneCursor(con)


class _OneCursor:
    """Temp tables live on one connection: hand the query code that connection as its cursor too."""

    def __init__(self, con) -> None:
        self._con = con

    def cursor(self):
        return self

    def __getattr__(self, name):
        return getattr(self._con, name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spans", type=int, default=1_000_000)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    from oncall.query.compare import compare
    from oncall.query.ids import resolve_request
    from oncall.query.labels import add_label
    from oncall.query.search import count, search
    from oncall.store import open_db
    from oncall.store.parts import part_files

    src = build(args.spans)
    work = DATA / f"shared-{args.spans}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    db_path = work / "incident.duckdb"
    from oncall.store.db import copy_incident

    copy_incident(src, db_path)
    parts = part_files(db_path)
    if len(parts) != 1:
        raise SystemExit(f"expected one load part in {db_path}, found {len(parts)}")

    store = open_db(db_path, read_only=True)
    view = store.cursor()
    direct = direct_connection(parts[0])
    n = view.execute("SELECT count(*) FROM spans").fetchone()[0]
    ids = [r[0] for r in view.execute("SELECT request_id FROM spans USING SAMPLE 200 ROWS").fetchall()]
    rng = random.Random(5)
    three = "tenant=acme served_model=gpt-4o-mini-2024-11-20 since=-6h"
    ops = [
        ("request-ID lookup", lambda con: resolve_request(con, rng.choice(ids))),
        (f"search, three terms: {three}", lambda con: search(con, three, limit=50)),
        ("search, text: tenant=acme refund", lambda con: search(con, "tenant=acme refund", limit=50)),
        ("count of a three-term filter", lambda con: count(con, three)),
        ("compare tenant=acme vs tenant=globex", lambda con: compare(con, "tenant=acme", "tenant=globex")),
    ]
    rows = []
    for name, fn in ops:
        runs = 3 if "compare" in name else 7
        d_med, _ = timed(lambda fn=fn: fn(direct), runs)
        v_med, _ = timed(lambda fn=fn: fn(view), runs)
        rows.append((name, d_med, v_med))
        print(f"{name:<60} direct {d_med:8.1f} ms  views {v_med:8.1f} ms  x{v_med / d_med:.2f}", flush=True)
    store.close()
    direct.close()

    def open_close() -> None:
        open_db(db_path, read_only=True).close()

    open_empty, _ = timed(open_close, 7)
    writer = open_db(db_path)
    pks = [r[0] for r in writer.cursor().execute("SELECT span_pk FROM spans USING SAMPLE 100 ROWS").fetchall()]
    label_ms, _ = timed(lambda: add_label(writer, rng.choice(pks), "bad", note="bench"), 20)
    for i in range(10_000):
        writer.append_many([("labels", {"span_pk": pks[i % len(pks)], "label": "good", "author": "bench",
                                        "created_at": dt.datetime.now(dt.UTC)})])
    writer.close()
    open_10k, _ = timed(open_close, 7)

    reader = open_db(db_path, read_only=True)
    code = ("import sys; from oncall.store import open_db; from oncall.query.labels import add_note; "
            "db = open_db(sys.argv[1]); print('ready', flush=True); sys.stdin.readline(); "
            "add_note(db, 'seen?'); print('done', flush=True)")
    seen = []
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", code, str(db_path)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        before = reader.cursor().execute("SELECT count(*) FROM notes").fetchone()[0]
        t = time.perf_counter()
        proc.stdin.write("\n")
        proc.stdin.flush()
        while True:
            reader.refresh()
            if reader.cursor().execute("SELECT count(*) FROM notes").fetchone()[0] > before:
                break
            time.sleep(0.05)
        seen.append((time.perf_counter() - t) * 1000)
        proc.wait()
    reader.close()
    visible = statistics.median(seen)

    m = machine()
    lines = [
        "## Sharing an incident (parts, journal, views)",
        "",
        f"Measured {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} on a {n:,}-span incident built by "
        "`oncall load` (bench/query.py's database, one load part); medians of 7 runs after a warm-up (3 for "
        "compare), in one process, direct and through views in the same run.",
        f"Machine: {m['cpus']} CPUs ({m['cpu']}), {m['ram']} RAM; Python {m['python']}, DuckDB {m['duckdb']}, "
        f"{platform.platform()}.",
        f"Command: `python bench/shared.py {' '.join(sys.argv[1:])}`",
        "",
        "| operation | part's tables, ms | through the views, ms | ratio |",
        "|---|---:|---:|---:|",
    ]
    for name, d, v in rows:
        lines.append(f"| {name} | {d:.1f} | {v:.1f} | {v / d:.2f} |")
    lines += [
        "",
        "| journal and opening | median |",
        "|---|---:|",
        f"| open the incident read-only (attach base + part, fold an empty journal) | {open_empty:.1f} ms |",
        f"| the same with 10,000 labels in the journal | {open_10k:.1f} ms |",
        f"| write one label (label + trail event, one fsynced journal line) | {label_ms:.1f} ms |",
        f"| a label written by another process, seen by a reader polling refresh() | {visible:.0f} ms |",
    ]
    text = "\n".join(lines) + "\n"
    if not args.no_write:
        write_section(BEGIN, END, text)
    print(text)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
