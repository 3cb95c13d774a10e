"""An app's traffic as its real instrumentation exports it, for the drill on exporter data
(tests/tui/test_drill.py): the `openai` client under opentelemetry-instrumentation-openai-v2, each call
inside an application root span carrying the cohort keys (tenant, feature), spans written by the
official OTLP JSON file exporter. Run as a subprocess (the global tracer provider and the
instrumentor's patching stay out of the test process):

    python tests/drill_traffic.py --base-url http://127.0.0.1:PORT/v1 --out traces.jsonl --calls 60

Two features, as a support app has them: `support-bot` (a question, a prose answer) and `extract`
(an order message, JSON the app parses). The model asked for is `gpt-4o`; which snapshot answers is
the server's business (the test moves it between runs).
"""

from __future__ import annotations

import argparse
import os
import sys

QUESTIONS = ["How do I reset my password?", "Can I switch to annual billing?", "Why was I charged twice?",
             "How do I add a teammate?", "Where are my invoices?", "Is there an outage right now?"]
ORDERS = ["Order 24531 shipped yesterday, 42.50 EUR.", "Order 37915 is still pending, 18.00 USD.",
          "Order 79896 was delivered, 120.00 GBP.", "Order 24860 is on hold, 9.99 EUR."]
TENANTS = ["acme", "globex", "initech"]
EXTRACT_SYSTEM = "Extract the order as JSON with keys order_id, status, amount, currency. JSON only."
SUPPORT_SYSTEM = "You are a concise support assistant."


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--calls", type=int, default=60)
    ap.add_argument("--model", default="gpt-4o")
    ap.add_argument("--offset", type=int, default=0, help="where in the question rotation to start")
    args = ap.parse_args()
    os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"] = "gen_ai_latest_experimental"
    os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "span_only"
    import httpx2

    sys.modules.setdefault("httpx", httpx2)  # instrumentation-openai-v2 2.4b0 still imports httpx
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.json.file import FileSpanExporter
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "support-app"}))
    provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(args.out)))
    trace.set_tracer_provider(provider)
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    import openai

    client = openai.OpenAI(base_url=args.base_url, api_key="sk-test-not-a-real-key", max_retries=0)
    tracer = trace.get_tracer("support-app")
    for i in range(args.offset, args.offset + args.calls):
        feature = "extract" if i % 3 == 0 else "support-bot"
        system, user = ((EXTRACT_SYSTEM, ORDERS[i // 3 % len(ORDERS)]) if feature == "extract"
                        else (SUPPORT_SYSTEM, QUESTIONS[i % len(QUESTIONS)]))
        with tracer.start_as_current_span(f"POST /{feature}") as root:
            root.set_attribute("tenant", TENANTS[i % len(TENANTS)])
            root.set_attribute("feature", feature)
            client.chat.completions.create(model=args.model, temperature=0,
                                           messages=[{"role": "system", "content": system},
                                                     {"role": "user", "content": user}])
    provider.force_flush()
    provider.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
