"""The redaction prefilter's cost on ingest: today's rules against an earlier revision's, same run.

    .venv/bin/python bench/prefilter.py                       # 100k spans, median of 3, vs c0105a3
    .venv/bin/python bench/prefilter.py --spans 200000 --base REV

Clean records (almost all of them) pay only the PREFILTER scan, so a rule added without its
prefilter entry staying cheap shows up here as load time. Each run is a fresh `oncall load` in its
own process of bench/ingest.py's deterministic files (generic JSONL and OTLP JSON Lines), once with
the redaction rules of this checkout and once with those of `--base` (oncall/redact.py as `git show`
gives it, swapped in before the load starts), alternating, so both see the same machine. Prints the
median wall time of each, their ratio, and the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.ingest import generate  # noqa: E402

# Runs `oncall load` with oncall.redact's rules replaced by those of another file.
CHILD = """
import importlib.util, sys
rules = sys.argv[1]
if rules != "-":
    spec = importlib.util.spec_from_file_location("base_redact", rules)
    base = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(base)
    import oncall.redact as r
    for name in ("PASSES", "PREFILTER", "_py_passes", "_py_prefilter"):
        setattr(r, name, getattr(base, name))
    import oncall.ingest.writer as w
    w.PREFILTER = base.PREFILTER
from oncall.cli import main
sys.argv = ["oncall", "--db", sys.argv[2], "load", "--no-progress", sys.argv[3]]
main()
"""


def one(rules: str, data: Path, work: Path) -> float:
    db = work / f"i-{time.monotonic_ns()}.duckdb"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", CHILD, rules, str(db), str(data)], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spans", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--base", default="c0105a3", help="git revision whose oncall/redact.py is the reference")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base_rules = work / "base_redact.py"
        base_rules.write_bytes(subprocess.run(["git", "show", f"{args.base}:oncall/redact.py"], cwd=ROOT,
                                              check=True, capture_output=True).stdout)
        print(f"load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}; "
              f"{os.cpu_count()} cores; {args.spans:,} spans; median of {args.runs}")
        for kind in ("generic", "otlp"):
            data = generate(kind, args.spans)
            times: dict[str, list[float]] = {"this checkout": [], args.base: []}
            for _ in range(args.runs):
                times["this checkout"].append(one("-", data, work))
                times[args.base].append(one(str(base_rules), data, work))
            now, base = (statistics.median(v) for v in times.values())
            print(f"{kind:8} rules of this checkout {now:6.2f} s, rules of {args.base} {base:6.2f} s, "
                  f"ratio {now / base:.3f} (runs: {', '.join(f'{t:.2f}' for t in times['this checkout'])} / "
                  f"{', '.join(f'{t:.2f}' for t in times[args.base])})")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
