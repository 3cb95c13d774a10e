"""Every shipped runbook passes on the demo with its defaults against the demo's own action targets
(plan, confirm with --yes, verify, audit), and its actions undo to the byte."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from oncall.demoworld import find_world
from tests.demo_world_helpers import ROOT, build_small_demo, copy_demo, env, oncall


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory) -> Path:
    return build_small_demo(tmp_path_factory.mktemp("small-demo"))


@pytest.fixture
def demo(small_demo: Path, tmp_path: Path) -> Path:
    return copy_demo(small_demo, tmp_path)


def _undo(cwd: Path, ids: list[int]) -> None:
    for action_id in sorted(ids, reverse=True):
        res = oncall(cwd, "action", "undo", str(action_id), "--yes")
        assert res.returncode == 0, res.stderr[-2000:]


def _state(db: Path) -> dict[str, str]:
    w = find_world(db)
    labels = {n: {v["version"]: sorted(v["labels"]) for v in vs}
              for n, vs in json.loads(w.prompts.read_text())["prompts"].items()}
    return {"gateway": w.gateway.read_text(), "flags": w.flags.read_text(), "search": w.search.read_text(),
            "prompts": json.dumps(labels, sort_keys=True)}


def run_with_live_traffic(cwd: Path, db: Path, name: str) -> subprocess.CompletedProcess[str]:
    """A runbook whose `verify` step waits for the application's next requests: once its action has
    moved the help-center's search alias, the app's traffic on the index the alias names now is
    loaded, as `oncall receive` or the next `oncall load` would bring it."""
    from oncall import demo as demo_gen

    traffic = getattr(demo_gen, "help_center_traffic", None)
    assert traffic is not None, f"{name} waits for live traffic the demo cannot make (no demo.help_center_traffic)"
    search = find_world(db).search
    start_alias = search.read_text()
    proc = subprocess.Popen([sys.executable, "-m", "oncall", "runbook", "run", name, "--yes", "--json", "--why",
                             f"drill {name}"], cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 240
    while proc.poll() is None and search.read_text() == start_alias and time.monotonic() < deadline:
        time.sleep(0.2)
    if proc.poll() is None and search.read_text() != start_alias:
        index = json.loads(search.read_text())["aliases"]["help-articles"]
        live = cwd / "after-the-action.jsonl"
        # The app's next requests: a few seconds on, after the verify step has begun to watch.
        traffic(live, index=index, start=dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=8),
                requests=20)
        assert oncall(cwd, "load", str(live)).returncode == 0
    out, err = proc.communicate(timeout=900)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


SHIPPED = sorted(p.stem for p in (ROOT / "runbooks").glob("*.md") if p.name != "README.md")


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_runbook_passes_on_the_demo_with_its_defaults_and_undoes(demo: Path, name: str) -> None:
    cwd = demo.parent
    before = _state(demo)
    if "```verify" in (ROOT / "runbooks" / f"{name}.md").read_text():
        res = run_with_live_traffic(cwd, demo, name)
    else:
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
