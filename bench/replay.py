"""Replay throughput and memory: `oncall replay` against the loopback server answering after 200 ms.

    .venv/bin/python bench/replay.py                 # 500 requests x3 runs, then 5,000 for memory
    .venv/bin/python bench/replay.py --runs 5 --no-write

What it does, per run, in a fresh `oncall replay` subprocess (the real CLI, the real `openai` client,
results through db.append into the incident's journal):
1. an incident of N request/response log records (generated, loaded once per N with `oncall load`);
2. the loopback OpenAI-compatible server (tests/openai_server.py) in a process of its own, every
   answer 200 ms late, keeping no exchanges (it only counts);
3. `oncall replay --target loop --concurrency 32 --yes --json`; meanwhile this process opens the
   incident read-only and counts the results other processes can already see (twice a second);
4. wall time of the run itself (the run's `running` state row to its `finished` row, both stored),
   the whole process (launch to exit, with imports and planning), and its own peak RSS
   (bench/peak_rss.py; until 2026-12-03 this bench read `os.wait4` here, which reported this
   process's peak after building the incident, 164-236 MB, not oncall's).
Ideal: ceil(N / 32) x 200 ms (a perfect pool: 3.2 s for 500; the issue's 3.1 s is N/32 x 200 ms).
Reference, measured in the same run on the same machine: a bare client (the same `AsyncOpenAI`, a
semaphore of 32, no database, no checks) sending the same N requests to the same server, so the
cost of oncall's own work can be told from a machine too busy to run either at the ideal.
Target: run wall time within 1.3x of ideal; memory flat in N (peak RSS at 5,000 vs 500).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench.peak_rss import run_with_peak  # noqa: E402
from bench.results import write_section  # noqa: E402

LATENCY = 0.2
CONCURRENCY = 32


def build(tmp: Path, n: int) -> Path:
    from replay_helpers import build_incident, record

    recs = [record(i, f"Where is parcel {i:06d} and when will it arrive?", f"Parcel {i} arrives on Tuesday.")
            for i in range(n)]
    return build_incident(tmp, recs, name=f"bench-{n}.duckdb")


def suite_for(tmp: Path, base_url: str) -> Path:
    suite = tmp / "suite"
    suite.mkdir(exist_ok=True)
    (suite / "targets.toml").write_text(f"""[settings]
confirm_above = 1000

[targets.loop]
base_url = "{base_url}"
model = "gpt-4o"
api_key_env = "ONCALL_BENCH_KEY"
price_in = 2.5
price_out = 10
max_concurrency = {CONCURRENCY}
""")
    return suite


def one_run(db: Path, suite: Path, n: int) -> dict[str, float]:
    from oncall.store import open_db

    env = {**os.environ, "ONCALL_BENCH_KEY": "sk-bench-0123456789abcdef",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    seen: list[tuple[float, int]] = []
    stop = threading.Event()
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "oncall", "replay", "--db", str(db), "--suite", str(suite),
                             "--target", "loop", "--concurrency", str(CONCURRENCY), "--yes", "--no-progress",
                             "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def watch() -> None:  # another process reading the incident while the replay writes it
        with open_db(db, read_only=True) as reader:
            while not stop.is_set():
                reader.refresh()
                count = reader.cursor().execute("SELECT count(*) FROM replay_results WHERE run_id = "
                                                "(SELECT max(run_id) FROM replay_runs)").fetchone()[0]
                seen.append((time.monotonic() - t0, int(count)))
                stop.wait(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, err = proc.communicate()
    wall = time.monotonic() - t0
    stop.set()
    watcher.join()
    if proc.returncode != 0:
        raise SystemExit(f"oncall replay failed ({proc.returncode}): {err.decode()[-2000:]}")
    summary = json.loads(out)
    assert summary["counts"]["ok"] == n, summary["counts"]
    with open_db(db, read_only=True) as store:
        run_id = summary["run_id"]
        rows = store.cursor().execute("SELECT status, created_at FROM replay_run_states WHERE run_id = ? "
                                      "ORDER BY state_id", [run_id]).fetchall()
    times = {s: t for s, t in rows}
    run_wall = (times["finished"] - times["running"]).total_seconds()
    mid = [c for t, c in seen if 0 < c < n]
    return {"run_wall": run_wall, "process_wall": wall, "partial_views": len(mid)}


def run_rss(db: Path, suite: Path, n: int) -> tuple[dict[str, float], float]:
    """One run in a child whose own peak RSS is measured (bench/peak_rss.py; no reader polling beside it)."""
    env = {**os.environ, "ONCALL_BENCH_KEY": "sk-bench-0123456789abcdef",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    t0 = time.monotonic()
    proc, peak_mb = run_with_peak([sys.executable, "-m", "oncall", "replay", "--db", str(db), "--suite", str(suite),
                                   "--target", "loop", "--concurrency", str(CONCURRENCY), "--yes", "--no-progress",
                                   "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"oncall replay failed with status {proc.returncode}")
    out = proc.stdout
    summary = json.loads(out)
    assert summary["counts"]["ok"] == n, summary["counts"]
    from oncall.store import open_db

    with open_db(db, read_only=True) as store:
        rows = store.cursor().execute("SELECT status, created_at FROM replay_run_states WHERE run_id = ? "
                                      "ORDER BY state_id", [summary["run_id"]]).fetchall()
    times = {s: t for s, t in rows}
    return {"run_wall": (times["finished"] - times["running"]).total_seconds(), "process_wall": wall,
            "partial_views": 0}, peak_mb


REFERENCE = """
import asyncio, json, sys, time
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion
url, n, conc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
async def main():
    c = AsyncOpenAI(base_url=url, api_key="sk-bench", max_retries=0)
    sem = asyncio.Semaphore(conc)
    async def one(i):
        async with sem:
            body = {"model": "gpt-4o", "temperature": 0.2, "max_tokens": 300, "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": f"Where is parcel {i:06d} and when will it arrive?"}]}
            r = await c.post("/chat/completions", cast_to=ChatCompletion, body=body)
            return r.choices[0].message.content
    t0 = time.monotonic()
    await asyncio.gather(*[one(i) for i in range(n)])
    print(json.dumps({"wall": time.monotonic() - t0}))
    await c.close()
asyncio.run(main())
"""


def reference_run(base_url: str, n: int) -> float:
    out = subprocess.run([sys.executable, "-c", REFERENCE, base_url, str(n), str(CONCURRENCY)], check=True,
                         capture_output=True, text=True).stdout
    return float(json.loads(out)["wall"])


# The loopback server in a process of its own: its threads never share an interpreter (and a GIL)
# with the client being measured or with this process's reader. Each line on its stdin is answered
# with the number of requests it has received.
SERVER = """
import sys
sys.path.insert(0, sys.argv[1])
from openai_server import OpenAIServer
srv = OpenAIServer(latency=float(sys.argv[2]), keep_exchanges=False).start()
print(srv.base_url, flush=True)
for _ in sys.stdin:
    print(srv.requests_received, flush=True)
"""


class ServerProcess:
    def __enter__(self) -> ServerProcess:
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, str(ROOT / "tests"), str(LATENCY)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.base_url = self.proc.stdout.readline().strip()
        return self

    @property
    def requests_received(self) -> int:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait()


def console_keys(tmp: Path, n: int) -> dict[str, float]:
    """Key presses in the console's compare screen while a replay of n requests runs from it (the server
    in its own process, so its threads do not share the console's interpreter)."""
    with ServerProcess() as server:
        return asyncio.run(_console_keys(tmp, n, server.base_url))


async def _console_keys(tmp: Path, n: int, base_url: str) -> dict[str, float]:
    from oncall.replay import runner
    from oncall.replay.suite import load_suite
    from oncall.store import open_db
    from oncall.tui.app import OncallApp
    from oncall.tui.screens.replay import ReplayScreen

    os.environ["ONCALL_BENCH_KEY"] = "sk-bench-0123456789abcdef"
    work_dir = tmp / "console"
    work_dir.mkdir()
    suite = load_suite(suite_for(work_dir, base_url))
    db_path = build(work_dir, n)
    store = open_db(db_path)
    target = suite.target("loop")
    spec = runner.ReplaySpec(target=target, concurrency=CONCURRENCY, retry=suite.retry)
    run_id = runner.create_run(store, spec, runner.plan(store.cursor(), spec))
    app = OncallApp(store, keymap={})
    presses: list[float] = []
    idle: list[float] = []
    during = 0
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()
        app.push_screen(ReplayScreen(run_id, start=True))
        for _ in range(400):
            await pilot.pause(0.05)
            if len(app.screen.pairs) >= 3:
                break
        screen = app.screen
        for i in range(30):
            if not screen.running:
                break
            await pilot.pause(0.1)
            before = screen.index
            key = "j" if i % 2 == 0 else "k"
            t = time.perf_counter()
            await pilot.press(key)
            while screen.index == before and time.perf_counter() - t < 5:
                await asyncio.sleep(0.001)
            presses.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            await pilot.press("f12")  # an unbound key: Pilot's own cost of a press
            idle.append((time.perf_counter() - t) * 1000)
            during += 1
        while screen.running:
            await pilot.pause(0.2)
    store.close()
    return {"press_ms": statistics.median(presses), "press_max_ms": max(presses),
            "pilot_ms": statistics.median(idle), "presses": during}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--memory-n", type=int, default=5000, help="second size for the memory comparison (0: skip)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    ap.add_argument("--no-console", action="store_true", help="skip the console key-press measurement")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="oncall-bench-replay-"))
    ideal = math.ceil(args.n / CONCURRENCY) * LATENCY
    with ServerProcess() as srv:
        suite = suite_for(tmp, srv.base_url)
        db = build(tmp, args.n)
        runs = []
        refs = []
        loads = []
        for i in range(args.runs):
            loads.append(os.getloadavg()[0])
            refs.append(reference_run(srv.base_url, args.n))
            before = srv.requests_received
            r = one_run(db, suite, args.n)
            r["server_requests"] = srv.requests_received - before
            runs.append(r)
            print(f"run {i + 1}: run {r['run_wall']:.2f} s (bare client {refs[-1]:.2f} s), process "
                  f"{r['process_wall']:.2f} s, {r['server_requests']} requests, results visible to a reader mid-run "
                  f"{r['partial_views']} times, load average {loads[-1]:.1f}", flush=True)
        _, rss_small = run_rss(db, suite, args.n)
        rss_big = None
        big_wall = None
        if args.memory_n:
            big = build(tmp, args.memory_n)
            rb, rss_big = run_rss(big, suite, args.memory_n)
            big_wall = rb["run_wall"]
            print(f"{args.memory_n}: run {rb['run_wall']:.2f} s (ideal {math.ceil(args.memory_n / CONCURRENCY) * LATENCY:.1f} s), "
                  f"peak RSS {rss_big:.0f} MB vs {rss_small:.0f} MB at {args.n}", flush=True)

    console = None if args.no_console else console_keys(tmp, args.n)
    if console:
        print(f"console: key press handled in {console['press_ms']:.1f} ms (max {console['press_max_ms']:.1f}, "
              f"Pilot's own {console['pilot_ms']:.1f}) over {console['presses']} presses during the run", flush=True)
    med = statistics.median(r["run_wall"] for r in runs)
    med_ref = statistics.median(refs)
    med_proc = statistics.median(r["process_wall"] for r in runs)
    ratio = med / ideal
    lines = [
        "## Replay",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: `oncall replay` (a subprocess: the real CLI "
        f"and `openai` client, results through db.append) against tests/openai_server.py on loopback answering "
        f"after {int(LATENCY * 1000)} ms, concurrency {CONCURRENCY}; median of {args.runs} runs.",
        f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.platform()}; shared with "
        f"other engineers' jobs: 1-minute load average {min(loads):.1f}-{max(loads):.1f} during the runs.",
        f"Command: `python bench/replay.py --n {args.n} --runs {args.runs} --memory-n {args.memory_n}`",
        "",
        "| what | measured | ideal / target | |",
        "|---|---:|---:|---|",
        f"| {args.n} requests, run wall time (running -> finished state rows) | {med:.2f} s | ideal {ideal:.1f} s, "
        f"target <= {1.3 * ideal:.1f} s (1.3x) | {'met' if ratio <= 1.3 else 'missed'} ({ratio:.2f}x) |",
        f"| the same {args.n} requests from a bare client (reference, same run) | {med_ref:.2f} s | ideal {ideal:.1f} s "
        f"| oncall / bare = {med / med_ref:.2f}x |",
        f"| {args.n} requests, whole process (launch, plan, run, summary) | {med_proc:.2f} s | | |",
        f"| results visible to another process during the run (polls with 0 < results < {args.n}) | "
        f"{statistics.median(r['partial_views'] for r in runs):.0f} | > 0 (written as they arrive) | "
        f"{'met' if all(r['partial_views'] > 0 for r in runs) else 'missed'} |",
        f"| peak RSS at {args.n} requests | {rss_small:.0f} MB | | |",
    ]
    if rss_big is not None:
        growth = rss_big / rss_small
        lines.append(f"| peak RSS at {args.memory_n} requests (run {big_wall:.1f} s) | {rss_big:.0f} MB | flat: "
                     f"{growth:.2f}x of {args.n} | {'met' if growth < 1.3 else 'missed'} |")
    if console:
        net = console["press_ms"] - console["pilot_ms"]
        lines.append(f"| console: j/k on the compare screen while a {args.n}-request replay runs from it, press to the "
                     f"next pair on screen ({console['presses']} presses) | {console['press_ms']:.0f} ms (max "
                     f"{console['press_max_ms']:.0f}) | | |")
        lines.append(f"| the same, net of Pilot's own cost of a press (an unbound key: {console['pilot_ms']:.0f} ms) | "
                     f"{net:.0f} ms | < 100 ms | {'met' if net < 100 else 'missed'} |")
    lines += ["", "Runs (oncall / bare client): " + ", ".join(f"{r['run_wall']:.2f} / {x:.2f} s"
                                                        for r, x in zip(runs, refs, strict=True)) + "."]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("<!-- replay:begin -->", "<!-- replay:end -->", text)


if __name__ == "__main__":
    main()
