"""Langfuse label, LiteLLM admin API and webhook adapters against loopback servers that implement the
documented endpoints; the exact requests each server received are asserted."""

from __future__ import annotations

import base64
import json

import pytest

from oncall.actions import get_adapter, load_config, plan, undo
from oncall.actions.engine import execute
from oncall.store import open_db
from tests.actions.conftest import write_toml
from tests.actions.servers import LangfuseServer, LiteLLMAdminServer, WebhookReceiver

LF_PUBLIC, LF_SECRET = "pk-lf-1234567890abcdef1234", "langfuse-secret-otter-93c1"
ADMIN_KEY = "admin-master-key-heron-5521"


@pytest.fixture
def db(tmp_path):
    d = open_db(tmp_path / "incident.duckdb")
    yield d
    d.close()


@pytest.fixture
def langfuse(tmp_path, monkeypatch):
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", LF_PUBLIC)
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", LF_SECRET)
    with LangfuseServer(LF_PUBLIC, LF_SECRET) as srv:
        srv.add_prompt("support-bot", {11: [], 12: ["staging"], 13: ["production"]})
        write_toml(tmp_path, f"""
[actions.targets.prompts]
adapter = "langfuse-label"
production = true
base_url = "{srv.url}"
public_key_env = "LANGFUSE_PUBLIC_KEY"
secret_key_env = "LANGFUSE_SECRET_KEY"
cache_ttl = 60
""")
        yield srv, load_config(tmp_path / "oncall.toml")


def test_langfuse_rollback_to_previous_version_and_undo(langfuse, db):
    srv, cfg = langfuse
    p = plan(get_adapter("prompts", cfg), {"prompt": "support-bot", "version": "previous"})
    assert srv.writes() == []  # a plan only reads
    assert [(r.method, r.path, r.query) for r in srv.requests] == [
        ("GET", "/api/public/v2/prompts/support-bot", {"label": "production"}),
        ("GET", "/api/public/v2/prompts", {"name": "support-bot"}),
        ("GET", "/api/public/v2/prompts/support-bot", {"version": "12"})]
    expected_auth = "Basic " + base64.b64encode(f"{LF_PUBLIC}:{LF_SECRET}".encode()).decode()
    assert all(r.headers["authorization"] == expected_auth for r in srv.requests)
    assert p.before["version"] == 13 and p.after["version"] == 12 and p.args["version"] == 12
    with pytest.raises(Exception, match="type the target name"):
        execute(p, db=db, confirm="yes")  # production: "yes" is not the typed name
    rec = execute(p, db=db, confirm="prompts", why="v13 triples cost")
    assert rec.status == "verified"
    assert "SDK caches have it by" in rec.verification["message"]
    assert rec.verification["detail"]["sdk_cache_ttl_s"] == 60
    patch = srv.writes()
    assert [(r.method, r.path, r.body) for r in patch] == [
        ("PATCH", "/api/public/v2/prompts/support-bot/versions/12", {"newLabels": ["production", "staging"]})]
    assert srv.holder("support-bot", "production") == 12

    back = undo(rec.action_id, db=db, confirm="prompts", config=cfg)
    assert back.status == "verified"
    assert [(r.method, r.path, r.body) for r in srv.writes()][1:] == [
        ("PATCH", "/api/public/v2/prompts/support-bot/versions/13", {"newLabels": ["production"]})]
    assert srv.holder("support-bot", "production") == 13
    assert srv.prompts["support-bot"][12] == ["staging"]
    audit = (db.path.parent / "incident.duckdb.actions.jsonl").read_text()
    assert LF_SECRET not in audit and base64.b64encode(f"{LF_PUBLIC}:{LF_SECRET}".encode()).decode() not in audit


def test_langfuse_5xx_leaves_the_label_and_records_the_failure(langfuse, db):
    srv, cfg = langfuse
    p = plan(get_adapter("prompts", cfg), {"prompt": "support-bot", "version": 11})
    srv.fail_next(503, {"message": "upstream unavailable"}, times=2)  # the re-read before writing
    failed = execute(p, db=db, confirm=True)
    assert failed.status == "failed" and "503" in failed.error
    assert srv.holder("support-bot", "production") == 13
    assert srv.writes() == []
    srv._fail.clear()
    rec = execute(plan(get_adapter("prompts", cfg), {"prompt": "support-bot", "version": 11}), db=db, confirm=True)
    assert rec.status == "verified"
    # The failure stays on record as its own action (ids 1, 2, … each a started row then a final row).
    assert (failed.action_id, rec.action_id) == (1, 2)
    rows = db.cursor().execute("SELECT action_id, status, error FROM actions ORDER BY action_row").fetchall()
    assert [r[:2] for r in rows] == [(1, "started"), (1, "failed"), (2, "started"), (2, "verified")]
    assert "503" in rows[1][2]


@pytest.fixture
def admin(tmp_path, monkeypatch):
    monkeypatch.setenv("PROXY_MASTER_KEY", ADMIN_KEY)
    deployments = [{"model_name": "support-bot", "model": "openai/gpt-4o", "id": "dep-primary"},
                   {"model_name": "support-bot-fallback", "model": "anthropic/claude-sonnet", "id": "dep-fb"}]
    with LiteLLMAdminServer(ADMIN_KEY, deployments) as srv:
        write_toml(tmp_path, f"""
[actions.targets.admin]
adapter = "litellm-admin"
proxy_url = "{srv.url}"
master_key_env = "PROXY_MASTER_KEY"
""")
        yield srv, load_config(tmp_path / "oncall.toml")


def test_admin_update_sends_changed_by_and_undoes(admin, db):
    srv, cfg = admin
    p = plan(get_adapter("admin", cfg), {"op": "update", "model": "support-bot",
                                         "litellm_model": "openai/gpt-4o-2024-08-06"})
    assert srv.writes() == []
    rec = execute(p, db=db, confirm=True, who="dana")
    assert rec.status == "verified"
    (w,) = srv.writes()
    assert (w.method, w.path) == ("POST", "/model/update")
    assert w.body == {"model_name": "support-bot", "litellm_params": {"model": "openai/gpt-4o-2024-08-06"},
                      "model_info": {"id": "dep-primary"}}
    assert w.headers["litellm-changed-by"] == "dana" and w.headers["authorization"] == f"Bearer {ADMIN_KEY}"
    assert undo(rec.action_id, db=db, confirm=True, who="dana", config=cfg).status == "verified"
    assert srv.deployments[0]["model"] == "openai/gpt-4o"
    assert srv.writes()[-1].body["litellm_params"] == {"model": "openai/gpt-4o"}


def test_admin_fallbacks_set_and_undo_deletes(admin, db):
    srv, cfg = admin
    rec = execute(plan(get_adapter("admin", cfg), {"op": "fallbacks", "model": "support-bot",
                                                   "fallbacks": "support-bot-fallback"}), db=db, confirm=True)
    assert rec.status == "verified" and any("only after errors" in n for n in rec.plan.notes)
    assert srv.writes()[-1].body == {"model": "support-bot", "fallback_models": ["support-bot-fallback"],
                                     "fallback_type": "general"}
    assert undo(rec.action_id, db=db, confirm=True, config=cfg).status == "verified"
    assert (srv.writes()[-1].method, srv.writes()[-1].path) == ("DELETE", "/fallback/support-bot")
    assert srv.fallbacks == {}


def test_admin_no_db_answer_points_to_the_config_adapter(admin, db):
    """As the real proxy without a database does (tested in test_litellm_proxy.py), the loopback server
    answers writes with `No DB Connected`: the action fails saying so, pointing at litellm-config."""
    srv, cfg = admin
    srv.no_db = True
    rec = execute(plan(get_adapter("admin", cfg), {"op": "update", "model": "support-bot",
                                                   "litellm_model": "openai/x"}), db=db, confirm=True)
    assert rec.status == "failed"
    assert "has no database" in rec.error and "No DB Connected" in rec.error
    assert 'adapter = "litellm-config"' in rec.error
    assert srv.deployments[0]["model"] == "openai/gpt-4o"


@pytest.fixture
def hook(tmp_path, monkeypatch):
    monkeypatch.setenv("STATUS_TOKEN", "status-token-walrus-7719")
    with WebhookReceiver() as srv:
        write_toml(tmp_path, f"""
[actions.targets.status]
adapter = "webhook"
method = "POST"
url = "{srv.url}/incidents/${{service}}"
headers = {{ "X-Source" = "oncall" }}
headers_env = {{ Authorization = "STATUS_TOKEN" }}
body = '{{"status": "${{status}}", "message": "${{message}}"}}'
undo = {{ body = '{{"status": "resolved", "message": "${{message}}"}}' }}
""")
        yield srv, load_config(tmp_path / "oncall.toml")


def test_webhook_sends_the_configured_request_and_its_undo(hook, db):
    srv, cfg = hook
    args = {"service": "support bot", "status": "degraded", "message": 'flipped to "fallback"'}
    p = plan(get_adapter("status", cfg), args)
    assert srv.requests == []
    assert "status-token-walrus-7719" not in json.dumps(p.to_dict())
    rec = execute(p, db=db, confirm=True)
    assert rec.status == "verified"
    (r,) = srv.requests
    assert (r.method, r.path) == ("POST", "/incidents/support bot")
    assert r.body == {"status": "degraded", "message": 'flipped to "fallback"'}
    assert r.headers["authorization"] == "status-token-walrus-7719" and r.headers["x-source"] == "oncall"
    assert r.headers["idempotency-key"] == p.payload["request"]["idempotency_key"]
    assert undo(rec.action_id, db=db, confirm=True, config=cfg).status == "verified"
    assert srv.requests[-1].body == {"status": "resolved", "message": 'flipped to "fallback"'}
    assert "status-token-walrus-7719" not in (db.path.parent / "incident.duckdb.actions.jsonl").read_text()


def test_webhook_5xx_is_a_recorded_failure(hook, db):
    srv, cfg = hook
    srv.status = 502
    rec = execute(plan(get_adapter("status", cfg), {"service": "x", "status": "down", "message": "m"}), db=db,
                  confirm=True)
    assert rec.status == "failed" and "502" in rec.error
    last = db.cursor().execute("SELECT status FROM actions ORDER BY action_row DESC LIMIT 1").fetchone()
    assert last == ("failed",)


def test_target_down_fails_without_a_write_and_is_recorded(admin, db):
    srv, cfg = admin
    p = plan(get_adapter("admin", cfg), {"op": "update", "model": "support-bot", "litellm_model": "openai/x"})
    srv.stop()  # the proxy goes away between the plan and the confirmation
    rec = execute(p, db=db, confirm=True)
    assert rec.status == "failed" and "nothing was written" in rec.result
    assert "failed" in rec.error and "/v1/model/info" in rec.error
    lines = [json.loads(x) for x in (db.path.parent / "incident.duckdb.actions.jsonl").read_text().splitlines()]
    assert [x["status"] for x in lines] == ["started", "failed"] and lines[1]["error"] == rec.error
    assert ADMIN_KEY not in json.dumps(lines)
