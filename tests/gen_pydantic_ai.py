"""Drive pydantic-ai agents (OpenAI chat model) under their own OTel instrumentation and export the spans.

Run as a subprocess by tests/test_real_otel_exporters.py:

    python tests/gen_pydantic_ai.py --base-url http://127.0.0.1:PORT/v1 --out traces.jsonl

Instrumentation format version 6 (pydantic-ai's newest GenAI conventions, content included), the
official OTLP JSON file exporter. Inside one application root span `support_ticket` carrying the
cohort keys (session.id, user.id, tenant, feature, prompt_version), four agent runs, each with a
conversation id of its own as pydantic-ai gives every run: a plain answer, a tool-call round trip
(`get_weather`), a streamed answer, and a streamed call the server fails with 429.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from instrumented_calls import (
    ERROR_QUESTION,
    FEATURE,
    PROMPT_VERSION,
    QUESTION,
    SESSION_ID,
    STREAM_QUESTION,
    SYSTEM,
    TENANT,
    TOOL_QUESTION,
    TOOL_RESULT,
    USER_ID,
)


async def scenario(base_url: str, provider) -> None:
    import openai
    from opentelemetry import trace
    from pydantic_ai import Agent
    from pydantic_ai.capabilities.instrumentation import Instrumentation
    from pydantic_ai.exceptions import ModelHTTPError
    from pydantic_ai.models.instrumented import InstrumentationSettings
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    settings = InstrumentationSettings(tracer_provider=provider, version=6, include_content=True)

    def model(**headers: str) -> OpenAIChatModel:
        client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-test-not-a-real-key", max_retries=0,
                                    default_headers=headers or None)
        return OpenAIChatModel("gpt-4o-mini", provider=OpenAIProvider(openai_client=client))

    plain = Agent(model(), system_prompt=SYSTEM, capabilities=[Instrumentation(settings=settings)], name="support_agent")
    tools = Agent(model(), capabilities=[Instrumentation(settings=settings)], name="weather_agent")

    @tools.tool_plain
    def get_weather(city: str) -> str:
        """Current weather for a city"""
        return TOOL_RESULT

    failing = Agent(model(**{"X-Test-Fail": "429", "X-Test-Retry-After": "20"}), capabilities=[Instrumentation(settings=settings)],
                    name="support_agent")

    tracer = trace.get_tracer("support-bot", tracer_provider=provider)
    with tracer.start_as_current_span("support_ticket") as root:
        for k, v in {"session.id": SESSION_ID, "user.id": USER_ID, "tenant": TENANT, "feature": FEATURE,
                     "prompt_version": PROMPT_VERSION}.items():
            root.set_attribute(k, v)
        await plain.run(QUESTION, model_settings={"temperature": 0.2, "max_tokens": 64})
        await tools.run(TOOL_QUESTION)
        async with plain.run_stream(STREAM_QUESTION) as result:
            text = "".join([t async for t in result.stream_text(delta=True)])
        assert text, "the stream produced no text"
        try:
            async with failing.run_stream(ERROR_QUESTION) as result:
                async for _ in result.stream_text(delta=True):
                    pass
        except ModelHTTPError as exc:
            assert exc.status_code == 429, exc
        else:
            raise AssertionError("the server was asked to fail this call with 429")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    from opentelemetry.exporter.otlp.json.file import FileSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot",
                                                        "deployment.environment.name": "prod"}))
    provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(args.out)))
    asyncio.run(scenario(args.base_url, provider))
    provider.force_flush()
    provider.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
