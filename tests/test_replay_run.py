"""`oncall replay` end to end: the real `openai` client against the loopback OpenAI-compatible server
(real sockets, SSE, scripted faults), results in a real incident database."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from openai_server import OpenAIServer, quota_body
from replay_helpers import build_incident, record, write_suite

from oncall.cli import cli
from oncall.store import open_db

KEY_ENV = "ONCALL_TEST_KEY"


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    # no "sk-" prefix: redaction by pattern would not know it, so this proves the exact key is scrubbed
    key = "loopback-" + secrets.token_hex(20)
    monkeypatch.setenv(KEY_ENV, key)
    return key


def _records(n: int, **kw: Any) -> list[dict[str, Any]]:
    return [record(i, f"What is the status of order {1000 + i}?", f"Order {1000 + i} has shipped.", **kw)
            for i in range(n)]


def replay(db: Path, suite: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["-v", "replay", "--db", str(db), "--suite", str(suite), "--target", "loop", "--yes",
                                    "--no-progress", *args], catch_exceptions=False)


def show(db: Path, run_id: int) -> dict[str, Any]:
    res = CliRunner().invoke(cli, ["replay", "show", str(run_id), "--db", str(db), "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def results(db: Path, run_id: int = 1) -> list[dict[str, Any]]:
    with open_db(db, read_only=True) as store:
        cur = store.con.execute("SELECT * FROM replay_results WHERE run_id = ? ORDER BY result_id", [run_id])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def state(db: Path, run_id: int = 1) -> tuple[str, str | None]:
    with open_db(db, read_only=True) as store:
        return store.con.execute("SELECT status, reason FROM replay_run_states WHERE run_id = ? "
                                 "ORDER BY state_id DESC LIMIT 1", [run_id]).fetchone()


def user_text(req: dict[str, Any]) -> str:
    return next(m["content"] for m in req["messages"] if m["role"] == "user")


# -- the round trip ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("stream", [False, True])
def test_round_trip_stores_each_result(tmp_path: Path, stream: bool) -> None:
    db = build_incident(tmp_path, _records(6))
    with OpenAIServer() as srv:
        suite = write_suite(tmp_path, srv.base_url, stream=stream)
        res = replay(db, suite, "--json")
        assert res.exit_code == 0, res.output
        out = json.loads(res.stdout)
        assert len(srv.completions()) == 6
        sent = srv.completions()[0].request
        # the recorded parameters travel with the recorded conversation
        assert sent["temperature"] == 0.2 and sent["max_tokens"] == 300
        assert sent["messages"][0] == {"role": "system", "content": "You are a helpful assistant."}
        assert sent.get("stream", False) is stream
        if stream:
            assert sent["stream_options"] == {"include_usage": True}
    rows = results(db)
    assert len(rows) == 6 and {r["status"] for r in rows} == {"ok"}
    for r in rows:
        assert r["output_text"].startswith("Answer to: What is the status of order")
        assert r["input_tokens"] > 0 and r["output_tokens"] > 0 and r["cost"] > 0  # usage (the final SSE chunk)
        assert (r["ttft_ms"] is not None) is stream
    assert out["counts"]["ok"] == 6 and out["counts"]["changed_pairs"] == 6
    metrics = {m["metric"]: m for m in out["metrics"]}
    assert metrics["requests"]["original"] == 6 and metrics["requests"]["replay"] == 6
    assert "cannot tell" in out["noise"]["note"]
    assert out["run"]["target"] == "loop" and out["run"]["params"] == {}
    listed = CliRunner().invoke(cli, ["replay", "list", "--db", str(db), "--json"])
    assert json.loads(listed.stdout)[0]["status"] == "finished"


# -- retries and fail-fast ------------------------------------------------------------------------------------
def test_retries_429_5xx_and_dropped_streams(tmp_path: Path) -> None:
    db = build_incident(tmp_path, _records(3))
    with OpenAIServer() as srv:
        suite = write_suite(tmp_path, srv.base_url, stream=True, concurrency=1, max_attempts=5)
        srv.fail_next(429, retry_after=0.4)
        srv.fail_next(500)
        srv.fail_next(503)
        srv.drop_next(after_chunks=2)  # the connection is cut mid-stream
        res = replay(db, suite, "--json")
        assert res.exit_code == 0, res.output
        statuses = [e.status for e in srv.exchanges]
        assert statuses[:5] == [429, 500, 503, 200, 200] and srv.exchanges[3].dropped
        # Retry-After is honoured: the retry came no sooner than the server asked
        assert srv.exchanges[1].at - srv.exchanges[0].at >= 0.4
    out = json.loads(res.stdout)
    assert out["state"]["counts"]["retried"] == 4 and out["counts"]["ok"] == 3
    rows = results(db)
    assert sorted(r["attempts"] for r in rows) == [1, 1, 5]
    assert all(r["output_text"].startswith("Answer to:") for r in rows)  # the cut stream was not kept


@pytest.mark.parametrize("fault, kind, words", [
    ({"status": 429, "body": quota_body()}, "quota", ["out of quota (insufficient_quota)"]),
    ({"status": 401}, "auth", ["authentication failed (401)", f"${KEY_ENV}"]),
    ({"status": 404}, "model_not_found", ["model 'gpt-4o' not found at http://127.0.0.1"]),
])
def test_fail_fast_says_which(tmp_path: Path, fault: dict[str, Any], kind: str, words: list[str]) -> None:
    db = build_incident(tmp_path, _records(5))
    with OpenAIServer() as srv:
        suite = write_suite(tmp_path, srv.base_url, concurrency=1)
        srv.fail_next(fault["status"], body=fault.get("body"), times=10)
        res = replay(db, suite)
        assert res.exit_code == 1
        assert len(srv.exchanges) == 1  # no retry, no second request
    for w in words:
        assert w in res.stderr, res.stderr
    st, reason = state(db)
    assert st == "failed" and reason.startswith(kind)


def test_model_not_found_from_a_server_that_checks_models(tmp_path: Path) -> None:
    db = build_incident(tmp_path, _records(2))
    with OpenAIServer(known_models_only=True) as srv:
        suite = write_suite(tmp_path, srv.base_url, concurrency=1)
        res = CliRunner().invoke(cli, ["replay", "--db", str(db), "--suite", str(suite), "--target", "loop",
                                       "--model", "gpt-4o-2099-01-01", "--yes", "--no-progress"])
        assert res.exit_code == 1 and "model 'gpt-4o-2099-01-01' not found" in res.stderr
        assert len(srv.exchanges) == 1


def test_timeouts_retry_and_exhausted_retries_fail_then_resume(tmp_path: Path) -> None:
    db = build_incident(tmp_path, _records(3))
    with OpenAIServer() as srv:
        suite = write_suite(tmp_path, srv.base_url, concurrency=1, read_timeout=0.3, max_attempts=3)
        srv.slow_next(1.0)  # longer than the read timeout: the call times out and is retried
        srv.pass_next()  # ...and the retry is answered
        srv.fail_next(500, times=3)  # the next request's three attempts all fail
        res = replay(db, suite)
        assert res.exit_code == 1, res.output
        assert "1 request(s) failed" in res.stderr
        rows = results(db)
        failed = [r for r in rows if r["status"] == "error"]
        assert len(failed) == 1 and failed[0]["error_kind"] == "server" and "3 attempts" in failed[0]["error"]
        assert sum(r["status"] == "ok" for r in rows) == 2
        before = srv.requests_received  # counted on arrival (the timed-out answer is recorded a second late)
        assert before == 6
        again = CliRunner().invoke(cli, ["replay", "--db", str(db), "--resume", "1", "--no-progress"])
        assert again.exit_code == 0, again.output
        assert srv.requests_received == before + 1  # only the failed request is sent again
    s = show(db, 1)
    assert s["counts"]["ok"] == 3 and s["counts"]["errors"] == 0


# -- spend caps and confirmation ---------------------------------------------------------------------------------
def test_max_requests_stops_at_the_cap_and_resume_continues(tmp_path: Path) -> None:
    db = build_incident(tmp_path, _records(10))
    with OpenAIServer() as srv:
        suite = write_suite(tmp_path, srv.base_url, concurrency=3)
        res = replay(db, suite, "--max-requests", "4")
        assert res.exit_code == 1 and "--max-requests 4 reached" in res.stderr
        assert srv.requests_received == 4
        assert state(db)[0] == "stopped" and len(results(db)) == 4
        again = CliRunner().invoke(cli, ["replay", "--db", str(db), "--resume", "1", "--max-requests", "100",
                                         "--no-progress"])
        assert again.exit_code == 0, again.output
        assert srv.requests_received == 10
        asked = [user_text(e.request) for e in srv.exchanges]
        assert len(set(asked)) == 10  # none twice, none lost


def test_max_cost_is_estimated_and_enforced(tmp_path: Path) -> None:
    db = build_incident(tmp_path, _records(20))
    with OpenAIServer() as srv:
        suite = write_suite(tmp_path, srv.base_url, concurrency=2)
        res = replay(db, suite, "--max-cost", "0.001")
        assert res.exit_code == 1
        assert "estimated" in res.stderr and "above --max-cost" in res.stderr
        assert "--max-cost $0.001 reached" in res.stderr
        n = srv.requests_received
        assert 0 < n < 20
    rows = results(db)
    assert len(rows) == n and sum(r["cost"] for r in rows) <= 0.001


def test_confirmation_above_the_threshold(tmp_path: Path) -> None:
    db = build_incident(tmp_path, _records(5))
    with OpenAIServer() as srv:
        suite = write_suite(tmp_path, srv.base_url, confirm_above=0.00001)
        res = CliRunner().invoke(cli, ["replay", "--db", str(db), "--suite", str(suite), "--target", "loop"])
        assert res.exit_code == 2 and "above confirm_above" in res.stderr and "--yes" in res.stderr
        no = CliRunner().invoke(cli, ["replay", "--db", str(db), "--suite", str(suite), "--target", "loop"],
                                input="n\n")
        assert no.exit_code != 0
        assert srv.requests_received == 0


# -- secrets --------------------------------------------------------------------------------------------------
def test_the_key_never_reaches_the_database_or_output(tmp_path: Path, api_key: str) -> None:
    db = build_incident(tmp_path, _records(4))
    outputs = []
    with OpenAIServer(echo_key_on_401=True) as srv:
        suite = write_suite(tmp_path, srv.base_url, stream=True)
        outputs.append(replay(db, suite, "--json"))
        assert srv.exchanges[0].authorization == f"Bearer {api_key}"  # it was really sent
        srv.fail_next(401, times=5)  # the server echoes the key in its error message
        outputs.append(replay(db, suite))
        assert outputs[-1].exit_code == 1 and "authentication failed" in outputs[-1].stderr
        assert api_key in json.dumps(srv.exchanges[-1].response)
    for r in (CliRunner().invoke(cli, ["replay", "show", "2", "--db", str(db), "--json"]),
              CliRunner().invoke(cli, ["replay", "list", "--db", str(db)])):
        outputs.append(r)
    for r in outputs:
        assert api_key not in r.stdout and api_key not in r.stderr
    needles = [api_key.encode(), api_key[-16:].encode()]
    files = [p for p in db.parent.rglob("*") if p.is_file()]  # the base file, load parts, the journal
    assert any(p.name == "journal.jsonl" for p in files)
    for p in files:
        data = p.read_bytes()
        for needle in needles:
            assert needle not in data, f"key found in {p}"
    with open_db(db, read_only=True) as store:
        trail = store.con.execute("SELECT summary, detail FROM trail WHERE kind = 'replay'").fetchall()
        errors = store.con.execute("SELECT reason FROM replay_run_states WHERE run_id = 2 AND status = 'failed'")\
            .fetchone()[0]
    assert len(trail) == 2 and "[REDACTED]" in errors


# -- agents -----------------------------------------------------------------------------------------------------
WEATHER = [{"type": "function", "function": {"name": "get_weather", "description": "weather for a city",
                                              "parameters": {"type": "object", "properties": {
                                                  "city": {"type": "string"}}, "required": ["city"]}}}]


def _agent_record(i: int, city: str) -> dict[str, Any]:
    call = {"id": f"call_rec_{i}", "type": "function",
            "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}
    msgs = [{"role": "system", "content": "Use the tools."}, {"role": "user", "content": f"Weather in {city}? ({i})"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": f"call_rec_{i}", "content": f"18C and sunny in {city} (recorded)"}]
    return record(i, "", f"It is 18C and sunny in {city}.", messages=msgs, extra_request={"tools": WEATHER})


@pytest.mark.parametrize("stream", [False, True])
def test_tool_calls_answered_with_recorded_results_and_divergence(tmp_path: Path, stream: bool) -> None:
    # The loopback model calls get_weather(city="Paris"): it agrees with the Paris recording, not the Lyon one.
    db = build_incident(tmp_path, [_agent_record(0, "Paris"), _agent_record(1, "Lyon")])
    with OpenAIServer() as srv:
        suite = write_suite(tmp_path, srv.base_url, stream=stream, concurrency=1)
        res = replay(db, suite, "--json")
        assert res.exit_code == 0, res.output
        paris = [e for e in srv.completions() if "(0)" in user_text(e.request)]
        lyon = [e for e in srv.completions() if "(1)" in user_text(e.request)]
    assert len(paris) == 2 and len(lyon) == 1  # the diverged replay stops at that step
    first, second = paris
    assert first.request["messages"][-1]["role"] == "user" and first.request["tools"] == WEATHER
    new_id = first.response["choices"][0]["message"]["tool_calls"][0]["id"]
    assert second.request["messages"][-1] == {"role": "tool", "tool_call_id": new_id,
                                               "content": "18C and sunny in Paris (recorded)"}
    out = json.loads(res.stdout)
    rows = {r["span_pk"]: r for r in results(db)}
    by_status = sorted(r["status"] for r in rows.values())
    assert by_status == ["diverged", "ok"]
    ok = next(r for r in rows.values() if r["status"] == "ok")
    assert ok["output_text"] == "The tool said: 18C and sunny in Paris (recorded)" and ok["steps"] == 2
    div = next(r for r in rows.values() if r["status"] == "diverged")
    assert div["diverged"] == ('diverged at step 1: called get_weather({"city": "Paris"}) where the recording '
                               'called get_weather({"city": "Lyon"})')
    assert out["counts"]["diverged"] == 1 and out["diverged"][0]["diverged"] == div["diverged"]


# -- noise versus change -------------------------------------------------------------------------------------------
def test_repeat_separates_a_fixed_server_from_a_varying_one(tmp_path: Path) -> None:
    db = build_incident(tmp_path, _records(8))
    verdicts = {}
    for mode in ("fixed", "varying"):
        with OpenAIServer(mode=mode) as srv:
            suite = write_suite(tmp_path, srv.base_url, concurrency=1)
            res = replay(db, suite, "--repeat", "4", "--json")
            assert res.exit_code == 0, res.output
            assert len(srv.completions()) == 32
        verdicts[mode] = json.loads(res.stdout)["noise"]
    fixed, varying = verdicts["fixed"], verdicts["varying"]
    # fixed: the 4 replays agree and the original differs from all of them -> changed beyond noise
    assert fixed["changed_beyond_noise"] == 8 and fixed["within_noise"] == 0
    assert fixed["checks_changed"].get("text") == 8
    # varying: the replays disagree among themselves, so a different original is within the model's variation
    assert varying["changed_beyond_noise"] == 0 and varying["within_noise"] == 8
    s = show(db, 2)
    assert all(r["noise"]["distinct_outputs"] == 4 for r in s["requests"])
    assert all(r["noise"]["distinct_outputs"] == 1 for r in show(db, 1)["requests"])


def test_the_summary_is_the_same_read_in_chunks_of_any_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """summarize folds results a chunk of requests at a time; chunk edges must not split or drop anything."""
    from oncall.replay import runner
    from oncall.replay import store as rstore

    recs = _records(7)
    recs.append(record(9, "", "A cat.", messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,A"}}]}]))
    db = build_incident(tmp_path, recs)
    with OpenAIServer(mode="varying") as srv:
        suite = write_suite(tmp_path, srv.base_url, concurrency=4)
        assert replay(db, suite, "--repeat", "3", "--json").exit_code == 0
    whole = rstore.latest_results_chunks
    with open_db(db, read_only=True) as store:
        one = runner.summarize(store.cursor(), 1)
        for size in (1, 2, 3):
            monkeypatch.setattr(rstore, "latest_results_chunks", lambda con, run_id, n=size: whole(con, run_id, n))
            assert runner.summarize(store.cursor(), 1) == one, size
            assert runner.summarize(store.cursor(), 1, per_request=False) == {
                k: v for k, v in one.items() if k != "requests"}
    assert one["counts"]["results"] == 22 and one["counts"]["unreplayable"] == 1 and len(one["requests"]) == 7
    assert one["noise"]["changed_beyond_noise"] + one["noise"]["within_noise"] == 7


# -- the demo's regression ---------------------------------------------------------------------------------------
def old_snapshot(req: dict[str, Any]) -> str | None:
    """Answers the extract feature the way gpt-4o-2024-08-06 did in the demo (oncall/demo.py): the order as
    one JSON object with the requested keys."""
    import re

    from oncall.demo import SYSTEM_EXTRACT

    msgs = req.get("messages") or []
    if not msgs or msgs[0].get("content") != SYSTEM_EXTRACT:
        return None
    doc = msgs[-1]["content"]
    n = re.search(r"(?:#|Invoice |order )(\d{5})", doc).group(1)
    amount = float(re.search(r"(?:EUR |of |for )(\d+(?:\.\d+)?)", doc).group(1))
    return json.dumps({"order_id": n, "amount": amount, "currency": "EUR", "status": "shipped"})


def test_demo_bad_cohort_regression_disappears_against_the_old_snapshot(tmp_path: Path, demo_db: Path) -> None:
    from oncall.store.db import copy_incident

    db = tmp_path / "demo.duckdb"
    copy_incident(demo_db, db)
    with OpenAIServer(answerer=old_snapshot) as srv:
        suite = write_suite(tmp_path, srv.base_url, concurrency=8)
        res = replay(db, suite, "served_model=gpt-4o-2024-11-20", "feature=extract", "-n", "80", "--seed", "3",
                     "--baseline", "served_model=gpt-4o-2024-08-06 feature=extract", "--json")
        assert res.exit_code == 0, res.output
        assert len(srv.completions()) == 80
    m = {r["metric"]: r for r in json.loads(res.stdout)["metrics"]}
    jv, drift = m["json_valid_rate"], m["json_key_drift"]
    # the bad cohort: about a third wrapped in prose, a third with orderId; the baseline almost all valid
    assert jv["original"] < 0.8 and jv["baseline"] > 0.95 and jv["significance"] == "significant"
    assert drift["original"] > 0.3 and drift["baseline"] == 0.0
    # replayed against the old snapshot: back to the baseline
    assert jv["replay"] == 1.0 and drift["replay"] == 0.0
    text = CliRunner().invoke(cli, ["replay", "show", "1", "--db", str(db)]).stdout
    assert "json_valid_rate" in text and "baseline" in text


# -- judge, prompt variants, unreplayable requests ---------------------------------------------------------------------
def test_judge_prompt_variant_and_unreplayable_requests(tmp_path: Path) -> None:
    recs = _records(3, prompt_name="support")
    recs.append(record(9, "", "A cat.", messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,A"}}]}]))
    db = build_incident(tmp_path, recs)

    def grader(req: dict[str, Any]) -> str | None:
        if req.get("model") == "gpt-4o-mini":
            assert "ORIGINAL:" in req["messages"][1]["content"] and "Rubric" in req["messages"][0]["content"]
            return json.dumps({"verdict": "worse", "reason": "it drops the shipping status"})
        return None

    with OpenAIServer(answerer=grader) as srv:
        suite = write_suite(tmp_path, srv.base_url, judge=True)
        (suite / "prompts" / "terse.md").write_text("---\nname: terse\nversion: v2\nreplaces: support\n---\nBe terse.\n")
        res = replay(db, suite, "--prompt", "terse", "--judge", "grader", "--json")
        assert res.exit_code == 0, res.output
        replays = [e for e in srv.completions() if e.request["model"] == "gpt-4o"]
        judged = [e for e in srv.completions() if e.request["model"] == "gpt-4o-mini"]
    assert len(replays) == 3 and len(judged) == 3  # the image request was never sent
    assert all(e.request["messages"][0] == {"role": "system", "content": "Be terse."} for e in replays)
    assert "cannot be replayed faithfully" in res.stderr and "image_url part" in res.stderr
    out = json.loads(res.stdout)
    assert out["counts"]["unreplayable"] == 1 and "image_url" in out["unreplayable"][0]["reason"]
    assert out["judge"]["verdicts"] == {"worse": 3} and out["judge"]["cost"] > 0
    assert out["cost"]["total"] == pytest.approx(out["cost"]["replay"] + out["judge"]["cost"])
    assert out["run"]["prompt"]["name"] == "terse"
    pair = show(db, 1)["requests"][0]["pairs"][0]
    assert pair["judge"]["reason"] == "it drops the shipping status" and pair["diff"]


def test_bad_input_exits_2(tmp_path: Path) -> None:
    db = build_incident(tmp_path, _records(2))
    suite = write_suite(tmp_path, "http://127.0.0.1:9/v1")
    r = CliRunner().invoke(cli, ["replay", "--db", str(db), "--suite", str(suite), "--target", "nope"])
    assert r.exit_code == 2 and "no target named 'nope'" in r.stderr
    r = CliRunner().invoke(cli, ["replay", "--db", str(db), "--suite", str(suite), "--target", "loop",
                                 "--param", "temprature=0"])
    assert r.exit_code == 2 and "unknown parameter 'temprature'" in r.stderr
    r = CliRunner().invoke(cli, ["replay", "--db", str(db), "--suite", str(suite), "--target", "loop", "bogus~/("])
    assert r.exit_code == 2 and "bad filter" in r.stderr
    os.environ.pop(KEY_ENV)
    r = CliRunner().invoke(cli, ["replay", "--db", str(db), "--suite", str(suite), "--target", "loop"])
    assert r.exit_code == 2 and f"${KEY_ENV} is not set" in r.stderr
    r = CliRunner().invoke(cli, ["replay", "show", "42", "--db", str(db)])
    assert r.exit_code == 1 and "no replay run 42" in r.stderr
