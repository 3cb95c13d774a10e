"""Logfire's OpenAI instrumentation over the scenario, its spans written by the OTLP JSON file exporter.

Run from .envs/fmt-logfire (.ci/setup-formats.sh) by tests/test_real_formats.py:

    python tests/gen_logfire.py --base-url http://127.0.0.1:PORT/v1 --out spans.jsonl

`logfire.instrument_openai` writes a `Chat Completion with …` span per call; a streamed call is that
span (ended when the stream is returned) plus a `streaming response from … took …` log written when
the stream is consumed (pydantic/logfire `logfire/_internal/integrations/llm_providers/llm_provider.py`
`record_streaming`). Nothing is sent to Logfire (`send_to_logfire=False`).
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
    import logfire
    import openai
    from opentelemetry.exporter.otlp.json.file import FileSpanExporter
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    logfire.configure(send_to_logfire=False, console=False, service_name="support-bot",
                      additional_span_processors=[SimpleSpanProcessor(FileSpanExporter(args.out))])
    client = openai.OpenAI(base_url=args.base_url, api_key="sk-test-not-a-real-key", max_retries=0)
    logfire.instrument_openai(client)
    with logfire.span("support_ticket") as root:
        for key, value in (("session.id", calls.SESSION_ID), ("user.id", calls.USER_ID), ("tenant", calls.TENANT),
                           ("feature", calls.FEATURE), ("prompt_version", calls.PROMPT_VERSION)):
            root.set_attribute(key, value)
        calls.run_calls(client, openai.RateLimitError)
    logfire.force_flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
