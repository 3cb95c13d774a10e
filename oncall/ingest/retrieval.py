"""Retrieval and embedding spans to canonical retrieval columns, for every format.

A retrieval step is a span that searched an index and returned documents: OpenInference
`RETRIEVER` spans, OpenLLMetry's vector-store spans, GenAI `retrieval` operations, LangSmith
`retriever` runs, Langfuse `retriever` observations. An embedding span (`EMBEDDING`,
`embeddings`) says which model turned the query into a vector. This module reads them into:

| column | what |
|---|---|
| retrieval_query | the query text |
| retrieved_docs | the documents returned, in rank order: `[{id, score, distance, content, source, updated_at, metadata}]` (content cut to an excerpt) |
| retrieved | how many documents came back (0: an empty retrieval) |
| top_score | the best relevance score (higher is better; distances are kept apart, never mixed in) |
| embedding_model | the model that embedded the query |
| retrieval_index | the index or collection searched (`name@version` when the span says both) |
| doc_age_s | the age of the newest dated document at the retrieval's start (set with the link) |

One function per input shape, used by every importer: `from_attributes` (OTel-family flat
attributes, called by `mapping.map_attributes`), `from_records` (LangSmith runs, Langfuse
observations: a query and documents as JSON values). The link to the LLM call a retrieval fed is
made when a load finishes (`oncall.ingest.retrieval_link`), where a whole trace is visible.

The key tables are data (RETRIEVAL_KEYS), as mapping.CANDIDATE_KEYS: an engine deriving these
columns in its own SQL reads the same lists.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from oncall.ingest.decode import coerce_float, json_deep_loads, to_epoch_us

EXCERPT_CHARS = 400  # a document's content is kept as an excerpt: enough to read, not the corpus
MAX_DOCS = 50  # documents kept per retrieval (the count is exact; the list is capped)
MAX_META_KEYS = 12

# Where apps and libraries name the index, its version and the embedding model (first present wins).
_APP_PREFIXES = ("", "metadata.", "langsmith.metadata.", "traceloop.association.properties.",
                 "langfuse.observation.metadata.", "langfuse.trace.metadata.", "ai.telemetry.metadata.")


def _under(*names: str) -> tuple[str, ...]:
    return tuple(p + n for p in _APP_PREFIXES for n in names)


_INDEX_KEYS = ("gen_ai.data_source.id", "db.collection.name", "db.vector.index", "db.vector.collection",
               "retrieval.index", "vector_store.index", "db.namespace") + _under(
                   "retrieval.index", "index", "index_name", "index.name", "vector_index", "collection",
                   "collection_name", "ls_index_name")
_INDEX_VERSION_KEYS = _under("index_version", "index.version", "retrieval.index_version", "collection_version")
_EMBEDDING_MODEL_KEYS = ("embedding.model_name", "gen_ai.embeddings.model", "db.vector.embedding.model") + _under(
    "embedding_model", "embedding.model", "embedding_model_name", "embed_model", "ls_embedding_model")
_QUERY_KEYS = ("gen_ai.retrieval.query.text", "gen_ai.retrieval.query", "retrieval.query", "db.vector.query.text",
               "db.query.text.vector", "retriever.query")
# A retriever's whole input and output as the dialects record them (OpenInference, Langfuse SDK,
# OpenLLMetry's task spans, MLflow).
_RAW_INPUT_KEYS = ("input.value", "langfuse.observation.input", "traceloop.entity.input", "mlflow.spanInputs")
_RAW_OUTPUT_KEYS = ("output.value", "langfuse.observation.output", "traceloop.entity.output", "mlflow.spanOutputs")
_DOCS_JSON_KEYS = ("gen_ai.retrieval.documents", "retrieval.documents", "db.vector.query.result")

RETRIEVAL_KEYS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "retrieval_index": _INDEX_KEYS, "index_version": _INDEX_VERSION_KEYS,
    "embedding_model": _EMBEDDING_MODEL_KEYS, "retrieval_query": _QUERY_KEYS,
})
# OpenInference's flattened document lists: `retrieval.documents.N.document.{id,content,score,metadata}`.
DOC_FAMILIES = ("retrieval.documents",)
_DOC_RE = re.compile(r"^retrieval\.documents\.(\d+)\.document\.(.+)$")
# OpenLLMetry vector-store spans put each hit on a span event (`db.query.result`,
# `db.<vendor>.query.result`) with `<event>.id` / `.distance` / `.score` / `.document` / `.metadata`.
_RESULT_EVENT_RE = re.compile(r"^db\.(?:[a-z0-9_]+\.)?(?:query|search)\.result$")
# Vector stores OpenLLMetry names in `db.system` (a query there is a retrieval).
VECTOR_SYSTEMS = frozenset({"chroma", "chromadb", "pinecone", "qdrant", "weaviate", "milvus", "lancedb", "marqo",
                            "pgvector", "redis", "elasticsearch", "opensearch", "mongodb_atlas", "faiss"})

# ... of those, the ones whose OpenLLMetry instrumentation writes a result event per hit (none: empty).
RESULT_EVENT_SYSTEMS = frozenset({"chroma", "chromadb", "pinecone", "milvus", "marqo"})
# A vendor's own name for the collection searched (OpenLLMetry Qdrant: `qdrant.search.collection_name`).
_VENDOR_COLLECTION_RE = re.compile(r"^([a-z0-9_]+)\.[a-z_]+\.collection_name$")

_SOURCE_KEYS = ("source", "url", "file_path", "file_name", "filename", "path", "document_source", "doc_source",
                "source_url", "title")
_DATE_KEYS = ("updated_at", "updatedAt", "last_modified", "last_modified_date", "lastModified", "modified",
              "modified_at", "last_updated", "date", "created_at", "createdAt", "creation_date", "published_at",
              "timestamp")
_SCORE_KEYS = ("score", "relevance_score", "similarity", "similarity_score", "_score", "@search.score")
_DISTANCE_KEYS = ("distance", "_distance")
_ID_KEYS = ("id", "doc_id", "document_id", "id_", "chunk_id", "node_id", "_id")


# -- one document --------------------------------------------------------------------------------------
def document(*, doc_id: Any = None, content: Any = None, score: Any = None, distance: Any = None,
             metadata: Any = None) -> dict[str, Any]:
    """A canonical document: the fields a responder reads (id, score, source, date, excerpt)."""
    md = json_deep_loads(metadata) if isinstance(metadata, str) else metadata
    md = md if isinstance(md, dict) else {}
    if doc_id in (None, ""):
        doc_id = next((md[k] for k in _ID_KEYS if md.get(k) not in (None, "")), None)
    if score is None:
        score = next((md[k] for k in _SCORE_KEYS if md.get(k) is not None), None)
    if distance is None:
        distance = next((md[k] for k in _DISTANCE_KEYS if md.get(k) is not None), None)
    out: dict[str, Any] = {}
    if doc_id not in (None, ""):
        out["id"] = str(doc_id)
    s = coerce_float(score)
    if s is not None and s == s:  # NaN is not a score
        out["score"] = s
    d = coerce_float(distance)
    if d is not None and d == d:
        out["distance"] = d
    if content not in (None, ""):
        text = content if isinstance(content, str) else str(content)
        out["content"] = text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…"
    source = next((md[k] for k in _SOURCE_KEYS if md.get(k) not in (None, "")), None)
    if source is not None:
        out["source"] = str(source)
    dated = next((md[k] for k in _DATE_KEYS if md.get(k) not in (None, "")), None)
    if dated is not None:
        out["updated_at"] = _iso(dated)
    small = {k: v for k, v in md.items() if isinstance(v, (str, int, float, bool)) and
             (not isinstance(v, str) or len(v) <= 200)}
    if small:
        out["metadata"] = dict(list(small.items())[:MAX_META_KEYS])
    return out


def document_from_value(v: Any) -> dict[str, Any] | None:
    """One document from the JSON shapes libraries write: a LangChain Document (plain or serialized
    `{"lc": 1, "kwargs": {...}}`), a LlamaIndex NodeWithScore (`{"node": {...}, "score"}`), a GenAI
    `{id, score, content}` object, or plain text."""
    if isinstance(v, str):
        return document(content=v) if v else None
    if not isinstance(v, dict):
        return None
    if isinstance(v.get("kwargs"), dict) and v.get("lc") is not None:  # a serialized LangChain Document
        v = {**v["kwargs"], "id": v["kwargs"].get("id")}
    if isinstance(v.get("node"), dict):  # LlamaIndex NodeWithScore
        node = v["node"]
        return document(doc_id=node.get("id_") or node.get("node_id") or node.get("id"),
                        content=node.get("text") if node.get("text") is not None else node.get("content"),
                        score=v.get("score"), metadata=node.get("metadata"))
    content = next((v[k] for k in ("page_content", "content", "text", "document", "pageContent", "chunk")
                    if v.get(k) not in (None, "")), None)
    return document(doc_id=next((v[k] for k in _ID_KEYS if v.get(k) not in (None, "")), None), content=content,
                    score=next((v[k] for k in _SCORE_KEYS if v.get(k) is not None), None),
                    distance=next((v[k] for k in _DISTANCE_KEYS if v.get(k) is not None), None),
                    metadata=v.get("metadata"))


def documents_from_value(value: Any) -> list[dict[str, Any]] | None:
    """The documents in a retriever's output, or None when the value holds no document list.

    `{"documents": [...]}` (LangChain/LangSmith), a bare list, `{"nodes"|"source_nodes"|"results"|
    "hits"|"matches": [...]}`, Chroma's column-wise `{"ids": [[...]], "documents": [[...]],
    "distances": [[...]], "metadatas": [[...]]}`."""
    v = json_deep_loads(value) if isinstance(value, str) else value
    if isinstance(v, dict):
        if isinstance(v.get("ids"), list) and isinstance(v.get("documents", v.get("distances")), list):
            return _columnwise(v)
        for k in ("documents", "docs", "nodes", "source_nodes", "results", "hits", "matches", "output", "context"):
            if isinstance(v.get(k), list):
                return documents_from_value(v[k])
        return None
    if not isinstance(v, list):
        return None
    if len(v) == 1 and isinstance(v[0], list):  # batched output: one query's results
        v = v[0]
    docs = [d for d in (document_from_value(x) for x in v[:MAX_DOCS] if not isinstance(x, list)) if d]
    if v and not docs:
        return None  # a list of something else (messages, numbers): not documents
    return docs


def _columnwise(v: dict[str, Any]) -> list[dict[str, Any]]:
    def col(name: str) -> list[Any]:
        c = v.get(name)
        if isinstance(c, list) and c and isinstance(c[0], list):
            c = c[0]
        return c if isinstance(c, list) else []

    ids, texts, dists, mds = col("ids"), col("documents"), col("distances"), col("metadatas")
    return [document(doc_id=ids[i] if i < len(ids) else None, content=texts[i] if i < len(texts) else None,
                     distance=dists[i] if i < len(dists) else None, metadata=mds[i] if i < len(mds) else None)
            for i in range(min(max(len(ids), len(texts)), MAX_DOCS))]


def query_from_value(value: Any) -> str | None:
    """A retriever's query from its input: text, `{"query"|"input"|"question"|"query_str": ...}`,
    a LlamaIndex QueryBundle."""
    v = json_deep_loads(value) if isinstance(value, str) else value
    if isinstance(v, str):
        return v or None
    if isinstance(v, dict):
        for k in ("query", "query_str", "input", "question", "text", "q", "search_query"):
            got = v.get(k)
            if isinstance(got, str) and got:
                return got
            if isinstance(got, dict):
                inner = query_from_value(got)
                if inner:
                    return inner
    if isinstance(v, list) and len(v) == 1:
        return query_from_value(v[0])
    return None


# -- a span's columns ----------------------------------------------------------------------------------
def summarize(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """retrieved, top_score and the kept list from a span's documents. (doc_age_s needs the span's
    start and is computed with the link, in SQL, from the documents' ISO `updated_at`.)"""
    out: dict[str, Any] = {"retrieved": len(docs), "retrieved_docs": docs[:MAX_DOCS]}
    scores = [d["score"] for d in docs if "score" in d]
    if scores:
        out["top_score"] = max(scores)
    return out


def _iso(value: Any) -> str:
    """A document date as ISO-8601 UTC when it reads as a time (so SQL can age it), else as written."""
    us = to_epoch_us(value)
    if us is None:
        return str(value)
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).isoformat().replace("+00:00", "Z")


def _first(view: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for k in keys:
        v = view.get(k)
        if v not in (None, "", []):
            return v
    return None


def _text(v: Any) -> str | None:
    if v in (None, ""):
        return None
    if isinstance(v, (list, tuple)):
        v = v[0] if len(v) == 1 else ",".join(str(x) for x in v)
    s = str(v)
    if len(s) >= 2 and s[0] == s[-1] == '"':  # JSON-encoded string (MLflow, Langfuse v5 metadata)
        d = json_deep_loads(s)
        s = d if isinstance(d, str) else s
    return s or None


def index_name(view: Mapping[str, Any]) -> str | None:
    name = _text(_first(view, _INDEX_KEYS)) or _text(next(
        (v for k, v in view.items() if (m := _VENDOR_COLLECTION_RE.match(k)) and m.group(1) in VECTOR_SYSTEMS), None))
    version = _text(_first(view, _INDEX_VERSION_KEYS))
    if name and version and version not in name:
        return f"{name}@{version}"
    return name or version


def _openinference_docs(attrs: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    items: dict[int, dict[str, Any]] = {}
    for k, v in attrs.items():
        if k.startswith("retrieval.documents."):
            m = _DOC_RE.match(k)
            if m:
                items.setdefault(int(m.group(1)), {})[m.group(2)] = v
    if not items:
        return None
    return [document(doc_id=it.get("id"), content=it.get("content"), score=it.get("score"),
                     metadata=it.get("metadata")) for _, it in sorted(items.items())][:MAX_DOCS]


def _event_docs(events: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    docs = []
    seen = False
    for ev in events or ():
        name = str(ev.get("name") or "")
        if not _RESULT_EVENT_RE.match(name):
            continue
        seen = True
        a = ev.get("attributes") or {}

        def get(field: str, a: Mapping[str, Any] = a, name: str = name) -> Any:
            return next((a[k] for k in (f"{name}.{field}", f"db.query.result.{field}", field) if k in a), None)

        content = get("document")
        doc = document(doc_id=get("id"), content=content if content is not None else get("entity"),
                       score=get("score"), distance=get("distance"), metadata=get("metadata"))
        if doc:
            docs.append(doc)
    return docs if seen else None


def _results_unrecorded(view: Mapping[str, Any]) -> bool:
    """A vector-store span whose instrumentation never records what came back (OpenLLMetry's Qdrant
    spans: collection and top_k only): no result is not an empty retrieval there, the count is unknown."""
    system = str(view.get("db.system") or view.get("db.system.name") or "").lower()
    return is_vector_query(view) and system not in RESULT_EVENT_SYSTEMS and "openinference.span.kind" not in view


def is_vector_query(view: Mapping[str, Any]) -> bool:
    """An OpenLLMetry vector-store span: `db.system` names a vector store and the span is a query."""
    system = str(view.get("db.system") or view.get("db.system.name") or "").lower()
    if system not in VECTOR_SYSTEMS:
        return False
    op = str(view.get("db.operation") or view.get("db.operation.name") or "").lower()
    return any(k.startswith("db.vector.query.") for k in view) or op in ("query", "search", "similarity_search",
                                                                        "knn", "get_nearest_neighbors")


def from_attributes(view: Mapping[str, Any], attrs: Mapping[str, Any], events: list[dict[str, Any]] | None, *,
                    kind: str | None, model: str | None) -> dict[str, Any]:
    """The retrieval columns of one OTel-family span (flat attributes; `view` holds the nested
    metadata keys too). `kind` is the span's canonical kind; `model` its model column (an embedding
    span's model is its embedding model)."""
    out: dict[str, Any] = {}
    if kind == "embedding":
        emb = _text(_first(view, _EMBEDDING_MODEL_KEYS)) or model
        if emb:
            out["embedding_model"] = emb
        text = _first(view, ("embedding.embeddings.0.embedding.text",))
        if text is not None:
            out["retrieval_query"] = _text(text)
        return out
    docs = _openinference_docs(attrs)
    if docs is None:
        raw = _first(view, _DOCS_JSON_KEYS)
        docs = documents_from_value(raw) if raw is not None else None
    if docs is None:
        docs = _event_docs(events)
    retrieving = kind == "retriever" or docs is not None or is_vector_query(view)
    if not retrieving:
        return out
    if docs is None and kind == "retriever":
        raw = _first(view, _RAW_OUTPUT_KEYS)
        docs = documents_from_value(raw) if raw is not None else None
    if docs is None and not _results_unrecorded(view):
        docs = []  # a retrieval that returned nothing: OpenInference and OpenLLMetry write no document keys
    if docs is not None:
        out.update(summarize(docs))
    query = _first(view, _QUERY_KEYS)
    if query is None and kind == "retriever":
        raw = _first(view, _RAW_INPUT_KEYS)
        query = query_from_value(raw) if raw is not None else None
    if query is not None:
        out["retrieval_query"] = _text(query)
    index = index_name(view)
    if index:
        out["retrieval_index"] = index
    emb = _text(_first(view, _EMBEDDING_MODEL_KEYS))
    if emb:
        out["embedding_model"] = emb
    return out


def from_records(kind: str | None, inputs: Any, outputs: Any, metadata: Mapping[str, Any] | None, *,
                 model: str | None = None, output_captured: bool = True) -> dict[str, Any]:
    """The retrieval columns of a record-format run or observation (LangSmith, Langfuse, Opik…):
    its kind, raw input and output values, and its metadata (index, embedding model)."""
    md = {f"metadata.{k}": v for k, v in (metadata or {}).items()}
    if kind == "embedding":
        emb = _text(_first(md, _EMBEDDING_MODEL_KEYS)) or model
        out: dict[str, Any] = {"embedding_model": emb} if emb else {}
        q = query_from_value(inputs)
        if q is not None:
            out["retrieval_query"] = q
        return out
    if kind != "retriever":
        return {}
    docs = documents_from_value(outputs)
    if docs is None and output_captured:
        docs = []  # it answered, with no document list: an empty retrieval
    out = summarize(docs) if docs is not None else {}
    q = query_from_value(inputs)
    if q is not None:
        out["retrieval_query"] = q
    index = index_name(md)
    if index:
        out["retrieval_index"] = index
    emb = _text(_first(md, _EMBEDDING_MODEL_KEYS))
    if emb:
        out["embedding_model"] = emb
    return out
