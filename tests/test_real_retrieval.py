"""Retrieval spans written by the real instrumentation libraries over a small local retriever load
into the retrieval columns, linked to the LLM call each fed; an index switch is found as one cause.

tests/gen_rag.py runs a LangChain RAG chain (InMemoryVectorStore, OpenAIEmbeddings and ChatOpenAI
against tests/openai_server.py) over documents this test writes, traced by OpenInference,
OpenLLMetry (its LangChain and OpenAI instrumentors), LangSmith (LangChain's own tracer, to
tests/langsmith_server.py) or Langfuse (its LangChain handler, OTLP to tests/capture_server.py).
Halfway through, the app moves to index kb-v42, rebuilt with another embedding model than the
query side uses: most retrievals come back empty and the model answers "I don't know".

The truth is what the chat model was actually sent: the context in each request's system prompt
(the documents retrieved, in order) and the index the app was reading when it asked.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import pytest
from capture_server import CaptureServer
from exporter_checks import run_generator
from langsmith_server import LangSmithServer
from openai_server import OpenAIServer

from oncall.ingest.loader import load_paths
from oncall.query.changes import changes
from oncall.query.filters import compile_filter
from oncall.query.registry import METRICS, measure
from oncall.store import open_db

pytestmark = pytest.mark.retrieval
ROOT = Path(__file__).resolve().parents[1]
ENV = ROOT / ".envs" / "rag-langchain" / "bin" / "python"
QUESTIONS, SWITCH = 60, 30
REFUSAL = "I don't know: the knowledge base has nothing on that."
TOPICS = [
    ("password", "Reset your password from Settings Security Reset password; the link lasts 30 minutes."),
    ("invoice", "Invoices are listed under Billing History with a PDF link for each invoice."),
    ("refund", "Refunds for accidental upgrades are issued in full within 7 days of the upgrade."),
    ("webhook", "Webhooks are disabled after 20 consecutive delivery failures; re-enable them under Webhooks."),
    ("export", "CSV exports over 1 GB time out; use the scheduled export for large date ranges."),
    ("teammate", "Invite a teammate from Workspace Members Invite and pick their role."),
    ("apikey", "Rotate an API key by creating a new key, deploying it, then revoking the old key."),
    ("twofactor", "Turn on two-factor authentication under Settings Security Two-factor with an authenticator app."),
]
ASKED = ["How do I reset my password security link?", "Where is the invoice PDF in billing history?",
         "Can I get a refund for an accidental upgrade?", "Why are my webhooks disabled after failures?",
         "My CSV export times out, what do I do?", "How do I invite a teammate to the workspace?",
         "How do I rotate an API key?", "How do I turn on two-factor authentication?"]


def _answer(req: dict[str, Any]) -> str:
    """The model: answers from the context it was given, or says it does not know."""
    system = req["messages"][0]["content"]
    context = system.split("Context:\n", 1)[1] if "Context:\n" in system else ""
    return REFUSAL if not context.strip() else "From the docs: " + context.split("\n")[0]


@pytest.fixture(scope="module", params=["openinference", "openllmetry", "langsmith", "langfuse"])
def rag(request, tmp_path_factory) -> dict[str, Any]:
    if not ENV.exists():
        pytest.skip("no .envs/rag-langchain (run .ci/setup-retrieval.sh)")
    inst = request.param
    out = tmp_path_factory.mktemp(f"rag-{inst}")
    docs, common = _inputs(out, inst)
    with OpenAIServer(answerer=_answer) as srv:
        if inst in ("openinference", "openllmetry"):
            files = [out / "spans.jsonl"]
            run_generator(ENV, "gen_rag.py", *common, "--base-url", srv.base_url, "--out", str(files[0]))
        elif inst == "langsmith":
            with LangSmithServer("multipart") as ls:
                run_generator(ENV, "gen_rag.py", *common, "--base-url", srv.base_url, "--endpoint", ls.url)
                files = [out / "runs.jsonl"]
                ls.write_jsonl(files[0])
                api = _pull_langsmith(ls, out / "api.duckdb")
        else:
            with CaptureServer() as cap:
                run_generator(ENV, "gen_rag.py", *common, "--base-url", srv.base_url, "--endpoint", cap.url)
                bodies = cap.bodies("/api/public/otel/v1/traces")
            files = []
            for i, b in enumerate(bodies):
                files.append(out / f"request-{i}.pb")
                files[-1].write_bytes(b.body)
        chats = [e for e in srv.completions() if e.path.endswith("/chat/completions")]
    db = open_db(out / "incident.duckdb")
    load_paths(db, [str(f) for f in files])
    yield {"db": db, "chats": chats, "docs": {d["text"]: d for d in docs}, "inst": inst,
           "api": api if inst == "langsmith" else None}
    db.close()


def _inputs(out: Path, inst: str, questions: int = QUESTIONS) -> tuple[list[dict[str, Any]], list[str]]:
    """The documents and questions the app is given (written to `out`), and gen_rag.py's arguments."""
    docs = [{"id": f"kb-{i:03d}", "text": text, "source": f"help/{key}.md",
             "updated_at": f"2026-1{i % 2}-0{1 + i}T00:00:00Z"} for i, (key, text) in enumerate(TOPICS)]
    rng = random.Random(11)
    asked = [{"question": rng.choice(ASKED), "tenant": rng.choice(["acme", "globex"]), "session": f"s-{i // 3}"}
             for i in range(questions)]
    (out / "docs.json").write_text(json.dumps(docs))
    (out / "questions.json").write_text(json.dumps(asked))
    return docs, ["--docs", str(out / "docs.json"), "--questions", str(out / "questions.json"), "--instrument",
                  inst, "--switch-at", str(questions // 2)]


def _pull_langsmith(ls: LangSmithServer, db: Path) -> Path:
    """The same runs pulled through LangSmith's runs query API (`oncall load langsmith://kb-bot`)."""
    import datetime as dt

    from click.testing import CliRunner

    from oncall.cli import cli

    now = dt.datetime.now(dt.UTC)
    res = CliRunner().invoke(cli, ["load", "langsmith://kb-bot", "--db", str(db), "--since",
                                   (now - dt.timedelta(hours=1)).isoformat(), "--until", now.isoformat()],
                             env={"LANGSMITH_ENDPOINT": ls.url, "LANGSMITH_API_KEY": "lsv2-test-not-a-real-key"},
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return db


def _calls(db: Any) -> list[dict[str, Any]]:
    """The LLM calls a retrieval fed, in time order (OpenLLMetry also traces the OpenAI client under
    LangChain's span: the call the retrieval fed is the outer one)."""
    cur = db.cursor()
    rel = cur.execute("SELECT * FROM spans WHERE kind = 'llm' AND retrieval_span IS NOT NULL "
                      "ORDER BY start_time, span_pk")
    cols = [d[0] for d in rel.description]
    return [dict(zip(cols, r, strict=True)) for r in rel.fetchall()]


def test_each_call_carries_the_documents_it_was_given(rag):
    calls = _calls(rag["db"])
    assert len(calls) == QUESTIONS == len(rag["chats"])
    for i, (call, ex) in enumerate(zip(calls, rag["chats"], strict=True)):
        context = ex.request["messages"][0]["content"].split("Context:\n", 1)[1]
        given = [rag["docs"][t] for t in context.split("\n\n") if t]
        docs = json.loads(call["retrieved_docs"])
        where = f"{rag['inst']} call {i}"
        assert call["retrieved"] == len(given) == len(docs), where
        assert [d["content"] for d in docs] == [g["text"] for g in given], where
        assert [d["source"] for d in docs] == [g["source"] for g in given], where
        assert [d["id"] for d in docs] == [g["id"] for g in given], where
        assert call["retrieval_index"] == ("kb-v42" if i >= SWITCH else "kb-v41"), where
        assert call["embedding_model"] == "text-embedding-3-small", where
        assert call["retrieval_query"] == ex.request["messages"][-1]["content"], where
        assert call["retrieval_ms"] is not None and call["retrieval_ms"] > 0, where  # the retrieval's latency
        if given:
            assert 0.35 <= call["top_score"] <= 1.0 and call["doc_age_s"] > 0, where
        else:
            assert call["top_score"] is None, where
        # the retrieval span names the call it fed, and the call names the retrieval
        cur = rag["db"].cursor()
        fed = cur.execute("SELECT fed_span, kind FROM spans WHERE trace_id = ? AND span_id = ?",
                          [call["trace_id"], call["retrieval_span"]]).fetchone()
        assert fed == (call["span_id"], "retriever"), where


def test_a_store_api_pull_brings_the_retrievals_with_the_calls(rag):
    """langsmith://: the calls pulled from the runs API carry the same retrieval columns as the
    same runs loaded from the file (the retriever runs come along and are linked at load)."""
    if rag["api"] is None:
        pytest.skip("the store API is LangSmith's here")
    cols = "retrieved, top_score, retrieval_index, embedding_model, retrieval_query, retrieved_docs"
    here = rag["db"].cursor().execute(f"SELECT span_id, {cols} FROM spans WHERE kind = 'llm' AND "
                                      "retrieval_span IS NOT NULL ORDER BY span_id").fetchall()
    api = open_db(rag["api"], read_only=True)
    try:
        pulled = api.cursor().execute(f"SELECT span_id, {cols} FROM spans WHERE kind = 'llm' AND "
                                      "retrieval_span IS NOT NULL ORDER BY span_id").fetchall()
    finally:
        api.close()
    assert len(here) == QUESTIONS and pulled == here


def test_answers_from_an_empty_retrieval_are_one_filter(rag):
    db = rag["db"]
    empty = [ex for ex in rag["chats"] if not ex.request["messages"][0]["content"].split("Context:\n", 1)[1].strip()]
    assert len(empty) > SWITCH // 2  # the switch emptied most retrievals
    c = compile_filter(db.cursor(), "retrieved<1")
    got = db.cursor().execute(f"SELECT output_text FROM spans WHERE {c.where} AND retrieval_span IS NOT NULL",
                              c.params).fetchall()
    assert len(got) == len(empty) and {r[0] for r in got} == {REFUSAL}
    stats = measure(db.cursor(), "s.kind = 'llm' AND s.retrieval_span IS NOT NULL", [],
                    [METRICS["empty_retrieval_rate"], METRICS["docs_per_request"]])
    assert stats["empty_retrieval_rate"].x == len(empty) and stats["empty_retrieval_rate"].n == QUESTIONS


def test_the_index_switch_is_one_cause_with_its_effects(rag):
    found = changes(rag["db"].cursor())
    index = [c for c in found if c.kind == "new_retrieval_index"]
    assert len(index) == 1, [c.description for c in found]
    c = index[0]
    assert (c.before, c.after) == ("kb-v41", "kb-v42")
    effects = {e["metric"]: e for e in c.effects}
    assert effects["empty_retrieval_rate"]["after"] > 0.8 > effects["empty_retrieval_rate"]["before"]
    assert "docs_per_request" in effects and "output_length_mean" in effects
    assert found[0] is c  # nothing else changed: it is the top entry
    # its filter reproduces its calls
    cur = rag["db"].cursor()
    comp = compile_filter(cur, c.filter)
    assert cur.execute(f"SELECT count(*) FROM spans WHERE {comp.where}", comp.params).fetchone()[0] == c.affected_requests


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))

