"""An app's traffic as its real instrumentation exports it, for the drill on exporter data
(tests/tui/test_drill.py): the `openai` client under opentelemetry-instrumentation-openai-v2, each call
inside an application root span carrying the cohort keys (tenant, feature), spans written by the
official OTLP JSON file exporter. Run as a subprocess (the global tracer provider and the
instrumentor's patching stay out of the test process):

    python tests/drill_traffic.py --base-url http://127.0.0.1:PORT/v1 --out traces.jsonl --calls 60

Two features, as a support app has them: `support-bot` (a question, a prose answer; its root span
names the prompt version, `prompt.version`) and `extract` (an order message, JSON the app parses),
for three tenants. `--acme-prompt v13` puts tenant acme's support prompt on v13 (the help articles
pasted in). The model asked for is `gpt-4o`; which snapshot answers is the server's business (the
test moves it between runs).
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
# v13 pastes the help articles into the system prompt (the app's prompt registry names the version).
ARTICLES = " ".join(f"[KB-{n:03d}] " + "Settings, billing, invoices, members and keys are under the account menu."
                    for n in range(12))
PROMPTS = {"v12": SUPPORT_SYSTEM, "v13": f"{SUPPORT_SYSTEM} Use the help articles below. {ARTICLES}"}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--calls", type=int, default=60)
    ap.add_argument("--model", default="gpt-4o")
    ap.add_argument("--offset", type=int, default=0, help="where in the question rotation to start")
    ap.add_argument("--acme-prompt", default="v12", choices=sorted(PROMPTS),
                    help="the support prompt version tenant acme is on (the others stay on v12)")
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
        feature, tenant = ("extract" if i % 3 == 0 else "support-bot"), TENANTS[i // 3 % len(TENANTS)]
        version = args.acme_prompt if tenant == "acme" else "v12"
        system, user = ((EXTRACT_SYSTEM, ORDERS[i // 3 % len(ORDERS)]) if feature == "extract"
                        else (PROMPTS[version], QUESTIONS[i % len(QUESTIONS)]))
        with tracer.start_as_current_span(f"POST /{feature}") as root:
            root.set_attribute("tenant", tenant)
            root.set_attribute("feature", feature)
            if feature == "support-bot":
                root.set_attribute("prompt.version", version)
            client.chat.completions.create(model=args.model, temperature=0,
                                           messages=[{"role": "system", "content": system},
                                                     {"role": "user", "content": user}])
    provider.force_flush()
    provider.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
