"""Run the scenario under OpenInference into a real Phoenix server, then export what Phoenix holds.

Run from .envs/fmt-phoenix (.ci/setup-formats.sh) by tests/test_real_formats.py:

    python tests/gen_phoenix.py --base-url http://127.0.0.1:PORT/v1 --phoenix http://127.0.0.1:6006 --out DIR

The server (`phoenix serve`, SQLite in a temporary working directory) is started by the test. Writes
into DIR what a responder would take out of Phoenix: `spans.json` (the REST API's span JSON,
`phoenix.client` `spans.get_spans`), `spans_otlp.json` (the `/spans/otlpv1` OTLP form), `spans.parquet` (the spans dataframe, `get_spans_dataframe()`
saved with `DataFrame.to_parquet`, as the Phoenix docs show) and `truth.json` (ids the
instrumentation exported, read from the in-process span exporter).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import instrumented_calls as calls

PROJECT = "support-bot"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--phoenix", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    import openai
    from openinference.instrumentation.openai import OpenAIInstrumentor
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot",
                                                        "openinference.project.name": PROJECT}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(f"{args.phoenix}/v1/traces")))
    mem = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(mem))
    trace.set_tracer_provider(provider)
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    client = openai.OpenAI(base_url=args.base_url, api_key="sk-test-not-a-real-key", max_retries=0)
    tracer = trace.get_tracer("support-bot")
    with tracer.start_as_current_span("support_ticket") as root:
        root.set_attribute("openinference.span.kind", "CHAIN")
        root.set_attribute("session.id", calls.SESSION_ID)
        root.set_attribute("user.id", calls.USER_ID)
        root.set_attribute("metadata", json.dumps({"tenant": calls.TENANT, "feature": calls.FEATURE,
                                                   "prompt_version": calls.PROMPT_VERSION}))
        calls.run_calls(client, openai.RateLimitError)
    provider.force_flush()
    truth = [{"trace_id": format(s.context.trace_id, "032x"), "span_id": format(s.context.span_id, "016x"),
              "parent_id": format(s.parent.span_id, "016x") if s.parent else None, "name": s.name,
              "start_ns": s.start_time, "end_ns": s.end_time} for s in mem.get_finished_spans()]

    from phoenix.client import Client

    px = Client(base_url=args.phoenix)
    deadline = time.monotonic() + 60
    spans: list = []
    while time.monotonic() < deadline:  # the server ingests asynchronously
        spans = px.spans.get_spans(project_identifier=PROJECT, limit=1000)
        if len(spans) >= len(truth):
            break
        time.sleep(0.5)
    assert len(spans) == len(truth), (len(spans), len(truth))
    df = px.spans.get_spans_dataframe(project_identifier=PROJECT, limit=1000)
    import urllib.request

    with urllib.request.urlopen(f"{args.phoenix}/v1/projects/{PROJECT}/spans/otlpv1?limit=1000") as resp:
        otlp = resp.read()
    out = args.out.rstrip("/")
    with open(f"{out}/spans.json", "w", encoding="utf-8") as fh:
        json.dump({"data": spans}, fh, default=str)
    df.to_parquet(f"{out}/spans.parquet")
    with open(f"{out}/spans_otlp.json", "wb") as fh:
        fh.write(otlp)
    with open(f"{out}/truth.json", "w", encoding="utf-8") as fh:
        json.dump(truth, fh)
    print(f"{len(spans)} spans; dataframe columns: {list(df.columns)}; index: {df.index.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
