"""Drive the `openai` client under real OpenTelemetry / OpenInference instrumentation and export the spans.

Run as a subprocess by tests/test_real_instrumentation.py so the global tracer provider and the
monkey-patching of the instrumentors never leak between tests:

    python tests/instrumented_calls.py --lib otel-v2|openinference|openllmetry --exporter otlp-file|console \\
        --base-url http://127.0.0.1:PORT/v1 --out traces.jsonl

It makes, inside one application root span `support_ticket` (session.id / user.id set there, as
applications do, with tenant, feature and prompt version): a plain chat call, a tool-call round trip (tool call, then the tool result), a
streaming call with usage, and a call the server fails with 429 (no retries), then flushes.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

SYSTEM = "You are a terse support assistant."
QUESTION = "What is the capital of France?"
TOOL_QUESTION = "What is the weather in Paris?"
STREAM_QUESTION = "Name three French cheeses."
ERROR_QUESTION = "This call is rate limited."
TOOL_RESULT = '{"temperature_c": 18, "sky": "clear"}'
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
SESSION_ID = "sess-oncall-42"
USER_ID = "user-7"
TENANT = "acme"
FEATURE = "support_chat"
PROMPT_VERSION = "v12"
# The cohort keys as oncall columns: what `search tenant=acme …` must find on every LLM call.
COHORT = {"tenant": TENANT, "user_id": USER_ID, "session_id": SESSION_ID, "feature": FEATURE,
          "prompt_version": PROMPT_VERSION}


def configure_env(lib: str) -> None:
    """Content capture must be configured before the instrumentation is imported."""
    if lib == "otel-v2":
        # Message content is only recorded on spans with the latest experimental conventions
        # and the span_only (or span_and_event) capture mode.
        os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"] = "gen_ai_latest_experimental"
        os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "span_only"
    os.environ.setdefault("OTEL_SERVICE_NAME", "support-bot")


def make_exporter(kind: str, out: str):
    """(exporter, file to close). For the live kinds `out` is the receiver's /v1/traces URL."""
    if kind in ("otlp-http-proto", "otlp-http-json"):
        headers = {"Authorization": f"Bearer {os.environ['ONCALL_TEST_TOKEN']}"} \
            if os.environ.get("ONCALL_TEST_TOKEN") else None
        if kind == "otlp-http-proto":
            from opentelemetry.exporter.otlp.proto.http import Compression
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.common.http import Compression
            from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter
        gzip = Compression.Gzip if hasattr(Compression, "Gzip") else Compression.GZIP  # the two spell it apart
        return OTLPSpanExporter(endpoint=out, compression=gzip, headers=headers), None
    if kind == "otlp-file":
        from opentelemetry.exporter.otlp.json.file import FileSpanExporter

        return FileSpanExporter(out), None
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    fh = open(out, "w", encoding="utf-8")
    return ConsoleSpanExporter(out=fh), fh


def run_calls(client: Any, rate_limit_error: type[Exception]) -> None:
    """The scenario's five calls on an `openai.OpenAI` client (instrumented or wrapped by a library):
    a plain call, a tool-call round trip, a streamed call with usage, and a call the loopback server
    fails with 429 (which must raise `rate_limit_error`). Every library's generator runs this."""
    client.chat.completions.create(
        model="gpt-4o-mini", temperature=0.2, max_tokens=64,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}])

    messages = [{"role": "user", "content": TOOL_QUESTION}]
    first = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL])
    call = first.choices[0].message.tool_calls[0]
    messages.append({"role": "assistant", "content": None, "tool_calls": [
        {"id": call.id, "type": "function",
         "function": {"name": call.function.name, "arguments": call.function.arguments}}]})
    messages.append({"role": "tool", "tool_call_id": call.id, "content": TOOL_RESULT})
    client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL])

    stream = client.chat.completions.create(
        model="gpt-4o-mini", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": STREAM_QUESTION}])
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text, "the stream produced no text"

    try:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": ERROR_QUESTION}],
            extra_headers={"X-Test-Fail": "429", "X-Test-Retry-After": "20"})
    except rate_limit_error:
        pass
    else:
        raise AssertionError("the server was asked to fail this call with 429")


def main() -> int:
    ap = argparse.ArgumentParser()
    # openllmetry: opentelemetry-instrumentation-openai (Traceloop), run from its own environment
    ap.add_argument("--lib", choices=["otel-v2", "openinference", "openllmetry"], required=True)
    ap.add_argument("--exporter", choices=["otlp-file", "console", "otlp-http-proto", "otlp-http-json"],
                    required=True)
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--out", required=True, help="file to write, or the receiver URL for otlp-http-*")
    ap.add_argument("--copy", default=None, help="also write the spans as an OTLP JSON Lines file here")
    args = ap.parse_args()

    configure_env(args.lib)
    import httpx2

    # opentelemetry-instrumentation-openai-v2 2.4b0 still imports httpx; openai 3 uses httpx2.
    sys.modules.setdefault("httpx", httpx2)

    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot",
                                                        "deployment.environment.name": "prod"}))
    exporter, fh = make_exporter(args.exporter, args.out)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    copy = None
    if args.copy:
        copy, _ = make_exporter("otlp-file", args.copy)
        provider.add_span_processor(SimpleSpanProcessor(copy))
    trace.set_tracer_provider(provider)

    if args.lib == "otel-v2":
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=provider)
    elif args.lib == "openllmetry":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=provider)
    else:
        from openinference.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=provider)

    import openai

    client = openai.OpenAI(base_url=args.base_url, api_key="sk-test-not-a-real-key", max_retries=0)
    tracer = trace.get_tracer("support-bot")
    with tracer.start_as_current_span("support_ticket") as root:
        root.set_attribute("session.id", SESSION_ID)
        root.set_attribute("user.id", USER_ID)
        root.set_attribute("tenant", TENANT)
        root.set_attribute("feature", FEATURE)
        root.set_attribute("prompt_version", PROMPT_VERSION)

        run_calls(client, openai.RateLimitError)

    provider.force_flush()
    provider.shutdown()
    if fh is not None:
        fh.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
