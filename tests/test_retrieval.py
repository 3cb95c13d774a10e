"""Retrieval shapes that no library installed here writes, each built from the library's own
attributes (source cited per case); the link across load parts; the filter terms and metrics.

The real-library cases (OpenInference, OpenLLMetry, LangSmith, Langfuse over a LangChain retriever)
are tests/test_real_retrieval.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from oncall.ingest.formats.langfuse import observation_row
from oncall.ingest.formats.langsmith import run_row
from oncall.ingest.formats.otlp import build_row
from oncall.ingest.loader import load_paths
from oncall.ingest.retrieval import documents_from_value
from oncall.query.filters import FilterError, compile_filter, parse_filter
from oncall.query.registry import METRICS, Fold, measure
from oncall.store import open_db


def row(attrs: dict[str, Any], events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return build_row(trace_id="ab" * 16, span_id="cd" * 8, parent_id=None, name="span", span_kind="internal",
                     start_us=1_000_000, end_us=3_000_000, attrs=attrs, resource={}, scope_name=None,
                     events=events or [], status="ok", status_message=None, raw={})


def test_genai_retrieval_span():
    # open-telemetry/semantic-conventions-genai docs/gen-ai/retrieval.md: operation `retrieval`,
    # gen_ai.data_source.id, gen_ai.retrieval.query.text, gen_ai.retrieval.documents [{id, score}]
    r = row({"gen_ai.operation.name": "retrieval", "gen_ai.data_source.id": "H7STPQYOND",
             "gen_ai.retrieval.query.text": "refund policy",
             "gen_ai.retrieval.documents": json.dumps([{"id": "doc_123", "score": 0.95}, {"id": "doc_456",
                                                                                        "score": 0.87}])})
    assert r["kind"] == "retriever" and r["retrieval_index"] == "H7STPQYOND"
    assert (r["retrieved"], r["top_score"], r["retrieval_query"]) == (2, 0.95, "refund policy")
    assert [d["id"] for d in r["retrieved_docs"]] == ["doc_123", "doc_456"]


def test_genai_embeddings_span_names_its_model():
    r = row({"gen_ai.operation.name": "embeddings", "gen_ai.request.model": "text-embedding-3-large",
             "gen_ai.usage.input_tokens": 7})
    assert r["kind"] == "embedding" and r["embedding_model"] == "text-embedding-3-large"


def test_openllmetry_vector_store_query_with_result_events():
    # traceloop/openllmetry opentelemetry-instrumentation-chromadb: db.system=chroma, db.operation=query,
    # one `db.query.result` event per hit (semconv_ai Events / EventAttributes)
    events = [{"name": "db.query.result", "attributes": {
        "db.query.result.id": f"id{i}", "db.query.result.distance": 0.1 * (i + 1),
        "db.query.result.document": f"text {i}", "db.query.result.metadata": json.dumps({"source": f"s{i}.md"})}}
        for i in range(3)]
    r = row({"db.system": "chroma", "db.operation": "query", "db.chroma.query.n_results": 3,
             "db.collection.name": "kb", "db.vector.query.top_k": 3}, events)
    assert r["kind"] == "retriever" and r["retrieved"] == 3 and r["retrieval_index"] == "kb"
    assert [d["source"] for d in r["retrieved_docs"]] == ["s0.md", "s1.md", "s2.md"]
    assert "top_score" not in r  # distances are not scores
    assert r["retrieved_docs"][0]["distance"] == pytest.approx(0.1)


def test_openinference_retriever_without_documents_is_empty_and_versioned_index():
    # Arize-ai/openinference spec: a RETRIEVER span that found nothing writes no document keys
    r = row({"openinference.span.kind": "RETRIEVER", "input.value": "what changed?",
             "metadata": json.dumps({"index_name": "kb", "index_version": "v42"})})
    assert (r["kind"], r["retrieved"], r["retrieval_query"], r["retrieval_index"]) == (
        "retriever", 0, "what changed?", "kb@v42")


@pytest.mark.parametrize("value", [
    # LangChain Document, serialized (langchain-core load/serializable.py)
    {"documents": [{"lc": 1, "type": "constructor", "id": ["langchain", "schema", "document", "Document"],
                    "kwargs": {"page_content": "a", "metadata": {"source": "x.md", "score": 0.7}}}]},
    # LlamaIndex NodeWithScore (llama-index-core schema.py)
    [{"node": {"id_": "n1", "text": "a", "metadata": {"file_name": "x.md"}}, "score": 0.7}],
    # Chroma's column-wise query result
    {"ids": [["n1"]], "documents": [["a"]], "distances": [[0.3]], "metadatas": [[{"source": "x.md"}]]},
])
def test_document_shapes(value):
    docs = documents_from_value(value)
    assert len(docs) == 1 and docs[0]["content"] == "a"
    assert docs[0].get("source") == "x.md" or docs[0]["metadata"].get("file_name") == "x.md"


def test_langsmith_retriever_and_langfuse_retriever_observation():
    run = {"id": "r1", "trace_id": "t1", "run_type": "retriever", "name": "kb", "start_time": "2026-01-01T00:00:00Z",
           "end_time": "2026-01-01T00:00:01Z", "inputs": {"query": "q"},
           "outputs": {"documents": [{"page_content": "p", "metadata": {"id": "d1", "score": 0.5}, "type": "Document"}]},
           "extra": {"metadata": {"index": "kb-v1"}}}
    r = run_row(run)
    assert (r["kind"], r["retrieved"], r["top_score"], r["retrieval_index"], r["retrieval_query"]) == (
        "retriever", 1, 0.5, "kb-v1", "q")
    ob = {"id": "o1", "traceId": "t" * 32, "type": "RETRIEVER", "name": "kb", "startTime": "2026-01-01T00:00:00.000Z",
          "endTime": "2026-01-01T00:00:00.200Z", "input": "q", "output": [], "metadata": json.dumps({"index": "kb-v2"})}
    r = observation_row(ob, {"id": "t" * 32})
    assert (r["kind"], r["retrieved"], r["retrieval_index"]) == ("retriever", 0, "kb-v2")


# -- the link, across load parts ----------------------------------------------------------------------------
def _otlp(spans: list[dict[str, Any]]) -> str:
    return json.dumps({"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"spans": spans}]}]})


def _kv(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else
             {"doubleValue": v} if isinstance(v, float) else {"stringValue": str(v)}} for k, v in d.items()]


def _span(sid: str, name: str, t0: float, t1: float, attrs: dict[str, Any], parent: str | None = "a" * 16):
    ns = 1_767_225_600_000_000_000
    return {"traceId": "f" * 32, "spanId": sid, "parentSpanId": parent or "", "name": name,
            "startTimeUnixNano": str(ns + int(t0 * 1e9)), "endTimeUnixNano": str(ns + int(t1 * 1e9)),
            "attributes": _kv(attrs), "status": {"code": 1}}


def _retrieval_trace() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    docs = {f"retrieval.documents.{i}.document.{k}": v for i in range(2)
            for k, v in (("id", f"d{i}"), ("content", f"c{i}"), ("score", 0.8 - i / 10),
                         ("metadata", json.dumps({"updated_at": "2025-12-31T00:00:00Z"})))}
    rewrite = _span("1" * 16, "rewrite", 0.0, 0.5, {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m",
                                                     "gen_ai.usage.input_tokens": 3, "gen_ai.usage.output_tokens": 2})
    emb = _span("2" * 16, "embed", 0.6, 0.7, {"gen_ai.operation.name": "embeddings",
                                              "gen_ai.request.model": "text-embedding-3-small",
                                              "gen_ai.usage.input_tokens": 3})
    ret = _span("3" * 16, "search", 0.7, 0.9, {"openinference.span.kind": "RETRIEVER", "input.value": "q",
                                               "metadata": json.dumps({"index": "kb-v42"}), **docs})
    answer = _span("4" * 16, "answer", 1.0, 2.0, {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m",
                                                  "gen_ai.usage.input_tokens": 30, "gen_ai.usage.output_tokens": 9,
                                                  "gen_ai.output.messages": json.dumps(
                                                      [{"role": "assistant", "parts": [{"type": "text",
                                                                                        "content": "ok"}]}])})
    root = _span("a" * 16, "POST /ask", 0.0, 2.1, {"app.tenant": "acme"}, parent=None)
    return [root, rewrite, emb, ret], [answer]


@pytest.mark.parametrize("split", [False, True])
def test_the_call_after_a_retrieval_is_linked_even_from_a_later_load(tmp_path, split):
    first, second = _retrieval_trace()
    files = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    if split:  # a live receiver: the retrieval in one part, the call in the next
        files[0].write_text(_otlp(first) + "\n")
        files[1].write_text(_otlp(second) + "\n")
    else:
        files[0].write_text(_otlp(first + second) + "\n")
        files = files[:1]
    db = open_db(tmp_path / "i.duckdb")
    for f in files:
        load_paths(db, [str(f)])
    cur = db.cursor()
    rows = {r[0]: r[1:] for r in cur.execute(
        "SELECT name, retrieved, top_score, retrieval_index, embedding_model, retrieval_span, fed_span, "
        "doc_age_s, retrieval_query FROM spans ORDER BY name").fetchall()}
    assert rows["answer"][:6] == (2, 0.8, "kb-v42", "text-embedding-3-small", "3" * 16, None)
    assert rows["search"][3:6] == ("text-embedding-3-small", None, "4" * 16)
    assert rows["embed"][5] == "4" * 16  # the embedding span fed the same call
    assert rows["rewrite"][0] is None  # the query rewrite came before the retrieval: not fed by it
    assert rows["answer"][6] == pytest.approx(86400.7) and rows["answer"][7] == "q"  # a day old at the retrieval
    assert cur.execute("SELECT count(*) FROM spans").fetchone()[0] == 5  # superseded copies hidden
    db.close()


# -- filters and metrics -------------------------------------------------------------------------------------
def test_retrieval_filter_terms(tmp_path):
    first, second = _retrieval_trace()
    (tmp_path / "a.jsonl").write_text(_otlp(first + second) + "\n")
    db = open_db(tmp_path / "i.duckdb")
    load_paths(db, [str(tmp_path / "a.jsonl")])
    cur = db.cursor()

    def names(text: str) -> list[str]:
        c = compile_filter(cur, text)
        return sorted(r[0] for r in cur.execute(f"SELECT name FROM spans WHERE {c.where}", c.params).fetchall())

    assert names("retrieved>=1") == ["answer"] and names("retrieved<1") == []
    assert names("index=kb-v42") == names("retrieval_index=kb-v42") == ["answer"]
    assert names("embedding_model=text-embedding-3-small top_score>0.5") == ["answer"]
    assert names("doc=d1") == ["answer"] and names("doc=zz,d0") == ["answer"] and names("doc=zz") == []
    assert names("doc!=d1") == ["rewrite"] and names("doc~c1") == ["answer"]
    assert names("doc_age>12h") == ["answer"] and names("doc_age>2d") == []
    assert names("kind=retriever query~q") == ["search"]
    assert str(parse_filter("retrieval_index=kb-v42")) == "index=kb-v42"
    with pytest.raises(FilterError):
        parse_filter("doc>3")
    stats = measure(cur, "s.kind = 'llm'", [], [METRICS[n] for n in (
        "empty_retrieval_rate", "docs_per_request", "top_score_mean", "doc_age_mean", "retrieval_ms_mean")])
    assert (stats["empty_retrieval_rate"].n, stats["empty_retrieval_rate"].x) == (1, 0)
    assert stats["docs_per_request"].x == 2 and stats["top_score_mean"].x == pytest.approx(0.8)
    # the Python fold (replay results) reads the same definitions
    fold = Fold([METRICS["empty_retrieval_rate"]])
    for r in ({"kind": "llm", "retrieved": 0}, {"kind": "llm", "retrieved": 3}, {"kind": "llm"}):
        fold.add(r)
    s = fold.result()["empty_retrieval_rate"]
    assert (s.n, s.x) == (2, 1)
    db.close()


def test_retrievals_going_empty_with_no_version_change_are_a_cause_of_their_own(tmp_path):
    """A filter bug or a stale index under the same name: no version says what changed, so the shift
    in empty retrievals is itself the cause (with its effects on the answers it fed)."""
    from oncall.query.changes import changes

    ns0, n, spans = 1_767_225_600_000_000_000, 160, []
    for i in range(n):  # a request every 10 s for 27 min; from the middle on, every search comes back empty
        empty, t = i >= n // 2, i * 10.0

        def span(sid: str, name: str, a: float, b: float, attrs: dict[str, Any], parent: str = "a" * 16,
                 i: int = i, t: float = t) -> dict[str, Any]:
            return {"traceId": f"{i:032x}", "spanId": sid, "parentSpanId": parent, "name": name,
                    "startTimeUnixNano": str(ns0 + int((t + a) * 1e9)),
                    "endTimeUnixNano": str(ns0 + int((t + b) * 1e9)), "attributes": _kv(attrs), "status": {"code": 1}}

        docs = {} if empty else {f"retrieval.documents.{j}.document.{k}": v for j in range(2)
                                 for k, v in (("id", f"d{j}"), ("content", f"c{j}"), ("score", 0.8 - j / 10))}
        answer = "I don't know." if empty else "From the docs: c0"
        spans += [span("a" * 16, "POST /ask", 0, 2.1, {"app.tenant": "acme", "app.feature": "kb"}, parent=""),
                  span("3" * 16, "search", 0.1, 0.3, {"openinference.span.kind": "RETRIEVER", "input.value": "q",
                                                      "metadata": json.dumps({"index": "kb-v1"}), **docs}),
                  span("4" * 16, "answer", 0.4, 2.0, {
                      "gen_ai.operation.name": "chat", "gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 30,
                      "gen_ai.usage.output_tokens": 9, "gen_ai.output.messages": json.dumps(
                          [{"role": "assistant", "parts": [{"type": "text", "content": answer}]}])})]
    path = tmp_path / "spans.jsonl"
    path.write_text(json.dumps({"resourceSpans": [{"resource": {"attributes": []},
                                                   "scopeSpans": [{"spans": spans}]}]}) + "\n")
    db = open_db(tmp_path / "i.duckdb")
    try:
        assert not load_paths(db, [str(path)]).failed
        found = changes(db.cursor())
    finally:
        db.close()
    assert [c.kind for c in found][:1] == ["metric_shift"] and found[0].metric == "empty_retrieval_rate", \
        [c.description for c in found]
    assert not [c for c in found if c.kind == "new_retrieval_index"]
    assert found[0].after == 1.0 and "docs_per_request" in {e["metric"] for e in found[0].effects}


def test_a_file_with_no_retrieval_is_untouched(tmp_path):
    (tmp_path / "a.jsonl").write_text(_otlp([_span("4" * 16, "answer", 1.0, 2.0, {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 30,
        "gen_ai.usage.output_tokens": 9})]) + "\n")
    db = open_db(tmp_path / "i.duckdb")
    load_paths(db, [str(tmp_path / "a.jsonl")])
    assert db.cursor().execute("SELECT retrieved, retrieval_span FROM spans").fetchall() == [(None, None)]
    db.close()


def test_readme_documents_the_retrieval_keys():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for key in ("retrieved<1", "top_score<", "index=", "`embedding_model`", "doc=", "empty_retrieval_rate"):
        assert key in readme, key
