"""One vocabulary, one number: the same rows fed through every path that reports a metric — compare,
changes' before/after sums, the replay summary's fold (original column and baseline), runbook gate
evaluation and the postmortem's impact — give the same numbers, and each is what the rows hold by
the registry's stated definition (counted here by hand, in plain Python, from the generated calls).
"""

from __future__ import annotations

import datetime as dt
import json
import random

import pytest

from oncall.ingest.loader import load_paths
from oncall.query.compare import compare
from oncall.query.filters import compile_filter
from oncall.query.metrics import grouped_signals
from oncall.query.registry import METRICS, DuckDB, Fold, key_set_counts, quantile
from oncall.replay.checks import REPLAY_COLUMNS, side_fold, summary_rows
from oncall.runbook.run import gate_metrics

T0 = dt.datetime(2026, 3, 1, 10, 0, tzinfo=dt.UTC)
SPLIT = T0 + dt.timedelta(minutes=50)


def _calls() -> list[dict]:
    """Two hundred calls before SPLIT and two hundred after, for tenant acme, beside another tenant's:
    failures that are fast and still billed, streamed calls, truncations, refusals, JSON with two key
    sets before and a third after, prose that is not JSON."""
    rng = random.Random(5)
    out = []
    for i in range(520):
        t = T0 + dt.timedelta(seconds=15 * i)
        after = t >= SPLIT
        tenant = "acme" if i % 13 else "globex"
        failed = rng.random() < (0.22 if after else 0.04)
        rec: dict = {"request_id": f"r{i:04d}", "start_time": t.isoformat().replace("+00:00", "Z"),
                     "tenant": tenant, "model": "acme-llm-7", "provider": "acme-ai", "feature": "extract",  # no price: no estimate
                     "input_tokens": 200 + rng.randint(0, 80) + (120 if after else 0),
                     "latency_ms": round(rng.uniform(30, 90), 1) if failed else round(rng.uniform(600, 1800), 1)}
        if failed:
            rec.update({"status": "error", "http_status": 429, "error": "rate limited"})
            if rng.random() < 0.5:
                rec["cost"] = 0.0004  # a failed call that was still billed
        else:
            roll = rng.random()
            if roll < 0.08:
                text = "I'm sorry, but I can't help with that."
            elif roll < 0.2:
                text = "Here is the order you asked about, shipped yesterday."
            else:
                keys = ["orderId", "amount"] if after and rng.random() < 0.5 else (
                    ["order_id", "amount"] if rng.random() < 0.7 else ["order_id", "amount", "note"])
                text = json.dumps({k: i for k in keys})
            rec.update({"status": "ok", "served_model": "acme-llm-7-1120" if after else "acme-llm-7-0806",
                        "output_text": text, "output_tokens": 20 + rng.randint(0, 30),
                        "finish_reason": "length" if rng.random() < (0.1 if after else 0.02) else "stop",
                        "cost": round(0.0005 + rng.random() * 0.001, 6)})
            if i % 3 == 0:
                rec["ttft_ms"] = round(rng.uniform(80, 400), 1)
        out.append(rec)
    return out


def _by_definition(calls: list[dict], key_ref: set[str]) -> dict[str, float | None]:
    """The registry's definitions, counted by hand: what every path must report."""
    from oncall.query.quality import is_json, is_refusal, key_set

    ok = [c for c in calls if c["status"] != "error"]
    out_ = [c for c in ok if c.get("output_text") is not None]
    fin = [c for c in ok if c.get("finish_reason")]
    ks = [key_set(c["output_text"]) for c in out_ if key_set(c["output_text"]) is not None]
    cost = [c["cost"] for c in calls if c.get("cost") is not None]
    ttft = [c["ttft_ms"] for c in ok if c.get("ttft_ms") is not None]

    def mean(xs: list[float]) -> float | None:
        return sum(xs) / len(xs) if xs else None

    return {
        "requests": len(calls),
        "error_rate": sum(c["status"] == "error" for c in calls) / len(calls),
        "latency_ms_mean": mean([c["latency_ms"] for c in ok]),
        "latency_ms_p95": quantile([c["latency_ms"] for c in ok], 0.95),
        "ttft_ms_mean": mean(ttft),
        "input_tokens_mean": mean([c["input_tokens"] for c in calls]),
        "output_tokens_mean": mean([c["output_tokens"] for c in ok]),
        "finish_length_rate": sum(c["finish_reason"] == "length" for c in fin) / len(fin),
        "cost_per_request": mean(cost),
        "cost_total": sum(cost),
        "output_length_mean": mean([len(c["output_text"]) for c in out_]),
        "refusal_rate": sum(is_refusal(c["output_text"]) for c in out_) / len(out_),
        "json_valid_rate": sum(is_json(c["output_text"]) for c in out_) / len(out_),
        "json_key_drift": sum(k not in key_ref for k in ks) / len(ks),
    }


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory):
    from oncall.store import open_db

    d = tmp_path_factory.mktemp("agree")
    calls = _calls()
    p = d / "calls.jsonl"
    p.write_text("".join(json.dumps(c) + "\n" for c in calls))
    db = open_db(d / "incident.duckdb")
    assert load_paths(db, [str(p)]).problems == []
    yield db, calls
    db.close()


def test_every_path_reports_the_same_numbers(loaded) -> None:
    db, calls = loaded
    con = db.con
    acme = [c for c in calls if c["tenant"] == "acme"]
    before = [c for c in acme if dt.datetime.fromisoformat(c["start_time"].replace("Z", "+00:00")) < SPLIT]
    after = [c for c in acme if c not in before]
    split = SPLIT.isoformat().replace("+00:00", "Z")
    cohort_f, base_f = f"tenant=acme since={split}", f"tenant=acme until={split}"
    b = compile_filter(con, base_f, alias="s")
    ref = set(key_set_counts(con, b.where, b.params))
    truth_after, truth_before = _by_definition(after, ref), _by_definition(before, ref)
    assert truth_after["json_key_drift"] > 0.2 and truth_before["json_key_drift"] == 0  # the fixture moves them

    # compare
    cmp = {r["metric"]: r for r in compare(con, cohort_f, base_f)["metrics"]}
    for name, v in truth_after.items():
        assert cmp[name]["cohort"] == pytest.approx(v), name
        assert cmp[name]["baseline"] == pytest.approx(truth_before[name]), name

    # changes: the before/after sums of its series, split at the cause's first appearance
    w = compile_filter(con, "tenant=acme", alias="s", default_kind=None)
    rows = grouped_signals(con, f"s.kind IN ('llm', 'tool') AND {w.where}", w.params, keys=[None],
                           group="CASE WHEN start_time < ? THEN 0 ELSE 1 END", group_params=[SPLIT],
                           key_ref=sorted(ref))
    phases = {int(r["bucket"]): r for r in rows}
    for phase, truth in ((0, truth_before), (1, truth_after)):
        for name, v in truth.items():
            if name in METRICS and METRICS[name].series:
                r = phases[phase]
                assert r[f"{name}__x"] / r[f"{name}__n"] == pytest.approx(v), (phase, name)

    # the replay summary: originals folded in Python (runner's path), the baseline measured in SQL
    from oncall.replay.runner import _baseline

    fold = side_fold()
    for c in after:
        fold.add({k: c.get(k) for k in REPLAY_COLUMNS})
    stats = fold.result({"key_sets": ref})
    base_stats, base_keys = _baseline(con, [base_f])
    assert base_keys == ref
    table = {r["metric"]: r for r in summary_rows(stats, stats, base_stats)}
    for name, v in truth_after.items():
        if name in table:
            assert table[name]["original"] == pytest.approx(v), name
            assert table[name]["baseline"] == pytest.approx(truth_before[name] if name != "json_key_drift" else 0.0), name
    assert {"error_rate", "latency_ms_mean", "cost_per_request", "json_key_drift", "refusal_rate"} <= set(table)

    # a runbook gate reads the replay column of that table
    gm = gate_metrics({"metrics": list(table.values()), "counts": {}})
    for name, v in truth_after.items():
        if name in table:
            assert gm[name] == pytest.approx(v), name
    assert gm["truncation_rate"] == pytest.approx(truth_after["finish_length_rate"])

    # the postmortem's impact row: error rate and cost per request before -> after
    from oncall.postmortem.draft import _Appendix, _impact, clocks

    cause = {"kind": "new_served_model", "filter": cohort_f, "began_at": split, "cohort": {"tenant": "acme"},
             "title": "served model changed", "ended_at": None}
    _, impact = _impact(con, [cause], [], _Appendix("x.duckdb"), clocks(con, []))  # the data's own clock
    for name in ("error_rate", "cost_per_request"):
        assert impact[0][name]["after"] == pytest.approx(truth_after[name]), name
        assert impact[0][name]["before"] == pytest.approx(truth_before[name]), name


def test_the_python_fold_and_the_sql_agree_row_by_row(loaded) -> None:
    """Every metric's definition evaluated per row in Python equals its SQL row value (NULL where the
    row does not count), for every row of the incident."""
    db, _ = loaded
    d = DuckDB("s", {"key_sets": ["amount,order_id"]}, {"key_set": "s._ks", "label": "s._label"})
    names = [m for m in METRICS.values() if m.reference is None or m.reference == "key_sets"]
    cols = ", ".join(f"{m.row_sql(d)} AS v_{m.name}" for m in names)
    from oncall.query.quality import key_set_sql

    sql = (f"SELECT s.*, {cols} FROM (SELECT s.*, {key_set_sql('s')} AS _ks, NULL::VARCHAR AS _label "
           f"FROM spans s) s ORDER BY span_pk")
    cur = db.con.execute(sql, d.params)
    header = [c[0] for c in cur.description]
    from oncall.query.quality import key_set

    n = 0
    for r in cur.fetchall():
        row = dict(zip(header, r, strict=True))
        row["key_set"] = key_set(row["output_text"])
        row["label"] = None
        for m in names:
            py = m.row_value(row, {"key_sets": ["amount,order_id"]})
            assert (py is None) == (row[f"v_{m.name}"] is None), (m.name, row["request_id"])
            if py is not None:
                assert py == pytest.approx(float(row[f"v_{m.name}"])), (m.name, row["request_id"])
        n += 1
    assert n == 520
    assert Fold(columns=REPLAY_COLUMNS).metrics  # the replay fold computes a non-empty vocabulary
