"""The hand-off on the demo incident: timeline and postmortem draft against the demo's truth, Markdown
that renders as written (markdown-it-py, GFM tables), a Mermaid block the real mermaid parser accepts,
hostile outputs quoted safely, and no secret or PII in what is exported."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from oncall.demo import demo_truth
from oncall.postmortem.draft import build_draft
from oncall.postmortem.markdown import cell, code, fence
from oncall.postmortem.timeline import star, timeline
from oncall.query.labels import add_label, add_note
from oncall.store import open_db
from oncall.store.db import copy_incident

ROOT = Path(__file__).resolve().parent.parent
MERMAID = ROOT / "tests" / "node-mermaid"
SECRET = "sk-proj-" + "Zx9" * 16
HOSTILE = "```\n# not a heading\n| a | b |\n<script>alert(1)</script>\n```` [x](javascript:alert(1)) \x1b]52;c;AAAA\x07"


@pytest.fixture(scope="module")
def responded(demo_db: Path, tmp_path_factory) -> Path:
    """The demo after a short response: three labels (one on a hostile output), a note with a pasted key."""
    db_path = tmp_path_factory.mktemp("pm") / "incident.duckdb"
    copy_incident(demo_db, db_path)
    db = open_db(db_path)
    try:
        cur = db.cursor()
        bad = [r[0] for r in cur.execute("SELECT span_pk FROM spans WHERE served_model = 'gpt-4o-2024-11-20' AND "
                                         "feature = 'extract' ORDER BY start_time LIMIT 2").fetchall()]
        good = cur.execute("SELECT span_pk FROM spans WHERE served_model = 'gpt-4o-2024-08-06' AND feature = 'extract' "
                           "ORDER BY start_time LIMIT 1").fetchone()[0]
        add_label(db, bad[0], "bad", note="orderId instead of order_id; reported by jane.doe@example.com")
        add_label(db, bad[1], "bad", note=f"wrapped in prose; key {SECRET} pasted by mistake")
        add_label(db, good, "good")
        add_note(db, f"paged 02:04; acme support says refunds break. token {SECRET}")
    finally:
        db.close()
    return db_path


def _draft(db_path: Path):
    db = open_db(db_path, read_only=True)
    try:
        return build_draft(db), demo_truth(db.cursor())
    finally:
        db.close()


def test_the_draft_names_the_demos_causes_with_their_times(responded: Path) -> None:
    draft, truth = _draft(responded)
    md = draft.markdown
    assert "gpt-4o-2024-08-06" in md and "gpt-4o-2024-11-20" in md
    assert "v12" in md and "v13" in md
    causes = {c["kind"]: c for c in draft.facts["causes"] if c["kind"] != "metric_shift"}
    assert {"new_served_model", "new_prompt_version"} <= set(causes)
    for injected in truth.changes:
        kind = injected.kind
        if kind not in ("new_prompt_version", "new_served_model"):
            continue
        got = dt.datetime.fromisoformat(causes[kind]["began_at"].replace("Z", "+00:00"))
        want = dt.datetime.fromisoformat(injected.at.replace("Z", "+00:00"))
        assert abs((got - want).total_seconds()) <= 60, (kind, got, want)


def test_impact_counts_are_those_the_filters_return(responded: Path) -> None:
    from oncall.query.search import count

    draft, _ = _draft(responded)
    db = open_db(responded, read_only=True)
    try:
        for item in draft.facts["impact"]:
            assert item["requests"] == count(db.cursor(), item["filter"]) > 0
    finally:
        db.close()
    # Every [n] in the draft has its command in the appendix, and the commands run.
    refs = {int(x) for x in __import__("re").findall(r"\[(\d+)\]", draft.markdown)}
    assert refs and refs <= {q.n for q in draft.queries}
    first = draft.queries[0].command.split()
    out = subprocess.run([sys.executable, "-m", "oncall", *first[1:]], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and json.loads(out.stdout)["total"] == draft.facts["impact"][0]["requests"]


def test_evidence_quotes_the_labelled_requests_redacted(responded: Path) -> None:
    draft, _ = _draft(responded)
    md = draft.markdown
    db = open_db(responded, read_only=True)
    try:
        ids = [r[0] for r in db.cursor().execute(
            "SELECT coalesce(s.request_id, s.response_id, s.span_id) FROM labels l JOIN spans s USING (span_pk)"
        ).fetchall()]
    finally:
        db.close()
    assert len(ids) == 3 and all(i in md for i in ids)
    assert md.index("BAD: request") < md.index("GOOD: request")
    assert SECRET not in md and "jane.doe@example.com" not in md
    assert SECRET not in json.dumps(draft.facts) and "jane.doe@example.com" not in json.dumps(draft.facts)


def test_the_markdown_renders_as_written_with_hostile_outputs(tmp_path: Path, demo_db: Path) -> None:
    db_path = tmp_path / "incident.duckdb"
    copy_incident(demo_db, db_path)
    gen = tmp_path / "hostile.jsonl"
    gen.write_text(json.dumps({"request_id": "req-hostile-1", "start_time": "2026-11-24T02:30:00Z",
                               "model": "gpt-4o", "input": "hi", "output": HOSTILE, "tenant": "acme"}) + "\n")
    db = open_db(db_path)
    try:
        from oncall.ingest.loader import load_paths

        assert load_paths(db, [str(gen)]).spans_added == 1
        pk = db.cursor().execute("SELECT span_pk FROM spans WHERE request_id = 'req-hostile-1'").fetchone()[0]
        add_label(db, pk, "bad", note="| pipes | and `ticks` and <b>html</b>")
        md = build_draft(db).markdown
    finally:
        db.close()
    tokens = MarkdownIt("commonmark").enable("table").parse(md)
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open" and t.tag == "h2"]
    assert headings[:4] == ["Summary", "Impact", "Timeline", "What changed"]
    assert {"Evidence", "Replay results", "Blast radius", "Mitigation", "Root cause and trigger",
            "Action items", "Appendix: the queries behind the numbers"} <= set(headings)
    assert not any(t.type in ("html_block", "html_inline") for t in tokens), "untrusted text became HTML"
    assert sum(1 for t in tokens if t.type == "table_open") >= 2
    fences = [t for t in tokens if t.type == "fence"]
    hostile = [f for f in fences if "not a heading" in f.content]
    assert len(hostile) == 1 and "<script>" in hostile[0].content and "\x1b" not in md
    assert "# not a heading" not in [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert any(f.info == "mermaid" for f in fences)


def test_markdown_helpers_cannot_be_broken_out_of() -> None:
    assert fence("a ```` b").startswith("`````text\n")
    assert cell("a|b\nc") == "a\\|b c"
    assert code("x ` y").startswith("``") and code("`start").startswith("`` ")


def test_the_mermaid_block_parses_with_the_real_parser(responded: Path) -> None:
    node = shutil.which("node")
    if node is None or not (MERMAID / "node_modules" / "mermaid").exists():
        pytest.skip("mermaid is not installed in tests/node-mermaid (bash .ci/setup-evaltools.sh)")
    draft, _ = _draft(responded)
    md = draft.markdown
    block = md.split("```mermaid\n", 1)[1].split("\n```", 1)[0]
    out = subprocess.run([node, "parse.mjs"], cwd=MERMAID, input=block, capture_output=True, text=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"ok": True, "type": "gantt"}, out.stdout + out.stderr
    broken = subprocess.run([node, "parse.mjs"], cwd=MERMAID, input=block + "\n    bad : : :\n    ::x\n",
                            capture_output=True, text=True, timeout=120)
    assert json.loads(broken.stdout.strip().splitlines()[-1])["ok"] is False


def test_timeline_orders_data_and_responder_and_stars_entries(responded: Path, tmp_path: Path) -> None:
    db_path = tmp_path / "incident.duckdb"
    copy_incident(responded, db_path)
    db = open_db(db_path)
    try:
        entries = timeline(db)
        assert [e.at for e in entries] == sorted(e.at for e in entries)
        kinds = {e.kind for e in entries}
        assert {"cause", "label", "note", "detection"} <= kinds
        note = next(e for e in entries if e.kind == "note")
        assert SECRET not in note.summary  # redacted on the way into the journal
        cause = next(e for e in entries if e.kind == "cause")
        star(db, cause.key)
        assert [e.key for e in timeline(db) if e.starred] == [cause.key]
        star(db, cause.key, on=False)
        assert not any(e.starred for e in timeline(db))
    finally:
        db.close()
    out = subprocess.run([sys.executable, "-m", "oncall", "--db", str(db_path), "timeline", "--json"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    data = json.loads(out.stdout)
    assert data["zone"] == "UTC" and all(e["at"].endswith("Z") for e in data["entries"])
    pm = subprocess.run([sys.executable, "-m", "oncall", "--db", str(db_path), "postmortem", "--out",
                         str(tmp_path / "pm.md")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert pm.returncode == 0 and (tmp_path / "pm.md").read_text().startswith("# Postmortem (draft)")


def test_a_scripted_response_lands_in_the_draft(responded: Path, tmp_path: Path, monkeypatch) -> None:
    """Labels, a replay of the bad cohort against the old snapshot, a runbook's flag action and its undo: the
    draft's replay and mitigation sections quote them, with the ids a reader can look up."""
    from openai_server import OpenAIServer
    from test_evalset_tools import good_snapshot

    db_path = tmp_path / "incident.duckdb"
    copy_incident(responded, db_path)
    flags = tmp_path / "flags.json"
    flags.write_text(json.dumps({"flags": {"extract-v2": {"state": "ENABLED", "variants": {"on": True, "off": False},
                                                          "defaultVariant": "on"}}}))
    (tmp_path / "oncall.toml").write_text(f'[actions.targets.flags]\nadapter = "flagd-file"\npath = "{flags}"\n')
    suite = tmp_path / "suite"
    suite.mkdir()
    with OpenAIServer(answerer=good_snapshot) as srv:
        (suite / "targets.toml").write_text(f'[settings]\nconfirm_above = 1000\n\n[targets.pinned]\nbase_url = '
                                            f'"{srv.base_url}"\nmodel = "gpt-4o-2024-08-06"\napi_key_env = "LOOP_KEY"\n'
                                            "price_in = 2.5\nprice_out = 10\n")
        env = {"LOOP_KEY": "loop-key-3", "XDG_CONFIG_HOME": str(tmp_path / "xdg")}

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            import os

            return subprocess.run([sys.executable, "-m", "oncall", "--db", str(db_path), *args], cwd=tmp_path,
                                  capture_output=True, text=True, timeout=300, env={**os.environ, **env,
                                                                                     "PYTHONPATH": str(ROOT)})

        rep = run("replay", "served_model=gpt-4o-2024-11-20", "feature=extract", "-n", "6", "--seed", "2",
                  "--target", "pinned", "--suite", str(suite), "--yes", "--no-progress", "--json")
        assert rep.returncode == 0, rep.stderr
    # the mitigation through a shipped runbook (its query steps, then its flag action), as a responder would
    act = run("runbook", "run", "prompt-injected-agent", "flag=extract-v2", "variant=off", "cohort=feature=extract",
              "--yes", "--why", "extract broken on the new snapshot", "--json")
    assert act.returncode == 0, act.stderr
    ran = json.loads(act.stdout)
    assert ran["outcome"] == "completed", ran
    action_id = ran["events"][-1]["data"]["actions"][0]["action_id"]
    assert json.loads(flags.read_text())["flags"]["extract-v2"]["defaultVariant"] == "off"
    assert run("action", "undo", str(action_id), "--yes").returncode == 0
    draft, _ = _draft(db_path)
    md = draft.markdown
    run_id = json.loads(rep.stdout)["run_id"]
    assert f"### Replay run {run_id}: pinned" in md and "| json\\_valid\\_rate |" in md
    assert f"### Action {action_id}:" in md and "verified" in md and "extract broken on the new snapshot" in md
    undo_id = max(a["action_id"] for a in draft.facts["actions"])
    assert undo_id > action_id and any(a["undo_of"] == action_id for a in draft.facts["actions"])
    reader = open_db(db_path, read_only=True)
    try:
        kinds = [e.kind for e in timeline(reader)]
    finally:
        reader.close()
    assert "replay" in kinds and "runbook" in kinds and "action" in kinds and "undo" in kinds, kinds
    assert json.loads(flags.read_text())["flags"]["extract-v2"]["defaultVariant"] == "on"
    assert "loop-key-3" not in md and "prompt-injected-agent" in md


def test_the_timeline_leaves_the_incident_redacted(responded: Path) -> None:
    """`oncall timeline` (text and --json, which the console's ctrl+s also writes) is an export: the
    label note's email and pasted key are redacted; the keys still star."""
    for args in ((), ("--json",)):
        out = subprocess.run([sys.executable, "-m", "oncall", "--db", str(responded), "timeline", *args],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert "jane.doe@example.com" not in out.stdout and SECRET not in out.stdout
        assert "orderId instead of order_id" in out.stdout
    entries = json.loads(out.stdout)["entries"]
    db = open_db(responded, read_only=True)
    try:
        assert {e["key"] for e in entries} == {e.key for e in timeline(db)}
    finally:
        db.close()
