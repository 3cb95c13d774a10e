"""compare, changes and blast-radius, tested against the demo's injected truth and a steady control."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from oncall.cli import cli
from oncall.demo import demo_truth
from oncall.ingest.loader import load_paths
from oncall.query import quality
from oncall.query.blast_radius import blast_radius
from oncall.query.changes import changes
from oncall.query.compare import compare
from oncall.query.search import count
from oncall.query.stats import two_proportions, welch
from oncall.store import open_db


@pytest.fixture(scope="module")
def demo(demo_db: Path):
    store = open_db(demo_db, read_only=True)
    yield store
    store.close()


def metric(res: dict, name: str) -> dict:
    return next(m for m in res["metrics"] if m["metric"] == name)


def ts(iso: str) -> dt.datetime:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))


# -- heuristics and tests ------------------------------------------------------------------------------
OUTPUTS = ["I'm sorry, but I can't help with that request.", "Sure! Sorry for the wait, here it is.",
           "As an AI language model, I cannot", '{"a": 1, "b": [2]}', '```json\n{"b": 1, "a": 2}\n```',
           'Here is the JSON: {"a": 1}', "[1, 2, 3]", "", "plain text", '{"x": "I am unable to"}',
           "x" * 170 + " I'm sorry",
           # JSON validity tests the first character before parsing: every kind of JSON start, and prose
           # that begins like one.
           "42", "-1.5", "true", "null", '"a string"', '  {"k": 1}', "\t[1]", "true story, not JSON", "nope",
           "- a bullet", "```\n[1]\n```", "`code`"]


def test_quality_sql_matches_python() -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE spans (output_text VARCHAR, status VARCHAR)")
    con.executemany("INSERT INTO spans VALUES (?, 'ok')", [[o] for o in OUTPUTS])
    rows = con.execute(f"SELECT output_text, {quality.refusal_sql()}, {quality.json_valid_sql()}, "
                       f"{quality.key_set_sql()} FROM spans").fetchall()
    for text, refusal, valid, keys in rows:
        assert refusal == quality.is_refusal(text), text
        assert valid == quality.is_json(text), text
        assert keys == quality.key_set(text), text
    assert [quality.is_refusal(o) for o in OUTPUTS[:3]] == [True, False, True]
    assert quality.key_set(OUTPUTS[4]) == "a,b" and not quality.is_json(OUTPUTS[5])
    assert not quality.is_refusal(OUTPUTS[-1])  # only near the start


def test_significance_marks() -> None:
    assert two_proportions(50, 1000, 10, 1000).significance == "significant"
    assert two_proportions(11, 1000, 10, 1000).significance == "noise"
    assert two_proportions(3, 10, 1, 10).significance == "too few"
    assert welch(130.0, 400.0, 500, 90.0, 400.0, 500).significance == "significant"
    assert welch(91.0, 400.0, 500, 90.0, 400.0, 500).significance == "noise"


# -- compare ---------------------------------------------------------------------------------------
def test_compare_shows_injected_effects_with_sign_and_size(demo) -> None:
    r = compare(demo.con, "feature=extract since=01:12", "feature=extract until=01:12")
    jv = metric(r, "json_valid_rate")
    assert jv["baseline"] > 0.97 and 0.6 < jv["cohort"] < 0.8 and jv["significance"] == "significant"
    assert metric(r, "json_key_drift")["cohort"] > 0.3
    assert "amount,currency,orderId,status" in r["json_key_sets"]["new_key_sets"]
    # Every cohort request that names a served model names the new one (failed calls name none).
    served_new = count(demo.con, "feature=extract since=01:12 served_model=gpt-4o-2024-11-20")
    assert r["served_models"]["cohort"] == {"gpt-4o-2024-11-20": served_new}
    assert served_new + count(demo.con, "feature=extract since=01:12 served_model=") == r["cohort"]["requests"]
    acme = compare(demo.con, "tenant=acme feature=support-bot since=00:30 status=ok",
                   "tenant=acme feature=support-bot until=00:30 status=ok")
    cost = metric(acme, "cost_per_request")
    assert 2.5 < cost["cohort"] / cost["baseline"] < 4.0 and cost["significance"] == "significant"
    burst = compare(demo.con, "provider=anthropic since=02:05 until=02:20", "provider=anthropic until=02:05")
    rl = metric(burst, "error_rate_rate_limit")
    assert rl["cohort"] > 0.5 and rl["baseline"] == 0 and rl["significance"] == "significant"
    same = compare(demo.con, "tenant=globex until=00:00", "tenant=globex since=00:00 until=01:00")
    assert metric(same, "error_rate")["significance"] != "significant"
    assert metric(same, "output_length_mean")["significance"] != "significant"


# -- changes ---------------------------------------------------------------------------------------
def _within(iso: str, truth: str, seconds: float = 60) -> bool:
    return abs((ts(iso) - ts(truth)).total_seconds()) <= seconds


def test_changes_names_the_demo_causes_with_their_effects(demo) -> None:
    """Exactly the four injected causes, top four, each with its effects inside and its times right."""
    truth = {t.kind: t for t in demo_truth(demo.con).changes}
    found = changes(demo.con)
    assert len(found) == 4, [c.description for c in found]
    by_kind = {c.kind: c for c in found}
    assert set(by_kind) == {"new_prompt_version", "new_served_model", "new_retrieval_index", "metric_shift"}

    prompt, inj = by_kind["new_prompt_version"], truth["new_prompt_version"]
    assert (prompt.cohort["tenant"], prompt.cohort["feature"], prompt.before, prompt.after) == (
        "acme", "support-bot", "v12", "v13")
    assert _within(prompt.began_at, inj.at)
    effects = {e["metric"]: e for e in prompt.effects}
    assert {"cost_per_request", "input_tokens_mean"} <= set(effects)
    assert effects["cost_per_request"]["after"] / effects["cost_per_request"]["before"] > 2.5
    assert "output_length_mean" not in effects  # the served-model change comes later: not this one's

    model, inj = by_kind["new_served_model"], truth["new_served_model"]
    assert (model.before, model.after, model.cohort["model"]) == (inj.before, inj.after, "gpt-4o")
    assert _within(model.began_at, inj.at)
    effects = {e["metric"]: e for e in model.effects}
    assert {"output_length_mean", "latency_ms_mean", "json_valid_rate", "json_key_drift"} <= set(effects)
    assert effects["json_valid_rate"]["cohort"].get("feature") == "extract"
    assert effects["json_valid_rate"]["after"] < 0.8 < 0.95 < effects["json_valid_rate"]["before"]
    assert "amount,currency,orderId,status" in effects["json_key_drift"]["new_key_sets"]
    assert all(e["began_at"] == model.began_at for e in model.effects)  # never before the cause

    index, inj = by_kind["new_retrieval_index"], truth["new_retrieval_index"]
    assert (index.before, index.after, index.cohort) == (inj.before, inj.after, inj.cohort)
    assert _within(index.began_at, inj.at) and index.ended_at is None
    assert "embedding model text-embedding-3-small -> text-embedding-3-large" in index.description  # one cause
    assert index.together_with == [{"dimension": "embedding_model", "before": "text-embedding-3-small",
                                    "after": "text-embedding-3-large"}]
    effects = {e["metric"]: e for e in index.effects}
    assert {"empty_retrieval_rate", "top_score_mean", "refusal_rate", "output_length_mean"} <= set(effects)
    assert effects["empty_retrieval_rate"]["before"] < 0.05 < 0.5 < effects["empty_retrieval_rate"]["after"]
    assert effects["top_score_mean"]["after"] < 0.5 < effects["top_score_mean"]["before"]
    assert effects["output_length_mean"]["after"] < effects["output_length_mean"]["before"]
    assert all(e["began_at"] == index.began_at for e in index.effects)
    assert not any(c.metric in ("empty_retrieval_rate", "top_score_mean") for c in found if c is not index)

    burst, inj = by_kind["metric_shift"], truth["error_burst"]
    assert burst.metric == "error_rate" and burst.cohort in ({"provider": "anthropic"}, {"feature": "summarize"})
    assert _within(burst.began_at, inj.at) and _within(burst.ended_at, inj.until)
    assert "rate_limit" in burst.description and {"tenant": "hooli"} in burst.also_in
    assert [c.impact for c in found] == sorted((c.impact for c in found), reverse=True)


def test_change_counts_are_what_their_filters_return(demo) -> None:
    from oncall.query.search import count, search

    for c in changes(demo.con):
        assert c.affected_requests == count(demo.con, c.filter) == c.counts["requests"], c.filter
        assert c.counts["filter"] == c.filter and "errors included" in c.counts["counted"]
        for e in c.effects:
            assert e["requests"] == count(demo.con, e["filter"]) and e["measured_on"] <= e["requests"]
            assert e["counts"]
        assert search(demo.con, c.filter, limit=5)
        assert all(f"{k}={v}" in c.filter.split() for k, v in c.cohort.items()), c.filter


def test_changes_quiet_on_steady_traffic(steady_db: Path) -> None:
    store = open_db(steady_db, read_only=True)
    try:
        assert changes(store.con) == []
    finally:
        store.close()


# -- blast radius ------------------------------------------------------------------------------------
def _turn(sess: str, i: int, t: int, model: str, history: list[str], answer: str) -> dict:
    return {"request_id": f"{sess}-{i}", "session_id": sess, "timestamp": t, "model": "gpt-4o",
            "served_model": model, "tenant": "acme",
            "messages": [{"role": "user", "content": "hi"}]
            + [{"role": "assistant", "content": h} for h in history] + [{"role": "user", "content": f"turn {i}"}],
            "output": answer}


def test_blast_radius_finds_carried_sessions_and_residual_damage(db, tmp_path: Path) -> None:
    bad_answer = "Absolutely! Great question, you are so right. " * 3
    lines = []
    t0 = 1772359200
    for s in range(40):  # contaminated: turn 0 by the bad model, later turns after the fix stay long-winded
        sess = f"dirty-{s}"
        lines.append(_turn(sess, 0, t0 + s, "bad-snapshot", [], bad_answer))
        for i in (1, 2):
            lines.append(_turn(sess, i, t0 + 3600 + s * 10 + i, "good-snapshot", [bad_answer],
                               "Sure, absolutely, as I said: " + "more words " * 12))
    for s in range(60):  # clean sessions after the fix
        sess = f"clean-{s}"
        lines.append(_turn(sess, 0, t0 + 3600 + s, "good-snapshot", [], "Short answer."))
        lines.append(_turn(sess, 1, t0 + 3700 + s, "good-snapshot", ["Short answer."], "Short answer again."))
    p = tmp_path / "sessions.jsonl"
    p.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert load_paths(db, [str(p)]).problems == []
    r = blast_radius(db.con, "served_model=bad-snapshot",
                     mitigated_at=dt.datetime.fromtimestamp(t0 + 1800, dt.UTC))
    assert (r["sessions_with_bad_outputs"], r["contaminated_sessions"], r["carried_requests"]) == (40, 40, 80)
    assert r["carried_requests_after_mitigation"] == 80
    after = r["after_mitigation"]
    assert after["contaminated_requests"] == 80 and after["clean_requests"] == 120
    length = next(m for m in after["metrics"] if m["metric"] == "output_length_mean")
    assert length["significance"] == "significant" and length["contaminated"] > length["clean"]
    assert after["still_degraded"] and r["verdict"] == "degraded"
    assert (r["sessions_listed"], r["sessions_total"]) == (40, 40)
    path = str(db.path)
    db.close()
    res = CliRunner().invoke(cli, ["blast-radius", "--db", path, "--json", "served_model=bad-snapshot",
                                   "--mitigated-at", "2026-03-01T10:30Z"])
    assert res.exit_code == 1 and json.loads(res.output)["contaminated_sessions"] == 40


def test_cli_changes_and_compare_json(demo_db: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["changes", "--db", str(demo_db), "--json"])
    assert res.exit_code == 0, res.output
    items = json.loads(res.output)
    assert {"kind", "metric", "cohort", "began_at", "ended_at", "before", "after", "affected_requests", "impact",
            "significance", "filter", "also_in", "effects", "counts", "description"} <= set(items[0])
    assert {"metric", "cohort", "before", "after", "began_at", "filter", "requests", "measured_on",
            "counts"} <= set(items[0]["effects"][0])
    # The count an entry shows is what `oncall search` returns for its filter.
    top = items[0]
    res = runner.invoke(cli, ["search", "--db", str(demo_db), "--json", *top["filter"].split()])
    assert json.loads(res.output)["total"] == top["affected_requests"]
    res = runner.invoke(cli, ["changes", "--db", str(demo_db)])
    assert res.exit_code == 0 and "prompt version v12 -> v13" in res.output and "  - " in res.output
    res = runner.invoke(cli, ["compare", "--db", str(demo_db), "--json", "tenant=acme", "since=00:30",
                              "--baseline", "tenant=acme until=00:30"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["cohort"]["requests"] > 0 and any(m["metric"] == "cost_per_request" for m in out["metrics"])
    res = runner.invoke(cli, ["compare", "--db", str(demo_db), "tenat=acme", "--baseline", "tenant=acme"])
    assert res.exit_code == 2 and "did you mean 'tenant'" in res.output


# -- found in the 2 AM audit -------------------------------------------------------------------------
def test_changes_in_a_scope_hand_out_filters_within_that_scope(demo) -> None:
    """`changes tenant=hooli`: each change's filter must keep tenant=hooli, or it reproduces another cohort."""
    scoped = changes(demo.con, "tenant=hooli")
    assert scoped
    for c in scoped:
        assert c.filter.split()[0] == "tenant=hooli", c.filter
        assert c.filter.count("tenant=hooli") == 1
        assert all(e["filter"].split()[0] == "tenant=hooli" for e in c.effects)
    unscoped = changes(demo.con)
    assert any(not c.filter.startswith("tenant=") for c in unscoped)


def test_change_descriptions_read_in_units(demo) -> None:
    found = changes(demo.con)
    burst = next(c for c in found if c.metric == "error_rate")
    assert "error rate 0.81 % -> 76 %" in burst.description  # a percentage with its digits, not 0.00813 -> 0.758
    prompt = next(c for c in found if c.kind == "new_prompt_version")
    assert "prompt version v12 -> v13" in prompt.description and "cost/request $0.000" in prompt.description
    assert "e-04" not in " ".join(c.description for c in found)


def test_blast_radius_default_mitigation_is_after_the_last_bad_request(db, tmp_path: Path) -> None:
    """Without --mitigated-at the fix time defaults to the last bad request, which is not itself 'after'."""
    bad = "Absolutely! Great question, you are so right. " * 3
    t0 = 1772359200
    lines = [_turn("s1", 0, t0, "bad-snapshot", [], bad),
             _turn("s1", 1, t0 + 60, "bad-snapshot", [bad], bad + " again"),  # the last bad request carries one
             _turn("s2", 0, t0 + 10, "good-snapshot", [], "Short answer."),
             _turn("s2", 1, t0 + 70, "good-snapshot", ["Short answer."], "Short again.")]
    p = tmp_path / "s.jsonl"
    p.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert load_paths(db, [str(p)]).problems == []
    r = blast_radius(db.con, "served_model=bad-snapshot")
    assert r["carried_requests"] == 1 and r["mitigated_at_source"] == "last bad request"
    assert r["carried_requests_after_mitigation"] == 0
    assert r["after_mitigation"]["contaminated_requests"] == 0
    r = blast_radius(db.con, "served_model=bad-snapshot", mitigated_at=dt.datetime.fromtimestamp(t0 + 30, dt.UTC))
    assert r["carried_requests_after_mitigation"] == 1 and r["mitigated_at_source"] == "given"
    names = [m["metric"] for m in r["after_mitigation"]["metrics"]]
    assert "json_valid_rate" not in names and "output_length_mean" in names  # no JSON here: no JSON rate
    # One carried request against one clean one proves nothing: it says so, with its own exit code.
    assert r["verdict"] == r["after_mitigation"]["verdict"] == "cannot tell"
    path = str(db.path)
    db.close()
    res = CliRunner().invoke(cli, ["blast-radius", "--db", path, "served_model=bad-snapshot",
                                   "--mitigated-at", "2026-03-01T10:00:30Z"])
    assert res.exit_code == 4 and "cannot tell" in res.output and "no significant degradation" not in res.output


def test_blast_radius_on_the_demo_counts_agree_and_lists_say_how_many(demo_db: Path) -> None:
    res = CliRunner().invoke(cli, ["blast-radius", "--db", str(demo_db), "--json", "served_model=gpt-4o-2024-11-20",
                                   "--mitigated-at", "2026-11-24T02:30Z"])
    out = json.loads(res.output)
    after = out["after_mitigation"]
    assert after["contaminated_requests"] == out["carried_requests_after_mitigation"]  # headline = table
    assert out["sessions_listed"] == 50 < out["sessions_total"] == out["contaminated_sessions"]
    if after["clean_requests"] < 30:
        assert res.exit_code == 4 and out["verdict"] == "cannot tell"
    text = CliRunner().invoke(cli, ["blast-radius", "--db", str(demo_db), "served_model=gpt-4o-2024-11-20",
                                    "--mitigated-at", "02:30"]).output
    assert f"sessions: 50 of {out['sessions_total']:,}" in text
    assert f"{out['carried_requests_after_mitigation']:,} after the mitigation" in text


def test_blast_radius_enough_requests_and_no_difference_is_not_degraded(db, tmp_path: Path) -> None:
    bad = "Absolutely! Great question, you are so right. " * 3
    t0 = 1772359200
    lines = []
    for s in range(40):
        lines.append(_turn(f"d{s}", 0, t0 + s, "bad-snapshot", [], bad))
        lines.append(_turn(f"d{s}", 1, t0 + 3600 + s, "good-snapshot", [bad], f"Short answer {s % 7}."))
        lines.append(_turn(f"c{s}", 0, t0 + 3600 + s, "good-snapshot", [], f"Short answer {s % 5}."))
    p = tmp_path / "s.jsonl"
    p.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert load_paths(db, [str(p)]).problems == []
    path = str(db.path)
    db.close()
    res = CliRunner().invoke(cli, ["blast-radius", "--db", path, "--json", "served_model=bad-snapshot",
                                   "--mitigated-at", "2026-03-01T10:30Z"])
    out = json.loads(res.output)
    assert res.exit_code == 0 and out["verdict"] == "not degraded", out["after_mitigation"]
    assert out["after_mitigation"]["contaminated_requests"] == out["carried_requests_after_mitigation"] == 40
