"""Actions through a real LiteLLM proxy: plan time, and a flip from confirmation to verified.

    .venv/bin/python bench/actions.py                 # 3 flips + 3 undos, plans x20
    .venv/bin/python bench/actions.py --validate      # also flips with LiteLLM's --validate_config
    .venv/bin/python bench/actions.py --no-write      # print only

Starts two OpenAI-compatible upstreams on loopback and a real LiteLLM proxy with `--reload`
(.envs/litellm-proxy, from .ci/setup-actions.sh, or $ONCALL_LITELLM_BIN), routing support-bot to the
primary. A flip is `repoint support-bot -> support-bot-fallback`: timed from execute() being called
with the confirmation to the action being verified (two probes in a row answered by the fallback).
Targets (issue 12): flip < 15 s with the --reload proxy, plan < 1 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.results import write_section  # noqa: E402

FLIP = {"op": "repoint", "alias": "support-bot", "to": "support-bot-fallback"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--plans", type=int, default=20)
    ap.add_argument("--validate", action="store_true", help="also flip with litellm_bin (--validate_config)")
    ap.add_argument("--no-write", action="store_true")
    opts = ap.parse_args()

    from oncall.actions import get_adapter, load_config, plan, undo
    from oncall.actions.engine import execute
    from oncall.store import open_db
    from tests.actions.conftest import MASTER_KEY, UPSTREAM_KEY, litellm_bin, start_proxy, stop_proxy
    from tests.openai_server import OpenAIServer

    load_before = os.getloadavg()[0]
    binary = litellm_bin()
    if binary is None:
        print("bench/actions.py: no LiteLLM proxy; run .ci/setup-actions.sh", file=sys.stderr)
        return 2
    os.environ.update(LITELLM_MASTER_KEY=MASTER_KEY, UPSTREAM_KEY=UPSTREAM_KEY, LITELLM_LOCAL_MODEL_COST_MAP="True")
    work = Path(tempfile.mkdtemp(prefix="oncall-bench-actions-"))
    primary, fallback = OpenAIServer(name="primary").start(), OpenAIServer(name="fallback").start()
    t0 = time.monotonic()
    proxy = start_proxy(work / "proxy", primary, fallback, "--reload")
    startup = time.monotonic() - t0
    rows: list[tuple[str, list[float], float | None]] = []
    try:
        toml = work / "oncall.toml"

        def target(validate: bool) -> None:
            toml.write_text(f"""
[actions.targets.gateway]
adapter = "litellm-config"
config = "{proxy.config}"
proxy_url = "{proxy.url}"
master_key_env = "LITELLM_MASTER_KEY"
reload = "watch"
verify_timeout = 90
{f'litellm_bin = "{binary}"' if validate else ''}
""")

        target(False)
        cfg = load_config(toml)
        db = open_db(work / "incident.duckdb")
        plans = []
        for _ in range(opts.plans):
            s = time.perf_counter()
            plan(get_adapter("gateway", cfg), FLIP)
            plans.append(time.perf_counter() - s)
        rows.append(("plan (read config.yaml, round-trip, diff, checks)", plans, 1.0))

        # The reference: the same change written by hand (no oncall), timed until the proxy serves it,
        # polled the same way. The flip's overhead over the proxy's own reload is the difference.
        flipped = plan(get_adapter("gateway", cfg), FLIP)
        from oncall.actions import files

        new_bytes = files.apply_patch(proxy.original.decode(), flipped.payload["patch"]).encode()
        by_hand = []
        for _ in range(opts.runs):
            s = time.perf_counter()
            proxy.config.write_bytes(new_bytes)
            proxy.wait_serving(fallback.base_url, timeout=120)
            by_hand.append(time.perf_counter() - s)
            proxy.config.write_bytes(proxy.original)
            proxy.wait_serving(primary.base_url, timeout=120)
        rows.append(("reference: the same edit by hand, until the proxy serves the fallback", by_hand, None))

        for validate in ([False, True] if opts.validate else [False]):
            target(validate)
            cfg = load_config(toml)
            flips, undos, verify = [], [], []
            for _ in range(opts.runs):
                p = plan(get_adapter("gateway", cfg), FLIP)
                s = time.perf_counter()
                rec = execute(p, db=db, confirm=True)
                flips.append(time.perf_counter() - s)
                assert rec.status == "verified", (rec.result, rec.error)
                verify.append(rec.verification["elapsed_s"])
                s = time.perf_counter()
                back = undo(rec.action_id, db=db, confirm=True, config=cfg)
                undos.append(time.perf_counter() - s)
                assert back.status == "verified" and proxy.config.read_bytes() == proxy.original
            how = " with --validate_config" if validate else ""
            rows.append((f"flip to fallback, confirmation → verified{how}", flips, 15.0))
            rows.append((f"  flip / by-hand reference{how}", [f / statistics.median(by_hand) for f in flips], None))
            rows.append((f"  of which waiting for the proxy's reload (verify){how}", verify, None))
            rows.append((f"undo, confirmation → verified{how}", undos, 15.0))
        db.close()
    finally:
        stop_proxy(proxy)
        primary.stop()
        fallback.stop()

    lines = [
        "## Actions",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC through a real LiteLLM proxy (litellm[proxy] in "
        f"`.envs/litellm-proxy`, `--reload`, started in {startup:.1f} s) and two loopback upstreams; "
        f"{opts.runs} flips and undos, {opts.plans} plans.",
        f"Machine: {os.cpu_count()} CPUs; Python {platform.python_version()}; {platform.platform()}; "
        f"load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (the machine is shared: "
        "a load above 2 slows the proxy's restarts).",
        f"Command: `python bench/actions.py{' --validate' if opts.validate else ''}`",
        "",
        "| operation | median s | max s | target s | |",
        "|---|---:|---:|---:|---|",
    ]
    missed = False
    for name, vals, tgt in rows:
        med = statistics.median(vals)
        verdict = "" if tgt is None else ("met" if med < tgt else "MISSED")
        missed |= verdict == "MISSED"
        unit = "x" if "/ by-hand" in name else ""
        lines.append(f"| {name} | {med:.3f}{unit} | {max(vals):.3f}{unit} | {'' if tgt is None else f'{tgt:g}'} "
                     f"| {verdict} |")
    lines += ["", "Most of a flip is the proxy's own restart under `--reload` (the verify row); the write "
              "itself is milliseconds. LiteLLM's `--validate_config` (when `litellm_bin` is set) adds its own "
              "start-up (~7 s here) before the file is replaced."]
    text = "\n".join(lines)
    print(text)
    if not opts.no_write:
        write_section("<!-- actions:begin -->", "<!-- actions:end -->", text)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
