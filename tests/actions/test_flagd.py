"""The flagd flag-file adapter, checked by the real OpenFeature SDK with the flagd provider in file
mode (no daemon): it evaluates the flag before the flip, after it, and after the undo."""

from __future__ import annotations

import json
import time

import pytest

from oncall.actions import get_adapter, load_config, plan, undo
from oncall.actions.engine import execute
from oncall.store import open_db
from tests.actions.conftest import write_toml

FLAGS = {
    "$schema": "https://flagd.dev/schema/v0/flags.json",
    "flags": {
        "support-bot-model": {
            "state": "ENABLED",
            "variants": {"primary": "gpt-4o", "cheap": "gpt-4o-mini"},
            "defaultVariant": "primary",
        },
        "agent-web-tool": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "on",
            "targeting": {"if": [{"==": [{"var": "tenant"}, "acme"]}, "on", "on"]},
        },
    },
}


@pytest.fixture
def flagd(tmp_path):
    from openfeature import api
    from openfeature.contrib.provider.flagd import FlagdProvider
    from openfeature.contrib.provider.flagd.config import ResolverType

    path = tmp_path / "flags.json"
    path.write_text(json.dumps(FLAGS, indent=2) + "\n")
    write_toml(tmp_path, f'[actions.targets.flags]\nadapter = "flagd-file"\npath = "{path}"\n')
    provider = FlagdProvider(resolver_type=ResolverType.FILE, offline_flag_source_path=str(path), deadline_ms=200)
    domain = f"oncall-test-{tmp_path.name}"
    api.set_provider(provider, domain=domain)
    client = api.get_client(domain=domain)
    yield path, client, load_config(tmp_path / "oncall.toml")
    provider.shutdown()


def eventually(fn, want, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def test_default_variant_flip_and_undo_seen_by_the_real_provider(flagd, tmp_path):
    path, client, cfg = flagd
    original = path.read_bytes()
    model = lambda: client.get_string_value("support-bot-model", "unset")  # noqa: E731
    assert eventually(model, "gpt-4o") == "gpt-4o"
    db = open_db(tmp_path / "incident.duckdb")
    p = plan(get_adapter("flags", cfg), {"flag": "support-bot-model", "variant": "cheap"})
    assert path.read_bytes() == original  # planning wrote nothing
    assert [ln for ln in p.diff if ln[:1] in "+-" and ln[:3] not in ("+++", "---")] == [
        '-      "defaultVariant": "primary"', '+      "defaultVariant": "cheap"']
    mtime = path.stat().st_mtime_ns
    rec = execute(p, db=db, confirm=True, why="cost runaway")
    assert rec.status == "verified" and rec.verification["detail"]["value"] == "gpt-4o-mini"
    assert path.stat().st_mtime_ns > mtime
    assert eventually(model, "gpt-4o-mini") == "gpt-4o-mini"

    back = undo(rec.action_id, db=db, confirm=True, config=cfg)
    assert back.status == "verified"
    assert path.read_bytes() == original
    assert eventually(model, "gpt-4o") == "gpt-4o"
    db.close()


def test_targeting_rule_variant_turns_the_tool_off_for_one_tenant(flagd, tmp_path):
    from openfeature.evaluation_context import EvaluationContext

    path, client, cfg = flagd
    acme, other = EvaluationContext(attributes={"tenant": "acme"}), EvaluationContext(attributes={"tenant": "globex"})
    tool = lambda ctx: client.get_boolean_value("agent-web-tool", None, ctx)  # noqa: E731
    assert eventually(lambda: tool(acme), True) is True
    db = open_db(tmp_path / "incident.duckdb")
    rec = execute(plan(get_adapter("flags", cfg), {"flag": "agent-web-tool", "variant": "off", "rule": "if.1"}),
                  db=db, confirm=True)
    assert rec.status == "verified"
    assert eventually(lambda: tool(acme), False) is False
    assert tool(other) is True
    # The same action again changes nothing.
    again = plan(get_adapter("flags", cfg), {"flag": "agent-web-tool", "variant": "off", "rule": "if.1"})
    assert not again.changes
    mtime = path.stat().st_mtime_ns
    assert execute(again, db=db, confirm=True).status == "unchanged"
    assert path.stat().st_mtime_ns == mtime
    db.close()


def test_unknown_flag_or_variant_is_a_clear_error(flagd):
    from oncall.actions import BadArguments

    path, _, cfg = flagd
    with pytest.raises(BadArguments, match="no variant 'free'.*variants: primary, cheap"):
        plan(get_adapter("flags", cfg), {"flag": "support-bot-model", "variant": "free"})
    with pytest.raises(BadArguments, match="no flag 'nope'"):
        plan(get_adapter("flags", cfg), {"flag": "nope", "variant": "on"})
