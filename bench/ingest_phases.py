"""Where one `oncall load` spends its time: wall seconds per phase, per thread.

    .venv/bin/python -m bench.ingest_phases DB FILE      # prints a JSON report

Run by `bench/ingest.py --profile` in its own subprocess. The load runs in process with the
loader's phases wrapped in timers (no cProfile: its per-call overhead would distort the Python
share). Each phase's time is exclusive: a phase called inside another is counted once, in the
inner one. The insert thread (writer.FileWriter._insert: DuckDB redacting, parsing, projecting
and writing a batch) runs beside the main thread, so the two columns overlap in wall time; the
main thread's "waits for the insert thread" is the part of that DuckDB time Python could not hide.
"""

from __future__ import annotations

import functools
import json
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_local = threading.local()
totals: dict[tuple[str, str], float] = defaultdict(float)
calls: dict[tuple[str, str], int] = defaultdict(int)


def _thread() -> str:
    return "main" if threading.current_thread() is threading.main_thread() else "insert"


def _enter() -> None:
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    stack.append(0.0)  # time spent in nested phases, subtracted from this one


def _exit(phase: str, elapsed: float) -> None:
    stack = _local.stack
    nested = stack.pop()
    key = (_thread(), phase)
    totals[key] += elapsed - nested
    calls[key] += 1
    if stack:
        stack[-1] += elapsed


def timed(phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _enter()
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _exit(phase, time.perf_counter() - t)
    return wrapper


def timed_iter(phase: str, fn: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    """A generator function whose every next() is counted (reading and cutting lines)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
        it = fn(*args, **kwargs)
        while True:
            _enter()
            t = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                return
            finally:
                _exit(phase, time.perf_counter() - t)
            yield item
    return wrapper


def patch(obj: Any, attr: str, phase: str, *, generator: bool = False) -> None:
    if not hasattr(obj, attr):
        return  # a phase this version of the loader does not have
    fn = getattr(obj, attr)
    setattr(obj, attr, (timed_iter if generator else timed)(phase, fn))


def instrument() -> None:
    from oncall.ingest import cost, jsonio, loader, source, writer
    from oncall.ingest.formats import generic, otlp, otlp_jsonl

    patch(loader, "load_file", "load: commits, bookkeeping, other")
    patch(loader, "write_import", "load: commits, bookkeeping, other")
    patch(loader, "PartWriter", "load: attach the part")
    for mod in (generic, otlp_jsonl, source):
        patch(mod, "iter_lines", "read and cut lines (Python)", generator=True)
    patch(jsonio, "loads", "parse JSON (orjson)")
    patch(otlp, "map_attributes", "map attributes (mapping.py)")
    patch(otlp, "span_row", "span to row: decode, build (Python)")
    patch(otlp_jsonl, "add_document", "walk documents (Python)")
    patch(generic, "iter_line_blocks", "read and cut lines (Python)", generator=True)
    patch(generic, "_block_lines", "split blocks into lines (Arrow)")
    patch(generic, "_insert_batch", "hand a block to the insert thread")
    patch(generic, "_report_bad_lines", "name skipped lines (DuckDB)")
    patch(generic, "_read_jsonl", "importer: other (Python)")
    patch(otlp_jsonl, "read", "importer: other (Python)")
    patch(writer.FileWriter, "add", "rows to the writer (Python)")
    patch(writer.FileWriter, "flush", "rows to Arrow (Python)")
    patch(writer.FileWriter, "drain", "waits for the insert thread")
    patch(writer.FileWriter, "_insert", "insert: redact, parse, project, write (DuckDB)")
    patch(writer.FileWriter, "_redacted", "insert: redaction prefilter (DuckDB)")
    patch(writer, "_dedupe", "finish: dedupe (DuckDB)")
    patch(writer, "resolve_inheritance", "finish: inherited keys (DuckDB)")
    patch(writer, "estimate_costs", "finish: cost estimates (DuckDB)")
    patch(cost, "estimate_costs", "finish: cost estimates (DuckDB)")
    patch(writer.FileWriter, "finish", "finish: ids index, other (DuckDB)")


def main() -> int:
    db_path, file_path = sys.argv[1], sys.argv[2]
    instrument()
    from oncall.ingest.loader import load_paths
    from oncall.store import open_db

    t0 = time.perf_counter()
    db = open_db(db_path)
    t1 = time.perf_counter()
    report = load_paths(db, [file_path])
    t2 = time.perf_counter()
    db.close()
    t3 = time.perf_counter()
    phases = [{"thread": th, "phase": ph, "seconds": round(s, 3), "calls": calls[(th, ph)]}
              for (th, ph), s in sorted(totals.items(), key=lambda kv: (kv[0][0] != "main", -kv[1]))]
    phases.append({"thread": "main", "phase": "open and close the incident", "seconds": round(t1 - t0 + t3 - t2, 3),
                   "calls": 1})
    print(json.dumps({"file": file_path, "spans": report.spans_added, "wall_s": round(t3 - t0, 3),
                      "load_s": round(t2 - t1, 3), "phases": phases}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
