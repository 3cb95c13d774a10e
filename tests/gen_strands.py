"""A Strands agent with a tool against the loopback OpenAI server, its spans written by the OTel SDK's
console exporter (Strands' own `StrandsTelemetry` provider).

Run from .envs/fmt-strands (.ci/setup-formats.sh) by tests/test_real_formats.py:

    python tests/gen_strands.py --base-url http://127.0.0.1:PORT/v1 --out spans.txt

Strands records the conversation as GenAI per-message span events (`gen_ai.user.message`,
`gen_ai.tool.message`, `gen_ai.choice`: strands `src/strands/telemetry/tracer.py`), the agent's
usage roll-up on `invoke_agent`, and one `chat` span per model call.
"""

from __future__ import annotations

import argparse
import sys

import instrumented_calls as calls


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
    from strands import Agent, tool
    from strands.models.openai import OpenAIModel
    from strands.telemetry import StrandsTelemetry

    telemetry = StrandsTelemetry()
    fh = open(args.out, "w", encoding="utf-8")  # noqa: SIM115 - closed after the provider flushes
    telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=fh)))

    @tool
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        return calls.TOOL_RESULT

    model = OpenAIModel(client_args={"base_url": args.base_url, "api_key": "sk-test-not-a-real-key", "max_retries": 0},
                        model_id="gpt-4o-mini")
    agent = Agent(model=model, tools=[get_weather], system_prompt=calls.SYSTEM,
                  trace_attributes={"session.id": calls.SESSION_ID, "user.id": calls.USER_ID, "tenant": calls.TENANT,
                                    "feature": calls.FEATURE, "prompt_version": calls.PROMPT_VERSION})
    agent(calls.TOOL_QUESTION)
    telemetry.tracer_provider.force_flush()
    fh.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
