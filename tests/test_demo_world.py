"""The demo ships its world: replay targets demo-pinned / demo-current served on loopback from the
demo's generator, and action targets (gateway, flags, prompts) beside the incident that every
shipped runbook passes on with its defaults. Real commands, run as a new user would, in a temp dir
with no replay suite and no oncall.toml."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

from oncall.demoworld import find_world, world_dir
from oncall.demoworld.responder import answer
from oncall.store.db import copy_incident

ROOT = Path(__file__).resolve().parents[1]
EXTRACT_NEW = "served_model=gpt-4o-2024-11-20 feature=extract"


def copy_demo(demo_db: Path, into: Path) -> Path:
    """The session's demo and its world as ./incident.duckdb in `into` (what `oncall demo` leaves)."""
    db = into / "incident.duckdb"
    copy_incident(demo_db, db)
    shutil.copytree(world_dir(demo_db), world_dir(db), ignore=shutil.ignore_patterns("serve.json", "*.lock"))
    return db


def oncall(cwd: Path, *args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ONCALL_DEMO_LATENCY": "0", "COLUMNS": "160"}
    env.pop("ONCALL_DB", None)
    return subprocess.run([sys.executable, "-m", "oncall", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env, **kw)


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory) -> Path:
    """The demo at small scale: the same generator, seed and story (every cause and runbook cohort),
    an eighth of the traffic, built with its world once for this module."""
    from oncall.demo import build_demo

    path = tmp_path_factory.mktemp("small-demo") / "demo.duckdb"
    build_demo(path, hours=3.5, scale=0.25)
    return path


@pytest.fixture
def demo(small_demo: Path, tmp_path: Path) -> Path:
    return copy_demo(small_demo, tmp_path)


def replay(cwd: Path, target: str, *args: str) -> dict:
    res = oncall(cwd, "replay", EXTRACT_NEW, "--target", target, "-n", "20", "--repeat", "3", "--seed", "1",
                 "--json", *args)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout)


def metric(summary: dict, name: str, col: str = "replay") -> float:
    return next(m[col] for m in summary["metrics"] if m["metric"] == name)


def test_replay_on_the_pinned_snapshot_tells_the_regression_from_noise(demo: Path) -> None:
    cwd = demo.parent
    pinned, current = replay(cwd, "demo-pinned"), replay(cwd, "demo-current")
    # The old snapshot answers extract's requests with valid JSON and order_id again …
    assert metric(pinned, "json_valid_rate", "original") < 0.85
    assert metric(pinned, "json_valid_rate") >= 0.95
    # … and --repeat says most of the cohort changed beyond the model's own variation on it, while
    # the current snapshot varies among its own replays (noise) and changes far fewer requests.
    assert pinned["noise"]["changed_beyond_noise"] >= 10, pinned["noise"]
    assert current["noise"]["within_noise"] >= 10, current["noise"]
    assert current["noise"]["changed_beyond_noise"] < pinned["noise"]["changed_beyond_noise"] / 2
    assert metric(current, "json_valid_rate") < 0.9
    assert pinned["run"]["model"] == "gpt-4o-2024-08-06" and current["run"]["model"] == "gpt-4o"


def test_the_previous_prompt_version_answers_with_a_third_of_the_tokens(demo: Path) -> None:
    res = oncall(demo.parent, "replay", "prompt_version=v13", "--target", "demo-current", "--prompt",
                 "support-bot-v12", "-n", "20", "--seed", "1", "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    s = json.loads(res.stdout)
    assert metric(s, "input_tokens_mean") <= 0.4 * metric(s, "input_tokens_mean", "original")
    assert s["counts"]["errors"] == 0 and s["counts"]["results"] == 20


def test_a_resumed_run_finds_the_demo_server_again(demo: Path) -> None:
    cwd = demo.parent
    first = oncall(cwd, "replay", EXTRACT_NEW, "--target", "demo-pinned", "-n", "6", "--max-requests", "2", "--json")
    assert first.returncode == 1, first.stderr[-2000:]  # stopped at the cap, in a process whose server is gone
    run_id = json.loads(first.stdout)["run_id"]
    res = oncall(cwd, "replay", "--resume", str(run_id), "--max-requests", "50", "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout)["counts"]["results"] == 6


def test_answers_are_the_generators_deterministic_per_seed_and_input() -> None:
    msgs = [{"role": "system", "content": "Extract the order as JSON with keys order_id, amount, currency, status. "
                                          "Reply with the JSON object only."},
            {"role": "user", "content": "Invoice 48213 for 311.5 USD, status paid, issued 2026-11-02."}]
    old = [answer(7, "gpt-4o-2024-08-06", msgs, k) for k in range(40)]
    new = [answer(7, "openai/gpt-4o", msgs, k) for k in range(40)]
    assert [r.content for r in old] == [answer(7, "gpt-4o-2024-08-06", msgs, k).content for k in range(40)]
    good = json.dumps({"order_id": "48213", "amount": 311.5, "currency": "EUR", "status": "shipped"})
    assert sum(r.content == good for r in old) >= 36  # the old snapshot: right nearly always
    assert {r.model for r in new} == {"gpt-4o-2024-11-20"}
    assert any("orderId" in r.content for r in new) and any(r.content.startswith("Sure!") for r in new)
    assert answer(8, "gpt-4o", msgs, 0) != answer(7, "gpt-4o", msgs, 0) or \
        [answer(8, "gpt-4o", msgs, k).content for k in range(20)] != [r.content for r in new[:20]]


def test_demo_serve_announces_where_it_listens_and_stops_cleanly(demo: Path) -> None:
    cwd = demo.parent
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ONCALL_DEMO_LATENCY": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "oncall", "demo", "serve", "--json"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        info = json.loads(proc.stdout.readline())
        world = find_world(demo)
        assert world is not None and json.loads(world.serve_file.read_text())["url"] == info["url"]
        assert info["url"].startswith("http://127.0.0.1:")
        assert httpx2.get(info["url"] + "/health").json()["world"] == world.id
        # A second server for the same world is refused; a command uses the announced one.
        again = oncall(cwd, "demo", "serve")
        assert again.returncode == 2 and "already served" in again.stderr
        res = oncall(cwd, "replay", EXTRACT_NEW, "--target", "demo-pinned", "-n", "2")
        assert res.returncode == 0 and info["url"] + "/v1" in res.stderr, res.stderr
        # Any OpenAI client can call it.
        from openai import OpenAI

        chat = OpenAI(base_url=info["base_url"], api_key="none").chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "How do I rotate my API key?"}])
        assert chat.model == "gpt-4o-2024-11-20" and "API keys" in chat.choices[0].message.content
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    assert proc.returncode == 0
    assert not world.serve_file.exists()


def _undo(cwd: Path, ids: list[int]) -> None:
    for action_id in sorted(ids, reverse=True):
        res = oncall(cwd, "action", "undo", str(action_id), "--yes")
        assert res.returncode == 0, res.stderr[-2000:]


def _state(db: Path) -> dict[str, str]:
    w = world_dir(db)
    labels = {n: {v["version"]: sorted(v["labels"]) for v in vs}
              for n, vs in json.loads((w / "prompts.json").read_text())["prompts"].items()}
    return {"gateway": (w / "gateway.yaml").read_text(), "flags": (w / "flags.json").read_text(),
            "search": (w / "search.json").read_text(), "prompts": json.dumps(labels, sort_keys=True)}


SHIPPED = sorted(p.stem for p in (ROOT / "runbooks").glob("*.md") if p.name != "README.md")


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_runbook_passes_on_the_demo_with_its_defaults_and_undoes(demo: Path, name: str) -> None:
    cwd = demo.parent
    before = _state(demo)
    res = oncall(cwd, "runbook", "run", name, "--yes", "--json", "--why", f"drill {name}")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    data = json.loads(res.stdout)
    assert data["outcome"] == "completed"
    gates = data["events"][-1]["data"]["gates"]
    assert all(g["passed"] for g in gates), gates
    acts = [e["data"]["action"] for e in data["events"] if e["kind"] == "action"]
    assert acts and all(a["status"] == "verified" for a in acts), acts
    assert _state(demo) != before  # it acted on the demo's own targets
    _undo(cwd, [a["action_id"] for a in acts])
    assert _state(demo) == before


# -- the README's examples, run as written ------------------------------------------------------
def readme_blocks() -> list[tuple[str, list[str]]]:
    """Each ```sh block of the READMEs that runs replay, runbooks or actions: (where, commands)."""
    out = []
    for doc in (ROOT / "README.md", ROOT / "runbooks" / "README.md", ROOT / "replay" / "README.md"):
        text = doc.read_text(encoding="utf-8")
        for i, chunk in enumerate(text.split("```sh\n")[1:]):
            body = chunk.split("```", 1)[0].replace("\\\n", " ")
            cmds = [ln.strip() for ln in body.splitlines() if ln.strip().startswith("oncall ")]
            if any(c.split()[1] in ("replay", "runbook", "action") for c in cmds if len(c.split()) > 1):
                out.append((f"{doc.relative_to(ROOT)} block {i + 1}", cmds))
    return out


BLOCKS = readme_blocks()


def run_typed(cwd: Path, line: str) -> subprocess.CompletedProcess[str]:
    """One README line in a shell, at a terminal that answers yes to whatever it asks."""
    import pty

    master, slave = pty.openpty()
    os.write(master, b"y\n" * 8)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ONCALL_DEMO_LATENCY": "0", "COLUMNS": "160",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("ONCALL_DB", None)
    try:
        return subprocess.run(["bash", "-c", line], cwd=cwd, stdin=slave, capture_output=True, text=True,
                              timeout=300, env=env)
    finally:
        os.close(slave)
        os.close(master)


def test_readme_examples_are_found() -> None:
    where = {w.split(" block")[0] for w, _ in BLOCKS}
    assert where == {"README.md", "runbooks/README.md", "replay/README.md"}
    cmds = [c for _, cs in BLOCKS for c in cs]
    assert any("--target demo-pinned" in c for c in cmds) and any("runbook run" in c for c in cmds)


@pytest.mark.slow
@pytest.mark.parametrize("where,commands", BLOCKS, ids=[w for w, _ in BLOCKS])
def test_readme_example_runs_as_written_on_the_demo(small_demo: Path, tmp_path: Path, where: str,
                                                    commands: list[str]) -> None:
    if shutil.which("oncall", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("the `oncall` script is not installed beside this Python (pip install -e .)")
    copy_demo(small_demo, tmp_path)  # what `oncall demo --no-tui` builds, at small scale
    for line in commands:
        if line.split("#")[0].split() == ["oncall", "demo", "--no-tui"]:
            continue  # built above, identically
        started = time.monotonic()
        res = run_typed(tmp_path, line)
        assert res.returncode == 0, f"{where}: `{line}` exited {res.returncode} after " \
                                    f"{time.monotonic() - started:.0f} s\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
