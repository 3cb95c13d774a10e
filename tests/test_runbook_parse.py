"""Runbooks as files: the shipped ones parse, malformed ones are rejected with file, line and reason,
parameters are typed and substituted without becoming shell syntax, reading steps run on the demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from oncall.runbook import RunbookError, RunbookRun, find_runbook, list_runbooks, resolve_params
from oncall.runbook.params import command_argv, substitute_args
from oncall.runbook.parse import parse_runbook
from oncall.store import open_db

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = {"provider-model-regression", "provider-outage", "prompt-regression", "cost-runaway",
           "model-deprecation", "prompt-injected-agent"}

GOOD = """---
title: Test runbook
when: testing
params:
  cohort: {type: filter, default: "tenant=acme"}
  n: {type: int, default: 3}
  mode: {type: choice, choices: [pin, flip], default: pin}
  alias: {type: string}
targets: [gateway]
---
# Test

## 1. Look
```oncall
search ${cohort} --limit ${n}
```

## 2. Gate
```gate
replay ${cohort} --target pinned -n ${n}
expect json_valid_rate >= 95%
```

## 3. Act
```action
target: gateway
op: repoint
alias: ${alias}
to: fallback
```
"""


def write(tmp_path: Path, text: str, name: str = "rb.md") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_shipped_runbooks_all_parse() -> None:
    books, errors = list_runbooks()
    assert errors == []
    names = {b.name for b in books}
    assert SHIPPED <= names
    for b in books:
        kinds = [s.kind for s in b.steps]
        assert "query" in kinds, f"{b.name} has no query step telling the responder it applies"
        assert "action" in kinds
    gated = {b.name for b in books if any(s.kind == "gate" for s in b.steps)}
    assert {"provider-model-regression", "prompt-regression"} <= gated
    # A gate comes before the action it guards.
    for b in books:
        kinds = [s.kind for s in b.steps]
        if "gate" in kinds:
            assert kinds.index("gate") < kinds.index("action")


def test_a_good_runbook_parses_into_steps(tmp_path: Path) -> None:
    rb = parse_runbook(write(tmp_path, GOOD))
    assert rb.title == "Test runbook" and rb.targets == ["gateway"]
    assert [(s.kind, s.heading) for s in rb.steps] == [("query", "1. Look"), ("gate", "2. Gate"), ("action", "3. Act")]
    gate = rb.steps[1]
    assert gate.expectations[0].metric == "json_valid_rate" and gate.expectations[0].value == 0.95
    assert gate.expectations[0].line == 21
    assert rb.steps[2].args == {"op": "repoint", "alias": "${alias}", "to": "fallback"}
    assert rb.params["alias"].required and not rb.params["n"].required and rb.params["n"].default == 3


@pytest.mark.parametrize("mutate, where, message", [
    (lambda t: t.replace("---\ntitle", "title", 1), 1, "starts with front matter"),
    (lambda t: t.replace("title: Test runbook\n", ""), 1, "needs a title"),
    (lambda t: t.replace("when: testing", "when: testing\ncolour: blue"), 4, "unknown front-matter key 'colour'"),
    (lambda t: t.replace("{type: int, default: 3}", "{type: integer, default: 3}"), 6, "type 'integer'"),
    (lambda t: t.replace("{type: int, default: 3}", "{type: int, default: three}"), 6, "not a whole number"),
    (lambda t: t.replace("--limit ${n}", "--limit ${m}"), 15, "${m} is not a parameter"),
    (lambda t: t.replace("search ${cohort}", "label ${cohort}"), 15, "reading commands only"),
    (lambda t: t.replace("expect json_valid_rate >= 95%", "expect vibes >= 95%"), 21, "unknown gate metric 'vibes'"),
    (lambda t: t.replace("expect json_valid_rate >= 95%", "json_valid_rate is high"), 21, "expect METRIC OP"),
    (lambda t: t.replace("expect json_valid_rate >= 95%\n", ""), 20, "at least one `expect`"),
    (lambda t: t.replace(" --target pinned", ""), 20, "needs --target"),
    (lambda t: t.replace("target: gateway\nop", "op"), 26, "needs `target:`"),
    (lambda t: t.replace("target: gateway\nop", "target: prod-db\nop"), 26, "not among the runbook's targets"),
    (lambda t: t.replace("to: fallback", "to: [fallback"), 29, "not valid YAML"),
    (lambda t: t.replace("search ${cohort} --limit ${n}", 'search "unclosed'), 15, "cannot split"),
])
def test_a_malformed_runbook_names_file_line_and_reason(tmp_path: Path, mutate, where: int, message: str) -> None:
    path = write(tmp_path, mutate(GOOD))
    with pytest.raises(RunbookError) as exc:
        parse_runbook(path)
    text = str(exc.value)
    assert text.startswith(f"{path}:{where}:"), text
    assert message in text, text


def test_parameters_are_typed_and_never_become_shell_syntax(tmp_path: Path, demo_db: Path) -> None:
    rb = parse_runbook(write(tmp_path, GOOD))
    db = open_db(demo_db, read_only=True)
    try:
        with pytest.raises(RunbookError, match="parameter alias is required"):
            resolve_params(rb, {}, db.cursor())
        with pytest.raises(RunbookError, match="no parameter colour"):
            resolve_params(rb, {"alias": "a", "colour": "x"}, db.cursor())
        with pytest.raises(RunbookError, match="mode: 'flap' is not one of pin, flip"):
            resolve_params(rb, {"alias": "a", "mode": "flap"}, db.cursor())
        with pytest.raises(RunbookError, match="parameter cohort"):
            resolve_params(rb, {"alias": "a", "cohort": "colour=blue"}, db.cursor())
        values = resolve_params(rb, {"alias": "support-bot; rm -rf /", "cohort": 'tenant="Acme, Inc." since=01:00',
                                     "n": "7"}, db.cursor())
    finally:
        db.close()
    assert values["n"] == 7
    argv = command_argv(rb.steps[0].commands[0], values)
    assert argv == ["search", 'tenant="Acme, Inc." since=01:00', "--limit", "7"]
    assert substitute_args(rb.steps[2].args, values) == {"op": "repoint", "alias": "support-bot; rm -rf /",
                                                         "to": "fallback"}
    assert substitute_args({"n": "${n}", "s": "x${n}"}, values) == {"n": 7, "s": "x7"}


def test_find_runbook_by_name_lists_the_known_ones_when_missing() -> None:
    assert find_runbook("provider-outage").title.startswith("Provider outage")
    with pytest.raises(RunbookError, match="no runbook named 'nope'.*provider-outage"):
        find_runbook("nope")


QUERY_ONLY = """---
title: Look at acme
params:
  cohort: {type: filter, default: "tenant=acme feature=extract"}
---
## What changed for the cohort
```oncall
changes ${cohort}
search ${cohort} --limit 3
```
"""


def test_reading_steps_run_against_the_incident_and_land_on_the_trail(tmp_path: Path, demo_db: Path) -> None:
    from oncall.store.db import copy_incident

    db_path = tmp_path / "incident.duckdb"
    copy_incident(demo_db, db_path)
    rb = parse_runbook(write(tmp_path, QUERY_ONLY))
    db = open_db(db_path)
    try:
        values = resolve_params(rb, {}, db.cursor())
        run = RunbookRun(rb, db, values, as_json=True)
        events = list(run.events())
        queries = [e for e in events if e.kind == "query"]
        assert [q.data["command"] for q in queries] == ["oncall changes 'tenant=acme feature=extract'",
                                                        "oncall search 'tenant=acme feature=extract' --limit 3"]
        found = queries[1].data["result"]
        assert len(found["requests"]) == 3
        assert all(r["tenant"] == "acme" and r["feature"] == "extract" for r in found["requests"])
        assert run.outcome == "completed"
        trail = db.cursor().execute("SELECT summary FROM trail WHERE kind = 'runbook' ORDER BY event_id").fetchall()
        assert [t[0] for t in trail] == [f"started runbook {rb.name}", f"runbook {rb.name} completed"]
    finally:
        db.close()


def test_runbook_cli_list_show_and_bad_param_exit_codes(tmp_path: Path, demo_db: Path) -> None:
    def oncall(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "oncall", "--db", str(demo_db), *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    out = oncall("runbook", "list", "--json")
    assert out.returncode == 0
    assert SHIPPED <= {r["name"] for r in json.loads(out.stdout)["runbooks"]}
    shown = json.loads(oncall("runbook", "show", "provider-outage", "--json").stdout)
    assert [s["kind"] for s in shown["steps"]] == ["query", "query", "action"]
    bad = oncall("runbook", "run", "provider-outage", "colour=blue", "--dry-run")
    assert bad.returncode == 2 and "no parameter colour" in bad.stderr
    broken = write(tmp_path, GOOD.replace("expect json_valid_rate >= 95%\n", ""), "broken.md")
    rej = oncall("runbook", "show", str(broken))
    assert rej.returncode == 2 and f"{broken}:20:" in rej.stderr
