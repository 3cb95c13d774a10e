"""A chain of nested spans (an agent that keeps calling itself), written by the real OpenTelemetry SDK.

The spans come from a local TracerProvider (never the global one) through the official OTLP JSON
file exporter, the same files `oncall load` reads from a real deployment. Every `every`-th span
is a GenAI chat call with a response id `chatcmpl-deep-<depth>`; the deepest span is one too.
"""

from __future__ import annotations

from pathlib import Path

BASE_NS = 1_772_359_200_000_000_000  # 2026-03-01T10:00:00Z


def write_chain(out: Path, depth: int, *, every: int = 1000) -> list[int]:
    """Write `depth` spans, each the child of the one before; returns the depths of the chat calls."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.json.file import FileSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "deep-agent"}))
    provider.add_span_processor(BatchSpanProcessor(FileSpanExporter(str(out)), max_queue_size=depth + 1,
                                                     max_export_batch_size=2048))
    tracer = provider.get_tracer("deep-agent")
    chats = [d for d in range(depth) if d % every == every - 1 or d == depth - 1]
    chat_set = set(chats)
    spans = []
    ctx = None
    for d in range(depth):  # start each span inside the previous one: a chain, built without nesting calls
        name = "chat gpt-4o" if d in chat_set else ("agent.run" if d == 0 else f"agent.step {d}")
        span = tracer.start_span(name, context=ctx, start_time=BASE_NS + d * 1_000_000,
                                 kind=trace.SpanKind.CLIENT if d in chat_set else trace.SpanKind.INTERNAL)
        if d == 0:
            span.set_attribute("app.tenant", "deepco")
            span.set_attribute("app.request_id", "req-deep")
        if d in chat_set:
            span.set_attribute("gen_ai.operation.name", "chat")
            span.set_attribute("gen_ai.system", "openai")
            span.set_attribute("gen_ai.request.model", "gpt-4o")
            span.set_attribute("gen_ai.response.model", "gpt-4o-2024-11-20")
            span.set_attribute("gen_ai.response.id", f"chatcmpl-deep-{d}")
            span.set_attribute("gen_ai.usage.input_tokens", 120)
            span.set_attribute("gen_ai.usage.output_tokens", 40)
        spans.append(span)
        ctx = trace.set_span_in_context(span)
    for d in reversed(range(depth)):  # children end before their parents
        spans[d].end(end_time=BASE_NS + depth * 1_000_000 + (depth - d) * 1_000_000)
    provider.shutdown()
    return chats


def build_deep_db(db_path: Path, depth: int = 10_000) -> list[int]:
    """An incident database holding one `depth`-span chain, loaded by the real importer."""
    from oncall.ingest.loader import load_paths
    from oncall.store import open_db

    src = db_path.with_suffix(".otlp.jsonl")
    chats = write_chain(src, depth)
    store = open_db(db_path)
    try:
        rep = load_paths(store, [str(src)])
        assert rep.problems == [] and rep.spans_added == depth, (rep.problems[:3], rep.spans_added)
    finally:
        store.close()
    return chats
