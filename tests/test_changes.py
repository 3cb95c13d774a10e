"""`changes` against generated incidents, one per signal, loaded through the real importers, and the
signals themselves against rows whose values the test knows."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from oncall.demo import _attrs, _ns, _parts
from oncall.ingest.loader import load_paths
from oncall.query.changes import changes
from oncall.query.filters import compile_filter
from oncall.query.metrics import SIGNALS, grouped_signals
from oncall.query.search import count
from tests import incidentgen


def _load(db, path: Path) -> None:
    report = load_paths(db, [str(path)])
    assert report.problems == [], report.problems


def _ts(iso: str) -> dt.datetime:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))


@pytest.mark.parametrize("name", sorted(incidentgen.SCENARIOS))
def test_each_generated_incident_is_one_entry_with_its_cause_cohort_and_start(name: str, db, tmp_path: Path) -> None:
    sc = incidentgen.SCENARIOS[name]()
    _load(db, sc.write(tmp_path))
    truth = sc.truth
    found = changes(db.con)
    assert len(found) == 1, [c.description for c in found]
    c = found[0]
    assert c.kind == truth.kind
    assert c.cohort == truth.cohort  # minimal: no key the others imply
    if truth.after is not None:
        assert c.after == truth.after
    assert truth.metric in [e["metric"] for e in c.effects], [e["description"] for e in c.effects]
    assert abs((_ts(c.began_at) - truth.at).total_seconds()) <= 60, c.began_at
    if truth.until is not None:
        assert c.ended_at is not None and abs((_ts(c.ended_at) - truth.until).total_seconds()) <= 60, c.ended_at
    assert c.affected_requests == count(db.con, c.filter)


def test_prompt_change_without_exported_cost_shows_input_tokens_and_estimated_cost(db, tmp_path: Path) -> None:
    """The export has tokens and no cost: input tokens move, and the cost the importer estimates
    from them moves with them, said to be estimated; nothing else."""
    sc = incidentgen.prompt_input_tokens()
    _load(db, sc.write(tmp_path))
    (c,) = changes(db.con)
    effects = {e["metric"]: e for e in c.effects}
    assert c.effects[0]["metric"] == "input_tokens_mean" and set(effects) <= {"input_tokens_mean", "cost_per_request"}
    assert 2.0 < effects["input_tokens_mean"]["after"] / effects["input_tokens_mean"]["before"]
    if "cost_per_request" in effects:
        cost = effects["cost_per_request"]
        assert cost["estimated"] and cost["description"].startswith("estimated cost/request")


def test_key_rename_is_drift_not_validity(db, tmp_path: Path) -> None:
    sc = incidentgen.served_model_key_rename()
    _load(db, sc.write(tmp_path))
    (c,) = changes(db.con)
    metrics = {e["metric"]: e for e in c.effects}
    assert "json_valid_rate" not in metrics
    drift = metrics["json_key_drift"]
    assert drift["before"] == 0 and drift["after"] > 0.95 and "customerId,items,total" in drift["new_key_sets"]


def test_burst_across_every_tenant_is_reported_once_for_all_traffic(db, tmp_path: Path) -> None:
    sc = incidentgen.burst_every_tenant()
    _load(db, sc.write(tmp_path))
    (c,) = changes(db.con)
    assert c.cohort == {} and "rate_limit" in c.description
    assert {"tenant": "t-red"} in c.also_in and {"provider": "anthropic"} in c.also_in
    assert "until=" in c.filter  # a window, placed from the rows, not at a bucket boundary
    assert 0.25 < c.after < 0.5


@pytest.mark.parametrize("fmt", ["otlp", "generic"])
def test_steady_generated_traffic_reports_nothing(fmt: str, db, tmp_path: Path) -> None:
    _load(db, incidentgen.steady(fmt).write(tmp_path))
    assert changes(db.con) == []


def test_few_requests_and_a_long_gap(db, tmp_path: Path) -> None:
    """300 requests, half of them a day later: buckets follow the data, not the empty night."""
    sc = incidentgen.burst_every_tenant()
    sc.rate = 0.15
    calls = sc.generate()
    late = [c for c in calls if c.t >= incidentgen.T0 + dt.timedelta(hours=2)]
    for c in late:
        c.t += dt.timedelta(hours=20)
    sc.truth.at += dt.timedelta(hours=20)
    _load(db, sc.write(tmp_path))
    found = changes(db.con)
    assert len(found) <= 1
    if found:  # too few to be sure is allowed; a wrong answer is not
        assert found[0].metric == "error_rate"
        assert abs((_ts(found[0].began_at) - sc.truth.at).total_seconds()) <= 15 * 60


# -- the signals, on rows whose values the test knows -------------------------------------------------
T = dt.datetime(2026, 2, 2, 12, 0, tzinfo=dt.UTC)


def _signal_rows() -> tuple[list[str], dict[str, tuple[float, int]]]:
    """OTLP spans: 60 chat calls (tool calls, finish reasons, TTFT, errors, JSON key sets) and 10 tool spans."""
    spans, expect = [], {}
    fin = {0: "length", 1: "content_filter", 2: "tool_calls"}
    rows = []
    for i in range(60):
        t = T + dt.timedelta(seconds=10 * i)
        err = i % 10 == 9
        finish = fin.get(i % 6, "stop")
        out = json.dumps({"a": i, "b": 1} if i % 4 else {"a": i, "c": 1})
        attrs = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "m",
                 "gen_ai.usage.input_tokens": 100 + i}
        msg = _parts("assistant", out, finish)
        if finish == "tool_calls":
            msg["parts"].append({"type": "tool_call", "id": f"call_{i}", "name": "lookup", "arguments": {"q": i}})
        if err:
            attrs["error.type"] = "RateLimitError"
        else:
            attrs.update({"gen_ai.response.model": "m-1", "gen_ai.response.finish_reasons": [finish],
                          "gen_ai.usage.output_tokens": 20 + i, "gen_ai.output.messages": json.dumps([msg])})
            if i % 2 == 0:
                attrs["gen_ai.response.time_to_first_chunk"] = 0.1 + i / 1000
        spans.append({"traceId": f"{i + 1:032x}", "spanId": f"{i + 1:016x}", "name": "chat m", "kind": 3,
                      "startTimeUnixNano": _ns(t), "endTimeUnixNano": _ns(t + dt.timedelta(seconds=1)),
                      "attributes": _attrs(attrs), "status": {"code": 2, "message": "429"} if err else {}})
        rows.append((err, finish, i, out))
    for j in range(10):
        t = T + dt.timedelta(seconds=7 * j)
        spans.append({"traceId": f"{j + 101:032x}", "spanId": f"{j + 101:016x}", "name": "execute_tool lookup",
                      "kind": 1, "startTimeUnixNano": _ns(t), "endTimeUnixNano": _ns(t + dt.timedelta(seconds=1)),
                      "attributes": _attrs({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup"}),
                      "status": {"code": 2, "message": "boom"} if j < 3 else {}})
    ok = [r for r in rows if not r[0]]
    expect = {
        "error_rate": (6, 60), "input_tokens_mean": (sum(100 + r[2] for r in rows), 60),
        "output_tokens_mean": (sum(20 + r[2] for r in ok), len(ok)),
        "ttft_ms_mean": (sum(100 + r[2] for r in ok if r[2] % 2 == 0), len([r for r in ok if r[2] % 2 == 0])),
        "finish_length_rate": (len([r for r in ok if r[1] == "length"]), len(ok)),
        "finish_content_filter_rate": (len([r for r in ok if r[1] == "content_filter"]), len(ok)),
        "finish_tool_calls_rate": (len([r for r in ok if r[1] == "tool_calls"]), len(ok)),
        "tool_call_rate": (len([r for r in ok if r[1] == "tool_calls"]), len(ok)),
        # A tool-call turn's output text carries the call beside the JSON: not a JSON object.
        "json_key_drift": (len([r for r in ok if r[2] % 4 == 0 and r[1] != "tool_calls"]),
                           len([r for r in ok if r[1] != "tool_calls"])),
        "json_valid_rate": (len([r for r in ok if r[1] != "tool_calls"]), len(ok)),
        "tool_error_rate": (3, 10),
        "error_rate_rate_limit": (6, 60),  # every failure is a RateLimitError: class rate_limit
        **{f"error_rate_{e}": (0, 60) for e in ("quota", "server", "timeout", "content_filter")},
        # no call here was fed by a retrieval (tests/test_retrieval.py sums those)
        **{m: (None, 0) for m in ("empty_retrieval_rate", "docs_per_request", "top_score_mean", "doc_age_mean",
                               "retrieval_ms_mean")},
    }
    line = json.dumps({"resourceSpans": [{"resource": {"attributes": _attrs({"service.name": "s"})},
                                          "scopeSpans": [{"scope": {"name": "t"}, "spans": spans}]}]})
    return [line], expect


def test_every_signal_sums_what_its_rows_hold(db, tmp_path: Path) -> None:
    lines, expect = _signal_rows()
    p = tmp_path / "signals.otlp.jsonl"
    p.write_text("\n".join(lines) + "\n")
    _load(db, p)
    c = compile_filter(db.con, "", alias="s", default_kind=None)
    (row,) = grouped_signals(db.con, f"s.kind IN ('llm', 'tool') AND {c.where}", c.params, group="0", keys=[None],
                             key_ref=["a,b"])
    assert row["requests"] == 60
    for metric, (x, n) in expect.items():
        assert (row[f"{metric}__n"], pytest.approx(row[f"{metric}__x"])) == (n, x), metric
    assert set(expect) | {"latency_ms_mean", "cost_per_request", "output_length_mean", "refusal_rate"} == set(SIGNALS)


def test_estimated_cost_is_said_to_be(db, tmp_path: Path) -> None:
    """Where the importer marks cost as estimated (its cost_source column), effects say so."""
    from oncall.query.changes import describe_effect

    assert describe_effect("cost_per_request", 0.001, 0.003, estimated=True).startswith("estimated cost/request")
    assert not describe_effect("cost_per_request", 0.001, 0.003).startswith("estimated")


def test_compare_shows_the_finish_reason_mix_in_the_same_vocabulary(db, tmp_path: Path) -> None:
    from oncall.query.compare import compare

    sc = incidentgen.truncation_wave()
    _load(db, sc.write(tmp_path))
    r = compare(db.con, "since=09:40 until=10:05", "until=09:40")
    row = next(m for m in r["metrics"] if m["metric"] == "finish_length_rate")
    assert row["baseline"] == 0 and 0.4 < row["cohort"] < 0.6 and row["significance"] == "significant"
    assert row["metric"] in SIGNALS
    assert not any(m["metric"] == "ttft_ms_mean" for m in r["metrics"])  # nothing streamed: no TTFT row


def test_values_with_spaces_are_quoted_and_counts_still_match(db, tmp_path: Path) -> None:
    from oncall.query.search import search

    sc = incidentgen.prompt_input_tokens()
    for c in sc.generate():
        if c.tenant == "northwind":
            c.tenant = "Northwind Traders"
    _load(db, sc.write(tmp_path))
    (c,) = changes(db.con)
    assert c.cohort["tenant"] == "Northwind Traders" and 'tenant="Northwind Traders"' in c.filter
    assert c.affected_requests == count(db.con, c.filter) == len(search(db.con, c.filter, limit=100_000).rows)
    for e in c.effects:
        assert 'tenant="Northwind Traders"' in e["filter"] and e["requests"] == count(db.con, e["filter"])


def test_a_value_that_turns_up_now_and_then_is_not_a_cause(db, tmp_path: Path) -> None:
    """A handful of calls served by another snapshot, among the usual one, changes nothing."""
    sc = incidentgen.steady("otlp")
    calls = sc.generate()
    for c in calls[len(calls) // 2::300]:
        c.served = "gpt-4o-mini-2024-12-01"
    _load(db, sc.write(tmp_path))
    assert changes(db.con) == []


# -- what changed, complete: short bursts, and a window cut minutes after a change ------------------------
@pytest.mark.parametrize("kw", [
    {"errors": 7}, {"errors": 7, "seed": 4}, {"errors": 5}, {"errors": 10}, {"errors": 7, "rate": 0.5},
    {"errors": 20, "rate": 0.5}, {"errors": 7, "cohort": "provider", "rate": 0.2},
    {"errors": 7, "cohort": "tenant", "rate": 0.6}, {"errors": 12, "cohort": "tenant", "rate": 0.6},
], ids=lambda kw: "-".join(f"{k}{v}" for k, v in kw.items()))
def test_a_short_burst_of_a_new_error_class_is_one_entry(kw: dict, db, tmp_path: Path) -> None:
    """Seven 429s in eight minutes among about thirty calls, none before, is listed — at several burst
    and cohort sizes — as one entry whose filter holds the burst, dated at it, never before it."""
    sc = incidentgen.short_burst(**kw)
    _load(db, sc.write(tmp_path))
    bursts = [c for c in sc.calls if c.error and c.error[0] == 429]
    assert len(bursts) == kw["errors"]
    found = changes(db.con)
    assert len(found) == 1, [c.description for c in found]
    (c,) = found
    assert c.kind == "metric_shift" and c.metric in ("error_rate", "error_rate_rate_limit"), c.description
    assert "rate_limit" in c.description
    assert count(db.con, c.filter + " error=rate_limit") == len(bursts), c.filter
    first = min(b.t for b in bursts)
    assert _ts(c.began_at) >= first - dt.timedelta(seconds=c.bucket_s), (c.began_at, first)
    assert _ts(c.began_at) <= first + dt.timedelta(minutes=5), (c.began_at, first)


def test_a_model_update_seen_minutes_after_it_lists_the_change_with_its_effects_never_a_symptom_before_it(
        tmp_path: Path) -> None:
    """The demo export cut 5 and 15 minutes after its silent model update, as a live watch sees it: the
    served-model change is listed with its effects, no entry is a symptom of it dated before it, and
    no effect starts before its cause."""
    from oncall.demo import EXPORT_NAME, generate_demo
    from oncall.store import open_db

    truth = generate_demo(tmp_path / "full")
    change = next(x for x in truth.changes if x.kind == "new_served_model")
    at = _ts(change.at)
    for minutes in (5, 15):
        cut = tmp_path / f"cut-{minutes}.otlp.jsonl"
        _cut_export(tmp_path / "full" / EXPORT_NAME, cut, at + dt.timedelta(minutes=minutes))
        store = open_db(tmp_path / f"cut-{minutes}.duckdb")
        try:
            _load(store, cut)
            found = changes(store.con)
            served = [c for c in found if c.kind == "new_served_model"]
            assert len(served) == 1, [c.description for c in found]
            model = served[0]
            assert abs((_ts(model.began_at) - at).total_seconds()) <= 60 and model.effects
            for c in found:
                assert all(_ts(e["began_at"]) >= _ts(c.began_at) for e in c.effects), c.description
            effects = {e["metric"] for e in model.effects}
            for c in found:
                if c.kind == "metric_shift":
                    # No symptom of the model change as an entry of its own dated before it.
                    assert not (_ts(c.began_at) < at and c.metric in effects | {"json_key_drift", "json_valid_rate",
                                                                                 "output_length_mean"}), c.description
                    assert found.index(model) < found.index(c), [x.title for x in found]
        finally:
            store.close()


def _cut_export(src: Path, dst: Path, until: dt.datetime) -> None:
    """An OTLP JSON Lines export as it stood at `until`: spans that started later are not in it yet."""
    ns = int(until.timestamp() * 1_000_000) * 1000
    out = []
    for line in src.read_text(encoding="utf-8").splitlines():
        doc = json.loads(line)
        for rs in doc["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                ss["spans"] = [s for s in ss["spans"] if int(s["startTimeUnixNano"]) < ns]
        out.append(json.dumps(doc))
    dst.write_text("\n".join(out) + "\n", encoding="utf-8")
