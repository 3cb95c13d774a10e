"""Every shipped runbook, run end to end on the demo incident the way a responder runs it
(`oncall runbook run NAME --yes`, with its default parameters: they point at what the demo's causes
hit), against real components: the LiteLLM proxy (--reload) routing to loopback upstreams, a flagd
flag file, a Langfuse-compatible loopback server, and replay gates against the loopback
OpenAI-compatible server. Each action is then undone with `oncall action undo`. A gate that fails
stops the runbook before any write."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from oncall.store.db import copy_incident
from tests.actions.conftest import MASTER_KEY, write_toml
from tests.actions.servers import LangfuseServer
from tests.openai_server import OpenAIServer
from tests.test_evalset_tools import good_snapshot

ROOT = Path(__file__).resolve().parents[2]
LF_PUBLIC, LF_SECRET = "pk-lf-runbook-3c1d", "sk-lf-runbook-9e2a7b"


def oncall(db: Path, cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "oncall", "--db", str(db), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


@pytest.fixture
def incident(demo_db: Path, tmp_path: Path) -> Path:
    db = tmp_path / "incident.duckdb"
    copy_incident(demo_db, db)
    return db


def suite(tmp_path: Path, base_url: str) -> Path:
    """A replay suite whose targets (the shipped runbooks' defaults) all call the loopback server."""
    d = tmp_path / "suite"
    (d / "prompts").mkdir(parents=True)
    targets = "".join(f'[targets.{name}]\nbase_url = "{base_url}"\nmodel = "{model}"\napi_key_env = "ONCALL_TEST_KEY"\n'
                      f"price_in = 2.5\nprice_out = 10\nmax_concurrency = 4\n\n"
                      for name, model in (("gpt-4o-pinned", "gpt-4o-2024-08-06"), ("gpt-4o", "gpt-4o"),
                                          ("demo-pinned", "gpt-4o-2024-08-06"), ("demo-current", "gpt-4o")))
    (d / "targets.toml").write_text("[settings]\nconfirm_above = 1000\n\n" + targets)
    shipped = ROOT / "replay" / "prompts" / "support-bot-v12.md"
    (d / "prompts" / "support-bot-v12.md").write_text(shipped.read_text())
    return d


def actions(db: Path, cwd: Path) -> list[dict]:
    out = oncall(db, cwd, "action", "list", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    return data["actions"] if isinstance(data, dict) else data


def run_book(db: Path, cwd: Path, name: str, *params: str, env: dict[str, str] | None = None):
    res = oncall(db, cwd, "runbook", "run", name, *params, "--yes", "--json", "--why", f"test of {name}", env=env)
    data = json.loads(res.stdout) if res.stdout.strip().startswith("{") else None
    return res, data


# Every shipped runbook and the test that runs it with its defaults (a new runbook needs one here).
DEFAULT_RUNS = {
    "prompt-injected-agent": "test_prompt_injected_agent_turns_the_tool_off_and_undo_turns_it_back",
    "index-rollback": "test_index_rollback_points_the_alias_back_and_live_retrievals_recover",
    "prompt-regression": "test_prompt_regression_gates_on_a_replay_with_the_previous_prompt_then_rolls_the_label",
    "provider-outage": "test_gateway_flip_runbooks_through_the_real_proxy",
    "cost-runaway": "test_gateway_flip_runbooks_through_the_real_proxy",
    "provider-model-regression": "test_gateway_pin_runbooks_through_the_real_proxy",
    "model-deprecation": "test_gateway_pin_runbooks_through_the_real_proxy",
}
# What each runbook's cohort finds on the demo with its defaults (none: the demo has no such cause).
DEMO_COHORTS = {
    "provider-outage": ("provider=anthropic error=rate_limit,server,timeout", 61),
    "cost-runaway": ("tenant=acme feature=support-bot", 3501),
    "prompt-regression": ("prompt_version=v13", 1285),
    "provider-model-regression": ("served_model=gpt-4o-2024-11-20 feature=extract", 530),
    "model-deprecation": ("http_status=404", 0),
    "prompt-injected-agent": ("kind=tool", 0),
    "index-rollback": ("feature=help-center retrieval_index=help-articles-v42", 232),
}


def test_every_shipped_runbook_has_a_defaults_run_and_its_cohort_is_the_demos(incident: Path, tmp_path: Path) -> None:
    from oncall.runbook import find_runbook, list_runbooks

    books, errors = list_runbooks(None)
    shipped = {b.name for b in books if Path(b.path).parent == ROOT / "runbooks"}
    assert errors == [] and shipped == set(DEFAULT_RUNS) == set(DEMO_COHORTS)
    for name in DEFAULT_RUNS.values():
        assert name in globals(), name
    for name, (cohort, n) in DEMO_COHORTS.items():
        assert find_runbook(name, None).params["cohort"].default == cohort
        found = json.loads(oncall(incident, tmp_path, "search", cohort, "--json", "-n", "1").stdout)
        assert found["total"] == n, (name, found["total"])


def check_queries(data: dict, name: str) -> None:
    """Every reading step ran (exit 0), and the cohort's search found the demo's requests."""
    queries = [e["data"] for e in data["events"] if e["kind"] == "query"]
    assert queries and all(q["exit"] == 0 for q in queries), queries
    cohort, n = DEMO_COHORTS[name]
    for q in queries:
        if q["command"].startswith("oncall search "):
            assert q["result"]["total"] == n, (q["command"], q["result"]["total"])


def test_prompt_injected_agent_turns_the_tool_off_and_undo_turns_it_back(incident: Path, tmp_path: Path) -> None:
    flags = tmp_path / "flags.json"
    original = json.dumps({"flags": {"agent-tools-send-email": {
        "state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"}}}, indent=2) + "\n"
    flags.write_text(original)
    write_toml(tmp_path, f'[actions.targets.flags]\nadapter = "flagd-file"\npath = "{flags}"\n')
    res, data = run_book(incident, tmp_path, "prompt-injected-agent")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr
    assert data["outcome"] == "completed"
    check_queries(data, "prompt-injected-agent")
    assert [e["kind"] for e in data["events"] if e["kind"] in ("query", "plan", "action")] == \
        ["query", "query", "plan", "action"]
    assert json.loads(flags.read_text())["flags"]["agent-tools-send-email"]["defaultVariant"] == "off"
    (act,) = actions(incident, tmp_path)
    assert act["runbook"] == "prompt-injected-agent" and act["status"] == "verified"
    undo = oncall(incident, tmp_path, "action", "undo", str(act["action_id"]), "--yes")
    assert undo.returncode == 0, undo.stderr
    assert flags.read_text() == original


def test_index_rollback_points_the_alias_back_and_live_retrievals_recover(incident: Path, tmp_path: Path) -> None:
    """The demo's help-center index was rebuilt with another embedding model. The runbook reads the
    cause and points the alias file back at help-articles-v41 (verified by reading it back). The app's
    next requests search whatever index the alias names (read from the file, as the app does): loaded,
    their retrievals find documents again; the undo puts the file back byte for byte."""
    import datetime as dt

    from oncall.demo import help_center_traffic

    aliases = tmp_path / "aliases.json"
    original = json.dumps({"aliases": {"help-articles": "help-articles-v42"},
                           "indexes": ["help-articles-v41", "help-articles-v42"]}, indent=2) + "\n"
    aliases.write_text(original)
    write_toml(tmp_path, '[actions.targets.search]\nadapter = "index-alias"\npath = "aliases.json"\n')
    res, data = run_book(incident, tmp_path, "index-rollback")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr
    assert data["outcome"] == "completed"
    check_queries(data, "index-rollback")
    assert [e["kind"] for e in data["events"] if e["kind"] in ("query", "plan", "action")] == \
        ["query", "query", "query", "plan", "action"]
    changes = next(e for e in data["events"] if e["kind"] == "query" and e["data"]["command"] == "oncall changes")
    assert any(c["kind"] == "new_retrieval_index" and c["after"] == "help-articles-v42"
               for c in changes["data"]["result"])
    (act,) = actions(incident, tmp_path)
    assert act["runbook"] == "index-rollback" and act["status"] == "verified"
    index = json.loads(aliases.read_text())["aliases"]["help-articles"]  # what the app now searches
    assert index == "help-articles-v41"
    start = dt.datetime.now(dt.UTC).replace(microsecond=0)
    traffic = tmp_path / "after-rollback.jsonl"
    assert help_center_traffic(traffic, index=index, start=start, requests=20) == 20
    assert oncall(incident, tmp_path, "load", str(traffic)).returncode == 0
    since = start.isoformat().replace("+00:00", "Z")
    out = oncall(incident, tmp_path, "compare", "feature=help-center", f"since={since}", "--baseline",
                 "feature=help-center retrieval_index=help-articles-v42", "--json")
    m = {r["metric"]: r for r in json.loads(out.stdout)["metrics"]}
    assert m["requests"]["cohort"] == 20
    assert m["empty_retrieval_rate"]["cohort"] < 0.1 < 0.5 < m["empty_retrieval_rate"]["baseline"]
    assert m["top_score_mean"]["cohort"] > 0.7 > 0.4 > m["top_score_mean"]["baseline"]
    undo = oncall(incident, tmp_path, "action", "undo", str(act["action_id"]), "--yes")
    assert undo.returncode == 0, undo.stderr
    assert aliases.read_text() == original


@pytest.fixture
def langfuse(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", LF_PUBLIC)
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", LF_SECRET)
    with LangfuseServer(LF_PUBLIC, LF_SECRET) as srv:
        srv.add_prompt("support-bot", {12: [], 13: ["production"]})
        write_toml(tmp_path, f"""
[actions.targets.prompts]
adapter = "langfuse-label"
base_url = "{srv.url}"
public_key_env = "LANGFUSE_PUBLIC_KEY"
secret_key_env = "LANGFUSE_SECRET_KEY"
cache_ttl = 60
""")
        yield srv


def test_prompt_regression_gates_on_a_replay_with_the_previous_prompt_then_rolls_the_label(
        incident: Path, tmp_path: Path, langfuse) -> None:
    with OpenAIServer() as llm:
        env = {"ONCALL_REPLAY_SUITE": str(suite(tmp_path, llm.base_url)), "ONCALL_TEST_KEY": "loop-key-7f1"}
        res, data = run_book(incident, tmp_path, "prompt-regression", env=env)  # the defaults: 20 requests
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr
        sent = llm.completions()
    check_queries(data, "prompt-regression")
    assert len(sent) == 20
    assert all("Acme Support, a concise" in ex.request["messages"][0]["content"] for ex in sent)
    (gate,) = [e for e in data["events"] if e["kind"] == "gate"]
    assert gate["data"]["passed"] and len(gate["data"]["checks"]) == 3
    assert langfuse.holder("support-bot", "production") == 12
    (act,) = actions(incident, tmp_path)
    assert act["runbook"] == "prompt-regression" and act["status"] == "verified"
    undo = oncall(incident, tmp_path, "action", "undo", str(act["action_id"]), "--yes")
    assert undo.returncode == 0, undo.stderr
    assert langfuse.holder("support-bot", "production") == 13


def test_a_failed_gate_stops_the_runbook_before_any_write(incident: Path, tmp_path: Path, langfuse) -> None:
    refuse = "I'm sorry, but I can't help with that."
    with OpenAIServer(answerer=lambda req: refuse) as llm:
        env = {"ONCALL_REPLAY_SUITE": str(suite(tmp_path, llm.base_url)), "ONCALL_TEST_KEY": "loop-key-7f1"}
        res, data = run_book(incident, tmp_path, "prompt-regression", "sample=4", env=env)
    assert res.returncode == 1
    assert data["outcome"] == "stopped at a gate"
    (gate,) = [e for e in data["events"] if e["kind"] == "gate"]
    assert not gate["data"]["passed"]
    assert [c["passed"] for c in gate["data"]["checks"]][1] is False  # the refusal check
    assert not any(e["kind"] in ("plan", "action") for e in data["events"])
    assert langfuse.writes() == [] and langfuse.holder("support-bot", "production") == 13
    assert actions(incident, tmp_path) == []


def _via_proxy(gateway, model: str = "support-bot") -> str:
    """Which upstream answered a request the app sends through the proxy for `model`."""
    r = gateway.ask(model)
    return r.headers.get("x-litellm-model-api-base", "")


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("name, alias", [
    ("provider-outage", "summarize"),  # the demo's 429 burst: anthropic, behind the summarize alias
    ("cost-runaway", "support-bot"),  # acme's support-bot cost tripled
])
def test_gateway_flip_runbooks_through_the_real_proxy(incident: Path, tmp_path: Path, gateway, upstreams,
                                                      name: str, alias: str) -> None:
    primary, fallback = upstreams
    before = gateway.config.read_bytes()
    assert _via_proxy(gateway, alias).startswith(primary.base_url.rsplit("/v1", 1)[0])
    res, data = run_book(incident, tmp_path, name, env={"LITELLM_MASTER_KEY": MASTER_KEY})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr
    check_queries(data, name)
    assert _via_proxy(gateway, alias).startswith(fallback.base_url.rsplit("/v1", 1)[0])
    (act,) = actions(incident, tmp_path)
    assert act["runbook"] == name and act["status"] == "verified"
    undo = oncall(incident, tmp_path, "action", "undo", str(act["action_id"]), "--yes", "--why", "provider is back",
                  env={"LITELLM_MASTER_KEY": MASTER_KEY})
    assert undo.returncode == 0, undo.stderr
    gateway.wait_serving(primary.base_url)
    assert gateway.config.read_bytes() == before


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("name, model", [
    ("provider-model-regression", "openai/gpt-4o-2024-08-06"),  # the snapshot before the silent update
    ("model-deprecation", "openai/gpt-4o-2024-11-20"),
])
def test_gateway_pin_runbooks_through_the_real_proxy(incident: Path, tmp_path: Path, gateway, name: str,
                                                     model: str) -> None:
    before = gateway.config.read_bytes()
    with OpenAIServer(answerer=good_snapshot) as llm:
        env = {"ONCALL_REPLAY_SUITE": str(suite(tmp_path, llm.base_url)), "ONCALL_TEST_KEY": "loop-key-7f1",
               "LITELLM_MASTER_KEY": MASTER_KEY}
        res, data = run_book(incident, tmp_path, name, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr
    check_queries(data, name)
    gates = [e for e in data["events"] if e["kind"] == "gate"]
    if name == "provider-model-regression":
        assert gates and gates[0]["data"]["passed"], gates
    assert f"model: {model}" in gateway.config.read_text()
    (act,) = actions(incident, tmp_path)
    shown = json.loads(oncall(incident, tmp_path, "action", "show", str(act["action_id"]), "--json").stdout)
    assert act["status"] == "verified" and act["runbook"] == name
    if name == "provider-model-regression":  # the gate's evidence is in the action's audit
        assert shown["gate"]["gates"][0]["passed"] and shown["gate"]["gates"][0]["run_id"]
    else:
        assert shown["gate"] is None
    undo = oncall(incident, tmp_path, "action", "undo", str(act["action_id"]), "--yes",
                  env={"LITELLM_MASTER_KEY": MASTER_KEY})
    assert undo.returncode == 0, undo.stderr
    assert gateway.config.read_bytes() == before


def test_dry_run_runs_reading_steps_and_plans_without_writing(incident: Path, tmp_path: Path) -> None:
    flags = tmp_path / "flags.json"
    flags.write_text(json.dumps({"flags": {"agent-tools-send-email": {
        "state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"}}}))
    write_toml(tmp_path, f'[actions.targets.flags]\nadapter = "flagd-file"\npath = "{flags}"\n')
    before = flags.read_bytes()
    res = oncall(incident, tmp_path, "runbook", "run", "prompt-injected-agent", "--dry-run")
    assert res.returncode == 0, res.stderr
    assert "plan:" in res.stdout and "defaultVariant" in res.stdout
    assert flags.read_bytes() == before and actions(incident, tmp_path) == []


def test_cancel_interrupts_a_running_gate_replay_and_nothing_after_it_runs(incident: Path, tmp_path: Path,
                                                                          langfuse, monkeypatch) -> None:
    """The console's `x` during a slow evidence replay: the replay is interrupted as Ctrl-C would
    (what finished is kept), the gate fails closed, no action is planned or written."""
    import time

    from oncall.runbook import RunbookRun, find_runbook, resolve_params
    from oncall.store import open_db

    monkeypatch.chdir(tmp_path)
    with OpenAIServer(latency=60) as llm:
        env = {"ONCALL_REPLAY_SUITE": str(suite(tmp_path, llm.base_url)), "ONCALL_TEST_KEY": "loop-key-7f1",
               "PYTHONPATH": str(ROOT)}
        db = open_db(incident)
        try:
            rb = find_runbook("prompt-regression", None)
            values = resolve_params(rb, {"sample": "4"}, db.cursor())
            started: list[float] = []

            def cancelled() -> bool:  # the responder presses x while the gate's replay waits on the model
                # (its run is on record by then: a cancel during the replay's start-up, which takes
                # seconds on a loaded machine, rightly keeps nothing, as nothing had started)
                return bool(started) and llm.requests_received > 0

            run = RunbookRun(rb, db, values, yes=True, env=env, as_json=True, cancelled=cancelled)
            events = []
            for ev in run.events():
                events.append(ev)
                if ev.kind == "step" and ev.step.kind == "gate":
                    started.append(time.monotonic())
            took = time.monotonic() - started[0]
        finally:
            db.close()
    assert run.outcome == "cancelled" and took < 40, (run.outcome, took)
    (gate,) = [e for e in events if e.kind == "gate"]
    assert gate.data["passed"] is False and "cancelled while the replay ran" in gate.data["note"]
    assert not any(e.kind in ("plan", "action") for e in events)
    assert langfuse.writes() == []
    runs = json.loads(oncall(incident, tmp_path, "replay", "list", "--json").stdout)
    runs = runs["runs"] if isinstance(runs, dict) else runs
    assert [r["status"] for r in runs] == ["interrupted"], runs
