"""Drive the `openai` client under the real `langsmith` SDK (wrap_openai + @traceable).

Run as a subprocess by tests/test_real_exporters.py (the SDK's background tracing thread and its
environment must not leak between tests):

    python tests/gen_langsmith.py --endpoint http://127.0.0.1:PORT --base-url http://127.0.0.1:PORT/v1 \\
        [--no-batch]

The same calls as tests/instrumented_calls.py, inside one `@traceable` root run `support_ticket`
whose metadata carries the cohort keys (tenant, user, session, feature, prompt version): a plain
call, a tool-call round trip, a streamed call with usage, a 429. Then one run is created and never
ended (`RunTree.post()` without `end()`/`patch()`), as when a process dies mid-call. With
`--no-batch` the client sends every create and update on its own (POST /runs, PATCH /runs/{id});
otherwise it batches, through whichever endpoint the server's /info names.
"""

from __future__ import annotations

import argparse
import os
import sys

from instrumented_calls import (
    ERROR_QUESTION,
    QUESTION,
    STREAM_QUESTION,
    SYSTEM,
    TOOL_QUESTION,
    TOOL_RESULT,
    WEATHER_TOOL,
)

COHORT = {"tenant": "acme", "user_id": "user-7", "session_id": "sess-oncall-42",
          "feature": "support_chat", "prompt_version": "v12"}
UNFINISHED_RUN = "lookup_order"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--no-batch", action="store_true")
    args = ap.parse_args()
    os.environ.update({"LANGSMITH_TRACING": "true", "LANGSMITH_ENDPOINT": args.endpoint,
                       "LANGSMITH_API_KEY": "lsv2-test-not-a-real-key", "LANGSMITH_PROJECT": "support-bot"})

    import langsmith
    import openai
    from langsmith.run_trees import RunTree
    from langsmith.wrappers import wrap_openai

    ls_client = langsmith.Client(api_url=args.endpoint, api_key="lsv2-test-not-a-real-key",
                                 auto_batch_tracing=not args.no_batch)
    client = wrap_openai(openai.OpenAI(base_url=args.base_url, api_key="sk-test-not-a-real-key", max_retries=0))

    @langsmith.traceable(name="support_ticket", metadata=COHORT, client=ls_client)
    def support_ticket() -> None:
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
        except openai.RateLimitError:
            pass
        else:
            raise AssertionError("the server was asked to fail this call with 429")

    support_ticket(langsmith_extra={"client": ls_client})

    # A run whose process "died": created, never ended, never patched.
    orphan = RunTree(name=UNFINISHED_RUN, run_type="tool", inputs={"order": "A-1187"},
                     project_name="support-bot", ls_client=ls_client, extra={"metadata": COHORT})
    orphan.post()

    ls_client.flush()
    ls_client.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
