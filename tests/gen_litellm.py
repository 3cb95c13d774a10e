"""Drive the LiteLLM SDK with a CustomLogger and LiteLLM's own `otel` callback, and save what they write.

Run as a subprocess by tests/test_real_litellm.py from LiteLLM's own environment (.envs/litellm:
litellm pins its own openai and httpx):

    .envs/litellm/bin/python tests/gen_litellm.py --base-url http://127.0.0.1:PORT/v1 \\
        --slp payloads.jsonl --otel traces.jsonl

Both callbacks see the same calls: a plain call, a tool-call round trip, a streamed call with usage
and a call the server fails with 429 (no retries), made with `litellm.completion` against the
loopback server. The cohort keys travel the way a LiteLLM proxy user's do: the team alias (tenant)
as `user_api_key_team_alias`, the app's keys in `metadata.spend_logs_metadata` (feature, prompt
version) and `metadata.requester_metadata` (session, user).

- `--slp`: a CustomLogger writes `kwargs["standard_logging_object"]` (StandardLoggingPayload) of
  every success and failure as one JSON line, as a logging integration would.
- `--otel`: LiteLLM's OpenTelemetry callback, with the official OTLP JSON file exporter, inside the
  application's root span `support_ticket`.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import sys
import time

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
    WEATHER_TOOL,
)

METADATA = {
    "user_api_key_team_alias": TENANT,
    "spend_logs_metadata": {"feature": FEATURE, "prompt_version": PROMPT_VERSION},
    "requester_metadata": {"session_id": SESSION_ID, "user_id": USER_ID},
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--slp", required=True)
    ap.add_argument("--otel", required=True)
    ap.add_argument("--no-root", action="store_true", help="no application span around the calls")
    ap.add_argument("--one-call", action="store_true",
                    help="only the plain call (one call per caller span, as behind LiteLLM's proxy)")
    args = ap.parse_args()

    # Never fetch the model cost map from the internet: the package ships a copy.
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    import litellm
    from litellm.integrations.custom_logger import CustomLogger
    from litellm.integrations.opentelemetry import OpenTelemetry, OpenTelemetryConfig
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.json.file import FileSpanExporter

    slp_file = open(args.slp, "w", encoding="utf-8")

    class PayloadFile(CustomLogger):
        def _write(self, kwargs) -> None:
            slp_file.write(json.dumps(kwargs["standard_logging_object"], default=str) + "\n")
            slp_file.flush()

        def log_success_event(self, kwargs, response_obj, start_time, end_time) -> None:
            self._write(kwargs)

        def log_failure_event(self, kwargs, response_obj, start_time, end_time) -> None:
            self._write(kwargs)

    otel = OpenTelemetry(config=OpenTelemetryConfig(exporter=FileSpanExporter(args.otel),
                                                    service_name="support-bot"))
    litellm.callbacks = [PayloadFile(), otel]
    litellm.num_retries = 0

    def opts() -> dict:
        # A fresh metadata dict per call: LiteLLM writes its own dedupe markers into the metadata it
        # is given, and a dict shared across calls makes its otel callback drop every later call.
        return {"api_base": args.base_url, "api_key": "sk-test-not-a-real-key", "max_retries": 0,
                "metadata": copy.deepcopy(METADATA)}

    tracer = trace.get_tracer("support-bot")
    with contextlib.nullcontext() if args.no_root else tracer.start_as_current_span("support_ticket") as root:
        for k, v in {"session.id": SESSION_ID, "user.id": USER_ID, "tenant": TENANT, "feature": FEATURE,
                     "prompt_version": PROMPT_VERSION}.items():
            if root is not None:
                root.set_attribute(k, v)
        litellm.completion(model="openai/gpt-4o-mini", temperature=0.2, max_tokens=64,
                           messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
                           **opts())

        if args.one_call:
            # LiteLLM writes onto the caller's span from its logging thread after the call returns;
            # a span that has ended by then keeps nothing (only the raw child has the call). Stay in
            # the span until the callbacks ran, as a proxy request span does.
            _wait_for_payloads(args.slp, 1)
            time.sleep(0.5)
        else:
            more_calls(litellm, opts)

    return _finish(args, slp_file, trace, expected=1 if args.one_call else 5)


def _wait_for_payloads(path: str, expected: int) -> None:
    """LiteLLM logs success callbacks from a worker thread after the call returns: wait for them."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with open(path, encoding="utf-8") as fh:
            if sum(1 for _ in fh) >= expected:
                return
        time.sleep(0.1)


def more_calls(litellm, opts) -> None:
    """The tool-call round trip, the streamed call and the 429."""
    messages = [{"role": "user", "content": TOOL_QUESTION}]
    first = litellm.completion(model="openai/gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL], **opts())
    call = first.choices[0].message.tool_calls[0]
    messages.append({"role": "assistant", "content": None, "tool_calls": [
        {"id": call.id, "type": "function",
         "function": {"name": call.function.name, "arguments": call.function.arguments}}]})
    messages.append({"role": "tool", "tool_call_id": call.id, "content": TOOL_RESULT})
    litellm.completion(model="openai/gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL], **opts())

    stream = litellm.completion(model="openai/gpt-4o-mini", stream=True, stream_options={"include_usage": True},
                                messages=[{"role": "user", "content": STREAM_QUESTION}], **opts())
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text, "the stream produced no text"

    try:
        litellm.completion(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": ERROR_QUESTION}],
                           extra_headers={"X-Test-Fail": "429", "X-Test-Retry-After": "20"}, **opts())
    except litellm.RateLimitError:
        pass
    else:
        raise AssertionError("the server was asked to fail this call with 429")


def _finish(args, slp_file, trace, expected: int) -> int:
    _wait_for_payloads(args.slp, expected)
    time.sleep(float(os.environ.get("GEN_LITELLM_SETTLE", "0")))
    provider = trace.get_tracer_provider()
    if hasattr(provider, "force_flush"):
        provider.force_flush()
        provider.shutdown()
    slp_file.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
