"""A small RAG app over LangChain's in-memory vector store, traced by a real instrumentation library.

Run from .envs/rag-langchain (.ci/setup-retrieval.sh) by tests/test_real_retrieval.py:

    python tests/gen_rag.py --docs DOCS.json --questions Q.json --base-url http://127.0.0.1:PORT/v1 \\
        --instrument openinference|openllmetry|langsmith|langfuse --out FILE [--endpoint URL] [--switch-at N]

The app: the documents the test wrote are embedded through `langchain-openai`'s OpenAIEmbeddings
(the loopback server's /v1/embeddings: hashed bags of words per model) into an InMemoryVectorStore;
each question goes retriever -> prompt with the retrieved context -> ChatOpenAI (the loopback
server) in one LCEL chain, run with the app's metadata (tenant, feature, and the index it reads).
The retriever keeps the store's relevance score and the document id in each document's metadata,
as production retrievers do (a stock VectorStoreRetriever drops both).

After `--switch-at` questions the app moves to index kb-v42, which was rebuilt with
text-embedding-3-large while the query side still embeds with text-embedding-3-small: the classic
half-done migration. Its neighbours no longer match, most fall under the score threshold, and the
model answers from an empty context.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

SMALL, LARGE = "text-embedding-3-small", "text-embedding-3-large"
THRESHOLD = 0.35


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", required=True)
    ap.add_argument("--questions", required=True)
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--instrument", required=True, choices=["openinference", "openllmetry", "langsmith", "langfuse"])
    ap.add_argument("--out", help="OTLP JSON Lines file (openinference, openllmetry)")
    ap.add_argument("--endpoint", help="LangSmith or Langfuse endpoint (loopback)")
    ap.add_argument("--switch-at", type=int, default=10**9)
    args = ap.parse_args()
    os.environ["OPENAI_API_KEY"] = "sk-test-not-a-real-key"
    flush = instrument(args)

    from langchain_core.documents import Document
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.runnables import RunnablePassthrough
    from langchain_core.vectorstores import InMemoryVectorStore
    from langchain_openai import ChatOpenAI, OpenAIEmbeddings

    class ScoredRetriever(BaseRetriever):
        """Top-k above a relevance threshold, with the score and id kept in each document's metadata."""
        store: InMemoryVectorStore
        k: int = 3
        threshold: float = THRESHOLD

        def _get_relevant_documents(self, query: str, *, run_manager: object = None) -> list[Document]:
            hits = self.store.similarity_search_with_score(query, k=self.k)  # cosine similarity
            return [Document(id=d.id, page_content=d.page_content, metadata={**d.metadata, "id": d.id, "score": s})
                    for d, s in hits if s >= self.threshold]

    with open(args.docs, encoding="utf-8") as f:
        docs = [Document(id=d["id"], page_content=d["text"],
                         metadata={"source": d["source"], "updated_at": d["updated_at"]}) for d in json.load(f)]
    with open(args.questions, encoding="utf-8") as f:
        questions = json.load(f)

    def embeddings(model: str) -> OpenAIEmbeddings:
        return OpenAIEmbeddings(model=model, base_url=args.base_url, check_embedding_ctx_length=False)

    query_side = embeddings(SMALL)  # the query service's embedder: never migrated
    v41 = InMemoryVectorStore(query_side)
    v41.add_documents(docs)
    v42 = InMemoryVectorStore(query_side)
    v42.add_texts([d.page_content for d in docs], metadatas=[d.metadata for d in docs], ids=[d.id for d in docs])
    # kb-v42 was rebuilt by the indexer with the large model: its stored vectors are the large model's.
    large = embeddings(LARGE)
    for d in docs:
        v42.store[d.id]["vector"] = large.embed_query(d.page_content)

    llm = ChatOpenAI(model="gpt-4o-mini", base_url=args.base_url, temperature=0)
    prompt = ChatPromptTemplate.from_messages([
        ("system", "Answer only from the context below. If it is empty, say you do not know.\nContext:\n{context}"),
        ("human", "{question}")])

    def chain_for(store: InMemoryVectorStore, index: str):  # noqa: ANN202
        retriever = ScoredRetriever(store=store).with_config(
            metadata={"index": index, "embedding_model": SMALL}, run_name="kb_search")
        fmt = (lambda ds: "\n\n".join(d.page_content for d in ds))  # noqa: E731
        return {"context": retriever | fmt, "question": RunnablePassthrough()} | prompt | llm | StrOutputParser()

    for i, q in enumerate(questions):
        index, store = ("kb-v42", v42) if i >= args.switch_at else ("kb-v41", v41)
        chain_for(store, index).invoke(q["question"], config={
            "run_name": "answer_question",
            "metadata": {"tenant": q["tenant"], "feature": "kb-answers", "session_id": q["session"]},
            "callbacks": HANDLERS})
    flush()
    return 0


def instrument(args: argparse.Namespace):  # noqa: ANN201
    """Set up the chosen library's tracing; returns what flushes it at the end."""
    if args.instrument in ("openinference", "openllmetry"):
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.json.file import FileSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": "kb-bot", "service.version": "1.4.0"}))
        provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(args.out)))
        trace.set_tracer_provider(provider)
        if args.instrument == "openinference":
            from openinference.instrumentation.langchain import LangChainInstrumentor

            LangChainInstrumentor().instrument(tracer_provider=provider)
        else:
            os.environ["TRACELOOP_TRACE_CONTENT"] = "true"
            from opentelemetry.instrumentation.langchain import LangchainInstrumentor
            from opentelemetry.instrumentation.openai import OpenAIInstrumentor

            LangchainInstrumentor().instrument(tracer_provider=provider)
            OpenAIInstrumentor().instrument(tracer_provider=provider)
        return provider.force_flush
    if args.instrument == "langsmith":
        os.environ.update({"LANGSMITH_TRACING": "true", "LANGSMITH_ENDPOINT": args.endpoint,
                           "LANGSMITH_API_KEY": "lsv2-test-not-a-real-key", "LANGSMITH_PROJECT": "kb-bot"})
        from langchain_core.tracers.langchain import wait_for_all_tracers

        return wait_for_all_tracers
    if args.instrument == "langfuse":
        os.environ.update({"LANGFUSE_PUBLIC_KEY": "pk-lf-test", "LANGFUSE_SECRET_KEY": "sk-lf-test-not-real",
                           "LANGFUSE_HOST": args.endpoint, "LANGFUSE_BASE_URL": args.endpoint})
        from langfuse import get_client
        from langfuse.langchain import CallbackHandler

        handler = CallbackHandler()
        HANDLERS.append(handler)
        client = get_client()

        def flush() -> None:
            client.flush()
            client.shutdown()

        return flush
    raise SystemExit(f"unknown instrumentation {args.instrument}")


HANDLERS: list[object] = []  # callback handlers the chain runs with (Langfuse's is passed per call)


if __name__ == "__main__":
    sys.exit(main())
