"""The safety rules every action follows, on files and servers that need no proxy: a plan writes
nothing, a moved target aborts, a failed pick-up leaves the old file, a broken config never lands,
--read-only refuses, confirmation is required, secrets never appear, the CLI contract holds."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from oncall.actions import (
    ConfigError,
    InvalidChange,
    Refused,
    get_adapter,
    load_config,
    plan,
)
from oncall.actions.engine import execute
from oncall.cli import cli
from oncall.store import open_db
from tests.actions.conftest import write_toml

CONFIG = """\
model_list:
  - model_name: support-bot
    litellm_params:
      model: "openai/gpt-4o"      # quoted on purpose
      api_base: http://127.0.0.1:9/v1
      api_key: literal-upstream-key-ibis-2231
  - model_name: support-bot-fallback
    litellm_params:
      model: anthropic/claude-sonnet-4
router_settings:
  model_group_alias:
    other-bot: support-bot
"""
LITERAL_KEY = "literal-upstream-key-ibis-2231"


@pytest.fixture
def gw(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG)
    write_toml(tmp_path, """
[actions.targets.gw]
adapter = "litellm-config"
production = true
config = "config.yaml"
reload = "command"
restart_command = ["true"]
""")
    return cfg, load_config(tmp_path / "oncall.toml")


@pytest.fixture
def db(tmp_path):
    d = open_db(tmp_path / "incident.duckdb")
    yield d
    d.close()


FLIP = {"op": "repoint", "alias": "support-bot", "to": "support-bot-fallback"}


def snapshot(directory):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in directory.iterdir() if p.is_file()}


def test_a_plan_writes_nothing(gw, tmp_path):
    cfg, conf = gw
    before = snapshot(tmp_path)
    p = plan(get_adapter("gw", conf), FLIP)
    assert p.changes and p.payload["patch"] == [{"at": 12, "old": [], "new": ["    support-bot: support-bot-fallback\n"]}]
    assert snapshot(tmp_path) == before


def test_round_trip_keeps_quotes_comments_and_order(gw, db):
    cfg, conf = gw
    rec = execute(plan(get_adapter("gw", conf), {"op": "pin", "deployment": "support-bot",
                                                 "model": "openai/gpt-4o-2024-08-06"}), db=db, confirm="gw")
    new = cfg.read_text()
    # Only that line changes; its quotes and its comment stay.
    assert new == CONFIG.replace('"openai/gpt-4o"      #', '"openai/gpt-4o-2024-08-06" #')
    assert rec.status == "unverified" and "no proxy_url" in rec.result


FLOW = """\
model_list:
  - model_name: extract
    litellm_params: {model: openai/gpt-4o, api_base: "http://127.0.0.1:9/v1", api_key: os.environ/UPSTREAM_KEY}
  - model_name: support-bot
    litellm_params: {model: openai/gpt-4o, api_base: "http://127.0.0.1:9/v1", api_key: os.environ/UPSTREAM_KEY}
"""


def test_a_flow_style_entry_is_undone_byte_for_byte(gw, db):
    """A deployment written on one line keeps its api_key beside the model: the audit stores that line
    redacted, so the undo makes the pin again towards the model before (and checks the bytes)."""
    from oncall.actions import plan_undo, undo
    from oncall.actions.errors import StateMoved

    cfg, conf = gw
    cfg.write_text(FLOW)
    pin = {"op": "pin", "deployment": "extract", "model": "openai/gpt-4o-2024-08-06"}
    rec = execute(plan(get_adapter("gw", conf), pin), db=db, confirm="gw")
    assert rec.status == "unverified" and "gpt-4o-2024-08-06, api_base" in cfg.read_text()
    assert "[REDACTED]" in json.dumps(db.cursor().execute(
        "SELECT plan FROM actions WHERE action_id = 1 ORDER BY action_row DESC LIMIT 1").fetchone()[0])
    undone = undo(rec.action_id, db=db, confirm="gw", config=conf)
    assert undone.status == "unverified" and cfg.read_text() == FLOW
    again = undo(undone.action_id, db=db, confirm="gw", config=conf)  # the undo of the undo: pinned again
    assert again.status == "unverified" and cfg.read_text() == FLOW.replace(
        "{model: openai/gpt-4o, api_base", "{model: openai/gpt-4o-2024-08-06, api_base", 1)
    cfg.write_text(FLOW.replace("9/v1", "8/v1"))  # someone else's change since: refused, theirs stands
    with pytest.raises(StateMoved, match="changed since action"):
        plan_undo(again.action_id, db=db, config=conf)


def test_state_moved_between_plan_and_write_aborts(gw, db):
    cfg, conf = gw
    p = plan(get_adapter("gw", conf), FLIP)
    moved = CONFIG.replace("other-bot: support-bot", "other-bot: support-bot-fallback")
    cfg.write_text(moved)
    rec = execute(p, db=db, confirm="gw")
    assert rec.status == "aborted" and "moved since the plan" in rec.error
    assert cfg.read_text() == moved  # the other person's change stands
    assert db.cursor().execute("SELECT status FROM actions ORDER BY action_row").fetchall() == [
        ("started",), ("aborted",)]


def test_a_failed_pick_up_restores_the_old_file_and_is_recorded(gw, tmp_path, db):
    cfg, _ = gw
    write_toml(tmp_path, """
[actions.targets.gw]
adapter = "litellm-config"
config = "config.yaml"
reload = "command"
restart_command = ["sh", "-c", "echo 'proxy unit failed to restart' >&2; exit 3"]
""")
    conf = load_config(tmp_path / "oncall.toml")
    rec = execute(plan(get_adapter("gw", conf), FLIP), db=db, confirm=True)
    assert rec.status == "failed" and "exited 3: proxy unit failed to restart; config.yaml restored" in rec.error
    assert cfg.read_text() == CONFIG
    lines = (tmp_path / "incident.duckdb.actions.jsonl").read_text().splitlines()
    assert [json.loads(x)["status"] for x in lines] == ["started", "failed"]


def test_a_broken_new_config_never_replaces_the_old(gw, db, tmp_path):
    cfg, conf = gw
    # Pointing an alias at a name no deployment has would break routing: refused at plan time.
    broken = CONFIG.replace("other-bot: support-bot", "other-bot: nobody")
    cfg.write_text(broken)
    with pytest.raises(InvalidChange, match="other-bot -> nobody: no model_list entry"):
        plan(get_adapter("gw", conf), FLIP)
    assert cfg.read_text() == broken
    # And a validator that rejects the candidate file leaves the old one and no temp file.
    from oncall.actions import files

    with pytest.raises(InvalidChange):
        files.atomic_write(cfg, b"model_list: [", check=lambda p: (_ for _ in ()).throw(InvalidChange("no")))
    assert cfg.read_text() == broken
    assert sorted(p.name for p in tmp_path.iterdir() if "oncall-tmp" in p.name) == []


def test_read_only_refuses(gw, tmp_path):
    cfg, conf = gw
    path = tmp_path / "incident.duckdb"
    open_db(path).close()
    ro = open_db(path, read_only=True)
    p = plan(get_adapter("gw", conf), FLIP)
    with pytest.raises(Refused, match="read-only"):
        execute(p, db=ro, confirm=True)
    ro.close()
    res = CliRunner().invoke(cli, ["--db", str(path), "action", "run", "litellm-config", "--target", "gw",
                                   "--config", str(tmp_path / "oncall.toml"), "--read-only", "--yes",
                                   *[f"--arg={k}={v}" for k, v in FLIP.items()]])
    assert res.exit_code == 2 and "read-only" in res.output
    assert cfg.read_text() == CONFIG


def test_production_needs_the_typed_name(gw, db):
    cfg, conf = gw
    p = plan(get_adapter("gw", conf), FLIP)
    for answer in (None, False, "", "y", "yes", "GW"):
        with pytest.raises(Refused, match="type the target name 'gw'"):
            execute(p, db=db, confirm=answer)
    assert cfg.read_text() == CONFIG
    assert execute(p, db=db, confirm="gw").status == "unverified"


def test_literal_secret_in_oncall_toml_is_refused(tmp_path):
    write_toml(tmp_path, '[actions.targets.a]\nadapter = "litellm-admin"\nproxy_url = "http://x"\n'
                         'master_key = "sk-live-abc"\n')
    with pytest.raises(ConfigError, match="master_key.*looks like a secret.*master_key_env"):
        load_config(tmp_path / "oncall.toml")


def test_secrets_never_in_output_plan_or_audit(gw, tmp_path):
    cfg, _ = gw
    toml = tmp_path / "oncall.toml"
    db = tmp_path / "incident.duckdb"
    runner = CliRunner()
    base = ["--db", str(db), "action"]
    # The config's own literal api_key sits next to the changed line: shown redacted in the diff.
    args = ["run", "litellm-config", "--target", "gw", "--config", str(toml), "--arg", "op=pin",
            "--arg", "deployment=support-bot", "--arg", "model=openai/gpt-4o-2024-08-06"]
    dry = runner.invoke(cli, [*base, *args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "api_key: [REDACTED]" in dry.output and "+      model: \"openai/gpt-4o-2024-08-06\"" in dry.output
    ran = runner.invoke(cli, [*base, *args, "--yes", "--json", "--why", "pin before the alias moves"])
    assert ran.exit_code == 1, ran.output  # written, but no proxy_url to verify with: a problem
    out = json.loads(ran.output)
    assert out["action"]["status"] == "unverified"
    listing = runner.invoke(cli, [*base, "list", "--json"])
    shown = runner.invoke(cli, [*base, "show", str(out["action"]["action_id"]), "--json"])
    assert json.loads(shown.output)["why"] == "pin before the alias moves"
    con = open_db(db, read_only=True)
    stored = json.dumps(con.cursor().execute("SELECT * FROM actions").fetchall(), default=str)
    con.close()
    jsonl = (tmp_path / "incident.duckdb.actions.jsonl").read_text()
    for text in (dry.output, ran.output, listing.output, shown.output, stored, jsonl):
        assert LITERAL_KEY not in text
    assert LITERAL_KEY in cfg.read_text()  # the config itself keeps its key


def test_cli_contract_run_list_show_undo(gw, tmp_path):
    cfg, _ = gw
    toml = tmp_path / "oncall.toml"
    db = tmp_path / "incident.duckdb"
    runner = CliRunner()
    base = ["--db", str(db), "action"]
    run = ["run", "litellm-config", "--target", "gw", "--config", str(toml), "--arg", "op=repoint",
           "--arg", "alias=support-bot", "--arg", "to=support-bot-fallback"]
    res = runner.invoke(cli, [*base, *run])  # no terminal, no --yes: refused, nothing written
    assert res.exit_code == 2 and "needs confirmation" in res.output
    assert cfg.read_text() == CONFIG
    res = runner.invoke(cli, [*base, *run, "--yes"])
    assert res.exit_code == 1 and "action 1 unverified" in res.output and "undo with: oncall action undo 1" in res.output
    again = runner.invoke(cli, [*base, *run, "--yes", "--json"])
    assert json.loads(again.output)["action"]["status"] == "unchanged"
    undo = runner.invoke(cli, [*base, "undo", "1", "--yes", "--config", str(toml), "--json"])
    u = json.loads(undo.output)["action"]
    assert u["plan"]["undo_of"] == 1 and u["status"] == "unverified"
    assert cfg.read_text() == CONFIG
    twice = runner.invoke(cli, [*base, "undo", "1", "--yes", "--config", str(toml)])
    assert twice.exit_code == 1 and "already undone by action" in twice.output
    listing = json.loads(runner.invoke(cli, [*base, "list", "--json"]).output)
    assert [(a["action_id"], a["status"], a["undo_of"]) for a in listing] == [
        (1, "unverified", None), (2, "unchanged", None), (3, "unverified", 1)]  # contiguous: an undo is an action
    assert runner.invoke(cli, [*base, "show", "99"]).exit_code == 1
    bad = runner.invoke(cli, [*base, "run", "webhook", "--target", "gw", "--config", str(toml), "--dry-run"])
    assert bad.exit_code == 2 and "uses adapter 'litellm-config'" in bad.output
    unknown = runner.invoke(cli, [*base, "run", "litellm-config", "--target", "gw", "--config", str(toml),
                                  "--arg", "op=repoint", "--arg", "alias=support-bot", "--arg", "to=nope", "--dry-run"])
    assert unknown.exit_code == 2 and "no model_list entry is named 'nope'" in unknown.output
    timeline = open_db(db, read_only=True)
    kinds = timeline.cursor().execute("SELECT kind, summary FROM trail ORDER BY event_id").fetchall()
    timeline.close()
    assert [k for k, _ in kinds] == ["action"] * 3 and "undo action 1" in kinds[2][1]


def test_core_imports_no_click_or_textual():
    import subprocess
    import sys

    code = ("import sys, oncall.actions, oncall.actions.adapters.litellm_config, oncall.actions.adapters.flagd, "
            "oncall.actions.adapters.langfuse, oncall.actions.adapters.litellm_admin, oncall.actions.adapters.webhook\n"
            "print([m for m in sys.modules if m.split('.')[0] in ('click', 'textual')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ})
    assert out.stdout.strip() == "[]"


def test_a_disk_error_fails_cleanly_and_is_recorded(gw, db, monkeypatch):
    cfg, conf = gw
    from oncall.actions import files

    real = os.replace

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", full_disk)
    rec = execute(plan(get_adapter("gw", conf), FLIP), db=db, confirm="gw")
    monkeypatch.setattr(files.os, "replace", real)
    assert rec.status == "failed" and "cannot write" in rec.error and "No space left" in rec.error
    assert cfg.read_text() == CONFIG
    assert not [p for p in cfg.parent.iterdir() if "oncall-tmp" in p.name]
    assert db.cursor().execute("SELECT status FROM actions ORDER BY action_row").fetchall() == [
        ("started",), ("failed",)]
