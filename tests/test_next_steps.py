"""Each cause carries its next steps (issue 27 item 2): `oncall changes --json` on the demo gives the
served-model change, the prompt-version change and the 429 burst their replay and runbook, prefilled from
the cause (cohort, baseline window, target, alias), and a suggested command runs exactly as written.

Real pieces: the demo incident, the `oncall` CLI in a subprocess, a LiteLLM-format gateway config named
by an oncall.toml action target, a replay suite whose `demo-pinned` target is the loopback
OpenAI-compatible server (tests/openai_server.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from openai_server import OpenAIServer

from oncall.store.db import copy_incident

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = """\
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
  - model_name: summarize
    litellm_params:
      model: anthropic/claude-3-5-sonnet-20241022
  - model_name: summarize-fallback
    litellm_params:
      model: openai/gpt-4o-mini
  - model_name: support-bot
    litellm_params:
      model: openai/gpt-4o
  - model_name: support-bot-mini
    litellm_params:
      model: openai/gpt-4o-mini
router_settings:
  fallbacks:
    - summarize:
        - summarize-fallback
"""


def _env(world: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ONCALL_TOML", "ONCALL_CONFIG", "ONCALL_CONFIG_DIR",
                                                              "ONCALL_DB")}
    env.update(XDG_CONFIG_HOME=str(world / "xdg"), ONCALL_REPLAY_SUITE=str(world / "suite"),
               ONCALL_TEST_KEY="test", PYTHONPATH=str(ROOT))
    return env


def oncall(world: Path, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oncall", *argv], cwd=world, env=_env(world), capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def server():
    with OpenAIServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def world(demo_db: Path, tmp_path_factory, server) -> Path:
    """A responder's directory: the demo incident (a copy: replays write), an oncall.toml whose gateway
    is a LiteLLM config, and a replay suite with the demo's targets on the loopback server."""
    w = tmp_path_factory.mktemp("world")
    copy_incident(demo_db, w / "incident.duckdb")
    (w / "xdg").mkdir()
    (w / "litellm.yaml").write_text(GATEWAY)
    (w / "oncall.toml").write_text('[actions.targets.gateway]\nadapter = "litellm-config"\n'
                                   'config = "litellm.yaml"\nreload = "watch"\n')
    suite = w / "suite"
    (suite / "prompts").mkdir(parents=True)
    targets = ""
    for name in ("demo-pinned", "demo-current"):
        targets += (f'[targets.{name}]\nbase_url = "{server.base_url}"\nmodel = "gpt-4o"\n'
                    f'api_key_env = "ONCALL_TEST_KEY"\nprice_in = 0\nprice_out = 0\n\n')
    (suite / "targets.toml").write_text(targets)
    (suite / "prompts" / "support-bot-v12.md").write_text(
        (ROOT / "replay" / "prompts" / "support-bot-v12.md").read_text(encoding="utf-8"))
    return w


@pytest.fixture(scope="module")
def found(world: Path) -> list[dict[str, Any]]:
    res = oncall(world, "changes", "--db", "incident.duckdb", "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _cause(found: list[dict[str, Any]], kind: str, metric: str | None = None) -> dict[str, Any]:
    return next(c for c in found if c["kind"] == kind and (metric is None or c["metric"] == metric))


def _step(cause: dict[str, Any], step_id: str) -> dict[str, Any]:
    return next(s for s in cause["next_steps"] if s["id"] == step_id)


def test_served_model_change_offers_replay_on_the_snapshot_before_and_the_pin(found) -> None:
    c = _cause(found, "new_served_model")
    assert [s["id"] for s in c["next_steps"]] == ["replay-before", "runbook:provider-model-regression"]
    began = c["began_at"]
    replay = _step(c, "replay-before")
    p = replay["params"]
    assert p["target"] == "demo-pinned" and p["model"] is None  # the demo's loopback snapshot before
    assert p["cohort"] == f"model=gpt-4o since={began} served_model=gpt-4o-2024-11-20"
    assert p["baseline"] == f"model=gpt-4o served_model=gpt-4o-2024-08-06 until={began}"
    assert replay["argv"][:4] == ["replay", p["cohort"], "--target", "demo-pinned"]
    assert replay["command"].startswith("oncall replay ") and "--repeat 3" in replay["command"]
    pin = _step(c, "runbook:provider-model-regression")
    # Its gate tests JSON: the cohort is where the JSON broke (feature=extract), on the new snapshot.
    assert pin["params"] == {
        "cohort": f"model=gpt-4o feature=extract served_model=gpt-4o-2024-11-20 since={began}",
        "baseline": f"model=gpt-4o feature=extract served_model=gpt-4o-2024-08-06 until={began}",
        "candidate": "demo-pinned", "deployment": "gpt-4o", "snapshot": "openai/gpt-4o-2024-08-06", "sample": 20}
    assert pin["notes"] == []
    assert pin["dry_run_command"] == pin["command"] + " --dry-run"


def test_prompt_change_offers_replay_with_the_previous_version_the_rollback_and_the_cost_runbook(found) -> None:
    c = _cause(found, "new_prompt_version")
    assert [s["id"] for s in c["next_steps"]] == ["replay-previous-prompt", "runbook:prompt-regression",
                                                  "runbook:cost-runaway"]
    began = c["began_at"]
    replay = _step(c, "replay-previous-prompt")
    assert replay["params"]["prompt"] == "support-bot-v12"  # the suite's variant with `version: v12`
    assert replay["params"]["target"] == "demo-current"
    assert replay["params"]["cohort"] == f"tenant=acme feature=support-bot prompt_version=v13 since={began}"
    assert replay["params"]["baseline"] == f"tenant=acme feature=support-bot prompt_version=v12 until={began}"
    assert replay["notes"] == []
    rollback = _step(c, "runbook:prompt-regression")["params"]
    assert rollback["prompt"] == "support-bot" and rollback["previous_prompt"] == "support-bot-v12"
    assert rollback["cohort"] == replay["params"]["cohort"] and rollback["candidate"] == "demo-current"
    cost = _step(c, "runbook:cost-runaway")
    assert cost["params"] == {"cohort": f"tenant=acme feature=support-bot since={began}",
                              "baseline": f"tenant=acme feature=support-bot until={began}",
                              "alias": "support-bot", "cheaper": "support-bot-mini"}


def test_error_burst_offers_the_fallback_runbook_for_the_alias_the_provider_serves(found) -> None:
    c = _cause(found, "metric_shift", "error_rate")
    assert c["cohort"] == {"provider": "anthropic"}
    assert [s["id"] for s in c["next_steps"]] == ["runbook:provider-outage"]
    p = c["next_steps"][0]["params"]
    assert p["alias"] == "summarize" and p["fallback"] == "summarize-fallback"  # from the gateway config
    assert p["cohort"] == c["filter"] + " error=rate_limit"  # the burst's window and its error class


def test_index_change_offers_the_index_rollback_and_no_replay(found) -> None:
    """A replay sends the documents each call was given as recorded, so it cannot test a retrieval
    change: the index cause offers the rollback alone. With no `search` target in oncall.toml the
    alias is left to the runbook's default, and said."""
    c = _cause(found, "new_retrieval_index")
    assert (c["before"], c["after"]) == ("help-articles-v41", "help-articles-v42")
    assert [s["id"] for s in c["next_steps"]] == ["runbook:index-rollback"]
    step = c["next_steps"][0]
    assert step["params"] == {"index": "help-articles-v41", "cohort": c["filter"], "feature": "feature=help-center",
                              "baseline": f"feature=help-center retrieval_index=help-articles-v41 "
                                          f"until={c['began_at']}"}
    assert any(n.startswith("alias: no index-alias action target `search`") for n in step["notes"]), step["notes"]


def test_text_output_shows_each_cause_next_steps(world: Path, found) -> None:
    res = oncall(world, "changes", "--db", "incident.duckdb")
    assert res.returncode == 0, res.stderr
    for c in found:
        for s in c["next_steps"]:
            assert "next: " + s["title"] in res.stdout
            assert s["command"] in res.stdout  # one unbroken line, to copy


@pytest.fixture(scope="module")
def replayed(world: Path, found, server) -> dict[str, Any]:
    """The served-model cause's suggested replay, run from the command line exactly as suggested."""
    replay = _step(_cause(found, "new_served_model"), "replay-before")
    before = len(server.exchanges)
    res = oncall(world, *replay["argv"], "--no-progress")
    assert res.returncode == 0, res.stderr
    return {"step": replay, "sent": server.exchanges[before:]}


def test_suggested_replay_runs_as_written(world: Path, replayed) -> None:
    replay = replayed["step"]
    assert len(replayed["sent"]) == 20 * 3  # -n 20 --repeat 3, to the suite's demo-pinned
    show = oncall(world, "replay", "list", "--db", "incident.duckdb", "--json")
    run = json.loads(show.stdout)[0]
    assert run["target"] == "demo-pinned" and run["filter"] == replay["params"]["cohort"]


def test_postmortem_says_which_suggestion_was_taken(world: Path, found, replayed) -> None:
    """Taken from the command line (the replay above, matched by its parameters) and from the console
    (a trail event, as the console's key records it when the responder starts the step)."""
    from oncall.query.next_steps import NextStep, record_taken
    from oncall.store import open_db

    burst = _cause(found, "metric_shift", "error_rate")
    step = NextStep(**{k: v for k, v in burst["next_steps"][0].items()
                       if k in ("kind", "id", "title", "argv", "params", "runbook", "notes")})
    with open_db(world / "incident.duckdb") as db:
        record_taken(db, burst, step, ref={"runbook": step.runbook}, actor="alice")
    res = oncall(world, "postmortem", "--db", "incident.duckdb", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    by_cause = {c["cause"]: {s["id"]: s["taken"] for s in c["steps"]} for c in out["facts"]["next_steps"]}
    served = by_cause[_cause(found, "new_served_model")["title"]]
    run_id = json.loads(oncall(world, "replay", "list", "--db", "incident.duckdb", "--json").stdout)[0]["run_id"]
    assert served["replay-before"]["how"] == "command line" and served["replay-before"]["run_id"] == run_id
    assert served["runbook:provider-model-regression"] is None
    outage = by_cause[burst["title"]]["runbook:provider-outage"]
    assert outage["how"] == "console" and outage["actor"] == "alice"
    md = out["markdown"]
    assert "## Suggested next steps" in md
    assert f"**taken** (command line, replay run {run_id}," in md and "by alice" in md


def test_suggested_runbook_dry_run_plans_the_flip(world: Path, found) -> None:
    step = _cause(found, "metric_shift", "error_rate")["next_steps"][0]
    res = oncall(world, *step["argv"], "--dry-run", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    out = json.loads(res.stdout)
    assert out["params"]["alias"] == "summarize" and out["outcome"] == "completed"
    plans = [e["data"]["plan"] for e in out["events"] if e["kind"] == "plan"]
    assert plans and "summarize-fallback" in json.dumps(plans)
    assert (world / "litellm.yaml").read_text() == GATEWAY  # a dry run writes nothing


# -- on the demo's own world (oncall demo): no suite, no oncall.toml -------------------------------------------
@pytest.fixture(scope="module")
def demo_world(demo_db: Path, tmp_path_factory) -> Path:
    """The session's demo with its world beside it, as `oncall demo` leaves them, in an empty directory."""
    import shutil

    from oncall.demoworld import world_dir

    w = tmp_path_factory.mktemp("demo-world")
    db = w / "incident.duckdb"
    copy_incident(demo_db, db)
    shutil.copytree(world_dir(demo_db), world_dir(db), ignore=shutil.ignore_patterns("serve.json", "*.lock"))
    (w / "xdg").mkdir()
    return w


def _world_oncall(w: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**_env(w), "ONCALL_DEMO_LATENCY": "0"}
    env.pop("ONCALL_REPLAY_SUITE")
    return subprocess.run([sys.executable, "-m", "oncall", *argv], cwd=w, env=env, capture_output=True, text=True,
                          timeout=300)


def test_on_the_demo_world_every_step_is_prefilled_from_its_files_and_the_pin_runs_as_written(demo_world) -> None:
    res = _world_oncall(demo_world, "changes", "--db", "incident.duckdb", "--json")
    assert res.returncode == 0, res.stderr
    found = json.loads(res.stdout)
    steps = {s["id"]: s for c in found for s in c["next_steps"]}
    assert all(s["notes"] == [] for s in steps.values()), [s["notes"] for s in steps.values()]
    assert steps["replay-before"]["params"]["target"] == "demo-pinned"
    assert steps["replay-previous-prompt"]["params"]["prompt"] == "support-bot-v12"  # the world's variant
    pin = steps["runbook:provider-model-regression"]
    assert pin["params"]["deployment"] == "extract"  # the broken feature's model_name in the world's gateway
    outage = steps["runbook:provider-outage"]["params"]
    assert (outage["alias"], outage["fallback"]) == ("summarize", "summarize-fallback")
    assert steps["runbook:cost-runaway"]["params"]["cheaper"] == "support-bot-mini"
    # The pin as suggested: its gate replays on demo-pinned and passes, the action is verified.
    run = _world_oncall(demo_world, *pin["argv"], "--yes", "--json")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    out = json.loads(run.stdout)
    assert out["outcome"] == "completed" and out["params"]["deployment"] == "extract"
    pm = _world_oncall(demo_world, "postmortem", "--db", "incident.duckdb", "--json")
    taken = {s["id"]: s["taken"] for c in json.loads(pm.stdout)["facts"]["next_steps"] for s in c["steps"]}
    assert taken["runbook:provider-model-regression"]["how"] == "command line"
    assert taken["replay-before"] is None


def test_on_the_demo_world_the_index_rollback_names_the_alias_and_runs_as_written(demo_world) -> None:
    res = _world_oncall(demo_world, "changes", "--db", "incident.duckdb", "--json")
    assert res.returncode == 0, res.stderr
    c = next(c for c in json.loads(res.stdout) if c["kind"] == "new_retrieval_index")
    step = c["next_steps"][0]
    assert step["notes"] == [] and step["params"]["alias"] == "help-articles"  # from the world's search.json
    search = demo_world / "incident.demo-world" / "search.json"
    assert json.loads(search.read_text())["aliases"] == {"help-articles": "help-articles-v42"}
    run = _world_oncall(demo_world, *step["argv"], "--yes", "--json")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    out = json.loads(run.stdout)
    acts = [e["data"]["action"] for e in out["events"] if e["kind"] == "action"]
    assert out["outcome"] == "completed" and [a["status"] for a in acts] == ["verified"]
    assert json.loads(search.read_text())["aliases"] == {"help-articles": "help-articles-v41"}
    undo = _world_oncall(demo_world, "action", "undo", str(acts[0]["action_id"]), "--yes")
    assert undo.returncode == 0, undo.stderr[-2000:]
    assert json.loads(search.read_text())["aliases"] == {"help-articles": "help-articles-v42"}


# -- an incident that is not the demo ---------------------------------------------------------------------------
def test_off_the_demo_the_replay_targets_the_suites_snapshot_and_runs_as_written(tmp_path: Path, server) -> None:
    """A generated incident unlike the demo (one model, no tenants, a silent snapshot change): the
    suggestion names the suite's target that calls the snapshot before, and runs as written."""
    import incidentgen

    from oncall.ingest.loader import load_paths
    from oncall.store import open_db

    sc = incidentgen.served_model_key_rename()
    with open_db(tmp_path / "incident.duckdb") as db:
        load_paths(db, [str(sc.write(tmp_path / "export"))])
    (tmp_path / "xdg").mkdir()
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "targets.toml").write_text(
        f'[targets.today]\nbase_url = "{server.base_url}"\nmodel = "gpt-4o-mini"\napi_key_env = "ONCALL_TEST_KEY"\n'
        f'price_in = 0\nprice_out = 0\n\n[targets.mini-pinned]\nbase_url = "{server.base_url}"\n'
        f'model = "gpt-4o-mini-2024-07-18"\napi_key_env = "ONCALL_TEST_KEY"\nprice_in = 0\nprice_out = 0\n')
    res = oncall(tmp_path, "changes", "--db", "incident.duckdb", "--json")
    assert res.returncode == 0, res.stderr
    (c,) = json.loads(res.stdout)
    replay = _step(c, "replay-before")
    assert replay["params"]["target"] == "mini-pinned" and replay["params"]["model"] is None and replay["notes"] == []
    assert replay["params"]["baseline"] == (
        f"model=gpt-4o-mini served_model=gpt-4o-mini-2024-07-18 until={c['began_at']}")
    pin = _step(c, "runbook:provider-model-regression")
    assert pin["params"]["candidate"] == "mini-pinned" and pin["params"]["snapshot"] == "openai/gpt-4o-mini-2024-07-18"
    ran = oncall(tmp_path, *replay["argv"], "--no-progress", "--json")
    assert ran.returncode == 0, ran.stderr
    out = json.loads(ran.stdout)
    assert out["run"]["target"] == "mini-pinned" and out["run"]["model"] == "gpt-4o-mini-2024-07-18"
    assert out["counts"]["ok"] + out["counts"]["diverged"] > 0
