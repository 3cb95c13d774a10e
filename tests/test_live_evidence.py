"""Live evidence after an action: a runbook's ```verify block waits for traffic still arriving and fails
closed at its deadline; `oncall blast-radius --wait` waits the same way.

Spans arrive while the step waits, written exactly as `oncall receive` writes them (one registered part
per flush, oncall.live.partwrite), from a thread beside the run.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

import orjson
import pytest

import oncall.live.evidence as evidence
from oncall.live.partwrite import write_part
from oncall.live.payload import decode_body
from oncall.runbook.model import RunbookError
from oncall.runbook.parse import parse_runbook
from oncall.runbook.run import RunbookRun
from oncall.store import open_db

RUNBOOK = """---
title: Verify the fallback holds
when: after flipping to the fallback
params:
  tenant: {type: string, default: acme, help: the tenant}
---
## 1. Live evidence
```verify
tenant=${tenant}
expect error_rate <= 1% within WITHIN
expect latency_ms_p95 <= 2000 within WITHIN
```
"""


def _spans(n: int, *, errors: int, seed: int, at_ns: int | None = None) -> list[dict]:
    now = time.time_ns() if at_ns is None else at_ns
    out = []
    for i in range(n):
        out.append({"traceId": f"{seed:08x}{i:024x}", "spanId": f"{seed:08x}{i:08x}", "name": "chat", "kind": 3,
                    "startTimeUnixNano": str(now + i * 1000), "endTimeUnixNano": str(now + i * 1000 + 400_000_000),
                    "status": {"code": 2, "message": "rate limited"} if i < errors else {},
                    "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in {
                        "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", "tenant": "acme"}.items()]})
    return out


def _receive(db_path: Path, spans: list[dict]) -> None:
    body = orjson.dumps({"resourceSpans": [{"resource": {}, "scopeSpans": [{"spans": spans}]}]})
    decoded = decode_body(body, "application/json", None, max_bytes=1 << 26, source="otlp-http://127.0.0.1:4318")
    with open_db(db_path) as db:
        write_part(db, decoded.table, source="otlp-http://127.0.0.1:4318", digest=str(time.time()))


def _runbook(tmp_path: Path, within: str) -> Path:
    p = tmp_path / "verify-fallback.md"
    p.write_text(RUNBOOK.replace("WITHIN", within))
    return p


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch):
    monkeypatch.setattr(evidence, "POLL_S", 0.3)


def _run(db_path: Path, rb_path: Path, later: dict | None, monkeypatch: pytest.MonkeyPatch) -> tuple[RunbookRun, list]:
    """Run the runbook; once its verify step has looked once (the step has begun, and saw no call since),
    the spans `later` describes arrive from a thread (made then: their times are after the step began).
    The step's next look waits until they are registered: on a loaded machine a timer could land them
    after the deadline, or before the step began, and the test would measure the scheduler."""
    rb = parse_runbook(rb_path)
    looked, arrived = threading.Event(), threading.Event()
    real_look = evidence.look

    def look(*args, **kwargs):
        if later is not None and looked.is_set():
            assert arrived.wait(120), "the later spans were never written"
        seen = real_look(*args, **kwargs)
        looked.set()
        return seen

    def deliver() -> None:
        if looked.wait(120):
            _receive(db_path, _spans(**later))
            arrived.set()

    monkeypatch.setattr(evidence, "look", look)
    writer = threading.Thread(target=deliver, daemon=True) if later is not None else None
    if writer:
        writer.start()
    try:
        with open_db(db_path) as db:
            run = RunbookRun(rb, db, {"tenant": "acme"}, yes=True)
            events = list(run.events())
    finally:
        looked.set()  # the writer never waits past the run
        if writer:
            writer.join(120)
    return run, events


def test_verify_passes_when_live_traffic_meets_the_conditions(tmp_path, monkeypatch):
    db = tmp_path / "i.duckdb"
    _receive(db, _spans(50, errors=25, seed=1))  # before the step: a bad stretch, not evidence of the fix
    run, events = _run(db, _runbook(tmp_path, "20s"), {"n": 40, "errors": 0, "seed": 2}, monkeypatch)
    assert run.outcome == "completed", [e.text for e in events]
    verify = [e for e in events if e.kind == "verify"]
    assert verify[0].data["passed"] is False and verify[-1].data["passed"] is True
    assert verify[-1].data["requests"] == 40  # only calls since the step began
    assert run.gates[-1]["live"] and run.gates[-1]["passed"]


def test_verify_fails_closed_at_the_deadline(tmp_path, monkeypatch):
    db = tmp_path / "i.duckdb"
    _receive(db, _spans(5, errors=0, seed=3))
    start = time.monotonic()
    # 25 % errors keep arriving
    run, events = _run(db, _runbook(tmp_path, "3s"), {"n": 40, "errors": 10, "seed": 4}, monkeypatch)
    assert run.outcome == "stopped at a verify"
    assert time.monotonic() - start >= 3
    last = [e for e in events if e.kind == "verify"][-1].data
    assert last["passed"] is False and last["requests"] == 40
    assert [c["passed"] for c in last["checks"]] == [False, True]
    assert any(e.kind == "stop" and "failed" not in e.text and "did not meet" in e.text for e in events)


def test_verify_without_traffic_fails_closed(tmp_path, monkeypatch):
    db = tmp_path / "i.duckdb"
    _receive(db, _spans(5, errors=0, seed=5))
    run, events = _run(db, _runbook(tmp_path, "1s"), None, monkeypatch)
    assert run.outcome == "stopped at a verify"
    assert [e for e in events if e.kind == "verify"][-1].data["requests"] == 0


def test_calls_a_moment_before_the_step_are_not_evidence(tmp_path):
    """`since` is the step's start to the microsecond: calls earlier in the same second do not count."""
    db = tmp_path / "i.duckdb"
    second = (time.time_ns() // 1_000_000_000 - 60) * 1_000_000_000
    _receive(db, _spans(20, errors=0, seed=7, at_ns=second + 100_000_000))  # .100 s into the second
    since = dt.datetime.fromtimestamp(second / 1e9 + 0.9, dt.UTC)
    with open_db(db) as store:
        assert evidence.look(store, ["tenant=acme"], since, []).requests == 0
        assert evidence.look(store, ["tenant=acme"], since - dt.timedelta(seconds=1), []).requests == 20


def test_verify_block_syntax_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.md"
    bad.write_text(RUNBOOK.replace("within WITHIN\nexpect latency", "\nexpect latency").replace("WITHIN", "5m"))
    with pytest.raises(RunbookError, match=r"bad.md:\d+: .*live evidence needs a deadline"):
        parse_runbook(bad)
    bad.write_text(RUNBOOK.replace("error_rate <= 1%", "replayed >= 3").replace("WITHIN", "5m"))
    with pytest.raises(RunbookError, match="unknown live metric 'replayed'"):
        parse_runbook(bad)


def test_dry_run_does_not_wait(tmp_path):
    db = tmp_path / "i.duckdb"
    _receive(db, _spans(5, errors=0, seed=6))
    rb = parse_runbook(_runbook(tmp_path, "10m"))
    with open_db(db) as store:
        run = RunbookRun(rb, store, {"tenant": "acme"}, dry_run=True)
        events = list(run.events())
    assert run.outcome == "completed"
    assert [e.data["ran"] for e in events if e.kind == "verify"] == [False]
    assert dt.datetime  # noqa: B018 - module used above


def test_blast_radius_wait_fails_closed_at_the_deadline(db, tmp_path, monkeypatch):
    """Still degraded when --wait runs out: the same exit 1 as without it, after looking again."""
    import json

    from click.testing import CliRunner
    from test_analytics import _turn

    import oncall.commands.analyze as analyze
    from oncall.cli import cli
    from oncall.ingest.loader import load_paths

    monkeypatch.setattr(analyze, "WAIT_POLL_S", 0.5)
    t0 = 1772359200
    bad = "Absolutely! Great question, you are so right. " * 3
    lines = []
    for s in range(40):
        lines.append(_turn(f"dirty-{s}", 0, t0 + s, "bad-snapshot", [], bad))
        for i in (1, 2):
            lines.append(_turn(f"dirty-{s}", i, t0 + 3600 + s * 10 + i, "good-snapshot", [bad],
                               "Sure, absolutely, as I said: " + "more words " * 12))
    for s in range(60):
        lines.append(_turn(f"clean-{s}", 0, t0 + 3600 + s, "good-snapshot", [], "Short answer."))
        lines.append(_turn(f"clean-{s}", 1, t0 + 3700 + s, "good-snapshot", ["Short answer."], "Short answer again."))
    p = tmp_path / "sessions.jsonl"
    p.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert load_paths(db, [str(p)]).problems == []
    path = str(db.path)
    db.close()
    start = time.monotonic()
    res = CliRunner().invoke(cli, ["blast-radius", "--db", path, "served_model=bad-snapshot",
                                   "--mitigated-at", "2026-03-01T10:30Z", "--wait", "2s"])
    assert res.exit_code == 1 and time.monotonic() - start >= 2
    assert "looking again" in res.output and "still degraded" in res.output


def _calls(n: int, served: str, start: float, step: float, out_tokens: int, seed: int) -> list[dict]:
    out = []
    for i in range(n):
        t = int((start + i * step) * 1e9)
        attrs = {"gen_ai.operation.name": {"stringValue": "chat"}, "gen_ai.request.model": {"stringValue": "gpt-4o"},
                 "gen_ai.response.model": {"stringValue": served}, "tenant": {"stringValue": "acme"},
                 "gen_ai.usage.input_tokens": {"intValue": "50"},
                 "gen_ai.usage.output_tokens": {"intValue": str(out_tokens + i % 3)},
                 "gen_ai.completion.0.role": {"stringValue": "assistant"},
                 "gen_ai.completion.0.content": {"stringValue": "word " * (out_tokens + i % 3)}}
        out.append({"traceId": f"{seed:08x}{i:024x}", "spanId": f"{seed:08x}{i:08x}", "name": "chat", "kind": 3,
                    "startTimeUnixNano": str(t), "endTimeUnixNano": str(t + 200_000_000),
                    "attributes": [{"key": k, "value": v} for k, v in attrs.items()]})
    return out


def test_timeline_says_still_degraded_then_recovered_as_traffic_arrives(tmp_path):
    from oncall.postmortem.timeline import timeline

    db = tmp_path / "i.duckdb"
    now = time.time()
    _receive(db, _calls(200, "gpt-4o-2024-08-06", now - 1200, 3, 20, seed=1))  # the baseline
    _receive(db, _calls(200, "gpt-4o-2024-11-20", now - 600, 2.9, 200, seed=2))  # the silent update
    with open_db(db) as store:  # the responder's mitigation, verified (as the action engine records it)
        store.record_event("action", "action 1 verified: pinned gpt-4o-2024-08-06", {"action_id": 1,
                                                                                      "status": "verified"})
        now = store.cursor().execute("SELECT max(at_time) FROM trail").fetchone()[0].timestamp()
    _receive(db, _calls(60, "gpt-4o-2024-11-20", now + 2, 1, 200, seed=3))  # the pin has not propagated
    with open_db(db, read_only=True) as store:
        kinds = [e.kind for e in timeline(store)]
    assert "still_degraded" in kinds and "recovery" not in kinds
    _receive(db, _calls(60, "gpt-4o-2024-08-06", now + 120, 1, 20, seed=4))  # back to the pinned snapshot
    with open_db(db, read_only=True) as store:
        entries = timeline(store)
    rec = [e for e in entries if e.kind == "recovery"]
    acted, back = (dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for t in (now, now + 180))
    assert rec and all(acted <= e.at <= back for e in rec)  # a bucket of the pinned calls (now+120 .. now+180)
