"""`oncall demo`: deterministic, loads clean through the real importer, and the injected problems are in the data."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from click.testing import CliRunner

from oncall.cli import cli
from oncall.demo import EXPORT_NAME, build_demo, demo_truth, generate_demo
from oncall.store import open_db


def q(path: Path, sql: str) -> list[tuple]:
    store = open_db(path, read_only=True)
    try:
        return store.con.execute(sql).fetchall()
    finally:
        store.close()


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a, b, c = (generate_demo(tmp_path / d, hours=1.0, seed=s) for d, s in (("a", 3), ("b", 3), ("c", 4)))
    digest = [hashlib.sha256((tmp_path / d / EXPORT_NAME).read_bytes()).hexdigest() for d in "abc"]
    assert digest[0] == digest[1] != digest[2]
    assert a.to_dict() == b.to_dict()
    first = json.loads((tmp_path / "a" / EXPORT_NAME).read_text().splitlines()[0])
    assert "resourceSpans" in first  # a real OTLP JSON Lines export


def test_llm_spans_inherit_cohort_keys(demo_db: Path) -> None:
    n, tenant, feature, req, pv = q(demo_db, """SELECT count(*), count(tenant), count(feature), count(request_id),
        count(prompt_version) FROM spans WHERE kind = 'llm'""")[0]
    assert n > 10_000 and n == tenant == feature == req == pv
    # Each LLM call's tenant came from a span of its own trace that carries that same tenant.
    wrong = q(demo_db, """SELECT count(*) FROM spans s LEFT JOIN spans p ON p.trace_id = s.trace_id
        AND p.span_id = s.inherited->>'$.tenant.from_span' WHERE s.kind = 'llm'
        AND (p.span_id IS NULL OR p.span_id = s.span_id OR p.tenant IS DISTINCT FROM s.tenant)""")[0][0]
    assert wrong == 0


def test_served_model_switch(demo_db: Path) -> None:
    rows = dict(q(demo_db, """SELECT served_model, min(start_time)::VARCHAR FROM spans WHERE kind = 'llm'
                              AND model = 'gpt-4o' AND served_model IS NOT NULL GROUP BY 1"""))
    assert set(rows) == {"gpt-4o-2024-08-06", "gpt-4o-2024-11-20"}
    assert rows["gpt-4o-2024-11-20"].startswith("2026-11-24 01:12")
    last_old = q(demo_db, "SELECT max(start_time)::VARCHAR FROM spans WHERE served_model = 'gpt-4o-2024-08-06'")[0][0]
    assert last_old.startswith("2026-11-24 01:1")


def test_prompt_change_triples_acme_cost(demo_db: Path) -> None:
    rows = dict(q(demo_db, """SELECT prompt_version, avg(cost) FROM spans WHERE kind = 'llm' AND tenant = 'acme'
                              AND feature = 'support-bot' AND status <> 'error' GROUP BY 1"""))
    assert 2.5 < rows["v13"] / rows["v12"] < 4.0
    others = q(demo_db, """SELECT count(DISTINCT prompt_version) FROM spans WHERE kind = 'llm' AND tenant <> 'acme'
                           AND feature = 'support-bot'""")[0][0]
    assert others == 1  # only acme changed prompt


def test_output_longer_and_json_drift(demo_db: Path) -> None:
    before, after = q(demo_db, """SELECT avg(length(output_text)) FROM spans WHERE kind = 'llm' AND status <> 'error'
        AND feature = 'support-bot' GROUP BY start_time >= TIMESTAMPTZ '2026-11-24 01:12:00Z' ORDER BY 1""")
    assert 1.25 < after[0] / before[0] < 1.6
    rows = q(demo_db, """SELECT start_time >= TIMESTAMPTZ '2026-11-24 01:12:00Z' AS post,
        avg(json_valid(output_text)::INT), avg((output_text LIKE '%"orderId"%')::INT)
        FROM spans WHERE kind = 'llm' AND feature = 'extract' AND status <> 'error' GROUP BY 1 ORDER BY 1""")
    (_, valid_before, renamed_before), (_, valid_after, renamed_after) = rows
    assert valid_before > 0.97 and 0.6 < valid_after < 0.8
    assert renamed_before == 0 and renamed_after > 0.2


def test_rate_limit_burst(demo_db: Path) -> None:
    rows = q(demo_db, """SELECT provider, min(start_time)::VARCHAR, max(start_time)::VARCHAR, count(*)
        FROM spans WHERE kind = 'llm' AND error_type = 'rate_limit' GROUP BY 1""")
    assert len(rows) == 1
    provider, first, last, n = rows[0]
    assert provider == "anthropic" and first >= "2026-11-24 02:05" and last < "2026-11-24 02:20" and n >= 20


def test_index_rebuilt_with_another_embedding_model(demo_db: Path) -> None:
    """help-center: embedding, retrieval and chat spans per request; after 01:38 the index alias reads
    help-articles-v42 (built with another embedding model than the query's) and most retrievals are empty."""
    shapes = q(demo_db, """SELECT DISTINCT shape FROM (SELECT list(kind ORDER BY start_time, span_pk) AS shape
                           FROM spans WHERE trace_id IN (SELECT trace_id FROM spans WHERE feature = 'help-center')
                           GROUP BY trace_id)""")
    assert shapes == [(["span", "embedding", "retriever", "llm"],)]  # root, embed, search, answer
    rows = {r[0]: r[1:] for r in q(demo_db, """SELECT retrieval_index, min(start_time)::VARCHAR,
        max(start_time)::VARCHAR, any_value(embedding_model), count(*), avg((retrieved = 0)::INT), avg(top_score),
        avg(length(output_text)), avg((output_text LIKE 'I''m sorry, I don''t know%')::INT)
        FROM spans WHERE kind = 'llm' AND feature = 'help-center' AND status <> 'error' GROUP BY 1""")}
    assert set(rows) == {"help-articles-v41", "help-articles-v42"}
    old, new = rows["help-articles-v41"], rows["help-articles-v42"]
    assert old[1] < "2026-11-24 01:38" <= new[0] and new[0].startswith("2026-11-24 01:38")
    assert (old[2], new[2]) == ("text-embedding-3-small", "text-embedding-3-large")
    assert old[4] < 0.05 and 0.5 < new[4] < 0.85  # empty retrievals
    assert old[5] > 0.75 and new[5] < 0.4  # top score where anything came back
    assert new[6] < 0.7 * old[6] and new[7] > 0.5  # shorter answers, "I don't know"
    # the query side never changed: every embedding span says the model the queries are embedded with
    assert q(demo_db, "SELECT DISTINCT model FROM spans WHERE kind = 'embedding'") == [("text-embedding-3-small",)]
    # each answer carries the articles it was given, and they are the ones in its system prompt
    sample = q(demo_db, """SELECT retrieved_docs, input_text FROM spans WHERE kind = 'llm' AND feature = 'help-center'
                           AND retrieved > 0 LIMIT 20""")
    for docs, prompt in sample:
        for d in json.loads(docs):
            assert f"[{d['id']}] ({d['source']}) {d['content']}" in prompt


def test_truth_recorded_and_steady_control(demo_db: Path, tmp_path: Path) -> None:
    store = open_db(demo_db, read_only=True)
    try:
        truth = demo_truth(store.con)
    finally:
        store.close()
    assert [c.kind for c in truth.changes] == ["new_prompt_version", "new_served_model", "new_retrieval_index",
                                               "error_burst"]
    steady = tmp_path / "steady.duckdb"
    t2, _ = build_demo(steady, incident=False, scale=0.5)
    assert t2.changes == []
    assert q(steady, "SELECT count(DISTINCT served_model) FILTER (WHERE model = 'gpt-4o'), "
                     "count(*) FILTER (WHERE error_type = 'rate_limit'), count(DISTINCT prompt_version) "
                     "FILTER (WHERE feature = 'support-bot'), count(DISTINCT retrieval_index), "
                     "count(DISTINCT embedding_model) FROM spans WHERE kind = 'llm'")[0] == (1, 0, 1, 1, 1)


def test_cli_builds_and_never_clobbers_a_real_incident(tmp_path: Path, fixtures: Path) -> None:
    runner = CliRunner()
    db = str(tmp_path / "i.duckdb")
    res = runner.invoke(cli, ["demo", "--db", db, "--no-tui", "--hours", "1", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["summary"]["llm_spans"] > 1000 and out["problems"] == []
    assert runner.invoke(cli, ["demo", "--db", db, "--no-tui", "--hours", "1"]).exit_code == 0  # rebuilds a demo
    real = str(tmp_path / "real.duckdb")
    assert runner.invoke(cli, ["load", "--db", real, str(fixtures / "langsmith")]).exit_code == 0
    res = runner.invoke(cli, ["demo", "--db", real, "--no-tui"])
    assert res.exit_code == 2 and "refusing to replace it" in res.output
    assert q(Path(real), "SELECT count(*) FROM spans")[0][0] == 4
