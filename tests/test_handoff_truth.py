"""The hand-off says what happened (issue 26 item 3), checked on one scripted response to the demo:
labels and a note on a request, a runbook whose evidence gate replays the bad cohort, its flag action,
an undo, the action again, and the postmortem and eval set written from it.

The demo's data is dated 2026-11-24 and the response runs now, so the two clocks are apart, as they
are when a responder reads an older export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from oncall.postmortem.draft import build_draft
from oncall.query.labels import add_label, add_note
from oncall.store import open_db
from oncall.store.db import copy_incident
from tests.conftest import ROOT
from tests.openai_server import OpenAIServer
from tests.test_evalset_tools import good_snapshot

RUNBOOK = """---
title: Extract flag off after a replay
when: the extract feature answers with the wrong JSON keys
params:
  flag: {type: string, default: extract-v2}
targets: [flags]
---

# Extract flag off

## 1. Would the old snapshot answer correctly?

```gate
replay served_model=gpt-4o-2024-11-20 feature=extract --target pinned -n 6 --seed 2
expect json_valid_rate >= 95%
expect errors <= 0
```

## 2. Turn the new extractor off

```action
target: flags
op: set
flag: ${flag}
variant: "off"
why: the old snapshot answers these requests correctly
```
"""


class Response:
    def __init__(self, db: Path, cwd: Path, env: dict[str, str]) -> None:
        self.db, self.cwd, self.env = db, cwd, env

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "oncall", "--db", str(self.db), *args], cwd=self.cwd,
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, **self.env, "PYTHONPATH": str(ROOT), "COLUMNS": "200"})

    def draft(self):
        db = open_db(self.db, read_only=True)
        try:
            return build_draft(db)
        finally:
            db.close()


@pytest.fixture(scope="module")
def response(demo_db: Path, tmp_path_factory) -> Response:
    tmp = tmp_path_factory.mktemp("handoff")
    db_path = tmp / "incident.duckdb"
    copy_incident(demo_db, db_path)
    db = open_db(db_path)
    try:
        cur = db.cursor()
        bad = cur.execute("SELECT span_pk FROM spans WHERE served_model = 'gpt-4o-2024-11-20' AND feature = 'extract' "
                          "AND output_text LIKE '%orderId%' ORDER BY start_time LIMIT 2").fetchall()
        add_label(db, bad[0][0], "bad", note="renamed key")
        add_note(db, 'must not contain "orderId"; the client parses order_id', span_pk=bad[1][0])  # `n` in the reader
    finally:
        db.close()
    flags = tmp / "flags.json"
    flags.write_text(json.dumps({"flags": {"extract-v2": {"state": "ENABLED", "variants": {"on": True, "off": False},
                                                          "defaultVariant": "on"}}}))
    (tmp / "oncall.toml").write_text(f'[actions.targets.flags]\nadapter = "flagd-file"\npath = "{flags}"\n')
    (tmp / "runbooks").mkdir()
    (tmp / "runbooks" / "extract-off.md").write_text(RUNBOOK)
    suite = tmp / "suite"
    suite.mkdir()
    with OpenAIServer(answerer=good_snapshot) as srv:
        (suite / "targets.toml").write_text(f'[settings]\nconfirm_above = 1000\n\n[targets.pinned]\nbase_url = '
                                            f'"{srv.base_url}"\nmodel = "gpt-4o-2024-08-06"\napi_key_env = "LOOP_KEY"\n')
        r = Response(db_path, tmp, {"LOOP_KEY": "loop-key-5", "ONCALL_REPLAY_SUITE": str(suite),
                                    "ONCALL_RUNBOOKS": str(tmp / "runbooks")})
        first = r.run("runbook", "run", "extract-off", "--yes", "--why", "extract is broken for acme", "--json")
        assert first.returncode == 0, first.stdout[-2000:] + first.stderr
        r.first = json.loads(first.stdout)
        undo = r.run("action", "undo", "1", "--yes", "--why", "wrong flag, the fix is upstream")
        assert undo.returncode == 0, undo.stderr
        again = r.run("runbook", "run", "extract-off", "--yes", "--why", "upstream fix is days away", "--json")
        assert again.returncode == 0, again.stderr
        r.text = r.run("runbook", "run", "extract-off", "--dry-run").stdout
    return r


def test_action_ids_are_contiguous_and_carry_the_responders_why(response: Response) -> None:
    listed = json.loads(response.run("action", "list", "--json").stdout)
    acts = listed["actions"] if isinstance(listed, dict) else listed
    assert [(a["action_id"], a.get("undo_of")) for a in acts] == [(1, None), (2, 1), (3, None)]
    why = {a["action_id"]: a["why"] for a in acts}
    assert why[1].startswith("extract is broken for acme") and "old snapshot answers" in why[1]
    assert why[2] == "wrong flag, the fix is upstream"
    assert why[3].startswith("upstream fix is days away")
    shown = json.loads(response.run("action", "show", "1", "--json").stdout)
    assert shown["step"] == "2. Turn the new extractor off"  # the step's number once


def test_an_undone_action_is_not_the_mitigation(response: Response) -> None:
    draft = response.draft()
    md = draft.markdown
    assert draft.facts["mitigation"] == {"in_force": [3], "undone": [{"action_id": 1, "undone_by": 2}]}
    summary = md.split("## Impact")[0]
    assert "Done and undone: action 1 at" in summary and "undone by action 2 at" in summary
    assert "not a mitigation" in summary
    assert "Mitigated at" in summary and summary.count("Mitigated at") == 1
    mitigated = next(line for line in summary.splitlines() if "Mitigated at" in line)
    assert "action 3" in mitigated and "still in force" in mitigated
    section = md.split("## Mitigation")[1].split("## Root cause")[0]
    assert "The mitigation is action 3, the last action still in force." in section
    assert "| now | undone by action 2 at" in section and "| now | in force (the mitigation) |" in section


def test_durations_are_on_the_incidents_clock_and_both_clocks_are_said(response: Response) -> None:
    draft = response.draft()
    clocks = draft.facts["clocks"]
    assert clocks["apart"] is True and clocks["data"][1].startswith("2026-11-24T02:59")
    for item in draft.facts["impact"]:
        # the demo spans six hours: no duration may reach into the responder's clock
        assert 0 < item["duration_minutes"] <= 6 * 60, item
        assert item["duration_until"] in ("ended", "data_end")
    md = draft.markdown
    assert "Two clocks: the data runs 2026-11-23T21:00:00Z → 2026-11-24T02:59:57Z; the response ran" in md
    assert "(still on when the data ends)" in md
    charts = md.split("```mermaid")[1:]
    assert len(charts) == 2 and "section Response" not in charts[0] and "section Response" in charts[1]
    assert "2026-12" not in charts[0].split("section What changed")[1]  # cause bars end on the data's clock


def test_rates_read_as_percentages_in_gates_and_replay_tables(response: Response) -> None:
    md = response.draft().markdown
    replay = md.split("## Replay results")[1].split("## Blast radius")[0]
    rows = [line for line in replay.splitlines() if line.startswith(("| json\\_valid\\_rate", "| error\\_rate"))]
    assert rows and all(line.count(" %") == 2 for line in rows), rows
    assert "expect json\\_valid\\_rate \\>= 95% (pass: 100 %)" in md and "expect errors \\<= 0 (pass: 0)" in md
    gate = [e for e in response.first["events"] if e["kind"] == "gate"][0]["data"]
    assert gate["checks"][0]["metric"] == "json_valid_rate"
    shown = response.run("runbook", "show", "extract-off").stdout
    assert "2. Turn the new extractor off [action]" in shown and "2. 2." not in shown
    assert "== 1. Would the old snapshot answer correctly?" in response.text and "1. 1." not in response.text


def test_postmortem_out_refuses_to_replace_a_file_without_force(response: Response) -> None:
    out = response.cwd / "postmortem.md"
    out.write_text("# my edits\n")
    refused = response.run("postmortem", "--out", str(out))
    assert refused.returncode == 2 and "exists; refusing to replace it" in refused.stderr and "--force" in refused.stderr
    assert out.read_text() == "# my edits\n"
    forced = response.run("postmortem", "--out", str(out), "--force")
    assert forced.returncode == 0 and out.read_text().startswith("# Postmortem (draft)")


def test_a_note_on_a_request_reaches_the_eval_set_and_the_evidence(response: Response) -> None:
    out = response.cwd / "evals"
    res = response.run("export", "evalset", "--format", "jsonl", "--out", str(out))
    assert res.returncode == 0, res.stderr
    cases = [json.loads(line) for line in (out / "evalset.jsonl").read_text().splitlines()]
    noted = [c for c in cases if c["note"] and "orderId" in c["note"]]
    assert len(noted) == 1 and noted[0]["label"] is None  # noted, never labelled: still a case
    assert {"type": "not_contains", "value": "orderId"} in noted[0]["checks"]
    labelled = [c for c in cases if c["label"] == "bad"]
    assert len(labelled) == 1 and labelled[0]["note"] == "renamed key"
