"""A small RAG app over Qdrant (qdrant-client's local in-memory mode) and the OpenAI client, traced
by OpenLLMetry's own instrumentations (opentelemetry-instrumentation-qdrant and -openai) writing
OTLP JSON through the official file exporter.

Run from .envs/rag-qdrant (.ci/setup-retrieval.sh) by tests/test_real_retrieval.py:

    python tests/gen_qdrant_rag.py --docs DOCS.json --questions Q.json --base-url http://127.0.0.1:PORT/v1 \\
        --out FILE [--switch-at N]

Vectors are hashed bags of words (the "small" model); collection kb-v42 was rebuilt with another
hashing (the "large" model) while queries still use the small one, so after `--switch-at`
questions the app's searches find nothing above the score threshold and the model answers from
an empty context. OpenLLMetry's Qdrant spans record the collection and top_k, never the hits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os

DIM, THRESHOLD, K = 64, 0.35, 3


def vec(text: str, salt: str = "") -> list[float]:
    v = [0.0] * DIM
    for w in text.lower().replace("?", " ").replace(".", " ").split():
        v[int(hashlib.sha256((salt + w).encode()).hexdigest(), 16) % DIM] += 1.0
    return v


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", required=True)
    ap.add_argument("--questions", required=True)
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--switch-at", type=int, default=10**9)
    args = ap.parse_args()
    os.environ["OPENAI_API_KEY"] = "sk-test-not-a-real-key"
    os.environ["TRACELOOP_TRACE_CONTENT"] = "true"

    from opentelemetry import trace
    from opentelemetry.exporter.otlp.json.file import FileSpanExporter
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor
    from opentelemetry.instrumentation.qdrant import QdrantInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "kb-bot", "service.version": "1.4.0"}))
    provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(args.out)))
    trace.set_tracer_provider(provider)
    QdrantInstrumentor().instrument(tracer_provider=provider)
    OpenAIInstrumentor().instrument(tracer_provider=provider)

    from openai import OpenAI
    from qdrant_client import QdrantClient, models

    with open(args.docs, encoding="utf-8") as f:
        docs = json.load(f)
    with open(args.questions, encoding="utf-8") as f:
        questions = json.load(f)
    db = QdrantClient(":memory:")
    for name, salt in (("kb-v41", ""), ("kb-v42", "large:")):
        db.create_collection(name, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE))
        db.upsert(name, points=[models.PointStruct(id=i, vector=vec(d["text"], salt), payload=d)
                                for i, d in enumerate(docs)])
    llm = OpenAI(base_url=args.base_url)
    tracer = trace.get_tracer("kb-bot")
    for i, q in enumerate(questions):
        index = "kb-v42" if i >= args.switch_at else "kb-v41"
        with tracer.start_as_current_span("answer_question", attributes={
                "app.tenant": q["tenant"], "app.feature": "kb-answers", "session.id": q["session"]}):
            hits = db.query_points(index, query=vec(q["question"]), limit=K, score_threshold=THRESHOLD).points
            context = "\n\n".join(h.payload["text"] for h in hits)
            llm.chat.completions.create(model="gpt-4o-mini", temperature=0, messages=[
                {"role": "system", "content": "Answer only from the context below. If it is empty, say you do not "
                                              f"know.\nContext:\n{context}"},
                {"role": "user", "content": q["question"]}])
    provider.force_flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
