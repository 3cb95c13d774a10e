"""Drive the OpenAI Agents SDK against the loopback OpenAI server; its own trace exporter posts to a
loopback capture server standing in for `/v1/traces/ingest`.

Run from .envs/fmt-agents (.ci/setup-formats.sh) by tests/test_real_formats.py:

    python tests/gen_agents.py --base-url http://127.0.0.1:PORT/v1 --ingest http://127.0.0.1:PORT2/v1/traces/ingest

The scenario of tests/instrumented_calls.py as agent runs inside one `trace()` whose group id is
the session and whose metadata holds the cohort keys (the Agents SDK docs' way): a plain run, a run
whose agent calls the `get_weather` function tool (two model calls), a streamed run, and a run the
server fails with 429. The chat-completions model is used (the loopback server has no Responses API).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import instrumented_calls as calls


async def scenario(base_url: str) -> None:
    from agents import Agent, ModelSettings, OpenAIChatCompletionsModel, Runner, function_tool, trace
    from openai import AsyncOpenAI, RateLimitError

    client = AsyncOpenAI(base_url=base_url, api_key="sk-test-not-a-real-key", max_retries=0)
    model = OpenAIChatCompletionsModel(model="gpt-4o-mini", openai_client=client)

    @function_tool
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        return calls.TOOL_RESULT

    plain = Agent(name="support", instructions=calls.SYSTEM, model=model)
    tooled = Agent(name="weather", instructions=calls.SYSTEM, model=model, tools=[get_weather])
    failing = Agent(name="support", instructions=calls.SYSTEM, model=model,
                    model_settings=ModelSettings(extra_headers={"X-Test-Fail": "429", "X-Test-Retry-After": "20"}))
    with trace("support_ticket", group_id=calls.SESSION_ID,
               metadata={"tenant": calls.TENANT, "user_id": calls.USER_ID, "feature": calls.FEATURE,
                         "prompt_version": calls.PROMPT_VERSION}):
        await Runner.run(plain, calls.QUESTION)
        await Runner.run(tooled, calls.TOOL_QUESTION)
        streamed = Runner.run_streamed(plain, calls.STREAM_QUESTION)
        async for _ in streamed.stream_events():
            pass
        try:
            await Runner.run(failing, calls.ERROR_QUESTION)
        except RateLimitError:
            pass
        else:
            raise AssertionError("the server was asked to fail this run with 429")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--ingest", required=True)
    args = ap.parse_args()
    from agents import set_trace_processors
    from agents.tracing.processors import BackendSpanExporter, BatchTraceProcessor

    processor = BatchTraceProcessor(BackendSpanExporter(api_key="sk-test-not-a-real-key", endpoint=args.ingest))
    set_trace_processors([processor])
    asyncio.run(scenario(args.base_url))
    processor.force_flush()
    processor.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
