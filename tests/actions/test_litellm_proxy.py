"""The LiteLLM config adapter against a real LiteLLM proxy and two real upstreams on loopback."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

from oncall.actions import get_adapter, load_config, plan, plan_undo, undo
from oncall.actions.engine import execute
from oncall.store import open_db
from tests.actions.conftest import MASTER_KEY, UPSTREAM_KEY, litellm_bin, proxy_env, start_proxy, stop_proxy, write_toml

FLIP = {"op": "repoint", "alias": "support-bot", "to": "support-bot-fallback"}


def answered_by(resp) -> str:
    assert resp.status_code == 200, resp.text
    text = resp.json()["choices"][0]["message"]["content"]
    return text.split("]", 1)[0].lstrip("[")


@pytest.mark.slow
def test_flip_to_fallback_then_undo_is_byte_identical(gateway, upstreams, tmp_path):
    primary, fallback = upstreams
    assert answered_by(gateway.ask()) == "primary"
    db = open_db(tmp_path / "incident.duckdb")
    p = plan(get_adapter("gateway"), FLIP)
    assert p.production and p.changes
    assert [ln for ln in p.diff if ln.startswith(("+", "-")) and not ln.startswith(("+++", "---"))] == [
        "-  model_group_alias: {}   # incident flips go here",
        "+  model_group_alias:      # incident flips go here",
        "+    support-bot: support-bot-fallback"]
    before_requests = len(fallback.exchanges)

    rec = execute(p, db=db, confirm="gateway", why="anthropic 429 storm")
    assert rec.status == "verified", (rec.result, rec.error, rec.verification)
    assert rec.verification["detail"]["headers"]["x-litellm-model-api-base"] == fallback.base_url
    resp = gateway.ask()
    assert answered_by(resp) == "fallback"
    assert resp.headers["x-litellm-model-name"] == "openai/gpt-4o-mini"
    assert len(fallback.exchanges) > before_requests
    assert gateway.config.read_bytes() != gateway.original

    back = undo(rec.action_id, db=db, confirm="gateway")
    assert back.status == "verified", (back.result, back.error, back.verification)
    assert back.plan.undo_of == rec.action_id
    assert gateway.config.read_bytes() == gateway.original  # byte-identical
    assert answered_by(gateway.ask()) == "primary"

    # The audit: two actions, each a started row and a final row, in the database and the JSONL file.
    # Action ids are contiguous (issue 26): the undo is action 2, whatever row ids the audit used.
    assert (rec.action_id, back.action_id) == (1, 2)
    rows = db.cursor().execute("SELECT action_id, status FROM actions ORDER BY action_row").fetchall()
    assert rows == [(1, "started"), (1, "verified"), (2, "started"), (2, "verified")]
    lines = [json.loads(x) for x in (tmp_path / "incident.duckdb.actions.jsonl").read_text().splitlines()]
    assert [(x["action_id"], x["status"]) for x in lines] == rows
    final = lines[1]
    assert final["who"] and final["why"] == "anthropic 429 storm" and final["runbook"] is None
    assert final["before"]["served_by"] == "support-bot" and final["after"]["served_by"] == "support-bot-fallback"
    assert final["verification"]["ok"] is True
    db.close()


@pytest.mark.slow
def test_flip_is_idempotent_and_undo_refuses_when_the_target_moved(gateway, upstreams, tmp_path):
    db = open_db(tmp_path / "incident.duckdb")
    rec = execute(plan(get_adapter("gateway"), FLIP), db=db, confirm=True)
    assert rec.status == "verified"
    changed = gateway.config.read_bytes()
    again = plan(get_adapter("gateway"), FLIP)
    assert not again.changes and again.diff == []
    rec2 = execute(again, db=db, confirm=True)
    assert rec2.status == "unchanged" and rec2.verification["ok"]
    assert gateway.config.read_bytes() == changed  # the second run changed nothing

    # Someone edits the file by hand after the flip: undo must refuse, not overwrite their change.
    gateway.config.write_text(changed.decode().replace("num_retries: 0", "num_retries: 1"))
    from oncall.actions import StateMoved

    with pytest.raises(StateMoved, match="changed since action"):
        plan_undo(rec.action_id, db=db)
    db.close()


@pytest.mark.slow
def test_pin_snapshot_through_reload(gateway, upstreams, tmp_path):
    primary, _ = upstreams
    db = open_db(tmp_path / "incident.duckdb")
    p = plan(get_adapter("gateway"), {"op": "pin", "deployment": "support-bot", "model": "openai/gpt-4o-2024-08-06"})
    assert len(p.payload["patch"]) == 1 and p.payload["patch"][0]["new"] == ["      model: openai/gpt-4o-2024-08-06\n"]
    rec = execute(p, db=db, confirm=True)
    assert rec.status == "verified", (rec.result, rec.error, rec.verification)
    gateway.ask()
    assert primary.exchanges[-1].request["model"] == "gpt-4o-2024-08-06"  # the upstream was asked for the snapshot
    assert undo(rec.action_id, db=db, confirm=True).status == "verified"
    assert gateway.config.read_bytes() == gateway.original
    gateway.ask()
    assert primary.exchanges[-1].request["model"] == "gpt-4o"
    db.close()


@pytest.mark.slow
def test_pin_snapshot_through_sighup_to_a_multi_worker_proxy(tmp_path_factory, upstreams, tmp_path, monkeypatch):
    primary, _ = upstreams
    proxy = start_proxy(tmp_path_factory.mktemp("litellm-sighup"), *upstreams, "--num_workers", "2",
                        "--timeout_worker_healthcheck", "60")
    try:
        monkeypatch.setenv("LITELLM_MASTER_KEY", MASTER_KEY)
        write_toml(tmp_path, f"""
[actions.targets.gw2]
adapter = "litellm-config"
config = "{proxy.config}"
proxy_url = "{proxy.url}"
master_key_env = "LITELLM_MASTER_KEY"
reload = "sighup"
pid = {proxy.proc.pid}
verify_timeout = 150
""")
        monkeypatch.chdir(tmp_path)
        db = open_db(tmp_path / "incident.duckdb")
        p = plan(get_adapter("gw2"), {"op": "pin", "deployment": "support-bot", "model": "openai/gpt-4o-2024-08-06"})
        assert any("runs 2 workers" in c for c in p.checks)
        rec = execute(p, db=db, confirm=True)
        assert rec.status == "verified", (rec.result, rec.error, rec.verification)
        for _ in range(4):  # every worker serves the pin (old workers were replaced before the probe)
            proxy.ask()
            assert primary.exchanges[-1].request["model"] == "gpt-4o-2024-08-06"
        assert undo(rec.action_id, db=db, confirm=True).status == "verified"
        assert proxy.config.read_bytes() == proxy.original
        proxy.ask()
        assert primary.exchanges[-1].request["model"] == "gpt-4o"
        db.close()
    finally:
        stop_proxy(proxy)


def test_sighup_to_a_one_worker_proxy_is_refused_at_plan_time(tmp_path, monkeypatch):
    """SIGHUP kills a one-worker LiteLLM proxy: the adapter refuses before writing anything."""
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / "config.yaml").write_text("model_list:\n  - model_name: a\n    litellm_params:\n      model: x/y\n")
        write_toml(tmp_path, f"""
[actions.targets.gw]
adapter = "litellm-config"
config = "config.yaml"
reload = "sighup"
pid = {sleeper.pid}
""")
        from oncall.actions import InvalidChange

        with pytest.raises(InvalidChange, match="SIGHUP would kill it"):
            plan(get_adapter("gw", load_config(tmp_path / "oncall.toml")),
                 {"op": "pin", "deployment": "a", "model": "x/z"})
        assert sleeper.poll() is None  # not signalled
    finally:
        sleeper.send_signal(signal.SIGTERM)
        sleeper.wait()


@pytest.mark.slow
def test_litellm_validate_config_keeps_a_broken_file_out(tmp_path, monkeypatch):
    """With litellm_bin set, LiteLLM's own --validate_config judges the new file before it replaces the
    old one; a file it rejects never lands."""
    binary = litellm_bin()
    if binary is None:
        pytest.skip("the real LiteLLM proxy is not installed: run .ci/setup-actions.sh (or set ONCALL_LITELLM_BIN)")
    for k, v in proxy_env().items():
        monkeypatch.setenv(k, v)
    cfg = tmp_path / "config.yaml"
    # A deployment LiteLLM itself cannot load (rpm must be a number); the structural checks pass it.
    cfg.write_text("model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/x\n"
                   "      rpm: 10\n  - model_name: b\n    litellm_params:\n      model: openai/y\n")
    original = cfg.read_bytes()
    write_toml(tmp_path, f"""
[actions.targets.gw]
adapter = "litellm-config"
config = "config.yaml"
litellm_bin = "{binary}"
""")
    db = open_db(tmp_path / "incident.duckdb")
    a = get_adapter("gw", load_config(tmp_path / "oncall.toml"))
    ok = execute(plan(a, {"op": "pin", "deployment": "a", "model": "openai/x-2024"}), db=db, confirm=True)
    assert ok.status == "unverified" and "no proxy_url" in ok.result  # validated, written; nothing to probe
    assert b"openai/x-2024" in cfg.read_bytes()
    cfg.write_bytes(original)
    # Now break the file through the adapter's own path: pin to a model LiteLLM refuses to parse.
    from oncall.actions.adapters import litellm_config

    before = cfg.read_bytes()
    bad = plan(a, {"op": "pin", "deployment": "a", "model": "openai/x"})
    assert not bad.changes
    orig_validate = litellm_config.LiteLLMConfig._validate_with_litellm

    def validate_broken(self, candidate):
        candidate.write_text(candidate.read_text().replace("rpm: 10", "rpm: [not, a, number"))
        return orig_validate(self, candidate)

    monkeypatch.setattr(litellm_config.LiteLLMConfig, "_validate_with_litellm", validate_broken)
    rec = execute(plan(a, {"op": "pin", "deployment": "b", "model": "openai/y-2024"}), db=db, confirm=True)
    assert rec.status == "failed" and "--validate_config rejected" in rec.error, rec.error
    assert cfg.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if "oncall-tmp" in p.name]  # no temp file left behind
    db.close()


@pytest.mark.slow
def test_admin_adapter_against_the_real_proxy_reports_no_db(gateway, tmp_path, monkeypatch):
    """The real proxy without a database answers `No DB Connected` to /model/update: the action fails
    with that said plainly and a pointer to the config adapter, and the proxy is unchanged."""
    write_toml(tmp_path, f"""
[actions.targets.admin]
adapter = "litellm-admin"
proxy_url = "{gateway.url}"
master_key_env = "LITELLM_MASTER_KEY"
""")
    db = open_db(tmp_path / "incident.duckdb")
    p = plan(get_adapter("admin"), {"op": "update", "model": "support-bot", "litellm_model": "openai/gpt-4o-2024-08-06"})
    assert any("db_model: false" in n for n in p.notes)
    rec = execute(p, db=db, confirm=True)
    assert rec.status == "failed"
    assert "No DB Connected" in rec.error and 'adapter = "litellm-config"' in rec.error
    assert MASTER_KEY not in json.dumps(rec.to_dict()) and UPSTREAM_KEY not in json.dumps(rec.to_dict())
    assert gateway.config.read_bytes() == gateway.original
    db.close()

