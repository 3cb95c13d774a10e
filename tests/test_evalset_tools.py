"""The lesson becomes a gate: the demo's labelled requests, exported as an eval set, run by the real
promptfoo (npm) and the real Inspect AI (PyPI) against a loopback OpenAI-compatible server. Answering
like the bad snapshot fails the exported checks; answering like the good snapshot passes them.

The tools live in their own environments, installed by .ci/setup-evaltools.sh (.envs/promptfoo,
.envs/inspect; $ONCALL_PROMPTFOO / $ONCALL_INSPECT point elsewhere)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from openai_server import OpenAIServer

from oncall.postmortem.evalset import build_cases, note_checks, reference_checks, write_evalset
from oncall.query.labels import add_label
from oncall.query.quality import key_set
from oncall.store import open_db
from oncall.store.db import copy_incident

ROOT = Path(__file__).resolve().parent.parent
PROMPTFOO = Path(os.environ.get("ONCALL_PROMPTFOO", ROOT / ".envs/promptfoo/node_modules/.bin/promptfoo"))
INSPECT = Path(os.environ.get("ONCALL_INSPECT", ROOT / ".envs/inspect/bin/inspect"))


def _tool(path: Path, name: str) -> Path:
    if not path.exists():
        log = ROOT / ".envs" / f"{name}-install.log"
        why = log.read_text()[-300:] if log.exists() else "run bash .ci/setup-evaltools.sh"
        pytest.skip(f"{name} is not installed at {path}: {why}")
    return path


def _order(req: dict[str, Any]) -> tuple[str, float] | None:
    from oncall.demo import SYSTEM_EXTRACT

    msgs = req.get("messages") or []
    if not msgs or msgs[0].get("content") != SYSTEM_EXTRACT:
        return None
    doc = msgs[-1]["content"]
    n = re.search(r"(?:#|Invoice |order )(\d{5})", doc).group(1)
    amount = float(re.search(r"(?:EUR |of |for )(\d+(?:\.\d+)?)", doc).group(1))
    return n, amount


def good_snapshot(req: dict[str, Any]) -> str | None:
    """The extract feature as gpt-4o-2024-08-06 answered it in the demo: one JSON object, order_id."""
    o = _order(req)
    return None if o is None else json.dumps({"order_id": o[0], "amount": o[1], "currency": "EUR", "status": "shipped"})


def bad_snapshot(req: dict[str, Any]) -> str | None:
    """As gpt-4o-2024-11-20 did: `orderId`, wrapped in a friendly sentence."""
    o = _order(req)
    if o is None:
        return None
    return ("Sure! Here is the extracted order:\n"
            + json.dumps({"orderId": o[0], "amount": o[1], "currency": "EUR", "status": "shipped"}, indent=2))


@pytest.fixture(scope="module")
def labelled(demo_db: Path, tmp_path_factory) -> Path:
    """The demo with three verdicts, as a responder gives them: two bad answers of the new snapshot
    (a renamed key, prose around the JSON), one good answer of the old one."""
    db_path = tmp_path_factory.mktemp("evalset") / "incident.duckdb"
    copy_incident(demo_db, db_path)
    db = open_db(db_path)
    try:
        cur = db.cursor()
        rows = cur.execute("SELECT span_pk, output_text, served_model FROM spans WHERE feature = 'extract' "
                           "AND status IS DISTINCT FROM 'error' ORDER BY start_time").fetchall()
        good = next(pk for pk, out, m in rows if m == "gpt-4o-2024-08-06" and key_set(out) ==
                    "amount,currency,order_id,status")
        renamed = next(pk for pk, out, m in rows if m == "gpt-4o-2024-11-20" and key_set(out) and
                       "orderId" in key_set(out))
        prose = next(pk for pk, out, m in rows if m == "gpt-4o-2024-11-20" and key_set(out) is None)
        add_label(db, good, "good")
        add_label(db, renamed, "bad", note='renamed order_id to orderId; must contain "order_id"')
        add_label(db, prose, "bad", note="JSON wrapped in prose, the parser downstream fails")
    finally:
        db.close()
    return db_path


def test_checks_come_from_the_good_outputs_and_the_notes(labelled: Path) -> None:
    db = open_db(labelled, read_only=True)
    try:
        cases = build_cases(db.cursor())
    finally:
        db.close()
    assert sorted(c.label for c in cases) == ["bad", "bad", "good"]
    for c in cases:
        types = [ch["type"] for ch in c.checks]
        assert types[:3] == ["json_valid", "key_set", "no_refusal"] and "length" in types
        assert next(ch for ch in c.checks if ch["type"] == "key_set")["value"] == \
            ["amount", "currency", "order_id", "status"]
        assert c.messages[0]["role"] == "system" and c.messages[-1]["role"] == "user"
    renamed = next(c for c in cases if c.note and "orderId" in c.note)
    assert {"type": "contains", "value": "order_id"} in renamed.checks
    assert next(c for c in cases if c.label == "good").reference is not None


def test_note_and_reference_rules() -> None:
    assert note_checks('must not say "as an AI"; should mention "refund"') == [
        {"type": "not_contains", "value": "as an AI"}, {"type": "contains", "value": "refund"}]
    assert note_checks("looks wrong") == []
    prose = reference_checks(["Thanks, your refund is on its way.", "We have shipped it."])
    assert [c["type"] for c in prose] == ["no_refusal", "length"]
    assert reference_checks([]) == []


def _export(labelled: Path, fmt: str, out: Path) -> list[Path]:
    db = open_db(labelled, read_only=True)
    try:
        return write_evalset(build_cases(db.cursor()), fmt, out)
    finally:
        db.close()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_promptfoo_runs_the_exported_eval_set(labelled: Path, tmp_path: Path) -> None:
    promptfoo = _tool(PROMPTFOO, "promptfoo")
    _export(labelled, "promptfoo", tmp_path / "pf")
    results = {}
    for name, answerer in (("bad", bad_snapshot), ("good", good_snapshot)):
        with OpenAIServer(answerer=answerer) as srv:
            env = {**os.environ, "OPENAI_BASE_URL": srv.base_url, "OPENAI_API_KEY": "sk-loopback-not-a-key",
                   "PROMPTFOO_DISABLE_TELEMETRY": "1", "PROMPTFOO_DISABLE_UPDATE": "1",
                   "PROMPTFOO_CACHE_ENABLED": "false", "PROMPTFOO_CONFIG_DIR": str(tmp_path / f"pfhome-{name}")}
            proc = subprocess.run([str(promptfoo), "eval", "-c", "promptfooconfig.yaml", "--no-cache", "--no-write",
                                   "-o", str(tmp_path / f"{name}.json")], cwd=tmp_path / "pf", env=env,
                                  capture_output=True, text=True, timeout=300)
            assert len(srv.completions()) == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
        out = json.loads((tmp_path / f"{name}.json").read_text())
        results[name] = (proc.returncode, out["results"]["stats"])
    # promptfoo exits 100 when test cases fail.
    assert results["bad"][0] == 100 and results["bad"][1]["failures"] == 3 and results["bad"][1]["successes"] == 0
    assert results["good"][0] == 0 and results["good"][1]["successes"] == 3 and results["good"][1]["failures"] == 0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_inspect_runs_the_exported_eval_set(labelled: Path, tmp_path: Path) -> None:
    inspect = _tool(INSPECT, "inspect")
    _export(labelled, "inspect", tmp_path / "insp")
    scores = {}
    for name, answerer in (("bad", bad_snapshot), ("good", good_snapshot)):
        logs = tmp_path / f"logs-{name}"
        with OpenAIServer(answerer=answerer) as srv:
            env = {**os.environ, "OPENAI_BASE_URL": srv.base_url, "OPENAI_API_KEY": "sk-loopback-not-a-key",
                   "INSPECT_LOG_DIR": str(logs)}
            proc = subprocess.run([str(inspect), "eval", "task.py", "--model", "openai/gpt-4o", "--display", "none",
                                   "--log-dir", str(logs)], cwd=tmp_path / "insp", env=env, capture_output=True,
                                  text=True, timeout=300)
            assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
            assert len(srv.completions()) == 3
        log = next(logs.iterdir())
        dump = subprocess.run([str(inspect), "log", "dump", str(log)], capture_output=True, text=True, check=True)
        data = json.loads(dump.stdout)
        assert data["status"] == "success"
        scores[name] = (data["results"]["scores"][0]["metrics"]["accuracy"]["value"],
                        [list(s["scores"].values())[0] for s in data["samples"]])
    bad_acc, bad_samples = scores["bad"]
    assert bad_acc == 0.0 and all(s["value"] == "I" for s in bad_samples)
    assert any("keys are not amount,currency,order_id,status" in s["explanation"] for s in bad_samples)
    good_acc, good_samples = scores["good"]
    assert good_acc == 1.0 and all(s["explanation"] == "all checks passed" for s in good_samples)
