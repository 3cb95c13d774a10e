"""Live LLM traffic for the receive/watch tests: the `openai` client under opentelemetry-instrumentation-openai-v2,
exported as it happens by the SDK's BatchSpanProcessor and OTLP/HTTP protobuf exporter to `oncall receive`.

    python tests/live_traffic.py --base-url http://127.0.0.1:PORT/v1 --otlp-url http://127.0.0.1:PORT2/v1/traces \\
        --calls 100 [--tenant acme] [--model gpt-4o]

Each call runs inside an application root span carrying the cohort keys (tenant, feature), as apps do;
the served model is whatever the loopback server answers with (the tests switch it mid-stream).
"""

from __future__ import annotations

import argparse
import os
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--otlp-url", required=True)
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--tenant", default="acme")
    ap.add_argument("--model", default="gpt-4o")
    args = ap.parse_args()
    os.environ.setdefault("OTEL_SERVICE_NAME", "support-bot")
    import httpx2

    sys.modules.setdefault("httpx", httpx2)  # instrumentation-openai-v2 2.4b0 still imports httpx
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=args.otlp_url), schedule_delay_millis=200))
    trace.set_tracer_provider(provider)
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    import openai

    client = openai.OpenAI(base_url=args.base_url, api_key="sk-test-not-a-real-key", max_retries=0)
    tracer = trace.get_tracer("support-bot")
    for i in range(args.calls):
        with tracer.start_as_current_span("POST /chat") as root:
            root.set_attribute("tenant", args.tenant)
            root.set_attribute("feature", "support_chat")
            client.chat.completions.create(model=args.model, messages=[{"role": "user", "content": f"Question {i}?"}])
    provider.force_flush()
    provider.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
